"""The bench self-test that runs on the node (MicroPython), started by `python -m hardware bench`.

    from hardware.bench import run
    run(hal, "denloa-v1", now=1764720000, pir_wait_ms=10000)

It drives every part the board profile says is fitted through the HAL and
measures what came back, one line per check on the console:

    BENCH {"part": "lamp_relay", "ok": false, "code": "not_closing", "data": {...}}

ok is true (passed), false (failed) or null (nothing to measure it by: the
technician looks or listens). `code` says which way it failed; the laptop's
tool turns part + code into advice naming the pins of the profile ("Rơ-le đèn
không đóng: kiểm tra dây chân 26"). The last line is "BENCH-END".

Checks: parts that failed to start; the lamp relay (its feedback contact and
the lamp current, off then on); the dimmer (current at 10 % and at 100 %,
the level mid-ramp is reported, not judged: it depends on how late the
task wakes); the lamp current sensor; a 1 kHz test tone through the
amplifier and every zone relay; each zone relay in turn (listen for the
click); the RTC (valid time, a DS3231 when the profile has one; set from the
laptop's clock when it is invalid or more than 2 minutes off); the photocell
and the PIR (wave a hand within pir_wait_ms).

Waits use the HAL's clock (hal.sleep_ms): a current reading on the ESP32 is
fresh only every 5 s (Esp32Hal reuses one for _CT_PERIOD_MS), so the lamp
checks take about 20 s there. The lamp is left off, the amplifier off.
"""
import json

CT_FRESH_MS = 5200  # a new lamp current reading (Esp32Hal reuses one for 5 s)
LAMP_ON_MA = 20  # at least this while on: the lamp draws (the config's default fault_ma)
TONE_BYTES = 32000  # 1 s of 16 kHz 16-bit mono
SET_CLOCK_S = 120  # the RTC is set from the laptop when further off than this
WDT_MS = 120000  # the watchdog while the bench runs (fed at every wait)


class _Fed:
    """The HAL with sleep_ms feeding the watchdog first: every wait of the bench feeds it."""

    def __init__(self, hal):
        self._hal = hal

    def __getattr__(self, name):
        return getattr(self._hal, name)

    def sleep_ms(self, ms):
        self._hal.wdt_feed()
        return self._hal.sleep_ms(ms)


def _line(emit, part, ok, code="ok", data=None):
    emit("BENCH " + json.dumps({"part": part, "ok": ok, "code": code, "data": data or {}}))


def _tone_chunk():
    """50 ms of a 1 kHz sine at 16 kHz, 16-bit LE, about -12 dB."""
    sine = (0, 3135, 5793, 7568, 8192, 7568, 5793, 3135, 0, -3135, -5793, -7568, -8192, -7568, -5793, -3135)
    one = bytearray(32)
    for i, v in enumerate(sine):
        v &= 0xFFFF
        one[2 * i] = v & 0xFF
        one[2 * i + 1] = v >> 8
    return bytes(one) * 50


async def _lamp(hal, prof, emit):
    fb_fitted = prof["lamp_feedback"] is not None
    ct_fitted = prof.get("lamp_current") is not None
    hal.lamp_dim(0)
    hal.lamp_relay(False)
    await hal.sleep_ms(CT_FRESH_MS)
    fb_off, ma_off = hal.lamp_relay_state(), hal.lamp_current_ma()
    hal.lamp_relay(True)
    hal.lamp_dim(100)
    await hal.sleep_ms(CT_FRESH_MS)
    fb_on, ma_on = hal.lamp_relay_state(), hal.lamp_current_ma()
    data = {"feedback_off": fb_off, "feedback_on": fb_on, "ma_off": ma_off, "ma_on": ma_on}
    draws_on = ma_on is not None and ma_on >= LAMP_ON_MA
    draws_off = ma_off is not None and ma_off >= LAMP_ON_MA
    # the relay: closes and opens, by the feedback contact or else by the current
    if fb_on is not None or ma_on is not None:
        closed = fb_on is True or draws_on
        opened = fb_off is not True and not draws_off
        if not closed:
            _line(emit, "lamp_relay", False, "not_closing", data)
        elif not opened:
            _line(emit, "lamp_relay", False, "not_opening", data)
        else:
            _line(emit, "lamp_relay", True, "ok", data)
    else:
        _line(emit, "lamp_relay", None, "look", data)
        closed = None
    if fb_fitted:
        if fb_on is None:
            _line(emit, "lamp_feedback", False, "no_reading", data)
        elif ct_fitted and ma_on is not None and (draws_on != fb_on or draws_off != bool(fb_off)):
            _line(emit, "lamp_feedback", False, "not_following", data)
        else:
            _line(emit, "lamp_feedback", True, "ok", data)
    if ct_fitted:
        if ma_on is None:
            _line(emit, "lamp_ct", False, "no_reading", data)
        elif fb_on is True and not draws_on:
            _line(emit, "lamp_ct", False, "no_current", data)
        else:
            _line(emit, "lamp_ct", True, "ok", data)
    return closed


async def _dimmer(hal, prof, emit, lamp_on):
    if prof["dimmer"] is None:
        return
    if prof.get("lamp_current") is None or not lamp_on:
        hal.lamp_dim(10)
        await hal.sleep_ms(1000)
        hal.lamp_dim(100, 2000)
        await hal.sleep_ms(2000)
        _line(emit, "dimmer", None, "look" if lamp_on is not False else "skipped", {})
        return
    hal.lamp_dim(10)
    await hal.sleep_ms(CT_FRESH_MS)
    lo = hal.lamp_current_ma()
    hal.lamp_dim(100, 1000)
    await hal.sleep_ms(500)
    mid = hal.lamp_dim_level()
    await hal.sleep_ms(CT_FRESH_MS)
    hi = hal.lamp_current_ma()
    data = {"ma_10": lo, "ma_100": hi, "level_mid_ramp": mid}
    if lo is None or hi is None:
        _line(emit, "dimmer", None, "skipped", data)
    elif hi < lo * 1.3 + 10:
        _line(emit, "dimmer", False, "no_effect", data)
    else:
        _line(emit, "dimmer", True, "ok", data)


async def _tone(hal, prof, emit):
    if prof["i2s"] is None:
        return
    n = hal.zone_count()
    if prof["amp_relay"] is not None:
        hal.amp_power(True)
    hal.zone_relays((1 << n) - 1)
    hal.audio_source("clip")
    hal.audio_volume(30)
    await hal.sleep_ms(500)  # the amplifier's supply settles
    written = 0
    try:
        hal.audio_open(16000, 16, 1)
        chunk = _tone_chunk()
        waited = 0
        while written < TONE_BYTES and waited < 3000:
            off = written % len(chunk)
            took = hal.audio_write(memoryview(chunk)[off:])
            written += took
            if not took:
                await hal.sleep_ms(20)
                waited += 20
        hal.audio_close()
        waited = 0
        while hal.audio_queued_ms() and waited < 3000:
            await hal.sleep_ms(50)
            waited += 50
        ok, code = (True, "listen") if written >= TONE_BYTES else (False, "stalled")
    except OSError as exc:
        ok, code = False, "i2s_failed"
        written = -1
        emit("# tone: %r" % (exc,))
    hal.audio_source(None)
    hal.zone_relays(0)
    if prof["amp_relay"] is not None:
        hal.amp_power(False)
    _line(emit, "tone", ok, code, {"bytes": written})


async def _zones(hal, prof, emit):
    for i in range(len(prof["zone_relays"])):
        hal.zone_relays(1 << i)
        await hal.sleep_ms(400)
        hal.zone_relays(0)
        await hal.sleep_ms(200)
        _line(emit, "zone%d" % (i + 1), None, "listen", {})
    if prof["line_relay"] is not None:
        hal.audio_source("line")
        await hal.sleep_ms(400)
        hal.audio_source(None)
        _line(emit, "line_relay", None, "listen", {})


def _rtc(hal, prof, emit, now):
    kind = hal.rtc_kind()
    t = hal.time()
    data = {"kind": kind, "time": None if t is None else int(t), "laptop": now}
    if prof["rtc"] == "ds3231" and kind != "ds3231":
        _line(emit, "rtc", False, "ds3231_missing", data)
        return
    if now is not None and (t is None or abs(t - now) > SET_CLOCK_S):
        hal.set_time(int(now))
        t = hal.time()
        data["set"] = True
        data["time"] = None if t is None else int(t)
    if t is None:
        _line(emit, "rtc", False, "no_time", data)
    else:
        _line(emit, "rtc", True, "ok", data)


async def _sensors(hal, prof, emit, pir_wait_ms):
    if prof["photocell"] is not None:
        dark = hal.photocell_dark()
        if dark is None:
            _line(emit, "photocell", False, "no_reading", {})
        else:
            _line(emit, "photocell", True, "ok", {"dark": dark})
    if prof["pir"] is not None:
        if "pir" in hal.failed_parts():
            _line(emit, "pir", False, "no_reading", {})
            return
        waited = 0
        seen = hal.motion_since_last()
        while not seen and waited < pir_wait_ms:
            await hal.sleep_ms(100)
            waited += 100
            seen = hal.motion_since_last()
        _line(emit, "pir", True if seen else False, "ok" if seen else "no_motion", {"waited_ms": waited})


async def _run(hal, prof, now, pir_wait_ms, emit):
    hal.wdt_start(WDT_MS)  # a firmware stopped by Ctrl-C left the watchdog running: take it over
    for part in hal.failed_parts():
        _line(emit, part, False, "start_failed", {})
    lamp_on = None
    if prof["lamp_relay"] is not None:
        lamp_on = await _lamp(hal, prof, emit)
        await _dimmer(hal, prof, emit, lamp_on)
        hal.lamp_dim(0)
        hal.lamp_relay(False)
    await _tone(hal, prof, emit)
    await _zones(hal, prof, emit)
    _rtc(hal, prof, emit, now)
    await _sensors(hal, prof, emit, pir_wait_ms)


def run(hal, board, now=None, pir_wait_ms=10000, emit=print):
    """Run every check for board profile `board` (a name or a profile dict) on `hal`."""
    import asyncio

    from hardware import boards

    prof = boards.profile(board) if isinstance(board, str) else board
    try:
        asyncio.run(_run(_Fed(hal), prof, now, pir_wait_ms, emit))
    finally:
        hal.lamp_dim(0)
        hal.lamp_relay(False)
        if prof["amp_relay"] is not None:
            hal.amp_power(False)
    emit("BENCH-END")

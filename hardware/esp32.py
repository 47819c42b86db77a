"""The HAL on a real ESP32 node (MicroPython esp32 port only).

    hal = Esp32Hal(boards.profile("denloa-v1"),
                   {"wifi_ssid": "...", "wifi_password": "...", "storage_dir": "denloa"})

The node calls `hal.service()` once per control tick: it advances the dimmer
ramp (a ramp is start/target/start-ticks/duration, so it is exactly as
smooth as the tick: a 2 s ramp on a 100 ms tick is 20 steps) and shows the
network state on the status LED. lamp_dim_level() also advances the ramp.

A part that fails to start (bad pin, chip not answering) is logged, listed
in `failed_parts()` and then answers like a part that is not fitted; the node
goes on.

Not finished, on purpose:
  - audio: 16-bit PCM only; the player applies the volume while decoding, so
    writes go out unscaled; the line input has no volume control (no digital
    potentiometer on denloa-v1). audio_queued_ms() is a play head advanced by
    the ticks from what write() took (the driver does not say how full it is).
  - reset_cause: the esp32 port's machine.reset_cause() folds brownout into
    power-on; on a classic ESP32 the HAL then reads the PRO CPU's reset
    reason from RTC_CNTL_RESET_STATE_REG (0x3FF48034, bits 0..5) and reports
    15 (RTCWDT_BROWN_OUT_RESET) as "brownout". Other chips (S2, S3, C3: the
    register is elsewhere) fall back to "power_on". "panic" is a software
    reset that this HAL did not ask for (a crash, or machine.reset() typed at
    the REPL).
  - time() is an int: the esp32 port's floats are single precision, so a
    float Unix time would be rounded to 128 s.
"""
import array
import asyncio
import gc
import os
import select
import time

import machine
import network

from hardware import boards
from hardware.ds3231 import DS3231, fields_from_unix, unix_from_fields
from hardware.flashfs import DirFS
from hardware.hal import Hal
from hardware.ina219 import INA219
from hardware.lampcurrent import ADC_KINDS, ma_from_samples
from protocol.messages import VALID_TIME_MAX, VALID_TIME_MIN

_RESET_MARK = b"denloa:reset"  # in RTC memory: survives a reset, lost on a power cut
_CT_PERIOD_MS = 5000  # a lamp current reading is reused for this long (an ADC reading blocks ~20 ms)
_CURRENT_PART = "lamp_ct"  # the lamp current sensor's name in failed_parts(), whatever its kind
_SOURCES = ("clip", "stream", "line")
_RTC_CNTL_RESET_STATE_REG = 0x3FF48034  # ESP32 (classic): reset reason of the PRO CPU in bits 0..5
_RTCWDT_BROWN_OUT_RESET = 15
_DAC_SOURCES = ("clip", "stream")


def _level(active_high, on):
    return 1 if bool(on) == bool(active_high) else 0


class Esp32Hal(Hal):
    def __init__(self, board, config):
        if isinstance(board, str):
            board = boards.profile(board)
        self.board = board
        self.config = config
        self._failed_parts: "list[str]" = []
        self._reset_cause = self._read_reset_cause()
        self._i2c = self._start_i2c()
        self._start_lamp()
        self._start_sensors()
        self._start_pa()
        self._led = self._output("status_led")
        self._led_t0 = time.ticks_ms()
        self._rtc = machine.RTC()
        self._ds: "DS3231 | None" = None
        self._start_ds3231()
        self._fs: "DirFS | None" = None
        self._wdt: "machine.WDT | None" = None
        self._wlan: "network.WLAN | None" = None

    def _start_lamp(self):
        board = self.board
        self._lamp_relay = self._output("lamp_relay")
        self._feedback = self._input("lamp_feedback")
        self._pwm: "machine.PWM | None" = None
        self._dim_start = self._dim_target = self._dim_now = 0
        self._dim_t0 = time.ticks_ms()
        self._dim_ms = 0
        spec = board["dimmer"]
        if spec is not None:
            try:
                self._pwm = machine.PWM(machine.Pin(spec["pin"]), freq=spec["freq_hz"], duty_u16=self._duty(0))
            except Exception as exc:
                self._failed("dimmer", exc)
        spec = board["lamp_current"]
        self._ct_adc: "machine.ADC | None" = None
        self._ina: "INA219 | None" = None
        if spec is not None and spec["kind"] in ADC_KINDS:
            self._ct_adc = self._adc("lamp_current", _CURRENT_PART)
        elif spec is not None and spec["kind"] == "ina219":
            self._ina = self._start_ina219(spec)
        elif spec is not None:
            self._failed(_CURRENT_PART, "unknown sensor kind %r" % (spec["kind"],))
        n = spec["samples"] if self._ct_adc is not None else 0
        self._ct_mv = array.array("H", (0 for _ in range(n)))  # allocated once: no garbage per reading
        self._ct_ma: "int | None" = None
        self._ct_at = time.ticks_ms()

    def _start_ina219(self, spec) -> "INA219 | None":
        if self._i2c is None:
            self._failed(_CURRENT_PART, "INA219 without a working i2c bus")
            return None
        try:
            ina = INA219(self._i2c, spec["shunt_mohm"], spec["max_ma"], spec["addr"])
        except ValueError as exc:  # a shunt/range the chip cannot measure
            self._failed(_CURRENT_PART, exc)
            return None
        if not ina.start():
            self._failed(_CURRENT_PART, "no INA219 answer at 0x%02x" % spec["addr"])
            return None
        return ina

    def _start_sensors(self):
        board = self.board
        pc = board["photocell"]
        self._photo_adc = self._adc("photocell") if pc and pc["kind"] == "adc" else None
        self._photo_pin = self._input("photocell") if pc and pc["kind"] == "digital" else None
        self._dark: "bool | None" = None
        self._motion = False
        self._pir = self._input("pir")
        if self._pir is not None:
            edge = machine.Pin.IRQ_RISING if board["pir"]["active_high"] else machine.Pin.IRQ_FALLING
            self._pir.irq(handler=self._on_motion, trigger=edge)

    def _start_pa(self):
        board = self.board
        self._amp = self._output("amp_relay")
        self._amp_on = False
        self._line = self._output("line_relay")
        self._zones: "list[machine.Pin | None]" = []
        for i, z in enumerate(board["zone_relays"]):
            self._zones.append(self._pin_out("zone %d relay" % (i + 1), z))
        self._zone_mask = 0
        self._dac_enable: "machine.Pin | None" = None
        if board["i2s"] is not None and board["i2s"].get("enable") is not None:
            self._dac_enable = self._pin_out("i2s enable", {"pin": board["i2s"]["enable"], "active_high": True})
        self._source: "str | None" = None
        self._volume = 100
        self._i2s: "machine.I2S | None" = None
        self._audio_bps = 32000  # bytes a second of the open session
        self._audio_t = time.ticks_ms()  # ticks of the play head's last move
        self._audio_us = 0  # audio queued then (us)
        self._audio_closing = False
        self._audio_preroll = 0  # bytes of opening silence still to queue (audio_open delay_ms)
        self._audio_zeros: "bytearray | None" = None

    # ---- parts ---------------------------------------------------------------
    def _failed(self, part, exc):
        if part not in self._failed_parts:
            self._failed_parts.append(part)
        self.log("hal: %s failed to start (%r); going on without it" % (part, exc))

    def _pin_out(self, part, spec) -> "machine.Pin | None":
        try:
            return machine.Pin(spec["pin"], machine.Pin.OUT, value=_level(spec["active_high"], False))
        except Exception as exc:  # a bad pin must not stop the node
            self._failed(part, exc)
            return None

    def _output(self, key) -> "machine.Pin | None":
        spec = self.board[key]
        return None if spec is None else self._pin_out(key, spec)

    def _input(self, key) -> "machine.Pin | None":
        spec = self.board[key]
        if spec is None:
            return None
        try:
            return machine.Pin(spec["pin"], machine.Pin.IN)  # 34-39 have no pulls: the board has them
        except Exception as exc:
            self._failed(key, exc)
            return None

    def _adc(self, key, part=None) -> "machine.ADC | None":
        spec = self.board[key]
        if spec is None:
            return None
        try:
            return machine.ADC(machine.Pin(spec["pin"]), atten=machine.ADC.ATTN_11DB)  # ~0.15-2.45 V
        except Exception as exc:
            self._failed(part or key, exc)
            return None

    def _drive(self, pin, key, on):
        if pin is not None:
            pin.value(_level(self.board[key]["active_high"], on))

    # ---- lamp ----------------------------------------------------------------
    def lamp_relay(self, on):
        self._drive(self._lamp_relay, "lamp_relay", on)

    def lamp_relay_state(self):
        if self._feedback is None:
            return None
        return self._feedback.value() == self.board["lamp_feedback"]["closed_level"]

    def _duty(self, level):
        duty = level * 65535 // 100
        return 65535 - duty if self.board["dimmer"]["invert"] else duty

    def lamp_dim(self, level, ramp_ms=0):
        level = max(0, min(100, int(level)))
        self._dim_start = self.lamp_dim_level()
        self._dim_target = level
        self._dim_t0 = time.ticks_ms()
        self._dim_ms = max(0, int(ramp_ms))
        self.lamp_dim_level()

    def lamp_dim_level(self):
        if self._dim_now != self._dim_target:
            elapsed = time.ticks_diff(time.ticks_ms(), self._dim_t0)
            if elapsed >= self._dim_ms:
                now = self._dim_target
            else:
                now = self._dim_start + (self._dim_target - self._dim_start) * elapsed // self._dim_ms
            if now != self._dim_now:
                self._dim_now = now
                if self._pwm is not None:
                    self._pwm.duty_u16(self._duty(now))
        return self._dim_now

    def lamp_current_ma(self):
        """CT / ACS712: RMS over one mains cycle (blocks ~1/mains_hz s); INA219: the DC current
        (its 128-sample average, either direction through the shunt). Reused for 5 s."""
        if self._ct_adc is None and self._ina is None:
            return None
        now = time.ticks_ms()
        if self._ct_ma is None or time.ticks_diff(now, self._ct_at) >= _CT_PERIOD_MS:
            self._ct_ma = self._measure_ct() if self._ina is None else self._measure_ina()
            self._ct_at = now
        return self._ct_ma

    def _measure_ina(self) -> "int | None":
        ina = self._ina
        ma = ina.current_ma() if ina is not None else None
        if ma is None:
            return None
        ma = abs(ma)  # a shunt wired the other way round reads the same lamp
        return 0 if ma < self.board["lamp_current"]["noise_ma"] else ma

    def _measure_ct(self) -> "int | None":
        spec = self.board["lamp_current"]
        adc = self._ct_adc
        if adc is None:
            return None
        mv = self._ct_mv
        n = len(mv)
        step_us = 1000000 // self.board["mains_hz"] // n  # n samples spread over exactly one cycle
        t0 = time.ticks_us()
        try:
            for i in range(n):
                while time.ticks_diff(time.ticks_us(), t0) < i * step_us:
                    pass
                mv[i] = adc.read_uv() // 1000
        except OSError:
            return None
        return ma_from_samples(mv, spec)  # the bias / zero is taken out, RMS, the sensor's scale

    def lamp_power_w(self):
        ma = self.lamp_current_ma()
        if ma is None:
            return None
        ina = self._ina
        if ina is not None:  # the DC power into the LEDs, grossed up by the driver's efficiency
            if ma == 0:
                return 0.0
            mw = ina.power_mw()
            return None if mw is None else mw / 1000 / self.board["lamp_current"]["driver_eff"]
        return ma / 1000 * self.board["mains_v"] * self.board["power_factor"]

    # ---- sensors -------------------------------------------------------------
    def photocell_dark(self):
        spec = self.board["photocell"]
        if self._photo_pin is not None:
            return self._photo_pin.value() == spec["dark_level"]
        if self._photo_adc is None:
            return None
        mv = self._photo_adc.read_uv() // 1000
        if mv < spec["dark_below_mv"]:
            self._dark = True
        elif mv > spec["light_above_mv"]:
            self._dark = False
        elif self._dark is None:  # first reading inside the hysteresis band
            self._dark = mv < (spec["dark_below_mv"] + spec["light_above_mv"]) // 2
        return self._dark

    def _on_motion(self, pin):
        self._motion = True

    def motion_since_last(self):
        if self._pir is None:
            return None
        fired = self._motion
        self._motion = False
        # a retriggering PIR holds its output through continuous motion: that counts too
        return fired or self._pir.value() == (1 if self.board["pir"]["active_high"] else 0)

    # ---- loudspeaker (PA) ----------------------------------------------------
    def amp_power(self, on):
        self._amp_on = bool(on) and self._amp is not None
        self._drive(self._amp, "amp_relay", on)

    def amp_power_state(self):
        return None if self.board["amp_relay"] is None else self._amp_on

    def zone_count(self):
        return len(self._zones)

    def zone_relays(self, mask):
        mask &= (1 << len(self._zones)) - 1
        for i, pin in enumerate(self._zones):
            if pin is not None:
                pin.value(_level(self.board["zone_relays"][i]["active_high"], mask >> i & 1))
        self._zone_mask = mask

    def zone_relays_state(self):
        return self._zone_mask

    def audio_source(self, source):
        if source is not None and source not in _SOURCES:
            raise ValueError("audio source must be one of %s or None, not %r" % (", ".join(_SOURCES), source))
        if source == "line" and self._line is None:
            self.log("hal: no line input relay on this board; audio muted")
            source = None
        if source in _DAC_SOURCES and self.board["i2s"] is None:
            source = None
        self._drive(self._line, "line_relay", source == "line")
        if self._dac_enable is not None:
            self._dac_enable.value(1 if source in _DAC_SOURCES else 0)
        self._source = source

    def audio_source_state(self):
        return self._source

    def audio_volume(self, volume):
        self._volume = max(0, min(100, int(volume)))

    def audio_volume_state(self):
        return self._volume

    def audio_open(self, rate, bits, channels, delay_ms=0):
        spec = self.board["i2s"]
        if bits != 16 or channels not in (1, 2):
            raise ValueError("audio: only 16-bit mono or stereo PCM, not %r bits x %r channels" % (bits, channels))
        self._audio_deinit()  # a previous session's tail is cut: the player waits for it, others may not
        if spec is None or "i2s" in self._failed_parts:
            raise OSError("audio: this board has no working I2S output")
        try:
            i2s = machine.I2S(
                spec["id"],
                sck=machine.Pin(spec["bclk"]),
                ws=machine.Pin(spec["ws"]),
                sd=machine.Pin(spec["din"]),
                mode=machine.I2S.TX,
                bits=bits,
                format=machine.I2S.MONO if channels == 1 else machine.I2S.STEREO,
                rate=rate,
                ibuf=spec["ibuf"],
            )
            # Polling the I2S object puts it in the port's asyncio mode: write()
            # then copies what fits in the DMA buffers and returns at once with
            # that count. (irq() mode would report every buffer as taken.)
            poll = select.poll()
            poll.register(i2s, select.POLLOUT)
            poll.poll(0)
        except Exception as exc:
            self._failed("i2s", exc)
            raise OSError("audio: I2S failed to start: %r" % (exc,))
        self._i2s = i2s
        self._audio_bps = rate * 2 * channels
        self._audio_t = time.ticks_ms()
        self._audio_us = 0
        # the opening silence: zeros queued ahead of the data (written as room allows, before it)
        self._audio_preroll = (delay_ms * self._audio_bps // 1000) & ~3 if delay_ms > 0 else 0
        if self._audio_preroll and self._audio_zeros is None:
            self._audio_zeros = bytearray(256)
        self._write_preroll()

    def _write_preroll(self):
        """Queue what fits of the opening silence; True once all of it is in the driver."""
        i2s, zeros = self._i2s, self._audio_zeros
        if i2s is None or zeros is None:
            return self._audio_preroll <= 0
        while self._audio_preroll > 0:
            try:
                n = i2s.write(memoryview(zeros)[:min(len(zeros), self._audio_preroll)]) or 0
            except OSError:
                n = 0
            if not n:
                return False
            self._audio_preroll -= n
            self._account(n)
        return True

    def _account(self, n):
        now = time.ticks_ms()
        self._audio_us = self._audio_left_us(now) + n * 1000000 // self._audio_bps
        self._audio_t = now

    def audio_write(self, buf):
        """Copies what fits in the driver's buffer (ibuf) and returns at once with that count.
        Unscaled: the player applies the volume while decoding (docs/audio.md section 2)."""
        i2s = self._i2s
        if i2s is None or self._audio_closing or not self._write_preroll():
            return 0
        try:
            n = i2s.write(buf)
        except OSError as exc:
            self.log("hal: i2s write failed: %r" % (exc,))
            return 0
        n = n or 0  # None: the stream had no room at all
        if n:
            self._account(n)
        return n

    def _audio_left_us(self, now):
        """Audio (us) written and not yet played: a play head advanced by the ticks (the driver
        does not say how full it is)."""
        left = self._audio_us - time.ticks_diff(now, self._audio_t) * 1000
        return left if left > 0 else 0

    def audio_queued_ms(self):
        if self._i2s is None:
            return 0
        left = self._audio_left_us(time.ticks_ms())
        if left == 0 and self._audio_closing:
            self._audio_deinit()
        return (left + 999) // 1000

    def audio_close(self):
        """The queued audio plays out: the driver is stopped once it has (deinit would cut it)."""
        if self._i2s is None:
            return
        self._audio_closing = True
        self.audio_queued_ms()

    def _audio_deinit(self):
        i2s = self._i2s
        self._i2s = None
        self._audio_closing = False
        self._audio_us = 0
        if i2s is not None:
            try:
                i2s.deinit()
            except OSError:
                pass

    # ---- time ----------------------------------------------------------------
    def _start_i2c(self) -> "machine.I2C | None":
        spec = self.board["i2c"]
        if spec is None:
            return None
        try:
            scl, sda = machine.Pin(spec["scl"]), machine.Pin(spec["sda"])
            return machine.I2C(spec["id"], scl=scl, sda=sda, freq=spec["freq"])
        except Exception as exc:
            self._failed("i2c", exc)
            return None

    def _start_ds3231(self):
        i2c = self._i2c
        if self.board["rtc"] != "ds3231" or i2c is None:
            return
        ds = DS3231(i2c)
        if not ds.present():
            self._failed("ds3231", "no answer at 0x68")
            return
        self._ds = ds
        t = ds.time()
        if t is not None and ds.lost_power() is False:
            self._set_internal(t)  # the fallback if the DS3231 drops off the bus later

    def _internal_time(self) -> "int | None":
        y, mo, d, _, h, mi, s, _ = self._rtc.datetime()
        t = unix_from_fields(y, mo, d, h, mi, s)
        # the internal RTC restarts at 2000 after a power cut: below the floor means never set
        return t if VALID_TIME_MIN <= t <= VALID_TIME_MAX else None

    def _set_internal(self, t):
        y, mo, d, h, mi, s, wd = fields_from_unix(t)
        self._rtc.datetime((y, mo, d, wd - 1, h, mi, s, 0))

    def time(self):
        ds = self._ds
        if ds is not None:
            lost = ds.lost_power()
            if lost:
                return None  # the oscillator stopped: the DS3231 time is wrong until set
            t = ds.time() if lost is False else None
            if t is not None:
                return t
            # a bus error: the internal RTC (synced at boot or by set_time) stands in
        return self._internal_time()

    def set_time(self, unix):
        t = int(unix)
        if not VALID_TIME_MIN <= t <= VALID_TIME_MAX:
            self.log("hal: set_time(%r) ignored: not between %d and %d (2026-01-01 and 2099-01-01)"
                     % (unix, VALID_TIME_MIN, VALID_TIME_MAX))
            return
        self._set_internal(t)
        if self._ds is not None and not self._ds.set_time(t):
            self.log("hal: DS3231 did not take the time (bus error)")

    def rtc_kind(self):
        return "ds3231" if self._ds is not None else "internal"

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def ticks_add(self, t, delta):
        return time.ticks_add(t, delta)

    def sleep_ms(self, ms):
        return asyncio.sleep_ms(ms)

    # ---- storage -------------------------------------------------------------
    @property
    def fs(self):
        if self._fs is None:
            self._fs = DirFS("/" + self.config.get("storage_dir", "denloa").strip("/"))
        return self._fs

    # ---- system --------------------------------------------------------------
    def wdt_start(self, timeout_ms):
        # Once started the watchdog cannot be stopped or slowed down: only a reset ends it.
        if self._wdt is None:
            self._wdt = machine.WDT(timeout=max(1000, int(timeout_ms)))  # esp32 minimum: 1 s
        self._wdt.feed()

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def _read_reset_cause(self) -> str:
        rtc = machine.RTC()
        ours = rtc.memory() == _RESET_MARK
        if ours:
            rtc.memory(b"")
        cause = machine.reset_cause()
        if cause == machine.PWRON_RESET:  # also brownout and the EN button on the esp32 port
            return "brownout" if self._brownout() else "power_on"
        if cause == machine.WDT_RESET:
            return "watchdog"
        if cause in (machine.SOFT_RESET, machine.HARD_RESET):
            return "soft" if ours else "panic"
        return "unknown"

    def _brownout(self) -> bool:
        try:
            return machine.mem32[_RTC_CNTL_RESET_STATE_REG] & 0x3F == _RTCWDT_BROWN_OUT_RESET
        except Exception:  # no mem32, or another chip whose register is elsewhere
            return False

    def reset_cause(self):
        return self._reset_cause

    def failed_parts(self):
        return list(self._failed_parts)

    def reset(self):
        machine.RTC().memory(_RESET_MARK)
        machine.reset()

    def random_bytes(self, n):
        return os.urandom(n)  # the esp32 hardware RNG: truly random while the radio is on

    def unique_id(self):
        return machine.unique_id()

    def free_heap(self):
        return gc.mem_free()

    # ---- network -------------------------------------------------------------
    def _sta(self) -> "network.WLAN":
        if self._wlan is None:
            self._wlan = network.WLAN(network.STA_IF)
        return self._wlan

    def net_up(self):
        return self._wlan is not None and self._wlan.isconnected()

    def net_connect(self):
        wlan = self._sta()
        try:
            if not wlan.active():
                wlan.active(True)
            if wlan.isconnected() or wlan.status() == network.STAT_CONNECTING:
                return
            wlan.disconnect()  # leave a failed attempt before starting a new one
            wlan.connect(self.config["wifi_ssid"], self.config.get("wifi_password", ""))
        except OSError as exc:  # the driver refuses while busy: the next call retries
            self.log("hal: wifi connect: %r" % (exc,))

    def rssi(self):
        if not self.net_up():
            return None
        try:
            return self._sta().status("rssi")
        except OSError:
            return None

    # ---- tick ----------------------------------------------------------------
    def service(self):
        """Call once per control tick: advances the dimmer ramp, drives the status LED."""
        self.lamp_dim_level()
        if self._audio_closing:
            self.audio_queued_ms()  # stops the driver once the tail has played
        if self._led is not None:
            # solid: network up; blinking once a second: no network
            on = self.net_up() or time.ticks_diff(time.ticks_ms(), self._led_t0) // 500 % 2 == 0
            self._drive(self._led, "status_led", on)

"""A software board: the node's hardware, simulated faithfully enough to test against.

It implements the HAL (hardware/hal.py) for tests and the simulator, on
MicroPython and CPython. It behaves like the hardware, not like a test
wants: a relay's feedback reads the contact, not the command (a stuck relay
reads stuck); a PWM ramp takes its time; a burnt lamp draws no current; a
day-burner (relay welded shut) draws current while driven off; the
internal RTC forgets the time on a power cut, a DS3231 keeps it (and may
drift); the watchdog expires if not fed.

Every physical change is reported as ground truth to `truth(t, what, value)`
with the true time `t` (not the node's clock): "light" (the % of light the
lamp really gives, ramp target and duration as (level, ramp_ms)), "relay",
"amp", "zones", "source", "volume", "pcm" (one I2S session: what left the DAC,
docs/audio.md section 3), "power" (mains on/off),
"rtc" (True when the node's wall clock becomes valid, False when it is lost;
also reported at every power-on).

ticks_ms() wraps like the ESP32 port's: (ms since this board last powered
on + ticks_offset) & (2**30 - 1), `ticks_offset` applying to the first
power-on only, so a test can start just before a wrap. The board's own
physics (dimmer ramp, watchdog) use the clock's unwrapped ticks.
"""
from hardware.hal import Hal

TICKS_PERIOD = 1 << 30
AUDIO_QUEUE_BYTES = 8192  # the I2S DMA queue: the ESP32 driver's internal buffer (ibuf) of denloa-v1

TICKS_MAX = TICKS_PERIOD - 1
TICKS_HALF = TICKS_PERIOD >> 1


class SimClock:
    """True time for soft boards. Manual: it moves only with advance()."""

    def __init__(self, start_unix):
        self._now = float(start_unix)
        self._ticks = 0  # ms since this clock was made

    def now(self):
        return self._now

    def ticks_ms(self):
        return self._ticks

    def advance(self, seconds):
        self._now += seconds
        self._ticks += int(round(seconds * 1000))

    def sleep_ms(self, ms):
        # Manual time: the caller advances the clock; just yield to the loop.
        import asyncio

        return asyncio.sleep_ms(0) if hasattr(asyncio, "sleep_ms") else asyncio.sleep(0)


class RealClock:
    """True time that runs by itself, `speed` times faster than real time.

    Starts at `start_unix` (or the host's clock). sleep_ms(ms) waits ms/speed
    of real time, so a node's 1 s tick at speed 600 takes 1.7 ms.

    With an `epoch` (the host's wall time at start_unix, shared by every process of a simulator
    run) and time.time_ns, the clock is read in integer nanoseconds: no float is made on the
    MicroPython heap for ticks_ms(), which every node calls many times a tick (a simulator host of
    50 nodes at 100x reads it some 10^5 times a second). The reading is the same as the float
    formula's (to the microsecond), so the processes of a run still share one clock.
    """

    def __init__(self, start_unix=None, speed=1.0, epoch=None):
        import time

        self._time = time
        self.speed = float(speed)
        self._epoch = epoch  # the host's wall time at start_unix: processes that share it share one clock
        self._t0 = time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.monotonic() * 1000)
        self._start = float(start_unix) if start_unix is not None else time.time()
        self._ns = getattr(time, "time_ns", None) if epoch is not None else None
        if self._ns is not None:
            self._epoch_ns = int(round(epoch * 1000000)) * 1000  # to the microsecond: a float's precision here
            self._speed_milli = int(round(self.speed * 1000))
            if self._speed_milli != self.speed * 1000:  # a speed finer than 1/1000: the float formula
                self._ns = None
        self._sleep = None  # asyncio's sleep_ms (MicroPython) or sleep, looked up at the first sleep_ms()

    def _real_ms(self):
        t = self._time
        if self._epoch is not None:
            return int((t.time() - self._epoch) * 1000)
        if hasattr(t, "ticks_ms"):
            return t.ticks_diff(t.ticks_ms(), self._t0)
        return int(t.monotonic() * 1000) - self._t0

    def ticks_ms(self):
        ns = self._ns
        if ns is not None:
            return (ns() - self._epoch_ns) * self._speed_milli // 1000000000
        return int(self._real_ms() * self.speed)

    def now(self):
        ns = self._ns
        if ns is not None:
            return self._start + (ns() - self._epoch_ns) * self._speed_milli // 1000000 / 1000000.0
        return self._start + self._real_ms() * self.speed / 1000.0

    def sleep_ms(self, ms):
        sleep = self._sleep
        if sleep is None:
            import asyncio

            self._ms = hasattr(asyncio, "sleep_ms")
            sleep = self._sleep = asyncio.sleep_ms if self._ms else asyncio.sleep
        real = ms / self.speed
        if self._ms:
            return sleep(max(1, int(real)) if ms else 0)
        return sleep(real / 1000.0)


def _first_loud(mv):
    """Index of the first int16 LE sample in mv with |x| >= 4096, or -1."""
    n = len(mv) // 2
    if hasattr(bytes, "translate"):  # CPython: scan the high bytes in C
        high = bytes(mv[1::2])
        i = high.translate(_LOUD_TABLE).find(b"L")
        m = high.find(b"\xf0", 0, n if i < 0 else i)
        while m >= 0:  # high byte 0xF0: loud only as -4096 exactly
            if mv[2 * m] == 0:
                return m
            m = high.find(b"\xf0", m + 1, n if i < 0 else i)
        return i
    try:
        from hardware.loud_viper import first_loud  # MicroPython: 50 boards scan quiet audio at 1x
    except Exception:
        first_loud = None
    if first_loud is not None:
        return first_loud(mv, n)
    for k in range(n):
        h = mv[2 * k + 1]
        if 16 <= h <= 239 or (h == 240 and mv[2 * k] == 0):
            return k
    return -1


_LOUD_TABLE = bytes(76 if 16 <= h <= 239 else 46 for h in range(256))


class _Rng:
    """xorshift32: seeded per board so simulated runs repeat exactly."""

    def __init__(self, seed):
        self.x = (seed & 0xFFFFFFFF) or 0x9E3779B9

    def byte(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x & 0xFF


class I2sQueue:
    """SoftBoard's I2S DMA queue (docs/audio.md section 3): a ring of AUDIO_QUEUE_BYTES that
    drains at the sample rate on the board's clock; hashes exactly the samples that leave the
    DAC, and records each session as ground truth ("pcm") once its last sample has played."""

    def __init__(self, clock, record):
        self.clock = clock
        self.record = record
        self.ring = bytearray(AUDIO_QUEUE_BYTES)
        self.fmt = None
        self.total = 0  # bytes accepted, all sessions
        self.rate = 16000
        self.head = self.qlen = self.done = 0
        self.t0 = 0.0
        self.closing = False
        self.s_start = self.s_end = self.s_loud = self.s_dry = self.s_hash = None
        self.s_samples = self.s_under = 0
        self.s_gap = 0.0
        self.begin = None  # when the opening silence of the session ends (audio_open delay_ms)

    def open(self, rate, bits, channels, delay_ms=0):
        self.drain()
        if self.closing:  # a new session cuts the old one's tail (the ESP32 driver restarts)
            self.finish()
        self.fmt = (rate, bits, channels)
        self.rate = rate * channels
        self.head = self.qlen = 0
        self.closing = False
        self.s_start = self.s_end = self.s_loud = self.s_dry = None
        self.s_samples = self.s_under = 0
        self.s_gap = 0.0
        self.s_hash = None
        # the driver's silence ahead of the first sample: the session begins when it has played
        self.begin = self.clock.now() + delay_ms / 1000.0 if delay_ms > 0 else None

    def _preroll(self, t):
        """Bytes of the opening silence still ahead of the DAC at time t (they fill the buffer too)."""
        if self.begin is None or self.s_start is not None or t >= self.begin:
            return 0
        return int((self.begin - t) * self.rate) * 2

    def write(self, buf):
        if self.fmt is None:
            return 0
        t = self.clock.now()
        self.drain(t)
        n = min(len(buf), AUDIO_QUEUE_BYTES - self.qlen - self._preroll(t)) & ~1
        if n <= 0:
            return 0
        if self.qlen == 0:  # the DAC starts (again) now, or when the opening silence ends
            if self.s_start is None and self.begin is not None and t < self.begin:
                t = self.begin
            self.t0 = t
            self.done = 0
            if self.s_start is None:
                import hashlib

                self.s_start = t
                self.s_hash = hashlib.sha256()
            elif self.s_dry is not None:
                self.s_under += 1
                self.s_gap += t - self.s_dry
            self.s_dry = None
        q = self.ring
        tail = (self.head + self.qlen) % AUDIO_QUEUE_BYTES
        first = min(n, AUDIO_QUEUE_BYTES - tail)
        mv = memoryview(buf)
        q[tail:tail + first] = mv[:first]
        if first < n:
            q[0:n - first] = mv[first:n]
        self.qlen += n
        self.total += n
        return n

    def queued_ms(self):
        t = self.clock.now()
        if self.qlen == 0:
            return (self._preroll(t) // 2 * 1000 + self.rate - 1) // self.rate
        self.drain(t)
        left = self.t0 + (self.done + self.qlen // 2) / self.rate - t  # the silence ahead of t0 included
        return max(0, int(left * 1000 + 0.999))

    def close(self):
        if self.fmt is None:
            return
        self.drain()
        self.fmt = None
        self.closing = True
        if self.qlen == 0:
            self.finish()

    def drain(self, t=None):
        """Move the DAC's play head to time t: hash exactly the samples that left it."""
        if self.qlen == 0:
            return
        if t is None:
            t = self.clock.now()
        rate = self.rate
        n = min(int((t - self.t0) * rate + 0.01) - self.done, self.qlen // 2)  # 0.01: float time at Unix magnitudes
        if n <= 0:
            return
        q = self.ring
        head = self.head
        size = 2 * n
        first = min(size, AUDIO_QUEUE_BYTES - head)
        mv = memoryview(q)
        self._played(mv[head:head + first], self.done)
        if first < size:
            self._played(mv[0:size - first], self.done + first // 2)
        self.s_samples += n
        self.head = (head + size) % AUDIO_QUEUE_BYTES
        self.qlen -= size
        self.done += n
        self.s_end = self.t0 + self.done / rate
        if self.qlen == 0:
            self.s_dry = self.s_end
            if self.closing:
                self.finish()

    def _played(self, mv, done):
        """mv: int16 LE samples leaving the DAC, the first being sample `done` of this run."""
        self.s_hash.update(mv)
        if self.s_loud is None:
            i = _first_loud(mv)
            if i >= 0:
                self.s_loud = self.t0 + (done + i) / self.rate

    def finish(self):
        """The session's ground-truth record: what really left the DAC."""
        self.closing = False
        self.qlen = 0
        if self.s_start is not None and self.s_end is not None:
            from binascii import hexlify

            self.record("pcm", {"start": self.s_start, "end": self.s_end, "samples": self.s_samples,
                                 "sha256": hexlify(self.s_hash.digest()).decode(), "rate": self.rate,
                                 "underruns": self.s_under, "gap_ms": int(round(self.s_gap * 1000)),
                                 "first_loud": self.s_loud})
        self.s_start = self.s_end = self.s_hash = None



class SoftBoard(Hal):
    """Software board with the HAL interface; see the module doc.

    Faults (attributes a test or the simulator may set at any time):
      burnt: the lamp gives no light and draws no current
      relay_stuck: None, "open" or "closed" (welded)
      pir_dead: motion is never reported
      rtc_battery_dead: a DS3231 loses the time on a power cut too
      failed: part names that failed to start (failed_parts()); "ds3231",
        "photocell", "lamp_ct", "pir" then answer as not fitted; "i2s": audio_open raises
      boot_crash: N > 0: the first service() after each power-on raises
        RuntimeError (a driver crashing the firmware at boot), N times
      miswired: wires on the wrong pin (the bench test must name them):
        "lamp_relay" the coil is never driven (the contact stays open, the
        feedback reads open), "lamp_feedback" the feedback always reads open
        while the contact works, "dimmer" the 0-10 V input floats (full light
        whatever the level)
    Hooks: on_reset, a callable the simulator host sets: reset() calls it
    so the host can really reboot the node.
    """

    def __init__(self, clock, fs=None, zones=4, rtc="ds3231", rated_w=60.0, mains_v=230.0,
                 photocell=True, pir=True, seed=1, truth=None, rtc_offset=0.0, rtc_drift_ppm=0.0,
                 ticks_offset=0, audio=False):
        self.clock = clock
        self._fs = fs
        self._zones = zones
        self._rtc_kind = rtc
        self.rated_w = rated_w
        self.mains_v = mains_v
        self.idle_w = 0.8  # LED driver standby draw
        self.min_dim = 10  # a 0-10 V driver never goes below ~10 %: only the relay turns the lamp off
        self.has_photocell = photocell
        self.has_pir = pir
        self.truth = truth
        self.journal = []  # (t, what, value) when no truth sink is given; the first 200 kept
        self.journal_max = 200
        self._rng = _Rng(seed)
        # faults
        self.burnt = False
        self.relay_stuck = None
        self.pir_dead = False
        self.rtc_battery_dead = False
        self.failed = []
        self.boot_crash = 0
        self.miswired = []
        self._serviced = False  # service() called since the last power-on
        self._powered = True
        # outputs
        self._relay_cmd = False
        self._dim_from = 0.0
        self._dim_to = 0.0
        self._dim_t0 = 0
        self._dim_ms = 0
        self._amp = False
        self._zone_mask = 0
        self._source = None
        self._volume = 0
        self._audio_fmt = None
        self.audio_bytes = 0  # bytes accepted by audio_write, all sessions
        # the I2S DMA queue (I2sQueue): made at the first audio_open, or with the board when
        # `audio` (a test on a small heap makes it while the heap is still in one piece)
        self._dma = None
        # inputs
        self._dark = False
        self._motion = False
        # clock: the node's RTC = true time + offset + drift
        self._rtc_valid = rtc is not None and rtc_offset is not None
        self._rtc_base_true = clock.now()
        self._rtc_base_value = clock.now() + (rtc_offset or 0.0)
        self.rtc_drift_ppm = rtc_drift_ppm
        # system
        self._wdt_timeout = None
        self._wdt_fed = 0
        self._reset_cause = "power_on"
        self.reset_requested = False
        self.on_reset = None
        self._ticks_base = clock.ticks_ms()
        self._ticks_offset = int(ticks_offset)
        self._powered_before = False
        self.link = True
        self.rssi_dbm = -60
        if audio:
            self._dma_queue()

    # ---- ground truth ------------------------------------------------------
    def _record(self, what, value):
        t = self.clock.now()
        if self.truth is not None:
            self.truth(t, what, value)
        elif len(self.journal) < self.journal_max:
            self.journal.append((t, what, value))

    def _contact_closed(self):
        if self.relay_stuck == "closed":
            return True
        if self.relay_stuck == "open" or "lamp_relay" in self.miswired:
            return False
        return self._relay_cmd

    def light(self):
        """Light the lamp really gives now, 0..100 (ground truth)."""
        if self.burnt or not self._powered or not self._contact_closed():
            return 0.0
        return 100.0 if "dimmer" in self.miswired else max(self.min_dim, self.lamp_dim_level())

    def _record_light(self):
        if self.burnt or not self._powered or not self._contact_closed():
            self._record("light", (0, 0))
        else:
            remaining = max(0, self._dim_ms - (self.clock.ticks_ms() - self._dim_t0))
            self._record("light", (int(round(max(self.min_dim, self._dim_to))), remaining))

    # ---- lamp --------------------------------------------------------------
    def lamp_relay(self, on):
        on = bool(on)
        if on != self._relay_cmd:
            was = self._contact_closed()
            self._relay_cmd = on
            if self._contact_closed() != was:
                self._record("relay", self._contact_closed())
                self._record_light()

    def lamp_relay_state(self):
        return False if "lamp_feedback" in self.miswired else self._contact_closed()

    def lamp_dim(self, level, ramp_ms=0):
        level = max(0, min(100, level))
        if level == self._dim_to:
            return
        self._dim_from = self.lamp_dim_level()
        self._dim_to = float(level)
        self._dim_t0 = self.clock.ticks_ms()
        self._dim_ms = max(0, int(ramp_ms))
        if self._contact_closed():
            self._record_light()

    def lamp_dim_level(self):
        if self._dim_ms <= 0:
            return self._dim_to
        done = (self.clock.ticks_ms() - self._dim_t0) / self._dim_ms
        if done >= 1:
            return self._dim_to
        return self._dim_from + (self._dim_to - self._dim_from) * max(0.0, done)

    def lamp_power_w(self):
        if "lamp_ct" in self.failed:
            return None
        if self.burnt or not self._contact_closed():
            return 0.0
        return self.idle_w + self.rated_w * self.light() / 100.0

    def lamp_current_ma(self):
        if "lamp_ct" in self.failed:
            return None
        return int(self.lamp_power_w() / self.mains_v * 1000)

    # ---- sensors -----------------------------------------------------------
    def set_dark(self, dark):
        self._dark = bool(dark)

    def trigger_motion(self):
        if self.has_pir and not self.pir_dead and "pir" not in self.failed:
            self._motion = True

    def photocell_dark(self):
        return self._dark if self.has_photocell and "photocell" not in self.failed else None

    def motion_since_last(self):
        seen, self._motion = self._motion, False
        return seen

    # ---- loudspeaker -------------------------------------------------------
    def amp_power(self, on):
        if bool(on) != self._amp:
            self._amp = bool(on)
            self._record("amp", self._amp)

    def amp_power_state(self):
        return self._amp

    def zone_count(self):
        return self._zones

    def zone_relays(self, mask):
        mask &= (1 << self._zones) - 1
        if mask != self._zone_mask:
            self._zone_mask = mask
            self._record("zones", mask)

    def zone_relays_state(self):
        return self._zone_mask

    def audio_source(self, source):
        if source != self._source:
            self._source = source
            self._record("source", source)

    def audio_source_state(self):
        return self._source

    def audio_volume(self, volume):
        volume = max(0, min(100, int(volume)))
        if volume != self._volume:
            self._volume = volume
            self._record("volume", volume)

    def audio_volume_state(self):
        return self._volume

    def _dma_queue(self):
        if self._dma is None:
            self._dma = I2sQueue(self.clock, self._record)
        return self._dma

    def audio_open(self, rate, bits, channels, delay_ms=0):
        if "i2s" in self.failed or not self._zones:
            raise OSError("audio: this board has no working I2S output")
        self._audio_fmt = (rate, bits, channels)
        self._dma_queue().open(rate, bits, channels, delay_ms)

    def audio_write(self, buf):
        dma = self._dma
        if dma is None or not self._powered:
            return 0
        n = dma.write(buf)
        self.audio_bytes += n
        return n

    def audio_queued_ms(self):
        return 0 if self._dma is None else self._dma.queued_ms()

    def audio_close(self):
        self._audio_fmt = None
        if self._dma is not None:
            self._dma.close()

    # ---- time --------------------------------------------------------------
    def _rtc_missing(self):
        return self._rtc_kind is None or (self._rtc_kind == "ds3231" and "ds3231" in self.failed)

    def time(self):
        if not self._rtc_valid or self._rtc_missing():
            return None
        elapsed = self.clock.now() - self._rtc_base_true
        return self._rtc_base_value + elapsed * (1.0 + self.rtc_drift_ppm / 1e6)

    def set_time(self, unix):
        if self._rtc_missing():
            return
        was = self._rtc_valid
        self._rtc_base_true = self.clock.now()
        self._rtc_base_value = float(unix)
        self._rtc_valid = True
        if not was:
            self._record("rtc", True)

    def rtc_kind(self):
        return None if self._rtc_missing() else self._rtc_kind

    def ticks_ms(self):
        return (self.clock.ticks_ms() - self._ticks_base + self._ticks_offset) & TICKS_MAX

    def ticks_diff(self, a, b):
        return ((a - b + TICKS_HALF) & TICKS_MAX) - TICKS_HALF

    def ticks_add(self, t, delta):
        return (t + delta) & TICKS_MAX

    def sleep_ms(self, ms):
        return self.clock.sleep_ms(ms)

    # ---- storage -----------------------------------------------------------
    @property
    def fs(self):
        return self._fs

    # ---- system ------------------------------------------------------------
    def wdt_start(self, timeout_ms):
        self._wdt_timeout = timeout_ms
        self._wdt_fed = self.clock.ticks_ms()

    def wdt_feed(self):
        self._wdt_fed = self.clock.ticks_ms()

    def wdt_expired(self):
        """True when a real watchdog would have reset the chip by now."""
        if self._wdt_timeout is None:
            return False
        return self.clock.ticks_ms() - self._wdt_fed > self._wdt_timeout

    def wdt_unfed_ms(self):
        """Simulated ms since the watchdog was last fed (or armed), None when it is not armed."""
        if self._wdt_timeout is None:
            return None
        return self.clock.ticks_ms() - self._wdt_fed

    def reset_cause(self):
        return self._reset_cause

    def reset(self):
        self.reset_requested = True
        if self.on_reset is not None:
            self.on_reset()

    def random_bytes(self, n):
        return bytes([self._rng.byte() for _ in range(n)])

    def unique_id(self):
        return b"\x24\x0a\xc4\x00\x00\x01"

    def free_heap(self):
        import gc

        return gc.mem_free() if hasattr(gc, "mem_free") else 100000

    def failed_parts(self):
        return list(self.failed)

    def service(self):
        if self._dma is not None:
            self._dma.drain()
        if not self._serviced:
            self._serviced = True
            if self.boot_crash > 0:
                self.boot_crash -= 1
                raise RuntimeError("simulated crash at boot")

    def net_up(self):
        return self.link

    def net_connect(self):
        pass

    def rssi(self):
        return self.rssi_dbm if self.link else None

    def log(self, text):
        pass

    # ---- what the simulator does to the board -----------------------------
    def power_cut(self, keep_rtc=False):
        """Mains off: outputs drop, RAM is lost (the host rebuilds the node), the flash stays.
        keep_rtc: a reset rather than a cut (the internal RTC keeps running)."""
        self._relay_cmd = False
        self._dim_to = self._dim_from = 0.0
        self._dim_ms = 0
        self._amp = False
        self._zone_mask = 0
        self._source = None
        self._volume = 0
        self._audio_fmt = None
        if self._dma is not None:  # what played until now is in the record; the queued rest never plays
            self._dma.drain()
            self._dma.fmt = None
            self._dma.finish()
        self._powered = False
        self._record("power", False)
        self._record("relay", self._contact_closed())
        self._record_light()
        self._record("amp", False)
        self._record("zones", 0)
        self._record("source", None)
        self._record("volume", 0)
        if not keep_rtc and self._rtc_valid and (self._rtc_kind == "internal" or self.rtc_battery_dead):
            self._rtc_valid = False
            self._record("rtc", False)
        self._wdt_timeout = None

    def clock_jump(self, seconds):
        """The node's RTC suddenly reads `seconds` later (or earlier): a glitch, a bad manual set."""
        self._rtc_base_value += seconds

    def power_on(self, cause="power_on"):
        self._reset_cause = cause
        self.reset_requested = False
        self._serviced = False
        self._powered = True
        self._ticks_base = self.clock.ticks_ms()  # a chip's ticks restart at boot
        if self._powered_before:
            self._ticks_offset = 0
        self._powered_before = True
        self._record("power", True)
        self._record("rtc", self.time() is not None)
        if self._contact_closed() and not self.burnt:  # a welded relay lights the lamp as the mains return
            self._record_light()

    def watchdog_reset(self):
        """What a watchdog expiry does: a reset with the outputs dropped, RTC kept."""
        self.power_cut(keep_rtc=True)
        self.power_on("watchdog")

    def reboot(self, cause):
        """A reset that is not a power cut (soft, watchdog, panic): outputs drop
        (the GPIOs go to their reset state), the RTC keeps its time."""
        self.power_cut(keep_rtc=True)
        self.power_on(cause)

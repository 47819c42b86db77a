"""The hardware abstraction layer (HAL) the node firmware is given.

The firmware never imports `machine`, `network` or reads `time.time()`:
everything physical, and the wall clock, comes through one object with
this interface. Implementations:

- `hardware.esp32.Esp32Hal`: the real node (machine.Pin/PWM/ADC/I2S/RTC/WDT,
  DS3231, Wi-Fi).
- `hardware.softboard.SoftBoard`: a software board for tests and the
  simulator that behaves like the hardware (relays read back what was
  driven, a burnt lamp draws no current, a PWM ramp takes time) and records
  ground truth.

`Hal` below documents the contract; implementations subclass it. Every
method returns promptly (no blocking waits); nothing raises on a failed
part except where said: a missing part answers None.
"""


class Hal:
    # ---- lamp --------------------------------------------------------------
    def lamp_relay(self, on):
        """Drive the lamp contactor/relay coil (True = closed = lamp powered)."""
        raise NotImplementedError

    def lamp_relay_state(self):
        """What the relay's feedback reads: True closed, False open, None if no feedback."""
        raise NotImplementedError

    def lamp_dim(self, level, ramp_ms=0):
        """Start moving the dimmer output (PWM / 0-10 V) to `level` 0..100 over `ramp_ms`."""
        raise NotImplementedError

    def lamp_dim_level(self):
        """The dimmer output now (0..100); mid-ramp it is between start and target."""
        raise NotImplementedError

    def lamp_current_ma(self):
        """Lamp circuit current in mA from the current sensor, or None if not fitted (a CT or an
        ACS712 in the mains line: the RMS; an INA219 on an LED driver's DC output: the LED current)."""
        raise NotImplementedError

    def lamp_power_w(self):
        """Active power of the lamp circuit in W (current x mains voltage x power factor; with an
        INA219, the DC power over the driver's efficiency), or None."""
        raise NotImplementedError

    # ---- sensors -----------------------------------------------------------
    def photocell_dark(self):
        """True when the photocell says it is dark, False when light, None if not fitted."""
        raise NotImplementedError

    def motion_since_last(self):
        """True if the PIR fired since the previous call (edges are latched by IRQ)."""
        raise NotImplementedError

    # ---- loudspeaker (PA) --------------------------------------------------
    def amp_power(self, on):
        """Switch the amplifier's mains/DC supply relay."""
        raise NotImplementedError

    def amp_power_state(self):
        raise NotImplementedError

    def zone_count(self):
        """How many speaker zone relays the board has (0 when it has no PA)."""
        raise NotImplementedError

    def zone_relays(self, mask):
        """Set every zone relay at once: bit i (0-based) closes zone relay i + 1."""
        raise NotImplementedError

    def zone_relays_state(self):
        raise NotImplementedError

    def audio_source(self, source):
        """Route the amplifier input: "clip" or "stream" (I2S DAC), "line" (line-in relay), None (muted)."""
        raise NotImplementedError

    def audio_source_state(self):
        raise NotImplementedError

    def audio_volume(self, volume):
        """Output volume 0..100 (digital gain for I2S, digital potentiometer for line)."""
        raise NotImplementedError

    def audio_volume_state(self):
        raise NotImplementedError

    def audio_open(self, rate, bits, channels, delay_ms=0):
        """Start an I2S session for PCM of this format (docs/audio.md section 3). Raises on a
        failed I2S part (the player reports "no_audio"). With `delay_ms` the DAC first plays
        that much silence (the driver queues zeros ahead of the data: they take room in its
        buffer), so the first sample written leaves the DAC exactly `delay_ms` after this call
        however late the writes come within that time: a timed start that the audio task's
        wake-up jitter cannot move."""
        raise NotImplementedError

    def audio_write(self, buf):
        """Queue PCM bytes without blocking: accepts at most the free room of the DMA queue
        (whole frames) and returns how many bytes it took (0 when full or not open). The first
        sample written into an empty queue leaves the DAC at once (after the silence of
        audio_open's delay_ms, for a session's first write)."""
        raise NotImplementedError

    def audio_queued_ms(self):
        """How much written audio (ms, rounded up) has not yet left the DAC; 0 when none."""
        raise NotImplementedError

    def audio_close(self):
        """End the session: what is queued plays out, then the output stops. Never blocks."""
        raise NotImplementedError

    # ---- time --------------------------------------------------------------
    def time(self):
        """Wall clock as Unix seconds, or None when the clock is not valid
        (RTC never set, or it lost power: DS3231 oscillator-stop flag).
        An int on the ESP32, whose single-precision floats are 128 s coarse
        at today's Unix times; the simulator may give a float."""
        raise NotImplementedError

    def set_time(self, unix):
        """Set the wall clock to int Unix seconds (internal RTC and the DS3231 when fitted)."""
        raise NotImplementedError

    def rtc_kind(self):
        """"ds3231", "internal" (ESP32 RTC, lost on power cut) or None."""
        raise NotImplementedError

    def ticks_ms(self):
        """Milliseconds since the chip started, wrapping like time.ticks_ms.

        On the ESP32 port the value wraps with period 2**30 (about 12.4 days):
        it is in 0 .. 2**30 - 1 and restarts near 0 at every reset. Never
        compare or subtract ticks directly: use ticks_diff / ticks_add."""
        raise NotImplementedError

    def ticks_diff(self, a, b):
        """a - b in ms, wrap-safe (like time.ticks_diff): a signed result in
        -2**29 .. 2**29 - 1, valid only when the true difference is within
        ±2**29 ms (about 6.2 days); longer spans must be accumulated."""
        raise NotImplementedError

    def ticks_add(self, t, delta):
        """ticks `t` moved by `delta` ms (delta may be negative), wrapped like
        time.ticks_add: the deadline to pass to ticks_diff later."""
        raise NotImplementedError

    def sleep_ms(self, ms):
        """An awaitable that resumes after `ms` of this board's time (the simulator may run faster)."""
        raise NotImplementedError

    # ---- storage -----------------------------------------------------------
    @property
    def fs(self):
        """The node's storage directory: an object with open(name, mode),
        rename(old, new), remove(name), listdir() and stat(name) -> size,
        names relative to the directory, raising OSError like `os` does."""
        raise NotImplementedError

    # ---- system ------------------------------------------------------------
    def wdt_start(self, timeout_ms):
        """Arm the hardware watchdog; it resets the node if not fed in time."""
        raise NotImplementedError

    def wdt_feed(self):
        raise NotImplementedError

    def reset_cause(self):
        """Why the node last started: "power_on", "watchdog", "soft", "brownout", "panic" or "unknown"."""
        raise NotImplementedError

    def reset(self):
        """Hard reset the node now."""
        raise NotImplementedError

    def random_bytes(self, n):
        """n random bytes (hardware RNG; seeded in the simulator)."""
        raise NotImplementedError

    def unique_id(self):
        """Chip id bytes (MAC on the ESP32)."""
        raise NotImplementedError

    def free_heap(self):
        raise NotImplementedError

    def failed_parts(self):
        """Short names of parts that failed to start (e.g. "ds3231", "photocell",
        "lamp_ct", "i2s"): each then answers as if not fitted. The node reports
        them in its birth message and self-test. [] when all is well."""
        raise NotImplementedError

    # ---- network -----------------------------------------------------------
    def net_up(self):
        """True when the network link (Wi-Fi associated with an IP) is up."""
        raise NotImplementedError

    def net_connect(self):
        """Start (re)connecting the link without waiting; net_up() tells when it is up."""
        raise NotImplementedError

    def rssi(self):
        """Wi-Fi signal in dBm, or None."""
        raise NotImplementedError

    def service(self):
        """Called once per control tick: lets an implementation advance what it
        drives in software (a dimmer ramp, a status LED). Must return at once."""

    def log(self, text):
        """A line for the serial console / host log."""
        print(text)

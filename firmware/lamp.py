"""Lamp output: drive relay + dimmer to a level, watch the current, count energy.

Faults are judged from the current sensor against what was driven, and
only after the condition has lasted `fault_s` (a lamp takes time to strike,
a ramp takes time to settle):
  lamp_fault  - driven on, no current (burnt lamp, broken wire, relay stuck open)
  day_burner  - driven off, current flows (relay welded, wiring bypass)
"""


class LampControl:
    def __init__(self, hal, cfg, energy, lit, emit, uptime):
        self.hal = hal
        self.uptime = uptime  # ms since boot, never wraps
        self.lit = lit  # BatchedValue: seconds the lamp was lit, kept across reboots
        self.ramp_ms = cfg.ramp_ms
        self.fault_ma = cfg.fault_ma
        self.dayburn_ma = cfg.dayburn_ma
        self.fault_ms = cfg.fault_s * 1000
        self.energy = energy  # BatchedValue, Wh
        self.emit = emit
        self.level = None  # what we drive now
        self.reason = None
        self.fault = None  # None, "lamp_fault" or "day_burner"
        self._suspect = None
        self._suspect_since = 0
        self._changed_at = 0
        self._last_ms = None

    def drive(self, level, reason=None):
        """Make the outputs match `level` (0..100); cheap when nothing changes."""
        self.reason = reason
        if level == self.level:
            return
        now = self.uptime.ms()
        self._changed_at = now
        if level > 0:
            self.hal.lamp_relay(True)
            self.hal.lamp_dim(level, self.ramp_ms if self.level else 0)
        else:
            self.hal.lamp_dim(0, 0)
            self.hal.lamp_relay(False)
        self.level = level

    def check(self):
        """Energy and fault detection; call every tick after drive()."""
        hal = self.hal
        now = self.uptime.ms()
        watts = hal.lamp_power_w()
        if self._last_ms is not None and watts:
            dt = (now - self._last_ms) / 1000.0
            if 0 < dt < 3600:
                up_s = now // 1000
                self.energy.update(self.energy.value + watts * dt / 3600.0, up_s)
                if self.level:
                    self.lit.update(self.lit.value + dt, up_s)
        self._last_ms = now
        ma = hal.lamp_current_ma()
        if ma is None or self.level is None:
            return
        if now - self._changed_at < self.ramp_ms + 1000:
            return  # still switching or ramping: the reading says nothing yet
        # Driven on, only a lamp fault can be judged; driven off, only a day-burner.
        kind = "lamp_fault" if self.level > 0 else "day_burner"
        bad = ma < self.fault_ma if self.level > 0 else ma > self.dayburn_ma
        if not bad:
            self._suspect = None
            if self.fault == kind:
                self.fault = None
                self.emit("lamp_ok", {"level": self.level, "ma": ma, "was": kind})
            return
        if self._suspect != kind:
            self._suspect = kind
            self._suspect_since = now
        if self.fault != kind and now - self._suspect_since >= self.fault_ms:
            self.fault = kind
            self.emit(kind, {"level": self.level, "ma": ma, "relay": hal.lamp_relay_state()})

    def telemetry(self):
        return {
            "lvl": self.level or 0,
            "relay": bool(self.hal.lamp_relay_state()),
            "w": round(self.hal.lamp_power_w() or 0.0, 1),
            "wh": round(self.energy.value, 1),
            "on_s": int(self.lit.value),
        }

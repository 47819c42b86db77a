"""Milliseconds since boot that never wrap, from the HAL's wrapping ticks.

On the ESP32 `ticks_ms()` wraps with period 2**30 and `ticks_diff` is only
valid within +-2**29 ms (6.2 days), so a mark taken at boot, or when a lamp
last changed, cannot be compared with the ticks a week later. Every timer
in the firmware uses `Uptime.ms()` instead: it adds up tick differences
between calls, which are always short because the control loop calls it
every second (it must be called at least once every 2**29 ms).
"""


class Uptime:
    def __init__(self, hal):
        self.hal = hal
        self._last = hal.ticks_ms()
        self._s = 0  # whole seconds: a small int for 34 years
        self._ms = 0  # the part below a second

    def ms(self):
        """Milliseconds since this object was made (at boot); never decreases."""
        self._advance()
        return self._s * 1000 + self._ms

    def seconds(self):
        self._advance()
        return self._s

    def _advance(self):
        hal = self.hal
        now = hal.ticks_ms()
        d = hal.ticks_diff(now, self._last)
        self._last = now
        if d > 0:
            ms = self._ms + d
            self._s += ms // 1000
            self._ms = ms % 1000

"""TI INA219 current/power monitor on I2C: shunt calibration, bus voltage, current, power.

The bus is passed in (machine.I2C or anything with readfrom_mem/writeto_mem),
as for hardware/ds3231.py. Registers are 16-bit big-endian (datasheet
SBOS448, section 8.6):

  0x00 configuration  BRNG (bus range 16/32 V), PG (shunt range 40..320 mV),
                      BADC/SADC (ADC resolution/averaging), MODE
  0x01 shunt voltage  signed, LSB 10 uV
  0x02 bus voltage    bits 15..3, LSB 4 mV; bit 1 CNVR, bit 0 OVF (math overflow)
  0x03 power          Current_LSB x 20 per bit
  0x04 current        signed, Current_LSB per bit = shunt x calibration / 4096
  0x05 calibration    trunc(0.04096 / (Current_LSB x R_shunt)), bit 0 unused

Units are integers where they can be (milliohms, microamps, millivolts):
MicroPython's floats are single precision on the ESP32. A bus error
(OSError) is answered with None, never raised: a flaky sensor must not stop
the node. If the chip lost its calibration (a supply glitch resets it to
0, and the current and power registers then read 0), the next reading
writes it again and, for that reading, works the current out from the shunt
voltage itself.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):  # type: ignore[misc]  # the stubs' generic const() is the same function
        return x

ADDR = const(0x40)  # A0 = A1 = GND (the breakouts' default); 0x41, 0x44, 0x45 with the jumpers
_REG_CONFIG = const(0x00)
_REG_SHUNT = const(0x01)
_REG_BUS = const(0x02)
_REG_POWER = const(0x03)
_REG_CURRENT = const(0x04)
_REG_CAL = const(0x05)
_RESET = const(0x8000)
_BRNG_32V = const(0x2000)
_ADC_128 = const(0x0F)  # 12-bit, 128 samples averaged: 68 ms; smooths a PWM-dimmed LED current
_MODE_CONT = const(0x07)  # shunt and bus, continuous
_OVF = const(0x01)
SHUNT_RANGES_MV = (40, 80, 160, 320)  # PG = /1, /2, /4, /8


def _signed(v):
    return v - 0x10000 if v & 0x8000 else v


def pga_bits(max_shunt_mv):
    """The PG field (0-3) of the smallest shunt range that holds max_shunt_mv; ValueError above 320 mV."""
    for pg, full in enumerate(SHUNT_RANGES_MV):
        if max_shunt_mv <= full:
            return pg
    raise ValueError("INA219: %s mV across the shunt is above its 320 mV range: use a smaller shunt" % max_shunt_mv)


def calibration(shunt_mohm, max_ma) -> "tuple[int, int]":
    """(calibration register value, Current_LSB in uA) for a shunt and the largest expected current.

    Current_LSB = max current / 2^15, rounded up to a whole uA so the
    current register cannot overflow below max_ma (datasheet equations 1-2).
    """
    if shunt_mohm <= 0 or max_ma <= 0:
        raise ValueError("INA219: shunt (mohm) and max current (mA) must be positive")
    lsb_ua = (max_ma * 1000 + 32767) // 32768
    cal = 40960000 // (lsb_ua * shunt_mohm)  # 0.04096 / (lsb_ua 1e-6 x mohm 1e-3)
    if cal < 2:
        raise ValueError("INA219: shunt %d mohm is too large for %d mA" % (shunt_mohm, max_ma))
    return min(cal, 0xFFFE) & 0xFFFE, lsb_ua


def config_word(shunt_mohm, max_ma, bus_32v=True) -> int:
    """The configuration register: bus range, the shunt range for max_ma, 128x averaging, continuous."""
    pg = pga_bits(max_ma * shunt_mohm // 1000)
    return (_BRNG_32V if bus_32v else 0) | pg << 11 | _ADC_128 << 7 | _ADC_128 << 3 | _MODE_CONT


class INA219:
    def __init__(self, i2c, shunt_mohm=100, max_ma=3200, addr=ADDR, bus_32v=True):
        """shunt_mohm: the shunt (the common breakouts fit 0.1 ohm = 100 mohm, good to 3.2 A);
        max_ma: the largest current to measure (sets the shunt range and Current_LSB)."""
        self.i2c = i2c
        self.addr = addr
        self.shunt_mohm = shunt_mohm
        self.cal, self.current_lsb_ua = calibration(shunt_mohm, max_ma)
        self.config = config_word(shunt_mohm, max_ma, bus_32v)

    def _read(self, reg) -> "int | None":
        try:
            b = self.i2c.readfrom_mem(self.addr, reg, 2)
        except OSError:
            return None
        if b is None or len(b) != 2:
            return None
        return b[0] << 8 | b[1]

    def _write(self, reg, value) -> bool:
        try:
            self.i2c.writeto_mem(self.addr, reg, bytes((value >> 8 & 0xFF, value & 0xFF)))
            return True
        except OSError:
            return False

    def present(self) -> bool:
        """True if the chip answers on the bus."""
        return self._read(_REG_CONFIG) is not None

    def start(self) -> bool:
        """Reset the chip, write the configuration and the calibration; False on a bus error."""
        return (self._write(_REG_CONFIG, _RESET) and self._write(_REG_CONFIG, self.config)
                and self._write(_REG_CAL, self.cal))

    def _calibrated(self) -> "bool | None":
        """True if the calibration is in place, False if it was lost and written again, None on a bus error."""
        cal = self._read(_REG_CAL)
        if cal is None:
            return None
        if cal == self.cal:
            return True
        self.start()
        return False

    def shunt_uv(self) -> "int | None":
        """Voltage across the shunt in uV (signed), or None."""
        raw = self._read(_REG_SHUNT)
        return None if raw is None else _signed(raw) * 10

    def bus_mv(self) -> "int | None":
        """Voltage from IN- to GND in mV, or None."""
        raw = self._read(_REG_BUS)
        return None if raw is None else (raw >> 3) * 4

    def overflow(self) -> "bool | None":
        """True if the last conversion overflowed (current or power out of range), or None."""
        raw = self._read(_REG_BUS)
        return None if raw is None else bool(raw & _OVF)

    def current_ma(self) -> "int | None":
        """Current through the shunt in mA (signed, rounded), or None."""
        ok = self._calibrated()
        if ok is None:
            return None
        if not ok:  # the current register reads 0 until the chip has converted again
            uv = self.shunt_uv()
            return None if uv is None else _div_round(uv, self.shunt_mohm)
        raw = self._read(_REG_CURRENT)
        return None if raw is None else _div_round(_signed(raw) * self.current_lsb_ua, 1000)

    def power_mw(self) -> "int | None":
        """Power (bus voltage x current) in mW, or None."""
        ok = self._calibrated()
        if ok is None:
            return None
        if not ok:
            uv, mv = self.shunt_uv(), self.bus_mv()
            if uv is None or mv is None:
                return None
            return _div_round(abs(uv) * mv, self.shunt_mohm * 1000)
        raw = self._read(_REG_POWER)
        return None if raw is None else _div_round(raw * 20 * self.current_lsb_ua, 1000)


def _div_round(a, b):
    """a / b rounded to the nearest integer (halves away from zero), b > 0."""
    return (a + b // 2) // b if a >= 0 else -((-a + b // 2) // b)

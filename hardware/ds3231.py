"""DS3231 real-time clock on I2C: time as Unix seconds, oscillator-stop flag, temperature.

The bus is passed in (machine.I2C or anything with readfrom_mem/writeto_mem).
Time is kept in UTC, 24-hour mode, years 2000-2099 (the century bit is not
used). Weekday register: 1 = Monday ... 7 = Sunday. A bus error (OSError) is
answered with None/False, never raised: a missing or flaky chip must not
stop the node.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):  # type: ignore[misc]  # the stubs' generic const() is the same function
        return x

ADDR = const(0x68)
_REG_TIME = const(0x00)  # seconds, minutes, hours, weekday, date, month/century, year
_REG_CONTROL = const(0x0E)
_REG_STATUS = const(0x0F)
_REG_TEMP = const(0x11)
_OSF = const(0x80)  # status: the oscillator stopped (power lost) since the flag was cleared
_EOSC = const(0x80)  # control: set = oscillator stops when on battery
_H12 = const(0x40)  # hours: 12-hour mode
_PM = const(0x20)  # hours, 12-hour mode: PM
_CENTURY = const(0x80)
_DAYS_1970_TO_2000 = const(10957)
MIN_UNIX = const(946684800)  # 2000-01-01 00:00:00
MAX_UNIX = 4102444799  # 2099-12-31 23:59:59 (above MicroPython's small-int range on 32-bit ports)

# days before each month in a non-leap year
_CUM = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def unix_from_fields(year, month, day, hour, minute, second) -> int:
    """Unix seconds of a UTC date and time in 2000-2099 (every 4th year is leap there)."""
    y = year - 2000
    days = _DAYS_1970_TO_2000 + 365 * y + (y + 3) // 4 + _CUM[month - 1] + day - 1
    if month > 2 and y % 4 == 0:
        days += 1
    return days * 86400 + hour * 3600 + minute * 60 + second


def fields_from_unix(t) -> "tuple[int, int, int, int, int, int, int]":
    """(year, month, day, hour, minute, second, weekday 1=Mon..7=Sun) of Unix seconds in 2000-2099."""
    days, secs = divmod(int(t), 86400)
    weekday = (days + 3) % 7 + 1  # 1970-01-01 was a Thursday
    cycle, day = divmod(days - _DAYS_1970_TO_2000, 1461)  # 4-year cycles, each starting with a leap year
    year = 2000 + 4 * cycle
    if day >= 366:
        more, day = divmod(day - 366, 365)
        year += 1 + more
    leap = year % 4 == 0
    month = 12
    while month > 1 and day < _CUM[month - 1] + (1 if leap and month > 2 else 0):
        month -= 1
    day -= _CUM[month - 1] + (1 if leap and month > 2 else 0)
    return year, month, day + 1, secs // 3600, secs // 60 % 60, secs % 60, weekday


def _bcd(n):
    return (n // 10) << 4 | n % 10


def _unbcd(b, lo, hi):
    """The value of BCD byte b, or -1 if it is not BCD or outside lo..hi."""
    if b & 0x0F > 9:
        return -1
    n = (b >> 4) * 10 + (b & 0x0F)
    return n if lo <= n <= hi else -1


def encode_time(t) -> bytes:
    """The 7 time registers (0x00-0x06) for Unix seconds t; ValueError outside 2000-2099."""
    t = int(t)
    if not MIN_UNIX <= t <= MAX_UNIX:
        raise ValueError("DS3231 keeps years 2000-2099 only; got Unix time %d" % t)
    year, month, day, hour, minute, second, weekday = fields_from_unix(t)
    return bytes((_bcd(second), _bcd(minute), _bcd(hour), weekday, _bcd(day), _bcd(month), _bcd(year - 2000)))


def decode_time(regs) -> "int | None":
    """Unix seconds from the 7 time registers, or None if they do not hold a valid date."""
    second = _unbcd(regs[0] & 0x7F, 0, 59)
    minute = _unbcd(regs[1] & 0x7F, 0, 59)
    h = regs[2]
    if h & _H12:  # someone set 12-hour mode: read it anyway
        hour = _unbcd(h & 0x1F, 1, 12)
        if hour > 0:
            hour = hour % 12 + (12 if h & _PM else 0)
    else:
        hour = _unbcd(h & 0x3F, 0, 23)
    day = _unbcd(regs[4] & 0x3F, 1, 31)
    month = _unbcd(regs[5] & 0x1F, 1, 12)
    year = _unbcd(regs[6], 0, 99)
    if regs[5] & _CENTURY or min(second, minute, hour, day, month, year) < 0:
        return None  # garbage on the bus, or the year rolled past 2099
    if day > _MONTH_DAYS[month - 1] + (1 if month == 2 and year % 4 == 0 else 0):
        return None
    return unix_from_fields(2000 + year, month, day, hour, minute, second)


class DS3231:
    def __init__(self, i2c, addr=ADDR):
        self.i2c = i2c
        self.addr = addr

    def _read(self, reg, n) -> "bytes | None":
        try:
            return self.i2c.readfrom_mem(self.addr, reg, n)
        except OSError:
            return None

    def _write(self, reg, data) -> bool:
        try:
            self.i2c.writeto_mem(self.addr, reg, data)
            return True
        except OSError:
            return False

    def present(self) -> bool:
        """True if the chip answers on the bus."""
        return self._read(_REG_STATUS, 1) is not None

    def time(self) -> "int | None":
        """Unix seconds (int) from the clock registers, or None on a bus error or an invalid date.

        Check lost_power() too: after a power loss the registers count from
        whatever they held, which is a valid date but not the right one.
        """
        regs = self._read(_REG_TIME, 7)  # one burst: the chip latches all 7 at the START
        if regs is None or len(regs) != 7:
            return None
        return decode_time(regs)

    def set_time(self, t) -> bool:
        """Set the clock to Unix seconds t, start the oscillator on battery, clear OSF.

        True when written; False on a bus error; ValueError outside 2000-2099.
        """
        regs = encode_time(t)
        if not self._write(_REG_TIME, regs):
            return False
        ctrl = self._read(_REG_CONTROL, 1)
        if ctrl is None or (ctrl[0] & _EOSC and not self._write(_REG_CONTROL, bytes((ctrl[0] & ~_EOSC & 0xFF,)))):
            return False
        status = self._read(_REG_STATUS, 1)
        if status is None:
            return False
        # alarm flags are cleared only by writing 0, so writing their 1s back keeps them
        return self._write(_REG_STATUS, bytes((status[0] & ~_OSF & 0xFF,)))

    def lost_power(self) -> "bool | None":
        """True if the oscillator stopped since the time was last set (OSF), None on a bus error."""
        status = self._read(_REG_STATUS, 1)
        if status is None:
            return None
        return bool(status[0] & _OSF)

    def temperature(self) -> "float | None":
        """Chip temperature in degrees C (0.25 C steps, refreshed every 64 s), or None."""
        regs = self._read(_REG_TEMP, 2)
        if regs is None or len(regs) != 2:
            return None
        msb = regs[0] - 256 if regs[0] & 0x80 else regs[0]
        return msb + (regs[1] >> 6) * 0.25

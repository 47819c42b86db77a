"""DS3231 driver against a register-file model of the chip (portable: pytest and MicroPython)."""
from hardware import ds3231
from hardware.ds3231 import DS3231, MAX_UNIX, MIN_UNIX
from protocol.sun import civil_from_days, days_from_civil
from tests.portable import raises, raises_with

ENODEV = 19
ETIMEDOUT = 110


class FakeDS3231Bus:
    """An I2C bus with one DS3231 on it, modelled as its register file (datasheet, Figure 1).

    Not a real chip (there is none here): it keeps no time and no temperature
    conversion runs, but reads, writes and flags behave as the datasheet says:
    the register pointer wraps after 0x12, seconds bit 7 reads 0, the
    temperature registers and BSY are read-only, and OSF, A2F and A1F can
    only be cleared by writing 0 (writing 1 leaves them as they are).
    """

    def __init__(self):
        self.broken = False
        self.fail_after = None  # fail every transfer after this many
        self.writes = []
        self.power_on()

    def power_on(self):
        """The state after power is applied with no backup battery (datasheet register map)."""
        self.mem = bytearray(0x13)
        self.mem[3] = 0x01  # day of week
        self.mem[4] = 0x01  # date
        self.mem[5] = 0x01  # month
        self.mem[0x0E] = 0x1C  # control: INTCN, RS2, RS1
        self.mem[0x0F] = 0x88  # status: OSF, EN32kHz
        self.mem[0x11] = 0x19  # 25.25 C
        self.mem[0x12] = 0x40

    def _check(self, addr):
        if self.fail_after is not None:
            if self.fail_after <= 0:
                self.broken = True
            self.fail_after -= 1
        if self.broken:
            raise OSError(ETIMEDOUT)
        if addr != 0x68:
            raise OSError(ENODEV)

    def readfrom_mem(self, addr, memaddr, nbytes):
        self._check(addr)
        return bytes(self.mem[(memaddr + i) % 0x13] for i in range(nbytes))

    def writeto_mem(self, addr, memaddr, buf):
        self._check(addr)
        self.writes.append((memaddr, bytes(buf)))
        for i, b in enumerate(buf):
            reg = (memaddr + i) % 0x13
            old = self.mem[reg]
            if reg == 0x00:
                self.mem[reg] = b & 0x7F
            elif reg == 0x0F:
                self.mem[reg] = (old & 0x83 & b) | (b & 0x08) | (old & 0x04)
            elif reg in (0x11, 0x12):
                pass
            else:
                self.mem[reg] = b


def make():
    bus = FakeDS3231Bus()
    return bus, DS3231(bus)


def utc(y, mo, d, h=0, mi=0, s=0):
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


# (Unix time, registers 0x00-0x06: seconds, minutes, hours, weekday 1=Mon, date, month, year)
KNOWN = (
    (946684800, b"\x00\x00\x00\x06\x01\x01\x00"),  # 2000-01-01 00:00:00, a Saturday
    (951825600, b"\x00\x00\x12\x02\x29\x02\x00"),  # 2000-02-29 12:00:00, Tuesday (2000 is leap)
    (1709214330, b"\x30\x45\x13\x04\x29\x02\x24"),  # 2024-02-29 13:45:30, Thursday
    (1756839907, b"\x07\x05\x19\x02\x02\x09\x25"),  # 2025-09-02 19:05:07, Tuesday
    (4102444799, b"\x59\x59\x23\x04\x31\x12\x99"),  # 2099-12-31 23:59:59, Thursday
)


def test_known_dates_give_the_datasheet_register_bytes():
    for t, regs in KNOWN:
        assert ds3231.encode_time(t) == regs, (t, ds3231.encode_time(t))
        assert ds3231.decode_time(regs) == t
        bus, rtc = make()
        assert rtc.set_time(t) is True
        assert bus.writes[0] == (0x00, regs)
        assert bytes(bus.mem[0:7]) == regs
        assert rtc.time() == t


def test_set_clears_osf_keeps_other_flags_and_enables_the_oscillator():
    bus, rtc = make()
    assert rtc.lost_power() is True  # a new chip: the oscillator has never run from the battery
    bus.mem[0x0F] = 0x8B  # OSF, EN32kHz, A2F, A1F
    bus.mem[0x0E] = 0x9C  # /EOSC set: the oscillator would stop on battery
    assert rtc.set_time(1709214330)
    assert rtc.lost_power() is False
    assert bus.mem[0x0F] == 0x0B  # only OSF cleared: the alarm flags are not ours to clear
    assert bus.mem[0x0E] == 0x1C
    assert (0x0E, b"\x1c") in bus.writes and (0x0F, b"\x0b") in bus.writes


def test_control_register_left_alone_when_the_oscillator_already_runs():
    bus, rtc = make()
    assert rtc.set_time(1756839907)
    assert [w[0] for w in bus.writes] == [0x00, 0x0F]


def test_oscillator_stop_is_reported_until_the_time_is_set():
    bus, rtc = make()
    rtc.set_time(1756839907)
    bus.mem[0x0F] |= 0x80  # the battery ran flat while mains was off
    assert rtc.lost_power() is True
    assert rtc.time() == 1756839907  # the registers still read as a date: the HAL checks OSF
    rtc.set_time(1756839999)
    assert rtc.lost_power() is False


def test_round_trip_over_the_whole_range():
    special = [MIN_UNIX, MAX_UNIX, utc(2000, 2, 29, 23, 59, 59), utc(2000, 3, 1), utc(2096, 2, 29, 12),
               utc(2097, 3, 1), utc(2099, 2, 28, 23, 59, 59), utc(2099, 3, 1), utc(2038, 1, 19, 3, 14, 8)]
    for y in range(2000, 2100, 4):
        special.append(utc(y, 2, 29, 6, 30, 15))
        special.append(utc(y + 1, 3, 1, 0, 0, 0))
    bus, rtc = make()

    def check(t):
        del bus.writes[:]
        assert rtc.set_time(t), t
        assert rtc.time() == t, (t, bytes(bus.mem[0:7]))
        assert rtc.lost_power() is False

    for t in special:
        check(t)
    t = MIN_UNIX
    while t <= MAX_UNIX:  # ~5200 steps, not kept in a list: the MicroPython heap is 128 KB
        check(t)
        t += 86400 * 7 + 3607  # walks through every weekday, hour and a spread of minutes


def test_calendar_matches_the_sun_calculators_calendar_every_day():
    # an independent implementation (protocol.sun, Howard Hinnant's algorithm)
    for n in range(days_from_civil(2000, 1, 1), days_from_civil(2099, 12, 31) + 1):
        y, mo, d, h, mi, s, wd = ds3231.fields_from_unix(n * 86400 + 45296)
        assert (y, mo, d) == civil_from_days(n), n
        assert (h, mi, s) == (12, 34, 56)
        assert wd == (n + 3) % 7 + 1
        assert ds3231.unix_from_fields(y, mo, d, 12, 34, 56) == n * 86400 + 45296


def test_out_of_range_is_a_clear_error():
    bus, rtc = make()
    for t in (MIN_UNIX - 1, MAX_UNIX + 1, 0, -5):
        raises_with(ValueError, "2000-2099", rtc.set_time, t)
    assert bus.writes == []


def test_invalid_registers_read_as_no_time():
    good = b"\x30\x45\x13\x04\x29\x02\x24"
    assert ds3231.decode_time(good) == 1709214330

    def patched(i, b):
        regs = bytearray(good)
        regs[i] = b
        return bytes(regs)

    for regs in (
        patched(0, 0x5A),  # not BCD
        patched(0, 0x60),  # 60 seconds
        patched(1, 0x60),
        patched(2, 0x24),  # 24 h
        patched(4, 0x00),  # day 0
        patched(4, 0x32),
        patched(5, 0x13),  # month 13
        patched(5, 0x00),
        patched(5, 0x82),  # century bit: the year rolled past 2099
        patched(6, 0xA0),
        b"\x00\x00\x00\x03\x30\x02\x24",  # 2024-02-30
        b"\x00\x00\x00\x03\x29\x02\x23",  # 2023-02-29
        b"\x00\x00\x00\x03\x31\x04\x25",  # 2025-04-31
    ):
        assert ds3231.decode_time(regs) is None, regs
    assert ds3231.decode_time(b"\x00\x00\x00\x03\x31\x12\x25") is not None


def test_twelve_hour_mode_is_read_correctly():
    base = ds3231.decode_time(b"\x00\x00\x00\x03\x02\x09\x25")  # 2025-09-02 00:00
    for hour_reg, hour in ((0x52, 0), (0x41, 1), (0x51, 11), (0x72, 12), (0x61, 13), (0x71, 23)):
        regs = bytes((0, 0, hour_reg, 3, 0x02, 0x09, 0x25))
        assert ds3231.decode_time(regs) == base + hour * 3600, hex(hour_reg)
    assert ds3231.decode_time(bytes((0, 0, 0x40, 3, 2, 9, 0x25))) is None  # 12-hour mode has no hour 0


def test_temperature():
    bus, rtc = make()
    assert rtc.temperature() == 25.25
    bus.mem[0x11], bus.mem[0x12] = 0xF5, 0xC0  # two's complement: -41 quarter degrees
    assert rtc.temperature() == -10.25
    bus.mem[0x11], bus.mem[0x12] = 0x00, 0x00
    assert rtc.temperature() == 0


def test_bus_errors_answer_none_or_false():
    bus, rtc = make()
    assert rtc.present() is True
    bus.broken = True
    assert rtc.present() is False
    assert rtc.time() is None
    assert rtc.lost_power() is None
    assert rtc.temperature() is None
    assert rtc.set_time(1709214330) is False


def test_a_bus_that_fails_midway_through_set_time_reports_false():
    for n in range(5):
        bus, rtc = make()
        bus.mem[0x0E] = 0x9C  # so set_time needs five transfers: time, control r/w, status r/w
        bus.fail_after = n
        assert rtc.set_time(1709214330) is False, n
    bus, rtc = make()
    bus.mem[0x0E] = 0x9C
    bus.fail_after = 5
    assert rtc.set_time(1709214330) is True


def test_wrong_address_is_absent():
    bus = FakeDS3231Bus()
    rtc = DS3231(bus, addr=0x57)  # the AT24C32 EEPROM on the usual modules, not the clock
    assert rtc.present() is False
    assert rtc.time() is None
    raises(OSError, bus.readfrom_mem, 0x57, 0, 1)  # the fake itself does raise, like machine.I2C

"""INA219 driver against a register model of the chip (portable: pytest and MicroPython)."""
from hardware import ina219
from hardware.ina219 import INA219
from tests.portable import raises, raises_with

ENODEV = 19
ETIMEDOUT = 110


class FakeINA219Bus:
    """An I2C bus with one INA219 on it, modelled by its registers (datasheet SBOS448, 8.5-8.6).

    Not a real chip (there is none here): set `ma` (the true current through
    the shunt) and `bus_mv`; a read of the shunt, bus, current or power
    register converts at once. As the datasheet says: the shunt register is
    V_shunt / 10 uV clipped to the PGA range (OVF set then), the bus register
    holds V_bus / 4 mV in bits 15..3, current = shunt x calibration / 4096,
    power = current x bus / 5000, both 0 until the calibration is written;
    calibration bit 0 reads 0; a reset (config bit 15) clears it.
    """

    def __init__(self, shunt_mohm=100, addr=0x40):
        self.shunt_mohm = shunt_mohm
        self.addr = addr
        self.ma = 0.0
        self.bus_mv = 24000
        self.broken = False
        self.writes = []
        self.power_on()

    def power_on(self):
        self.config = 0x399F  # the power-on default: 32 V, /8, 12-bit, continuous
        self.cal = 0

    def _shunt_raw(self):
        full_uv = ina219.SHUNT_RANGES_MV[self.config >> 11 & 3] * 1000
        uv = int(round(self.ma * self.shunt_mohm))  # mA x mohm = uV
        ovf = abs(uv) > full_uv
        uv = max(-full_uv, min(full_uv, uv))
        return int(uv / 10), ovf

    def _regs(self, reg):
        shunt, ovf = self._shunt_raw()
        bus = min(self.bus_mv, 32000 if self.config & 0x2000 else 16000) // 4
        current = int(shunt * self.cal / 4096)
        if reg == 0x00:
            return self.config
        if reg == 0x01:
            return shunt & 0xFFFF
        if reg == 0x02:
            return bus << 3 | 0x02 | (1 if ovf else 0)
        if reg == 0x03:
            return int(abs(current) * bus / 5000) & 0xFFFF
        if reg == 0x04:
            return current & 0xFFFF
        if reg == 0x05:
            return self.cal
        raise OSError(ENODEV)

    def _check(self, addr):
        if self.broken:
            raise OSError(ETIMEDOUT)
        if addr != self.addr:
            raise OSError(ENODEV)

    def readfrom_mem(self, addr, reg, n):
        self._check(addr)
        v = self._regs(reg)
        return bytes((v >> 8 & 0xFF, v & 0xFF))[:n]

    def writeto_mem(self, addr, reg, buf):
        self._check(addr)
        assert len(buf) == 2, buf
        v = buf[0] << 8 | buf[1]
        self.writes.append((reg, v))
        if reg == 0x00:
            if v & 0x8000:
                self.power_on()
            else:
                self.config = v
        elif reg == 0x05:
            self.cal = v & 0xFFFE
        else:
            raise OSError(ENODEV)  # read-only registers NACK a write in this model


def make(shunt_mohm=100, max_ma=3200):
    bus = FakeINA219Bus(shunt_mohm)
    chip = INA219(bus, shunt_mohm, max_ma)
    assert chip.start()
    return bus, chip


def test_calibration_follows_the_datasheet():
    # the breakouts' 0.1 ohm shunt for 3.2 A: Current_LSB 98 uA (3.2 A / 2^15, rounded up)
    assert ina219.calibration(100, 3200) == (4178, 98)
    # datasheet example: 0.5 ohm... the driver's integer units: 100 uA LSB at 0.1 ohm is the classic 4096
    assert ina219.calibration(100, 3276) == (4096, 100)
    # a 10 mohm shunt for a 10 A lamp string: 306 uA LSB
    cal, lsb = ina219.calibration(10, 10000)
    assert lsb == 306 and cal == 40960000 // (306 * 10) & 0xFFFE
    raises(ValueError, ina219.calibration, 0, 3200)
    raises(ValueError, ina219.calibration, 100, 0)


def test_shunt_range_is_the_smallest_that_holds_the_maximum():
    assert [ina219.pga_bits(mv) for mv in (10, 40, 41, 80, 150, 320)] == [0, 0, 1, 1, 2, 3]
    raises_with(ValueError, "320 mV", ina219.pga_bits, 321)
    # 3.2 A x 0.1 ohm = 320 mV: /8; 32 V bus range, 128-sample averages, continuous
    assert ina219.config_word(100, 3200) == 0x2000 | 3 << 11 | 0xF << 7 | 0xF << 3 | 7
    assert ina219.config_word(100, 400, bus_32v=False) >> 11 & 3 == 0


def test_start_resets_configures_and_calibrates():
    bus, chip = make()
    assert bus.writes == [(0, 0x8000), (0, chip.config), (5, 4178)]
    assert bus.config == chip.config and bus.cal == 4178 and chip.present()


def test_current_bus_voltage_and_power():
    bus, chip = make()
    bus.ma, bus.bus_mv = 2500, 24012
    assert chip.bus_mv() == 24012
    assert abs(chip.current_ma() - 2500) <= 1
    assert abs(chip.power_mw() - 60030) <= 60  # 24.0 V x 2.5 A, in 20 x Current_LSB steps
    assert chip.shunt_uv() == 250000
    bus.ma = -700  # the shunt the other way round: a signed current
    assert abs(chip.current_ma() + 700) <= 1 and chip.shunt_uv() == -70000
    bus.ma = 0.4  # 40 uV: below one shunt LSB of current resolution, reads 0
    assert chip.current_ma() == 0
    assert chip.overflow() is False


def test_out_of_range_sets_the_overflow_flag():
    bus, chip = make()
    bus.ma = 4000  # 400 mV across the shunt: above the 320 mV range
    assert chip.overflow() is True
    assert chip.current_ma() <= 3200 + 1


def test_a_lost_calibration_is_written_again_and_the_reading_still_counts():
    bus, chip = make()
    bus.ma = 1200
    bus.power_on()  # a glitch resets the chip: calibration 0, the current register reads 0
    assert bus.cal == 0
    assert chip.current_ma() == 1200  # from the shunt voltage for this reading
    assert bus.cal == 4178 and bus.config == chip.config  # and the chip is set up again
    assert abs(chip.current_ma() - 1200) <= 1
    bus.power_on()
    assert abs(chip.power_mw() - 28800) <= 30  # 24 V x 1.2 A, from shunt and bus for this one


def test_a_bus_error_is_none_never_raised():
    bus, chip = make()
    bus.broken = True
    assert chip.present() is False and chip.start() is False
    for read in (chip.current_ma, chip.power_mw, chip.bus_mv, chip.shunt_uv, chip.overflow):
        assert read() is None, read
    bus.broken = False
    assert chip.current_ma() == 0
    absent = INA219(bus, addr=0x41)
    assert absent.present() is False and absent.current_ma() is None


def test_other_shunts():
    bus, chip = make(shunt_mohm=10, max_ma=10000)  # 100 mV full: the /4 range
    assert bus.config >> 11 & 3 == 2
    bus.ma = 6300  # a 150 W, 24 V LED string
    assert abs(chip.current_ma() - 6300) <= 1

"""Lamp current maths for a current transformer and an ACS712 (portable: pytest and MicroPython)."""
import math

from hardware import boards, lampcurrent
from tests.portable import raises_with

CT = boards.profile("denloa-v1")["lamp_current"]
ACS = boards.profile("devkitc-pole")["lamp_current"]


def cycle(rms_ma, mv_per_ma, zero_mv, n=40, phase=0.0, noise_mv=0):
    """n ADC samples (whole mV, as the HAL stores them) over one sine cycle of rms_ma."""
    peak = rms_ma * mv_per_ma * math.sqrt(2)
    out = []
    for i in range(n):
        v = zero_mv + peak * math.sin(2 * math.pi * i / n + phase) + (noise_mv if i % 2 else -noise_mv)
        out.append(int(v + 0.5))
    return out


def ct_mv_per_ma(spec):
    return spec["burden_ohm"] / spec["ct_ratio"]  # mA through the primary -> mV across the burden


def acs_mv_per_ma(spec):
    return spec["mv_per_a"] / 1000 / spec["divider"]  # at the ADC pin, after the divider


def test_rms_of_a_sine_and_of_a_constant():
    assert lampcurrent.rms_mv([]) == 0.0
    assert lampcurrent.rms_mv([1650] * 40) == 0.0  # the bias alone: no current
    assert abs(lampcurrent.rms_mv([1650, 1750, 1650, 1550]) - 70.71) < 0.01
    assert lampcurrent.rms_mv([1700] * 8, zero_mv=1650) == 50.0  # around a fixed zero: DC counts


def test_ct_current_at_any_phase():
    for ma in (100, 500, 1500):
        for phase in (0.0, 0.7, 2.1, 4.0):
            got = lampcurrent.ma_from_samples(cycle(ma, ct_mv_per_ma(CT), 1650, phase=phase), CT)
            assert abs(got - ma) <= max(8, ma // 100), (ma, phase, got)
    assert lampcurrent.ma_from_samples(cycle(10, ct_mv_per_ma(CT), 1650), CT) == 0  # under the noise floor


def test_acs712_current_follows_sensitivity_and_divider():
    # 185 mV/A, divided by 1.5: 0.7 A (a 150 W lamp) swings the ADC by +-122 mV around 1667 mV
    for ma in (300, 700, 2000, 4000):
        got = lampcurrent.ma_from_samples(cycle(ma, acs_mv_per_ma(ACS), 1667, phase=0.3), ACS)
        assert abs(got - ma) <= max(10, ma // 100), (ma, got)
    assert abs(lampcurrent.ma_from_rms(185 / 1.5, ACS) - 1000) < 0.01


def test_acs712_zero_is_the_mean_so_supply_drift_does_not_read_as_current():
    # the sensor is ratiometric: at VCC 4.8 V its zero is 2.4 V (1600 mV at the ADC), not 2.5 V
    drifted = cycle(0, acs_mv_per_ma(ACS), 1600, noise_mv=3)
    assert lampcurrent.ma_from_samples(drifted, ACS) == 0
    fixed = dict(ACS, zero_mv=2500)  # a fixed zero sees the 67 mV shift as current: for DC loads only
    assert abs(lampcurrent.ma_from_samples(drifted, fixed) - 67 * 1.5 * 1000 / 185) < 30
    on_zero = cycle(0, acs_mv_per_ma(ACS), 2500 / 1.5)
    assert lampcurrent.ma_from_samples(on_zero, fixed) == 0


def test_noise_floor_and_calibration_trim():
    noisy = cycle(0, acs_mv_per_ma(ACS), 1667, noise_mv=6)  # ADC noise alone: 6 mV RMS = 49 mA
    assert lampcurrent.ma_from_samples(noisy, ACS) == 0
    trimmed = dict(CT, cal=1.1)
    got = lampcurrent.ma_from_samples(cycle(1000, ct_mv_per_ma(CT), 1650), trimmed)
    assert abs(got - 1100) <= 10, got


def test_full_scale():
    assert abs(lampcurrent.full_scale_ma(CT) - 800 / 1.4142 / 330 * 1000) < 1  # 1.71 A
    fs = lampcurrent.full_scale_ma(ACS)  # the zero at 1667 mV: 783 mV up to 2450 mV
    assert abs(fs - 783.3 / 1.4142 * 1.5 * 1000 / 185) < 5, fs
    assert fs > 4000
    raises_with(ValueError, "ina219", lampcurrent.full_scale_ma, {"kind": "ina219"})
    raises_with(ValueError, "ina219", lampcurrent.ma_from_rms, 10.0, {"kind": "ina219"})

"""Lamp current from ADC samples: a current transformer or an ACS712 (portable maths).

The HAL (hardware/esp32.py) samples the sensor's ADC pin over one whole
mains cycle into an array of millivolts and hands it here; this module has
no `machine`, so the same code runs in the tests on CPython and on the
MicroPython unix port. The profile entry is the board's `lamp_current`
(hardware/boards.py):

  kind "ct"      {pin, ct_ratio, burden_ohm, cal, noise_ma, samples}
                 I = V_burden x ratio / R_burden; the output rides on a
                 mid-supply bias, taken out as the mean of the cycle.
  kind "acs712"  {pin, mv_per_a, divider, zero_mv, cal, noise_ma, samples}
                 I = V_sensor / sensitivity, V_sensor = V_adc x divider (the
                 5 V sensor's output is divided down into the ADC's range);
                 zero_mv None: the zero is the mean over the cycle (AC: the
                 ACS712's zero is ratiometric, VCC/2, so a fixed zero drifts
                 with the 5 V rail); a number: a fixed zero at the sensor's
                 output in mV (a DC load).
  kind "ina219"  read over I2C by hardware/ina219.py, not here.

Readings below noise_ma are reported as 0 (a burnt lamp must read 0).
"""
KINDS = ("ct", "acs712", "ina219")
ADC_KINDS = ("ct", "acs712")


def rms_mv(mv, zero_mv=None):
    """RMS (mV, float) of the samples around zero_mv, or around their mean when zero_mv is None."""
    n = len(mv)
    if n == 0:
        return 0.0
    zero = sum(mv) / n if zero_mv is None else zero_mv
    sq = 0.0
    for v in mv:
        d = v - zero
        sq += d * d
    return (sq / n) ** 0.5


def ma_from_rms(rms, spec):
    """Lamp current in mA (float, before the noise floor) from the RMS at the ADC pin in mV."""
    kind = spec["kind"]
    if kind == "ct":
        return rms * spec["ct_ratio"] / spec["burden_ohm"] * spec["cal"]
    if kind == "acs712":
        return rms * spec["divider"] * 1000 / spec["mv_per_a"] * spec["cal"]
    raise ValueError("lamp current: %r is not an ADC sensor kind (%s)" % (kind, ", ".join(ADC_KINDS)))


def ma_from_samples(mv, spec):
    """Lamp current in whole mA from one mains cycle of ADC samples (mV); 0 below the noise floor."""
    zero = None
    if spec["kind"] == "acs712" and spec.get("zero_mv") is not None:
        zero = spec["zero_mv"] / spec["divider"]  # the sensor's zero as the ADC sees it
    ma = ma_from_rms(rms_mv(mv, zero), spec)
    return 0 if ma < spec["noise_ma"] else int(ma + 0.5)


def full_scale_ma(spec, adc_max_mv=2450, bias_mv=1650):
    """The largest RMS current (mA, sine) the ADC can see before the wave clips at 0 or adc_max_mv.

    ct: the burden voltage swings around the bias (bias_mv); acs712: around
    the zero (2500 mV at the sensor for a 5 V supply, divided down).
    """
    kind = spec["kind"]
    if kind == "ct":
        peak = min(bias_mv, adc_max_mv - bias_mv)
    elif kind == "acs712":
        zero = (spec.get("zero_mv") or 2500) / spec["divider"]
        peak = min(zero, adc_max_mv - zero)
    else:
        raise ValueError("lamp current: no ADC full scale for kind %r" % (kind,))
    return ma_from_rms(peak / 1.4142, spec)

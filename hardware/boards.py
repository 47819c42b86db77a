"""Board profiles: which GPIO drives which part, as plain constant data.

A profile is a dict; every profile has every key below, and a part that is
not fitted on that board is None (that is how "which parts are fitted" is
said). `hardware.esp32.Esp32Hal` is built from a profile; the tests check
every profile against the ESP32's pin rules (tests/hardware/test_boards.py).

Keys:
  chip, description          module fitted and a line for the technician
  mains_v, mains_hz          the supply the lamp runs on (Vietnam: 220 V 50 Hz)
  power_factor               lamp power = current x mains_v x power_factor
  lamp_relay                 {pin, active_high}: the lamp contactor coil driver
  lamp_feedback              {pin, closed_level}: auxiliary contact, the level read when closed
  dimmer                     {pin, freq_hz, invert, kind}: PWM out of the ESP32;
                             kind "0-10v": into a 0-10 V stage for the driver's
                             DIM input; "pwm-mosfet": an open-drain MOSFET across a
                             3-in-1 (0-10 V / PWM) driver's DIM+/DIM- (invert: the
                             transistor stage inverts, duty 0 = full light)
  lamp_current               the lamp current sensor, one of (hardware/lampcurrent.py):
                             {kind: "ct", pin, ct_ratio, burden_ohm, cal, noise_ma, samples}:
                               current transformer, burden resistor, output biased
                               to mid-supply;
                             {kind: "acs712", pin, mv_per_a, divider, zero_mv, cal,
                               noise_ma, samples}: Allegro ACS712 Hall sensor at 5 V,
                               its output divided by `divider` into the ADC; zero_mv
                               None = the mean over the cycle (AC);
                             {kind: "ina219", addr, shunt_mohm, max_ma, noise_ma,
                               driver_eff}: TI INA219 on the i2c bus, on the DC side
                               of an isolated (SELV) LED driver; power = its DC power
                               / driver_eff.
                             ADC kinds sit on an ADC1 pin (ADC2 is unusable while
                             Wi-Fi runs) and are sampled over one mains cycle; cal
                             trims the whole chain (bench test); readings below
                             noise_ma are reported as 0. The HAL names it "lamp_ct"
                             in failed_parts() whatever its kind (the wire's name).
  photocell                  {pin, kind: "adc", dark_below_mv, light_above_mv}
                             (LDR to 3V3, resistor to GND: darker = lower voltage;
                             the gap between the thresholds is the hysteresis), or
                             {pin, kind: "digital", dark_level} (comparator module)
  pir                        {pin, active_high}
  amp_relay, line_relay      {pin, active_high}: the amplifier's supply (the
                             MAX98357A's 5 V, or the coil of the contactor on an
                             external PA's mains); the line source relay (routes the
                             line source to the speakers / the PA input instead of the DAC)
  zone_relays                tuple of {pin, active_high}; zone i + 1 is entry i
  zone_count                 len(zone_relays), said once more for readers
  i2s                        {id, dac, bclk, ws, din, enable, rate, ibuf}: the I2S DAC;
                             dac "max98357a" (DAC + 3 W class-D amplifier): enable
                             drives its SD_MODE (high = on, low = shutdown);
                             dac "pcm5102a" (line-out into an external PA amplifier):
                             enable drives its XSMT (high = play, low = soft mute)
  i2c                        {id, scl, sda, freq}: the bus the DS3231 and an INA219 are on
  rtc                        "ds3231" (on the i2c bus) or "internal"
  status_led                 {pin, active_high}

Input-only GPIOs 34-39 have no internal pull resistors: inputs on them have
external pull-ups/downs on the board. Strapping pins (0, 2, 5, 12, 15) carry
no relay: 5 and 15 toggle during boot and 12 high at boot selects 1.8 V flash.
Profiles are shared read-only data: copy before changing one.
"""

_DENLOA_V1 = {
    "chip": "ESP32-WROOM-32E (no PSRAM: GPIO 16/17 are free)",
    "description": "denloa pole board v1: lamp contactor + 0-10 V dimmer + CT, photocell, PIR, "
    "PA supply relay, 4 speaker zones, line input relay, MAX98357A I2S DAC, DS3231",
    "mains_v": 220,
    "mains_hz": 50,
    "power_factor": 0.95,
    "lamp_relay": {"pin": 26, "active_high": True},
    # aux contact through an optocoupler, external 10k pull-up: closed pulls low
    "lamp_feedback": {"pin": 34, "closed_level": 0},
    "dimmer": {"pin": 25, "freq_hz": 1000, "invert": True, "kind": "0-10v"},
    # ZMCT103C 1000:1 with a 330 ohm burden: 0.8 V peak swing = 1.7 A RMS full scale (~370 W)
    "lamp_current": {"kind": "ct", "pin": 36, "ct_ratio": 1000, "burden_ohm": 330.0, "cal": 1.0,
                     "noise_ma": 25, "samples": 40},
    "photocell": {"pin": 39, "kind": "adc", "dark_below_mv": 500, "light_above_mv": 800},
    "pir": {"pin": 35, "active_high": True},
    "amp_relay": {"pin": 27, "active_high": True},
    "line_relay": {"pin": 23, "active_high": True},
    "zone_relays": (
        {"pin": 16, "active_high": True},
        {"pin": 17, "active_high": True},
        {"pin": 18, "active_high": True},
        {"pin": 19, "active_high": True},
    ),
    "zone_count": 4,
    "i2s": {"id": 0, "dac": "max98357a", "bclk": 14, "ws": 13, "din": 4, "enable": 33, "rate": 16000,
            "ibuf": 8192},
    "i2c": {"id": 0, "scl": 22, "sda": 21, "freq": 400000},
    "rtc": "ds3231",
    "status_led": {"pin": 2, "active_high": True},
}

_DEVKIT_LAMP = {
    "chip": "ESP32-DevKitC (WROOM-32)",
    "description": "bench / retrofit: DevKitC with a relay module, 0-10 V dimmer board, CT, "
    "LM393 photocell module and HC-SR501 PIR; no loudspeaker parts, no DS3231",
    "mains_v": 220,
    "mains_hz": 50,
    "power_factor": 0.95,
    # the common opto-isolated relay modules switch on a low input
    "lamp_relay": {"pin": 26, "active_high": False},
    "lamp_feedback": None,
    "dimmer": {"pin": 25, "freq_hz": 1000, "invert": False, "kind": "0-10v"},
    "lamp_current": {"kind": "ct", "pin": 36, "ct_ratio": 1000, "burden_ohm": 330.0, "cal": 1.0,
                     "noise_ma": 25, "samples": 40},
    # LM393 LDR module: DO goes high when it is darker than its trimmer setting
    "photocell": {"pin": 34, "kind": "digital", "dark_level": 1},
    "pir": {"pin": 35, "active_high": True},
    "amp_relay": None,
    "line_relay": None,
    "zone_relays": (),
    "zone_count": 0,
    "i2s": None,
    "i2c": None,
    "rtc": "internal",
    "status_led": None,
}

# A pole built from modules on a DIN-rail carrier: ESP32-DevKitC-32E, an 8-channel opto relay
# module (inputs active low; its VCC from 3V3, JD-VCC from 5 V, jumper removed), a logic-level
# MOSFET across a 3-in-1 dimmable LED driver's DIM+/DIM-, an ACS712-05B in the lamp's line,
# LM393 LDR module, HC-SR501, DS3231 module and a MAX98357A driving the pole's horns.
_DEVKITC_POLE = {
    "chip": "ESP32-DevKitC-32E (ESP32-WROOM-32E, no PSRAM: GPIO 16/17 are free)",
    "description": "DevKitC pole: relay module (lamp contactor, MAX98357A supply, line source, "
    "4 horn zones), MOSFET PWM dimmer, ACS712 lamp current, LDR module, PIR, DS3231, MAX98357A",
    "mains_v": 220,
    "mains_hz": 50,
    "power_factor": 0.95,
    "lamp_relay": {"pin": 26, "active_high": False},
    # the contactor's auxiliary NO contact to GND, 10k pull-up to 3V3 on the carrier: closed reads 0
    "lamp_feedback": {"pin": 39, "closed_level": 0},
    # MOSFET gate high shorts DIM+ to DIM-: duty 0 (gate low) = the driver's full output
    "dimmer": {"pin": 25, "freq_hz": 1000, "invert": True, "kind": "pwm-mosfet"},
    # ACS712ELCTR-05B: 185 mV/A at 5 V, zero at VCC/2; 10k/20k divider (x1.5) into the ADC:
    # full scale 4.4 A RMS, the ESP32's ADC noise x1.5 / 185 mV/A sets the floor
    "lamp_current": {"kind": "acs712", "pin": 36, "mv_per_a": 185, "divider": 1.5, "zero_mv": None,
                     "cal": 1.0, "noise_ma": 60, "samples": 40},
    "photocell": {"pin": 34, "kind": "digital", "dark_level": 1},
    "pir": {"pin": 35, "active_high": True},
    "amp_relay": {"pin": 27, "active_high": False},
    "line_relay": {"pin": 23, "active_high": False},
    "zone_relays": (
        {"pin": 16, "active_high": False},
        {"pin": 17, "active_high": False},
        {"pin": 18, "active_high": False},
        {"pin": 19, "active_high": False},
    ),
    "zone_count": 4,
    "i2s": {"id": 0, "dac": "max98357a", "bclk": 14, "ws": 13, "din": 4, "enable": 33, "rate": 16000,
            "ibuf": 8192},
    "i2c": {"id": 0, "scl": 22, "sda": 21, "freq": 400000},
    "rtc": "ds3231",
    "status_led": {"pin": 2, "active_high": True},
}

# The same carrier driving the commune's existing PA amplifier: a PCM5102A line-out into the PA's
# input, the amp relay on the coil of a contactor that switches the PA's mains, the line relay
# choosing between the DAC and the line source (the district broadcast receiver), four zone
# relays on the PA's 100 V speaker lines. The lamp is a 24 V SELV LED driver with an INA219
# on its DC output (the ACS712 entry of devkitc-pole fits here as well).
_DEVKITC_PA_LINE = {
    "chip": "ESP32-DevKitC-32E (ESP32-WROOM-32E, no PSRAM: GPIO 16/17 are free)",
    "description": "DevKitC + external PA: PCM5102A line-out into the commune PA, PA mains contactor, "
    "line source and 4 x 100 V zone relays, MOSFET PWM dimmer, INA219 lamp current, LDR, PIR, DS3231",
    "mains_v": 220,
    "mains_hz": 50,
    "power_factor": 0.95,
    "lamp_relay": {"pin": 26, "active_high": False},
    "lamp_feedback": {"pin": 39, "closed_level": 0},
    "dimmer": {"pin": 25, "freq_hz": 1000, "invert": True, "kind": "pwm-mosfet"},
    # INA219 breakout (0.1 ohm shunt) high side on the 24 V driver output: up to 3.2 A (~75 W of LEDs)
    "lamp_current": {"kind": "ina219", "addr": 0x40, "shunt_mohm": 100, "max_ma": 3200, "noise_ma": 20,
                     "driver_eff": 0.9},
    "photocell": {"pin": 34, "kind": "digital", "dark_level": 1},
    "pir": {"pin": 35, "active_high": True},
    "amp_relay": {"pin": 27, "active_high": False},
    "line_relay": {"pin": 23, "active_high": False},
    "zone_relays": (
        {"pin": 16, "active_high": False},
        {"pin": 17, "active_high": False},
        {"pin": 18, "active_high": False},
        {"pin": 19, "active_high": False},
    ),
    "zone_count": 4,
    "i2s": {"id": 0, "dac": "pcm5102a", "bclk": 14, "ws": 13, "din": 4, "enable": 33, "rate": 16000,
            "ibuf": 8192},
    "i2c": {"id": 0, "scl": 22, "sda": 21, "freq": 400000},
    "rtc": "ds3231",
    "status_led": {"pin": 2, "active_high": True},
}

BOARDS = {
    "denloa-v1": _DENLOA_V1,
    "esp32-devkit-lamp": _DEVKIT_LAMP,
    "devkitc-pole": _DEVKITC_POLE,
    "devkitc-pa-line": _DEVKITC_PA_LINE,
}


class UnknownBoard(ValueError):
    """The board name is not one of BOARDS."""


def profile(name):
    """The profile of board `name`; UnknownBoard names the boards there are."""
    try:
        return BOARDS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        pass
    raise UnknownBoard("unknown board %r; known boards: %s" % (name, ", ".join(sorted(BOARDS))))

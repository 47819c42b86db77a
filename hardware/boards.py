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
  dimmer                     {pin, freq_hz, invert}: PWM into the 0-10 V stage
                             (invert: the transistor stage inverts, duty 0 = 10 V)
  lamp_ct                    {pin, ct_ratio, burden_ohm, cal, noise_ma, samples}:
                             current transformer on an ADC1 pin (ADC2 is unusable
                             while Wi-Fi runs), burden resistor, output biased to
                             mid-supply; cal trims the whole chain (bench test),
                             readings below noise_ma are reported as 0
  photocell                  {pin, kind: "adc", dark_below_mv, light_above_mv}
                             (LDR to 3V3, resistor to GND: darker = lower voltage;
                             the gap between the thresholds is the hysteresis), or
                             {pin, kind: "digital", dark_level} (comparator module)
  pir                        {pin, active_high}
  amp_relay, line_relay      {pin, active_high}
  zone_relays                tuple of {pin, active_high}; zone i + 1 is entry i
  zone_count                 len(zone_relays), said once more for readers
  i2s                        {id, bclk, ws, din, enable, rate, ibuf}: MAX98357A;
                             enable drives its SD_MODE (high = on, low = shutdown)
  i2c                        {id, scl, sda, freq}: the bus the DS3231 is on
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
    "dimmer": {"pin": 25, "freq_hz": 1000, "invert": True},
    # ZMCT103C 1000:1 with a 330 ohm burden: 0.8 V peak swing = 1.7 A RMS full scale (~370 W)
    "lamp_ct": {"pin": 36, "ct_ratio": 1000, "burden_ohm": 330.0, "cal": 1.0, "noise_ma": 25, "samples": 40},
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
    "i2s": {"id": 0, "bclk": 14, "ws": 13, "din": 4, "enable": 33, "rate": 16000, "ibuf": 8192},
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
    "dimmer": {"pin": 25, "freq_hz": 1000, "invert": False},
    "lamp_ct": {"pin": 36, "ct_ratio": 1000, "burden_ohm": 330.0, "cal": 1.0, "noise_ma": 25, "samples": 40},
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

BOARDS = {
    "denloa-v1": _DENLOA_V1,
    "esp32-devkit-lamp": _DEVKIT_LAMP,
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

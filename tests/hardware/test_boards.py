"""Board profiles against the ESP32's pin rules (portable: pytest and MicroPython)."""
from hardware import boards, ina219, lampcurrent
from tests.portable import raises, raises_with

# ESP32 (WROOM-32) GPIOs: 20, 24 and 28-31 do not exist; 6-11 are the SPI flash
FLASH = (6, 7, 8, 9, 10, 11)
GPIOS = [p for p in range(40) if p not in FLASH and p not in (20, 24, 28, 29, 30, 31)]
INPUT_ONLY = (34, 35, 36, 37, 38, 39)
ADC1 = (32, 33, 34, 35, 36, 37, 38, 39)  # ADC2 cannot be read while Wi-Fi is on
STRAPPING = (0, 2, 5, 12, 15)
UART0 = (1, 3)  # the technician's serial console

KEYS = (
    "chip", "description", "mains_v", "mains_hz", "power_factor", "lamp_relay", "lamp_feedback", "dimmer",
    "lamp_current", "photocell", "pir", "amp_relay", "line_relay", "zone_relays", "zone_count", "i2s", "i2c",
    "rtc", "status_led",
)
SWITCH = ("pin", "active_high")
SCHEMA = {
    "lamp_relay": SWITCH,
    "lamp_feedback": ("pin", "closed_level"),
    "dimmer": ("pin", "freq_hz", "invert", "kind"),
    "pir": SWITCH,
    "amp_relay": SWITCH,
    "line_relay": SWITCH,
    "i2s": ("id", "dac", "bclk", "ws", "din", "enable", "rate", "ibuf"),
    "i2c": ("id", "scl", "sda", "freq"),
    "status_led": SWITCH,
}
# lamp_current: its fields by kind
CURRENT = {
    "ct": ("kind", "pin", "ct_ratio", "burden_ohm", "cal", "noise_ma", "samples"),
    "acs712": ("kind", "pin", "mv_per_a", "divider", "zero_mv", "cal", "noise_ma", "samples"),
    "ina219": ("kind", "addr", "shunt_mohm", "max_ma", "noise_ma", "driver_eff"),
}
PA_PARTS = ("amp_relay", "line_relay", "i2s")
I2C_ADDRS = {"ds3231": (0x68, 0x57)}  # the DS3231 modules (ZS-042) carry an AT24C32 EEPROM at 0x57


def pins_of(p):
    """[(gpio, what, direction)] of every pin a profile uses; direction "out", "in" or "adc"."""
    used = []
    for key in ("lamp_relay", "amp_relay", "line_relay", "status_led"):
        if p[key] is not None:
            used.append((p[key]["pin"], key, "out"))
    for i, z in enumerate(p["zone_relays"]):
        used.append((z["pin"], "zone %d" % (i + 1), "out"))
    if p["dimmer"] is not None:
        used.append((p["dimmer"]["pin"], "dimmer", "out"))
    if p["i2s"] is not None:
        for k in ("bclk", "ws", "din", "enable"):
            if p["i2s"][k] is not None:
                used.append((p["i2s"][k], "i2s " + k, "out"))
    if p["i2c"] is not None:
        used.append((p["i2c"]["scl"], "i2c scl", "out"))
        used.append((p["i2c"]["sda"], "i2c sda", "out"))  # open drain: needs an output driver
    for key in ("lamp_feedback", "pir"):
        if p[key] is not None:
            used.append((p[key]["pin"], key, "in"))
    lc = p["lamp_current"]
    if lc is not None and lc["kind"] in ("ct", "acs712"):
        used.append((lc["pin"], "lamp_current", "adc"))
    pc = p["photocell"]
    if pc is not None:
        used.append((pc["pin"], "photocell", "adc" if pc["kind"] == "adc" else "in"))
    return used


def test_known_boards():
    assert sorted(boards.BOARDS) == ["denloa-v1", "devkitc-pa-line", "devkitc-pole", "esp32-devkit-lamp"]
    for name in boards.BOARDS:
        assert boards.profile(name) is boards.BOARDS[name]


def test_unknown_board_lists_the_known_ones():
    exc = raises_with(boards.UnknownBoard, "denloa-v1, devkitc-pa-line, devkitc-pole, esp32-devkit-lamp",
                      boards.profile, "denloa-v2")
    assert "'denloa-v2'" in str(exc)
    assert isinstance(exc, ValueError)
    raises(boards.UnknownBoard, boards.profile, None)
    raises(boards.UnknownBoard, boards.profile, ["denloa-v1"])  # unhashable


def test_every_profile_has_every_key_and_well_formed_parts():
    for name, p in boards.BOARDS.items():
        assert sorted(p) == sorted(KEYS), name
        for key, fields in SCHEMA.items():
            if p[key] is not None:
                for f in fields:
                    assert f in p[key], (name, key, f)
        for z in p["zone_relays"]:
            for f in SWITCH:
                assert f in z, (name, z)
        lc = p["lamp_current"]
        if lc is not None:
            assert lc["kind"] in CURRENT and lc["kind"] in lampcurrent.KINDS, (name, lc["kind"])
            assert sorted(lc) == sorted(CURRENT[lc["kind"]]), (name, sorted(lc))
        for key in ("lamp_relay", "pir", "amp_relay", "line_relay", "status_led"):
            if p[key] is not None:
                assert p[key]["active_high"] in (True, False), (name, key)
        for z in p["zone_relays"]:
            assert z["active_high"] in (True, False), name


def test_pins_are_valid_gpios():
    for name, p in boards.BOARDS.items():
        for pin, what, direction in pins_of(p):
            assert isinstance(pin, int) and pin in GPIOS, (name, what, pin)
            assert pin not in FLASH and pin not in UART0, (name, what, pin)
            if direction == "out":
                assert pin not in INPUT_ONLY, (name, what, pin)
            if direction == "adc":
                assert pin in ADC1, (name, what, pin)


def test_no_pin_used_twice():
    for name, p in boards.BOARDS.items():
        seen = {}
        for pin, what, _ in pins_of(p):
            assert pin not in seen, (name, pin, seen.get(pin), what)
            seen[pin] = what


def test_no_relay_or_dimmer_on_a_strapping_pin():
    for name, p in boards.BOARDS.items():
        for pin, what, direction in pins_of(p):
            if direction == "out" and what != "status_led" and not what.startswith("i2"):
                assert pin not in STRAPPING, (name, what, pin)


def test_required_parts_present():
    for name, p in boards.BOARDS.items():
        for key in ("lamp_relay", "dimmer", "lamp_current", "photocell", "pir"):
            assert p[key] is not None, (name, key)
        assert p["zone_count"] == len(p["zone_relays"]), name
        has_pa = p["amp_relay"] is not None
        if has_pa:
            assert p["i2s"] is not None and p["zone_count"] >= 1, name
        else:
            assert p["zone_count"] == 0 and p["i2s"] is None and p["line_relay"] is None, name
        assert p["rtc"] in ("ds3231", "internal"), name
        if p["rtc"] == "ds3231":
            assert p["i2c"] is not None, name
        if p["lamp_current"]["kind"] == "ina219":
            assert p["i2c"] is not None, name


def test_i2c_addresses_do_not_collide():
    for name, p in boards.BOARDS.items():
        taken = list(I2C_ADDRS["ds3231"]) if p["rtc"] == "ds3231" else []
        lc = p["lamp_current"]
        if lc["kind"] == "ina219":
            assert lc["addr"] in (0x40, 0x41, 0x44, 0x45), (name, lc["addr"])  # the breakouts' jumpers
            assert lc["addr"] not in taken, name


def test_denloa_v1_has_every_part_and_the_devkit_no_pa():
    full = boards.profile("denloa-v1")
    for key in KEYS:
        assert full[key] is not None, key
    assert full["zone_count"] == 4 and full["rtc"] == "ds3231"
    kit = boards.profile("esp32-devkit-lamp")
    for key in PA_PARTS:
        assert kit[key] is None, key
    assert kit["zone_count"] == 0 and kit["rtc"] == "internal"


def test_the_devkitc_builds():
    """(a) the pole with a MAX98357A and an ACS712; (b) line-out into an external PA, INA219."""
    pole, pa = boards.profile("devkitc-pole"), boards.profile("devkitc-pa-line")
    for p in (pole, pa):
        for key in KEYS:
            assert p[key] is not None, key
        assert p["zone_count"] == 4 and p["rtc"] == "ds3231" and p["dimmer"]["kind"] == "pwm-mosfet"
        # the opto relay modules switch on a low input
        for key in ("lamp_relay", "amp_relay", "line_relay"):
            assert p[key]["active_high"] is False, key
        assert all(z["active_high"] is False for z in p["zone_relays"])
    assert pole["i2s"]["dac"] == "max98357a" and pole["lamp_current"]["kind"] == "acs712"
    assert pa["i2s"]["dac"] == "pcm5102a" and pa["lamp_current"]["kind"] == "ina219"


def test_calibration_constants_are_plausible():
    for name, p in boards.BOARDS.items():
        assert 100 <= p["mains_v"] <= 250 and p["mains_hz"] in (50, 60), name
        assert 0.5 <= p["power_factor"] <= 1.0, name
        assert 100 <= p["dimmer"]["freq_hz"] <= 40000, name
        assert p["dimmer"]["kind"] in ("0-10v", "pwm-mosfet") and p["dimmer"]["invert"] in (True, False), name
        lc = p["lamp_current"]
        assert 0 <= lc["noise_ma"] < 200, name
        if lc["kind"] == "ct":
            assert lc["ct_ratio"] > 0 and lc["burden_ohm"] > 0, name
            # a full-scale swing (0.8 V peak around the 1.65 V bias) must cover at least one 150 W lamp
            full_scale_ma = 800 / 1.4142 / lc["burden_ohm"] * lc["ct_ratio"]
        elif lc["kind"] == "acs712":
            # ACS712ELCTR-05B / -20A / -30A: 185 / 100 / 66 mV/A
            assert lc["mv_per_a"] in (185, 100, 66) and lc["divider"] >= 1, name
            # the zero (2.5 V at 5 V, divided) must sit inside the ADC's range with room either side
            zero_mv = (lc["zero_mv"] or 2500) / lc["divider"]
            assert 600 < zero_mv < 1850, (name, zero_mv)
            full_scale_ma = min(zero_mv, 2450 - zero_mv) / 1.4142 * lc["divider"] * 1000 / lc["mv_per_a"]
        else:
            assert ina219.pga_bits(lc["max_ma"] * lc["shunt_mohm"] // 1000) in (0, 1, 2, 3), name
            assert 0.5 < lc["driver_eff"] <= 1.0, name
            full_scale_ma = None  # the DC side of the driver: its rated current, said by max_ma
        if full_scale_ma is not None:
            assert 0.5 <= lc["cal"] <= 2.0 and 10 <= lc["samples"] <= 100, name
            assert abs(full_scale_ma - lampcurrent.full_scale_ma(lc)) < 1, (name, full_scale_ma)
            assert full_scale_ma * p["mains_v"] * p["power_factor"] / 1000 >= 150, (name, full_scale_ma)
        pc = p["photocell"]
        assert pc["kind"] in ("adc", "digital"), name
        if pc["kind"] == "adc":
            assert 0 < pc["dark_below_mv"] < pc["light_above_mv"] < 2450, name  # hysteresis, 11 dB range
        else:
            assert pc["dark_level"] in (0, 1), name
        if p["lamp_feedback"] is not None:
            assert p["lamp_feedback"]["closed_level"] in (0, 1), name
        if p["i2s"] is not None:
            assert p["i2s"]["rate"] in (8000, 16000, 22050, 32000, 44100, 48000), name
            assert p["i2s"]["id"] in (0, 1) and 1024 <= p["i2s"]["ibuf"] <= 32768, name
            assert p["i2s"]["dac"] in ("max98357a", "pcm5102a"), name
        if p["i2c"] is not None:
            assert p["i2c"]["id"] in (0, 1) and p["i2c"]["freq"] in (100000, 400000), name

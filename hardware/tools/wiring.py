"""Wiring diagrams drawn from the board profiles, so a diagram cannot disagree with the pins.

    python -m hardware.tools.wiring devkitc-pole > devkitc-pole.svg
    python -m hardware.tools.wiring --all docs/hardware      # every board, one SVG each
    python -m hardware.tools.wiring --check docs/hardware    # exit 1 if a committed SVG is stale

CPython only (a technician's laptop, the docs build); it is not compiled for
the node (hardware/tools/ is outside the Makefile's MPY_SOURCES).

Layout, left to right: the ESP32 module with each used pin on its right edge
(GPIO number, and the DevKitC header position), the signal wires (straight;
a pin shared by two parts, the I2C bus, branches down with a dot), three
vertical power rails (5 V, 3V3, GND), the parts with their pins, and right of
the parts, inside a red dashed border, what is not SELV: the 220 V mains and
the 100 V loudspeaker lines. Parts drawn across that border are the
isolating ones (the 220 V -> 5 V module, the relays, the current sensor).
The output is deterministic (no date, fixed number formatting): the test
regenerates every SVG and compares it with the committed one.
"""
import argparse
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from hardware import boards

# ESP32-DevKitC V4 headers (Espressif's DevKitC V4 guide: J2 on the left, J3 on the right)
DEVKITC_HEADER = {
    36: "J2-3", 39: "J2-4", 34: "J2-5", 35: "J2-6", 32: "J2-7", 33: "J2-8", 25: "J2-9", 26: "J2-10",
    27: "J2-11", 14: "J2-12", 12: "J2-13", 13: "J2-15",
    23: "J3-2", 22: "J3-3", 21: "J3-6", 19: "J3-8", 18: "J3-9", 5: "J3-10", 17: "J3-11", 16: "J3-12",
    4: "J3-13", 0: "J3-14", 2: "J3-15", 15: "J3-16",
}
DEVKITC_POWER = {"3V3": "J2-1", "GND": "J2-14, J3-1, J3-7", "5V": "J2-19"}

RAILS = ("5V", "3V3", "GND")
RAIL_LABEL = {"5V": "5 V", "3V3": "3V3", "GND": "GND"}
RAIL_COLOR = {"5V": "#c62828", "3V3": "#ef6c00", "GND": "#212121"}
SIGNAL_COLOR = "#1f4e9c"
HAZARD_COLOR = "#b71c1c"

# geometry (px)
ESP_X, ESP_W = 30, 230
WIRE_X0 = ESP_X + ESP_W
RAIL_X = {"5V": 640, "3V3": 670, "GND": 700}
PART_X, PART_W = 740, 300
BARRIER_X = PART_X + PART_W
DEST_X = BARRIER_X + 44
WIDTH = 1660
ROW = 22
HEAD = 30
GAP = 26
TOP = 170


def _relay_kind(spec):
    return "module" if not spec["active_high"] else "driver"


# Peak current on the 5 V rail (mA), from the datasheets; the supply is sized for all of them at once.
PEAK_MA = {
    "esp32": 500,  # Wi-Fi TX bursts (through the DevKitC's 3V3 regulator)
    "relay": 72,  # Songle SRD-05VDC-SL-C coil: 0.36 W at 5 V
    "max98357a": 800,  # 3.2 W into 4 ohm at 5 V, ~90 % efficient, plus margin
    "pcm5102a": 20,
    "acs712": 13,
    "sensors": 15,  # PIR, LDR module, DS3231, INA219, opto LEDs of the relay module
}
# (module, rated mA): the smallest whose rating is >= 1.25 x the peak is chosen
SUPPLIES = (("Hi-Link HLK-PM01", 600), ("Hi-Link HLK-5M05", 1000), ("Hi-Link HLK-10M05", 2000),
            ("Mean Well IRM-15-5", 3000))


def power_budget(p):
    """[(item, peak mA)] on the 5 V rail of a board."""
    relays = 1 + (p["amp_relay"] is not None) + (p["line_relay"] is not None) + len(p["zone_relays"])
    items = [("ESP32 (Wi-Fi TX)", PEAK_MA["esp32"]), ("%d relay coils" % relays, relays * PEAK_MA["relay"])]
    if p["i2s"] is not None:
        items.append((p["i2s"]["dac"].upper(), PEAK_MA[p["i2s"]["dac"]]))
    if p["lamp_current"]["kind"] == "acs712":
        items.append(("ACS712", PEAK_MA["acs712"]))
    items.append(("sensors, RTC, opto LEDs", PEAK_MA["sensors"]))
    return items


def supply_for(p):
    """(module, rated mA, peak mA) of the 220 V -> 5 V module a board needs."""
    peak = sum(ma for _, ma in power_budget(p))
    for module, rated in SUPPLIES:
        if rated * 4 >= peak * 5:
            return module, rated, peak
    raise ValueError("no listed 5 V supply covers %d mA" % peak)


def parts_of(name, p):
    """The parts of a board as drawing data, in drawing order.

    Each part: {title, sub, pins: [(label, conn)], hv: [(label, text, hazard)]}, conn one of
    ("gpio", pin, signal), ("rail", rail), ("note", text); hazard True for 220 V / 100 V lines.
    """
    supply = supply_for(p)
    parts = []
    parts.append({
        "title": "220 V -> 5 V supply: %s" % supply[0],
        "sub": "5 V %.1f A; peak load %d mA (%s)" % (supply[1] / 1000, supply[2],
                                                   " + ".join("%d" % ma for _, ma in power_budget(p))),
        "pins": [("+Vo", ("rail", "5V")), ("-Vo", ("rail", "GND"))],
        "hv": [("AC L", "L from the pole's feed: fuse F1 (1 A T) first, MOV 14D471K across L-N", True),
               ("AC N", "N; PE (earth) to the enclosure's earth stud and the SPD", True)],
    })
    lc = p["lamp_current"]
    if lc["kind"] == "ct":
        parts.append({
            "title": "Lamp current: current transformer",
            "sub": "ZMCT103C 1000:1, %g ohm burden, bias 1.65 V (2 x 10k)" % lc["burden_ohm"],
            "pins": [("OUT", ("gpio", lc["pin"], "LAMP_I (ADC1)")), ("VCC bias", ("rail", "3V3")),
                     ("GND", ("rail", "GND"))],
            "hv": [("core", "the lamp's L wire passes through the core (no contact)", True)],
        })
    elif lc["kind"] == "acs712":
        parts.append({
            "title": "Lamp current: ACS712 (in the lamp's line)",
            "sub": "Allegro ACS712ELCTR-05B module; OUT via 10k, 20k to GND (/%g)" % lc["divider"],
            "pins": [("OUT", ("gpio", lc["pin"], "LAMP_I (ADC1, divided)")), ("VCC", ("rail", "5V")),
                     ("GND", ("rail", "GND"))],
            "hv": [("IP+", "from the lamp contactor's output (L)", True),
                   ("IP-", "to the lamp driver's L input", True)],
        })
    parts.append(_relays(p))
    fb = p["lamp_feedback"]
    if fb is not None:
        parts.append({
            "title": "Lamp contactor feedback",
            "sub": ("contactor aux NO contact to GND, 10k pull-up, 100 nF, TVS" if "DevKitC" in p["chip"]
                    else "contactor aux contact through an optocoupler, 10k pull-up")
            + (" (closed = low)" if fb["closed_level"] == 0 else " (closed = high)"),
            "pins": [("AUX", ("gpio", fb["pin"], "LAMP_FB (closed = %d)" % fb["closed_level"])),
                     ("pull-up", ("rail", "3V3")), ("AUX COM", ("rail", "GND"))],
            "hv": [],
        })
    parts.append(_dimmer(p["dimmer"]))
    if lc["kind"] == "ina219":
        parts.append({
            "title": "Lamp current: INA219 (DC side of the LED driver)",
            "sub": "TI INA219 breakout, %d mohm shunt, I2C 0x%02X" % (lc["shunt_mohm"], lc["addr"]),
            "pins": [("SDA", ("gpio", p["i2c"]["sda"], "I2C SDA")), ("SCL", ("gpio", p["i2c"]["scl"], "I2C SCL")),
                     ("VCC", ("rail", "3V3")), ("GND", ("rail", "GND"))],
            "hv": [("VIN+", "LED driver +V out (SELV, <= 26 V)", False), ("VIN-", "to the LED string +", False)],
        })
    pc = p["photocell"]
    if pc["kind"] == "digital":
        parts.append({
            "title": "Photocell: LDR module", "sub": "LM393 comparator module, DO = %d when dark" % pc["dark_level"],
            "pins": [("DO", ("gpio", pc["pin"], "PHOTO (dark = %d)" % pc["dark_level"])), ("VCC", ("rail", "3V3")),
                     ("GND", ("rail", "GND"))],
            "hv": [],
        })
    else:
        parts.append({
            "title": "Photocell: LDR divider", "sub": "GL5528 LDR to 3V3, 10k to GND (dark = low)",
            "pins": [("LDR/10k", ("gpio", pc["pin"], "PHOTO (ADC1)")), ("LDR", ("rail", "3V3")),
                     ("10k", ("rail", "GND"))],
            "hv": [],
        })
    pir = p["pir"]
    parts.append({
        "title": "PIR motion sensor", "sub": "HC-SR501 (3.3 V output, %s = motion)" % ("high" if pir["active_high"] else "low"),
        "pins": [("OUT", ("gpio", pir["pin"], "PIR")), ("VCC", ("rail", "5V")), ("GND", ("rail", "GND"))],
        "hv": [],
    })
    if p["rtc"] == "ds3231":
        parts.append({
            "title": "RTC: DS3231 module", "sub": "Maxim DS3231 (ZS-042), CR2032, I2C 0x68",
            "pins": [("SDA", ("gpio", p["i2c"]["sda"], "I2C SDA")), ("SCL", ("gpio", p["i2c"]["scl"], "I2C SCL")),
                     ("VCC", ("rail", "3V3")), ("GND", ("rail", "GND"))],
            "hv": [],
        })
    if p["i2s"] is not None:
        parts.append(_dac(p))
    if p["status_led"] is not None:
        parts.append({
            "title": "Status LED", "sub": "panel LED + 1k to GND (solid: network up)",
            "pins": [("A", ("gpio", p["status_led"]["pin"], "STATUS_LED")), ("K", ("rail", "GND"))],
            "hv": [],
        })
    return parts


def _relays(p):
    channels = [("lamp_relay", p["lamp_relay"], "LAMP_RELAY")]
    if p["amp_relay"] is not None:
        channels.append(("amp_relay", p["amp_relay"], "AMP_RELAY"))
    for i, z in enumerate(p["zone_relays"]):
        channels.append(("zone", z, "ZONE%d" % (i + 1)))
    if p["line_relay"] is not None:
        channels.append(("line_relay", p["line_relay"], "LINE_RELAY"))
    external_pa = p["i2s"] is not None and p["i2s"]["dac"] == "pcm5102a"
    pins, hv = [], []
    for n, (key, spec, signal) in enumerate(channels):
        k = "K%d" % (n + 1)
        pins.append(("IN%d" % (n + 1), ("gpio", spec["pin"], "%s (on = %s)" % (signal, "high" if spec["active_high"] else "low"))))
        if key == "lamp_relay":
            hv.append((k + " NO", "COM <- L (fused); NO -> lamp contactor KM1 coil A1 (A2 -> N)", True))
        elif key == "amp_relay" and external_pa:
            hv.append((k + " NO", "COM <- L (fused); NO -> PA contactor KM2 coil A1; KM2 switches the PA's mains", True))
        elif key == "amp_relay":
            hv.append((k + " NO", "5 V -> MAX98357A VIN (the amplifier's supply, SELV)", False))
        elif key == "zone" and external_pa:
            hv.append((k + " NO", "PA 100 V line out -> %s speaker line (100 V: not SELV)" % signal.lower(), True))
        elif key == "zone":
            hv.append((k + " NO", "speaker bus -> %s horn (SELV)" % signal.lower(), False))
        elif external_pa:
            hv.append((k + " C/O", "PA input: NC = PCM5102A line out, NO = line source (SELV)", False))
        else:
            hv.append((k + " C/O", "speaker bus: NC = MAX98357A out, NO = line source (SELV)", False))
    hv.sort(key=lambda h: not h[2])  # the hazardous contacts first: one hazard region
    if _relay_kind(p["lamp_relay"]) == "module":
        title = "Relay module x%d (opto inputs, low = on)" % len(channels)
        sub = "Songle SRD-05VDC-SL-C x %d; remove JD-VCC jumper" % len(channels)
        pins += [("VCC (opto)", ("rail", "3V3")), ("JD-VCC (coils)", ("rail", "5V")), ("GND", ("rail", "GND"))]
    else:
        title = "Relay drivers on the board (high = on)"
        sub = "ULN2003A + Songle SRD-05VDC-SL-C x %d" % len(channels)
        pins += [("coils", ("rail", "5V")), ("GND", ("rail", "GND"))]
    return {"title": title, "sub": sub, "pins": pins, "hv": hv}


def _dimmer(d):
    sig = ("gpio", d["pin"], "DIM_PWM %d Hz%s" % (d["freq_hz"], ", inverted" if d["invert"] else ""))
    if d["kind"] == "pwm-mosfet":
        return {
            "title": "Dimmer: MOSFET on the driver's DIM input",
            "sub": "2N7000 or AO3400A, 100 ohm gate, 10k gate-source; 3-in-1 driver",
            "pins": [("G", sig), ("S / DIM-", ("rail", "GND"))],
            "hv": [("D", "LED driver DIM+ (driver's own 10 V source, SELV)", False)],
        }
    return {
        "title": "Dimmer: 0-10 V stage", "sub": "PWM -> RC filter -> transistor sink on DIM+",
        "pins": [("PWM", sig), ("GND / DIM-", ("rail", "GND"))],
        "hv": [("0-10V", "LED driver DIM+ (SELV)", False)],
    }


def _dac(p):
    s = p["i2s"]
    pins = [("BCLK", ("gpio", s["bclk"], "I2S BCLK")), ("LRC/WS", ("gpio", s["ws"], "I2S WS")),
            ("DIN", ("gpio", s["din"], "I2S DATA"))]
    if s["dac"] == "pcm5102a":
        pins.append(("XSMT", ("gpio", s["enable"], "DAC_UNMUTE (high = play)")))
        pins += [("VIN", ("rail", "5V")), ("GND / SCK", ("rail", "GND"))]
        return {"title": "I2S DAC: PCM5102A line out", "sub": "TI PCM5102A module; SCK to GND (PLL), FMT/FLT/DEMP low",
                "pins": pins, "hv": [("LOUT/ROUT", "line out (2.1 V RMS) -> line relay NC -> PA input", False)]}
    pins.append(("SD_MODE", ("gpio", s["enable"], "AMP_ENABLE (high = on)")))
    pins += [("VIN: 5 V from the amp relay", ("note", "")), ("GND", ("rail", "GND"))]
    return {"title": "I2S DAC + amplifier: MAX98357A", "sub": "Analog Devices MAX98357A breakout, 3.2 W / 4 ohm",
            "pins": pins, "hv": [("OUT+/-", "speaker out -> line relay NC -> zone relays -> horns", False)]}


def _layout(parts):
    """Give each part its top y and each pin / hv row its y; the height of the drawing."""
    y = TOP
    for part in parts:
        part["y"] = y
        rows = max(len(part["pins"]), len(part["hv"]), 1)
        part["rows_y"] = [y + HEAD + ROW * i + ROW // 2 for i in range(rows)]
        part["h"] = HEAD + ROW * rows + 8
        y += part["h"] + GAP
    return y + 60


class _Svg:
    def __init__(self):
        self.out = []

    def add(self, s):
        self.out.append(s)

    def text(self, x, y, s, size=12, anchor="start", weight="normal", fill="#111", cls=None):
        extra = ' class="%s"' % cls if cls else ""
        self.add('<text x="%d" y="%d" font-size="%d" text-anchor="%s" font-weight="%s" fill="%s"%s>%s</text>'
                 % (x, y, size, anchor, weight, fill, extra, escape(s)))

    def line(self, x1, y1, x2, y2, color, width=1.6, dash=None):
        d = ' stroke-dasharray="%s"' % dash if dash else ""
        self.add('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%g"%s/>'
                 % (x1, y1, x2, y2, color, width, d))

    def rect(self, x, y, w, h, stroke="#333", fill="#fff", width=1.4, dash=None, rx=4):
        d = ' stroke-dasharray="%s"' % dash if dash else ""
        self.add('<rect x="%d" y="%d" width="%d" height="%d" rx="%d" fill="%s" stroke="%s" stroke-width="%g"%s/>'
                 % (x, y, w, h, rx, fill, stroke, width, d))

    def dot(self, x, y, color):
        self.add('<circle cx="%d" cy="%d" r="3.5" fill="%s"/>' % (x, y, color))


def render(name):
    """The SVG (str) of board `name`'s wiring."""
    p = boards.profile(name)
    devkitc = "DevKitC" in p["chip"]
    parts = parts_of(name, p)
    height = _layout(parts)
    svg = _Svg()
    svg.add('<?xml version="1.0" encoding="UTF-8"?>')
    svg.add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
            'font-family="DejaVu Sans, Arial, sans-serif">' % (WIDTH, height, WIDTH, height))
    svg.add('<!-- generated by python -m hardware.tools.wiring %s from hardware/boards.py: do not edit -->' % name)
    svg.rect(0, 0, WIDTH, height, stroke="none", fill="#ffffff", rx=0)
    svg.text(ESP_X, 30, "denloa board \u201c%s\u201d: wiring" % name, size=20, weight="bold")
    svg.text(ESP_X, 52, p["description"], size=12, fill="#444")
    svg.text(ESP_X, 72, "Generated from hardware/boards.py (python -m hardware.tools.wiring %s). "
             "Wires are labelled GPIO number + signal; %s" % (name, "Jx-n = DevKitC header pin." if devkitc
                                                               else "GPIO numbers of the WROOM module."),
             size=11, fill="#444")
    _legend(svg)

    # the hazard region: rows of hv terminals that are 220 V / 100 V
    hz = [part["rows_y"][i] for part in parts for i, h in enumerate(part["hv"]) if h[2]]
    if hz:
        top, bottom = min(hz) - 18, max(hz) + 11
        svg.rect(BARRIER_X + 6, top, WIDTH - BARRIER_X - 16, bottom - top, stroke=HAZARD_COLOR, fill="#fff3f0",
                 width=2, dash="8 5")
        svg.text(DEST_X, top - 6, "\u26a0 220 V AC / 100 V line: not SELV. Isolate, lock off, test dead before work.",
                 size=12, weight="bold", fill=HAZARD_COLOR)
        svg.line(BARRIER_X, top - 30, BARRIER_X, bottom + 10, HAZARD_COLOR, width=2.5, dash="10 4")
        svg.text(BARRIER_X - 4, bottom + 24, "isolation barrier", size=11, anchor="end", fill=HAZARD_COLOR)

    # ESP32 module
    esp_top, esp_bottom = TOP - 62, height - 50
    svg.rect(ESP_X, esp_top, ESP_W, esp_bottom - esp_top, stroke="#0d47a1", fill="#eef3fb", width=2)
    svg.text(ESP_X + 10, esp_top - 8, p["chip"], size=11, weight="bold", fill="#0d47a1")
    svg.text(ESP_X + 10, esp_bottom - 12, "SELV side: powered only from the 5 V rail", size=10, fill="#0d47a1")

    # power rails and the ESP32's own power pins
    rail_top, rail_bottom = TOP - 70, height - 56
    for i, rail in enumerate(RAILS):
        x = RAIL_X[rail]
        svg.line(x, rail_top, x, rail_bottom, RAIL_COLOR[rail], width=3)
        svg.text(x, rail_top - 6, RAIL_LABEL[rail], size=11, anchor="middle", weight="bold", fill=RAIL_COLOR[rail])
        y = TOP - 50 + i * 16
        pos = (" (%s)" % DEVKITC_POWER[rail]) if devkitc else ""
        label = {"5V": "5V in", "3V3": "3V3 out", "GND": "GND"}[rail] + pos
        svg.text(WIRE_X0 - 6, y + 4, label, size=11, anchor="end", fill=RAIL_COLOR[rail])
        svg.line(WIRE_X0, y, x, y, RAIL_COLOR[rail], width=1.6)
        svg.dot(x, y, RAIL_COLOR[rail])

    first_y = {}  # gpio -> (y of its first wire)
    branch = 0
    for part in parts:
        _part_box(svg, part)
        for (label, conn), y in zip(part["pins"], part["rows_y"]):
            if conn[0] == "rail":
                rail = conn[1]
                svg.line(RAIL_X[rail], y, PART_X, y, RAIL_COLOR[rail])
                svg.dot(RAIL_X[rail], y, RAIL_COLOR[rail])
            elif conn[0] == "gpio":
                gpio, signal = conn[1], conn[2]
                wire_label = "GPIO%d  %s" % (gpio, signal)
                if gpio not in first_y:
                    first_y[gpio] = y
                    pos = DEVKITC_HEADER.get(gpio, "") if devkitc else ""
                    svg.text(WIRE_X0 - 6, y + 4, ("GPIO%d" % gpio) + (" (%s)" % pos if pos else ""),
                             size=11, anchor="end", weight="bold", fill="#0d47a1")
                    svg.line(WIRE_X0, y, PART_X, y, SIGNAL_COLOR)
                    svg.dot(WIRE_X0, y, SIGNAL_COLOR)
                    svg.text(WIRE_X0 + 12, y - 4, wire_label, size=11, fill=SIGNAL_COLOR)
                else:  # a bus: branch off the first wire
                    x = 600 - 14 * branch
                    branch += 1
                    y0 = first_y[gpio]
                    svg.line(x, y0, x, y, SIGNAL_COLOR)
                    svg.line(x, y, PART_X, y, SIGNAL_COLOR)
                    svg.dot(x, y0, SIGNAL_COLOR)
                    svg.text(x - 6, y - 4, wire_label, size=11, anchor="end", fill=SIGNAL_COLOR)
        for (label, text, hazard), y in zip(part["hv"], part["rows_y"]):
            color = HAZARD_COLOR if hazard else "#2e7d32"
            svg.line(BARRIER_X, y, DEST_X - 4, y, color, width=2 if hazard else 1.6)
            svg.text(DEST_X, y + 4, text, size=11, fill=color)
    _notes(svg, p, height)
    svg.add("</svg>")
    return "\n".join(svg.out) + "\n"


def _part_box(svg, part):
    x, y, h = PART_X, part["y"], part["h"]
    svg.rect(x, y, PART_W, h, stroke="#333", fill="#fafafa")
    svg.text(x + 8, y + 14, part["title"], size=12, weight="bold")
    svg.text(x + 8, y + 26, part["sub"], size=9, fill="#555")
    for (label, _), ry in zip(part["pins"], part["rows_y"]):
        svg.text(x + 8, ry + 4, label, size=11)
    for (label, _, hazard), ry in zip(part["hv"], part["rows_y"]):
        svg.text(x + PART_W - 8, ry + 4, label, size=11, anchor="end", fill=HAZARD_COLOR if hazard else "#2e7d32")


def _legend(svg):
    x, y = 760, 96
    items = (("signal (GPIO)", SIGNAL_COLOR, None), ("5 V", RAIL_COLOR["5V"], None), ("3V3", RAIL_COLOR["3V3"], None),
             ("GND", RAIL_COLOR["GND"], None), ("220 V / 100 V", HAZARD_COLOR, "8 5"), ("SELV load side", "#2e7d32", None))
    for label, color, dash in items:
        svg.line(x, y, x + 24, y, color, width=2.5, dash=dash)
        svg.text(x + 28, y + 4, label, size=10, fill="#333")
        x += 34 + 7 * len(label)


def _notes(svg, p, height):
    notes = ["Every GND is one net (ESP32, modules, relay coils). Nothing on the SELV side touches L, N or PE.",
             "Inputs on GPIO 34-39 have no internal pull resistors: the part or the carrier has them."]
    svg.text(ESP_X, height - 28, notes[0], size=10, fill="#444")
    svg.text(ESP_X, height - 14, notes[1], size=10, fill="#444")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m hardware.tools.wiring", description=__doc__.split("\n")[0])
    ap.add_argument("board", nargs="?", help="a board of hardware/boards.py: %s" % ", ".join(sorted(boards.BOARDS)))
    ap.add_argument("--all", metavar="DIR", help="write DIR/<board>.svg for every board")
    ap.add_argument("--check", metavar="DIR", help="exit 1 if DIR/<board>.svg is missing or stale for a board")
    args = ap.parse_args(argv)
    if args.check:
        stale = [n for n in sorted(boards.BOARDS) if not _same(Path(args.check) / (n + ".svg"), render(n))]
        for n in stale:
            print("stale or missing: %s/%s.svg (python -m hardware.tools.wiring --all %s)" % (args.check, n, args.check),
                  file=sys.stderr)
        return 1 if stale else 0
    if args.all:
        out = Path(args.all)
        out.mkdir(parents=True, exist_ok=True)
        for n in sorted(boards.BOARDS):
            (out / (n + ".svg")).write_text(render(n), encoding="utf-8")
            print(out / (n + ".svg"))
        return 0
    if not args.board:
        ap.error("name a board, or --all DIR / --check DIR")
    try:
        sys.stdout.write(render(args.board))
    except boards.UnknownBoard as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def _same(path, text):
    try:
        return path.read_text(encoding="utf-8") == text
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())

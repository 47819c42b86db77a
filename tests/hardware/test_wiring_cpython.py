"""The wiring diagrams (hardware/tools/wiring.py) against the board profiles and the committed SVGs.

CPython only: the generator is a laptop/docs tool, not node code."""
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from hardware import boards
from hardware.tools import wiring
from tests.hardware.test_boards import pins_of

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "hardware"
SVG_NS = "{http://www.w3.org/2000/svg}"


def texts(svg):
    return [t.text or "" for t in ET.fromstring(svg.encode()).iter(SVG_NS + "text")]


def test_committed_svgs_are_up_to_date():
    """Regenerate every board's diagram: a committed SVG that differs is stale (the fix is the
    command in the message), and no SVG is left for a board that is gone."""
    stale = [n for n in sorted(boards.BOARDS) if not (DOCS / (n + ".svg")).exists()
             or (DOCS / (n + ".svg")).read_text(encoding="utf-8") != wiring.render(n)]
    assert not stale, "stale wiring SVGs %s: run python -m hardware.tools.wiring --all docs/hardware" % stale
    extra = sorted(p.stem for p in DOCS.glob("*.svg") if p.stem not in boards.BOARDS)
    assert not extra, "SVGs for boards that do not exist: %s" % extra


def test_every_pin_of_every_profile_is_drawn_and_labelled():
    for name, p in boards.BOARDS.items():
        labels = texts(wiring.render(name))
        esp_pins = {int(m.group(1)) for t in labels for m in [re.match(r"^GPIO(\d+)(?: \(J\d-\d+\))?$", t)] if m}
        wire_pins = {int(m.group(1)) for t in labels for m in [re.match(r"^GPIO(\d+)  \S", t)] if m}
        used = {pin for pin, _, _ in pins_of(p)}
        assert esp_pins == used, (name, sorted(esp_pins ^ used))  # no pin missing, none invented
        assert wire_pins == used, (name, sorted(wire_pins ^ used))


def test_wires_name_the_signal_and_polarity():
    labels = texts(wiring.render("devkitc-pole"))
    assert "GPIO26  LAMP_RELAY (on = low)" in labels
    assert "GPIO36  LAMP_I (ADC1, divided)" in labels
    assert "GPIO33  AMP_ENABLE (high = on)" in labels
    assert "GPIO26 (J2-10)" in labels and "GPIO2 (J3-15)" in labels  # DevKitC header positions
    pa = texts(wiring.render("devkitc-pa-line"))
    assert "GPIO33  DAC_UNMUTE (high = play)" in pa
    # the I2C bus is one pair of pins shared by the INA219 and the DS3231: drawn once, branched once
    assert pa.count("GPIO21 (J3-6)") == 1 and pa.count("GPIO21  I2C SDA") == 2
    v1 = texts(wiring.render("denloa-v1"))
    assert "GPIO26  LAMP_RELAY (on = high)" in v1 and "GPIO26" in v1  # no DevKitC header on the v1 board


def test_power_rails_and_the_220v_side_are_drawn():
    for name in boards.BOARDS:
        svg = wiring.render(name)
        labels = texts(svg)
        for rail in ("5 V", "3V3", "GND"):
            assert rail in labels, (name, rail)
        assert any("220 V AC" in t and "not SELV" in t for t in labels), name
        assert "isolation barrier" in labels, name
        assert any("MOV 14D471K" in t for t in labels), name
        assert 'stroke-dasharray="8 5"' in svg, name  # the hazard region's border
    pa = " ".join(texts(wiring.render("devkitc-pa-line")))
    assert "PA contactor KM2" in pa and "100 V: not SELV" in pa and "PCM5102A" in pa
    assert "MAX98357A" not in pa
    pole = " ".join(texts(wiring.render("devkitc-pole")))
    assert "ACS712" in pole and "IP+" in pole and "MAX98357A" in pole


def test_deterministic_and_well_formed():
    for name in boards.BOARDS:
        a, b = wiring.render(name), wiring.render(name)
        assert a == b
        root = ET.fromstring(a.encode())
        assert root.tag == SVG_NS + "svg" and int(root.get("width")) > 1000


def test_command_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "hardware.tools.wiring", "devkitc-pole"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout == wiring.render("devkitc-pole")
    bad = subprocess.run([sys.executable, "-m", "hardware.tools.wiring", "denloa-v9"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "known boards" in bad.stderr
    assert wiring.main(["--all", str(tmp_path)]) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.svg")) == sorted(boards.BOARDS)
    assert wiring.main(["--check", str(tmp_path)]) == 0
    (tmp_path / "devkitc-pole.svg").write_text("<svg/>")
    assert wiring.main(["--check", str(tmp_path)]) == 1


def test_the_docs_show_every_board_and_its_supply():
    """docs/hardware.md embeds every board's SVG and names the supply the budget chose for it."""
    doc = (ROOT / "docs" / "hardware.md").read_text(encoding="utf-8")
    for name, p in boards.BOARDS.items():
        assert "(hardware/%s.svg)" % name in doc, name
        module, rated, peak = wiring.supply_for(p)
        assert rated * 4 >= peak * 5 and module in doc, (name, module)
        row = [line for line in doc.splitlines() if line.startswith("| `%s` | 500 mA" % name)]
        assert row and "%.2f A" % (peak / 1000) in row[0], (name, peak, row)  # the power table's peak

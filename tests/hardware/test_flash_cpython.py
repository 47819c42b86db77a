"""`python -m hardware flash`: the image check, the esptool step, the upload to a (pty) node.

There is no ESP32 here. The esptool step is checked by the exact command
lines the tool builds and by its error handling on a fake port: a bare
pseudo-terminal that nothing answers (esptool really runs and fails to
connect: "not in download mode"), a missing port, a port held by another
program. The wrong-chip message is esptool's own text (esptool/loader.py
"This chip is ESP32-S3, not ESP32. Wrong chip argument?") run through the
tool's classifier. The upload goes to the pty node (tests/hardware/pty_node.py).
"""
import fcntl
import json
import os
import pty
import sys
import tty
import zipfile

import pytest

from hardware.tools import flash
from hardware.tools.build import bootstrap
from tests.hardware.pty_node import REPO, PtyNode
from tests.hardware.test_tools_cpython import tool

BANNER = b"MicroPython v1.24.1 on 2024-11-29; Generic ESP32 module with ESP32\x00"


def image(path, chip_id=0, banner=BANNER, size=1536 * 1024, magic=0xE9):
    """A file shaped like micropython.org's ESP32_GENERIC .bin (bootloader at 0, app at 0xF000)."""
    data = bytearray(size)
    data[0] = magic
    app = 0x10000 - 0x1000
    data[app] = magic
    data[app + 12] = chip_id & 0xFF
    data[app + 13] = chip_id >> 8
    data[0x20000:0x20000 + len(banner)] = banner
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def fake_port():
    """A pseudo-terminal nothing answers on: a port with no ESP32 in download mode behind it."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave)
    os.close(slave)
    os.close(master)


def test_the_image_check_knows_micropython_for_the_esp32(tmp_path):
    assert flash.check_image(image(tmp_path / "ok.bin")) == {"version": "1.24.1", "chip": "ESP32", "size": 1536 * 1024}
    cases = [
        (image(tmp_path / "s3.bin", chip_id=9), "ESP32-S3"),
        (image(tmp_path / "arduino.bin", banner=b"Arduino sketch"), "not MicroPython"),
        (image(tmp_path / "old.bin", banner=b"MicroPython v1.19.1 on 2022-06-18"), "too old"),
        (image(tmp_path / "small.bin", size=100 * 1024), "100 KB" if False else "bytes"),
        (image(tmp_path / "zip.bin", magic=ord("P")), "0xE9"),
        (tmp_path / "missing.bin", "No image file"),
    ]
    for path, words in cases:
        with pytest.raises(flash.ToolError) as e:
            flash.check_image(path)
        assert words in e.value.en, (path, e.value.en)
        assert e.value.vi != e.value.en


def test_a_bad_image_is_refused_before_the_board_is_touched(tmp_path):
    # the port does not exist either: the image is what the technician hears about
    rc, so, se = tool("flash", "--port", "/dev/ttyUSB97", "--image", str(image(tmp_path / "s3.bin", chip_id=9)))
    assert rc == 2 and "ESP32-S3" in se and "ttyUSB97" not in se and "Traceback" not in se


def test_the_esptool_command_lines_are_exact():
    erase, write = flash.esptool_commands("/dev/ttyUSB0", "ESP32_GENERIC-20241129-v1.24.1.bin")
    base = [sys.executable, "-m", "esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800"]
    assert erase == base + ["erase-flash"]
    assert write == base + ["write-flash", "-z", "0x1000", "ESP32_GENERIC-20241129-v1.24.1.bin"]
    erase, write = flash.esptool_commands("COM3", "fw.bin", baud=115200, connect_attempts=1)
    assert erase[erase.index("--baud") + 1] == "115200" and erase[-3:] == ["--connect-attempts", "1", "erase-flash"]


def test_wrong_port(tmp_path, bundle):
    rc, so, se = tool("flash", "--port", "/dev/ttyUSB97", "--image", str(image(tmp_path / "ok.bin")),
                      "--bundle", str(bundle))
    assert rc == 2 and "Không có cổng /dev/ttyUSB97" in se and "No port /dev/ttyUSB97" in se
    rc, so, se = tool("flash", "--port", str(tmp_path), "--image", str(tmp_path / "ok.bin"), "--bundle", str(bundle))
    assert rc == 2 and "not a serial port" in se


def test_port_in_use(tmp_path, bundle, fake_port):
    fd = os.open(fake_port, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another program (a serial monitor) holds it
    try:
        rc, so, se = tool("flash", "--port", fake_port, "--image", str(image(tmp_path / "ok.bin")),
                          "--bundle", str(bundle))
    finally:
        os.close(fd)
    assert rc == 2 and "Không mở được cổng %s: đang được chương trình khác dùng / port in use" % fake_port in se
    assert "Traceback" not in se


def test_board_not_in_download_mode_on_a_fake_port(tmp_path, bundle, fake_port):
    # esptool really runs against the fake port (one connection attempt) and gets no answer
    rc, so, se = tool("flash", "--port", fake_port, "--image", str(image(tmp_path / "ok.bin")),
                      "--bundle", str(bundle), "--connect-attempts", "1", timeout=60)
    assert rc == 2, so + se
    assert "erase-flash" in so and "Failed to connect to ESP32" in so  # esptool's own output passes through
    assert "download mode" in se and "BOOT" in se and "Traceback" not in se


def test_wrong_chip_message_from_esptools_own_text():
    out = ("Connecting....\nDetecting chip type... ESP32-S3\n"
           "A fatal error occurred: This chip is ESP32-S3, not ESP32. Wrong chip argument?\n")
    err = flash.esptool_error("/dev/ttyUSB0", out, 2)
    assert "ESP32-S3" in err.en and "not an ESP32" in err.en and "không phải ESP32" in err.vi
    busy = flash.esptool_error("/dev/ttyUSB0", "Could not open /dev/ttyUSB0, the port is busy or doesn't exist.", 2)
    assert "in use" in busy.en


def test_upload_puts_the_bundle_in_slot_a_with_boot_json_and_the_bootstrap(tmp_path, bundle):
    with PtyNode(tmp_path / "node") as node:
        (node.root / "app" / "a").mkdir(parents=True)
        (node.root / "app" / "a" / "stale.mpy").write_bytes(b"old")  # a previous upload's leftover
        rc, so, se = tool("flash", "--port", node.port, "--upload-only", "--bundle", str(bundle))
        assert rc == 0, so + se
    root = node.root
    with zipfile.ZipFile(bundle) as z:
        manifest = json.loads(z.read("manifest.json"))
        for f in manifest["files"]:
            on_node = root / "main.py" if f["path"] == "bootstrap.py" else root / "app" / "a" / f["path"]
            assert on_node.read_bytes() == z.read(f["path"]), f["path"]
    assert json.loads((root / "boot.json").read_text()) == {"active": "a"}
    assert not (root / "app" / "a" / "stale.mpy").exists()
    assert not list(root.rglob("*.tmp"))
    assert (root / "main.py").read_bytes() == bootstrap()  # the bootstrap: firmware/boot.py + the chip's part
    assert (root / "app" / "a" / "main.py").read_bytes() == (REPO / "firmware" / "main.py").read_bytes()  # the entry
    assert "done" in so


def test_the_bootstrap_runs_the_slot_boot_json_names(tmp_path, bundle):
    """/main.py (firmware/boot.py) puts /app/<active> first on sys.path and imports its main.py."""
    import subprocess

    with PtyNode(tmp_path / "node") as node:
        node.install(bundle)
        slot_b = node.root / "app" / "b"
        slot_b.mkdir(parents=True)
        (slot_b / "main.py").write_text("import sys\nprint('slot b runs', sys.path[0])\n")  # a stand-in firmware
        (node.root / "boot.json").write_text(json.dumps({"active": "b", "state": "ok"}))
        r = subprocess.run([sys.executable, "-m", "mpremote", "connect", node.port, "exec",
                            "exec(open('/main.py').read())"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "slot b runs /app/b" in r.stdout, r.stdout + r.stderr

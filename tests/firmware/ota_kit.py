"""Bundles, node filesystems and a gateway for the OTA tests (portable: CPython and MicroPython).

`bundle(version, files)` builds what `python -m hardware build` makes (the contract's manifest:
format 1, version, min_micropython, built, files sorted by path with sha256 and size, boot
main.py) as (manifest bytes, manifest sha, {path: bytes}); `serve(server, b)` puts it on a
FakeServer at the node routes' content-addressed paths. `node_root()` makes a node's filesystem
(slot a holding bundle `old`, /boot.json, /data) and `slot_version(root, slot)` says which
bundle a slot holds, checking every file.
"""
import binascii
import hashlib
import json
import os

from firmware import boot
from protocol.commands import OTA_PATH


def sha_hex(data):
    return binascii.hexlify(hashlib.sha256(data).digest()).decode()


def app_files(version, size=600, extra=None):
    """A small application: an entry, a version file and a few modules (bytes are what counts here)."""
    files = {
        "main.py": b"# denloa entry\nimport firmware.main_app\n",
        "firmware/version.py": ('VERSION = "%s"\n' % version).encode(),
        "firmware/node.py": (("# node %s\n" % version) * (size // 12 + 1)).encode()[:size],
        "firmware/store.py": (("# store %s\n" % version) * (size // 13 + 1)).encode()[:size // 2],
        "protocol/commands.py": (("# commands %s\n" % version) * (size // 16 + 1)).encode()[:size],
    }
    if extra:
        files.update(extra)
    return files


def manifest_bytes(version, files, min_mpy="1.20.0", built=1790000000):
    entries = [{"path": p, "sha256": sha_hex(files[p]), "size": len(files[p])} for p in sorted(files)]
    m = {"format": 1, "version": version, "min_micropython": min_mpy, "built": built, "files": entries,
         "boot": "main.py"}
    return json.dumps(m).encode()


def bundle(version, files=None, min_mpy="1.20.0"):
    files = files if files is not None else app_files(version)
    mf = manifest_bytes(version, files, min_mpy)
    return mf, sha_hex(mf), files


def serve(server, b, prefix=OTA_PATH):
    mf, sha, files = b
    server.files[prefix + sha] = mf
    for data in files.values():
        server.files[prefix + sha_hex(data)] = data


def ota_args(b, prefix=OTA_PATH):
    return {"version": json.loads(b[0])["version"], "manifest": b[1], "path": prefix}


def _mkdirs(path):
    at = path.find("/", 1)
    while at > 0:
        try:
            os.mkdir(path[:at])
        except OSError:
            pass
        at = path.find("/", at + 1)
    try:
        os.mkdir(path)
    except OSError:
        pass


def write_slot(root, slot, b):
    mf, sha, files = b
    base = root + "/app/" + slot
    for path, data in files.items():
        full = base + "/" + path
        _mkdirs(full[:full.rfind("/")])
        with open(full, "wb") as f:
            f.write(data)
    with open(base + "/manifest.json", "wb") as f:
        f.write(mf)


def node_root(old, path=None):
    """A node's filesystem as the flash tool leaves it: slot a = bundle `old`, boot.json, /data."""
    root = path or "/tmp/denloa-ota-" + "".join("%02x" % b for b in os.urandom(6))
    _mkdirs(root + "/data")
    write_slot(root, "a", old)
    with open(root + "/boot.json", "w") as f:
        f.write(json.dumps({"active": "a"}))
    return root


def rmtree(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        full = path + "/" + name
        if (os.stat(full)[0] & 0o170000) == 0o040000:
            rmtree(full)
        else:
            os.remove(full)
    os.rmdir(path)


def slot_version(root, slot, bundles):
    """The version of `bundles` whose every file the slot holds intact, or None (a mix, or missing)."""
    base = root + "/app/" + slot + "/"
    for b in bundles:
        ok = True
        for path, data in b[2].items():
            if file_sha(base + path) != sha_hex(data):
                ok = False
                break
        if ok:
            return json.loads(b[0])["version"]
    return None


def file_sha(name):
    """SHA-256 of a file read in small pieces (None if missing): the test's heap is the node's."""
    h = hashlib.sha256()
    try:
        with open(name, "rb") as f:
            while True:
                chunk = f.read(256)
                if not chunk:
                    break
                h.update(chunk)
    except OSError:
        return None
    return binascii.hexlify(h.digest()).decode()


class SubFS:
    """The HAL's `fs` (the node's /data) as a view into a root filesystem (a PowerCutFS over
    boot.RootFS), so one power-cut budget covers the node's storage and its slots."""

    def __init__(self, root_fs, sub="data"):
        self._fs = root_fs
        self._sub = sub + "/"

    def open(self, name, mode):
        return self._fs.open(self._sub + name, mode)

    def rename(self, old, new):
        self._fs.rename(self._sub + old, self._sub + new)

    def remove(self, name):
        self._fs.remove(self._sub + name)

    def listdir(self):
        return self._fs.listdir(self._sub[:-1])

    def stat(self, name):
        return self._fs.stat(self._sub + name)


class FakeLink:
    """Stands in for the node's MQTT client: up (or not), as the health check asks."""

    def __init__(self, up=True):
        self.up_now = up

    def is_up(self):
        return self.up_now


def boot_state(root):
    return boot.load(boot.RootFS(root))

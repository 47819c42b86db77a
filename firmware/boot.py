"""The bootstrap: which application slot the node boots, trial boots and rollback (docs/ota.md).

This file is written to the node as /main.py by the flash tool and never replaced
by an update; it is also part of every bundle (firmware/boot.py), where the
application and its OTA code use the same functions to read and write /boot.json.
It imports nothing of the firmware, only json/os/sys. The chip's part (a one-shot timer, a
reset) is given to run() by hardware/boot_esp32.py, which `python -m hardware build` appends to
this file's source to make the bundle's bootstrap.

The node's filesystem, from its root:
  /main.py       this file           /config.json   provisioning     /data   the node's storage
  /app/a, /app/b the application slots: a bundle's files at their paths, `main.py` the entry
  /boot.json     {"active": "a", "previous": "b"|null, "state": ..., "version", "from", "why"}

States of /boot.json, and what the bootstrap does with each at power-on:
  "ok"          boot `active` (the other slot if `active` has no entry file and it has one)
  "trial"       written by OTA after it verified the new slot: boot it once, as "booting"
  "booting"     the trial slot was booted and did not confirm itself before this reset
  "failed"      the trial slot said it failed (crash at import, not confirmed in time)
                -> both: roll back to `previous`, state "rolled_back" (the old firmware reports it)
  "rolled_back" boot `active` (the previous version); its OTA code reports and writes "ok"
The new firmware writes "ok" once it is healthy (booted, connected, ran its control loop).
Every write is a whole new file renamed over the old one: a power cut at any byte leaves
the old or the new /boot.json, each naming a slot whose files were verified.
On the device a one-shot timer armed before the trial slot starts resets the node if the
trial is still "booting" after TRIAL_MS: a firmware that hangs without crashing is rolled
back too (the application's own check does the same; the watchdog catches a hard hang).
"""
import json
import os

BOOT = "boot.json"
TMP = ".tmp"
SLOTS = ("a", "b")
ENTRY = "main.py"
TRIAL_MS = 10 * 60 * 1000  # a trial version must confirm itself within this (N = 10 minutes)
_STATES = ("ok", "trial", "booting", "failed", "rolled_back")


class RootFS:
    """The node's filesystem from `root` ("/" on the device; a directory in the simulator):
    names relative to it ("app/b/firmware/node.mpy"). The calls OTA needs, raising OSError."""

    def __init__(self, root="/"):
        self.root = root if root.endswith("/") else root + "/"

    def path(self, name):
        return self.root + name

    def open(self, name, mode):
        return open(self.root + name, mode)

    def rename(self, old, new):
        os.rename(self.root + old, self.root + new)  # LittleFS and POSIX: replaces `new` atomically

    def remove(self, name):
        os.remove(self.root + name)

    def stat(self, name):
        return os.stat(self.root + name)[6]

    def isdir(self, name):
        try:
            return (os.stat(self.root + name)[0] & 0o170000) == 0o040000
        except OSError:
            return False

    def mkdir(self, name):
        os.mkdir(self.root + name)

    def rmdir(self, name):
        os.rmdir(self.root + name)

    def listdir(self, name=""):
        return os.listdir(self.root + name if name else self.root)

    def ilistdir(self, name=""):
        """The names one at a time (MicroPython's os.ilistdir: no list of a whole slot's names)."""
        path = self.root + name if name else self.root
        if not hasattr(os, "ilistdir"):  # CPython
            return iter(os.listdir(path))
        return (e[0] for e in os.ilistdir(path))


def other(slot):
    return "b" if slot == "a" else "a"


def slot_dir(slot):
    return "app/" + slot


def bootable(fs, slot):
    """The slot holds an entry file (OTA writes it last, after every file was verified)."""
    try:
        fs.stat(slot_dir(slot) + "/" + ENTRY)
        return True
    except OSError:
        return False


def load(fs):
    """The boot state; a missing or unreadable /boot.json reads as slot a, "ok"."""
    try:
        fs.remove(BOOT + TMP)  # a write that never finished
    except OSError:
        pass
    try:
        with fs.open(BOOT, "r") as f:
            st = json.loads(f.read())
        if st.get("active") in SLOTS and st.get("state", "ok") in _STATES:
            st.setdefault("state", "ok")
            return st
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return {"active": "a", "previous": None, "state": "ok"}


def save(fs, st):
    """Write the whole state to a temp file, then rename it over /boot.json (atomic)."""
    data = json.dumps(st)
    with fs.open(BOOT + TMP, "w") as f:
        f.write(data)
    fs.rename(BOOT + TMP, BOOT)


def decide(fs):
    """At power-on: (slot to boot, True if it is a trial boot). Writes the state change first."""
    st = load(fs)
    state = st["state"]
    active = st["active"]
    prev = st.get("previous")
    if state == "trial":
        st["state"] = "booting"
        save(fs, st)
        return active, True
    if state in ("booting", "failed"):
        if prev in SLOTS and bootable(fs, prev):
            why = st.get("why") or "restarted before it confirmed itself (crash, hang or power cut)"
            save(fs, {"active": prev, "previous": active, "state": "rolled_back", "version": st.get("from"),
                      "failed": st.get("version"), "why": why})
            return prev, False
        return active, True  # nothing to go back to: keep trying the only version there is
    if not bootable(fs, active) and bootable(fs, other(active)):
        return other(active), False
    return active, False


def fail_trial(fs, why):
    """The trial version failed (crash at import, no confirmation in time): the next boot rolls back.
    True if the node was in a trial boot."""
    st = load(fs)
    if st["state"] != "booting":
        return False
    st["state"] = "failed"
    st["why"] = why[:100]
    save(fs, st)
    return True


def confirm(fs):
    """The running trial version is healthy: keep it. The previous slot stays as it is."""
    st = load(fs)
    if st["state"] in ("booting", "rolled_back"):
        st["state"] = "ok"
        st.pop("why", None)
        save(fs, st)


def _arm_trial_timer(fs, chip):
    def expire():
        if fail_trial(fs, "not confirmed within %d min" % (TRIAL_MS // 60000)):
            chip.reset()
    return chip.one_shot(TRIAL_MS, expire)


def run(root="/", chip=None):
    """The device's /main.py: boot the chosen slot's entry; a trial that crashes at import is
    marked failed and the node resets (into the previous version). `chip`: one_shot(ms, fn) and
    reset() (hardware/boot_esp32.py); None where there is no chip to reset (tests)."""
    import sys

    fs = RootFS(root)
    try:
        slot, trial = decide(fs)
    except OSError as exc:  # the flash itself fails: try slot a as it is
        print("denloa boot: cannot read/write %s (%s); booting slot a" % (BOOT, exc))
        slot, trial = "a", False
    print("denloa boot: slot %s%s" % (slot, " (trial)" if trial else ""))
    timer = _arm_trial_timer(fs, chip) if trial and chip else None  # noqa: F841  (kept alive while the app runs)
    sys.path.insert(0, fs.path(slot_dir(slot)))
    try:
        __import__(ENTRY[:-3])
    except Exception as exc:  # the slot's code does not even start
        print("denloa boot: slot %s crashed: %r" % (slot, exc))
        if trial and fail_trial(fs, "crashed at boot: %r" % exc) and chip:
            chip.reset()
        raise

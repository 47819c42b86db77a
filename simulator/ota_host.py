"""An OTA node host: one node in one MicroPython process, running the code of its own flash slot.

    micropython simulator/ota_host.py SPEC.json

SPEC: {"speed", "start", "epoch" (as node_host.py: one simulated clock shared by every process and
       every restart of a run), "node": {"root": the node's flash root, "config": NodeConfig dict,
       "board": SoftBoard options}}

The node's flash root is laid out as on the ESP32 (docs/ota.md): /main.py the bootstrap
(firmware/boot.py as flashed), /boot.json, /app/a and /app/b, /data. What this process does is
what the chip does at power-on: it runs the bootstrap from the node's own /main.py (its
`decide` picks the slot and writes the trial state), puts /app/<slot> first on sys.path with
the repository's firmware/ and protocol/ out of it, and imports the node from there. Only the
board (hardware/softboard.py, the simulated chip and its wiring) comes from the repository.
A reboot is the end of this process: it prints `reboot NODE CAUSE T` and exits with status 3;
simulator/hosts.py's OtaNodeHost starts a fresh interpreter on the same flash (RAM lost,
modules reloaded from the slot the bootstrap picks then). A power cut is a SIGKILL from the
parent at any moment. A slot whose code fails to import is a crash at boot: on a trial boot
the bootstrap's fail_trial marks it (the next boot rolls back); either way the watchdog
resets the node (status 3 after WDT_MS of simulated time).

Lines on stdout: `booted NODE SLOT TRIAL VERSION FILE` (FILE: where firmware/node came from),
`crash NODE ERROR`, `reboot NODE CAUSE T`, `ready 1`, `truth ...` as node_host.py.
stdin: `quit` (stop cleanly), `link 1|0`.
"""
import sys

_here = __file__.replace("\\", "/")
_root = _here[:_here.rfind("/simulator/")] if "/simulator/" in _here else "."
if _root not in sys.path:
    sys.path.insert(0, _root)

import asyncio  # noqa: E402
import json  # noqa: E402

from hardware.flashfs import DirFS  # noqa: E402  (the board's storage: the chip, not the firmware)
from hardware.softboard import RealClock, SoftBoard  # noqa: E402

REBOOT_STATUS = 3
WDT_MS = 30000


def _bootstrap(root):
    """The node's own /main.py (the bootstrap), loaded without running it: its functions."""
    ns = {"__name__": "denloa_bootstrap"}
    with open(root + "/main.py") as f:
        exec(f.read(), ns)
    return ns


def _slot_only(slot_path):
    """The slot first; the repository's firmware and protocol are no longer importable."""
    keep = [p for p in sys.path if p not in (_root, "", ".", _root + "/simulator", "simulator")]
    sys.path[:] = [slot_path] + keep
    for name in list(sys.modules):
        if name.split(".")[0] in ("firmware", "protocol"):
            del sys.modules[name]


class Exit(Exception):
    pass


async def main(path):
    with open(path) as f:
        spec = json.load(f)
    node_spec = spec["node"]
    root = node_spec["root"].rstrip("/")
    name = node_spec["config"]["node"]
    clock = RealClock(spec.get("start"), spec.get("speed", 1), spec.get("epoch"))
    options = dict(node_spec.get("board", {}))
    # a chip's random numbers differ at every boot (boot ids!); this process is one boot of the chip
    import os

    options["seed"] = int(options.get("seed", 1)) * 65536 + (os.urandom(2)[0] << 8 | os.urandom(1)[0])

    def truth(t, what, value):
        print("truth", name, "%.3f" % t, what, json.dumps(value))

    board = SoftBoard(clock, DirFS(root + "/data"), truth=truth, **options)
    board.power_on(node_spec.get("cause", "power_on"))
    boot = _bootstrap(root)
    fs = boot["RootFS"](root)
    slot, trial = boot["decide"](fs)
    _slot_only(fs.path(boot["slot_dir"](slot)))
    exit_status = []

    def reboot(cause):
        if not exit_status:
            print("reboot", name, cause, "%.3f" % clock.now())
            exit_status.append(REBOOT_STATUS)

    try:
        from firmware.config import NodeConfig
        from firmware.node import Node
        from firmware.version import VERSION
        import firmware.node as node_module
    except Exception as exc:  # the slot's code does not start: the chip's watchdog resets it
        print("crash", name, repr(exc)[:200])
        if trial:
            boot["fail_trial"](fs, "crashed at boot: %r" % exc)
        await clock.sleep_ms(WDT_MS)
        reboot("watchdog")
        return REBOOT_STATUS
    print("booted", name, slot, int(trial), VERSION, node_module.__file__)
    board.root_fs = fs
    board.micropython_version = tuple(sys.implementation.version[:3])
    board.on_reset = lambda: reboot("soft")
    node = Node(board, NodeConfig(node_spec["config"]))
    task = asyncio.create_task(node.run())
    print("ready 1")

    async def watch_stdin():
        stdin = asyncio.StreamReader(sys.stdin)
        while True:
            line = (await stdin.readline()).decode().strip()
            if not line or line == "quit":
                exit_status.append(0)
                return
            words = line.split()
            if words[0] == "link":
                board.link = words[1:] == ["1"]
    asyncio.create_task(watch_stdin())
    while not exit_status:
        await asyncio.sleep_ms(50)
        if board.wdt_expired() and (task.done() or board.wdt_unfed_ms() / clock.speed > 25000):
            reboot("watchdog")
    if exit_status[0] == 0:
        node.stop()
        await asyncio.sleep_ms(300)
    else:
        node.power_cut()
    return exit_status[0]


status = asyncio.run(main(sys.argv[1]))
sys.exit(status)

"""A node on a pseudo-terminal: what the technician's tools talk to in tests (CPython).

    with PtyNode(tmp_path / "node", board="denloa-v1", faults={"miswired": ["lamp_relay"]}) as node:
        run_tool("bench", "--port", node.port)     # node.port: /dev/pts/N
        assert (node.root / "config.json").exists()

Behind the pty's master side runs the MicroPython unix port with
tests/hardware/pty_repl.py: a REPL with the raw REPL and raw-paste modes that
mpremote speaks (the unix port's own REPL has no raw mode, so the shim
implements it), the node's filesystem root mounted from the real directory
`root`, and a SoftBoard HAL as the REPL's global `hal`. The harness keeps a
slave descriptor open, so tools may connect and disconnect many times; it
never reads after start-up. `lock()` holds the port the way another program
(a second mpremote, a serial monitor) would: an exclusive flock.
"""
import fcntl
import json
import os
import pty
import select
import subprocess
import time
import tty
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MPY = str(REPO / ".venv" / "bin" / "micropython")
SHIM = str(REPO / "tests" / "hardware" / "pty_repl.py")


class PtyNode:
    def __init__(self, root, board="denloa-v1", faults=None, speed=50.0, dark=True, motion=True, rtc_offset=0.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.opts = {"root": str(self.root), "board": board, "faults": faults or {}, "speed": speed,
                     "dark": dark, "motion": motion, "rtc_offset": rtc_offset}
        self.proc = None
        self.master = self.slave = None
        self.port = None
        self._locks = []

    def start(self, timeout=20):
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        env = dict(os.environ, MICROPYPATH=str(REPO))
        self.log = open(self.root.parent / (self.root.name + "-pty.log"), "wb")
        self.proc = subprocess.Popen([MPY, "-X", "heapsize=4M", SHIM, json.dumps(self.opts)],
                                     stdin=self.master, stdout=self.master, stderr=self.log, env=env)
        got = b""
        deadline = time.monotonic() + timeout
        while not got.endswith(b">>> "):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError("pty node did not start: %r (log %s)" % (got, self.log.name))
            if select.select([self.slave], [], [], min(left, 0.5))[0]:
                got += os.read(self.slave, 4096)
        return self

    def lock(self):
        """Hold the port as another program would (exclusive flock, as pyserial's exclusive=True takes)."""
        fd = os.open(self.port, os.O_RDWR | os.O_NOCTTY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._locks.append(fd)
        return fd

    def unlock(self):
        while self._locks:
            os.close(self._locks.pop())

    def install(self, bundle, slot="a"):
        """Put a built bundle on the node's flash as `flash` would (for tests that start after it)."""
        with zipfile.ZipFile(bundle) as z:
            manifest = json.loads(z.read("manifest.json"))
            for f in manifest["files"]:
                boot = f["path"] == manifest["bootstrap"]
                dest = self.root / "main.py" if boot else self.root / "app" / slot / f["path"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(z.read(f["path"]))
        (self.root / "boot.json").write_text(json.dumps({"active": slot}))
        return manifest

    def stop(self):
        self.unlock()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

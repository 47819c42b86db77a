"""A MicroPython node's REPL on a pseudo-terminal, run by the MicroPython unix port (pty_node.py starts it).

    micropython -X heapsize=2M tests/hardware/pty_repl.py '<json options>'

stdin/stdout are the pty's master side; a tool (mpremote, the technician's
commands) opens the slave side (/dev/pts/N) as if it were the ESP32's USB serial port.

Why a shim: the unix port's own REPL has no raw REPL (Ctrl-A), which is what
mpremote speaks (exec, fs cp, ...). This implements the protocol of
MicroPython's shared/runtime/pyexec.c as the ESP32 answers it:
  friendly REPL  ">>> " with echo; Ctrl-A raw REPL, Ctrl-B banner, Ctrl-C
                 discard the line, Ctrl-D soft reboot
  raw REPL       "raw REPL; CTRL-B to exit\\r\\n>"; code until Ctrl-D, then "OK",
                 its output, "\\x04", its exception, "\\x04", ">"; Ctrl-D on an
                 empty line is a soft reboot; Ctrl-B back to friendly
  raw paste      Ctrl-E "A" Ctrl-A: "R\\x01" + window (uint16 LE), "\\x01" per window
                 consumed, the code ends with Ctrl-D, acknowledged with "\\x04"
The node's filesystem root is a real directory (`root`): it is mounted at "/"
(VfsPosix), so /config.json, /app/a/... and imports from sys.path entries land
there, as on the ESP32's LittleFS (one unix-port bug worked around: os.rename of two
absolute paths on such a mount fails, see _OsFix). Behind it a software board: a HAL built on
SoftBoard from the board profile, reachable from the REPL as the global `hal`
(after every soft reboot, as a bootstrap would leave it), with faults from the
options ("faults": SoftBoard attributes, e.g. {"miswired": ["lamp_relay"]}).
"""
import io
import json
import os
import sys

import hardware.boards  # imported before the root is remounted: the node's own copies come from /app/<slot>
from hardware.flashfs import DirFS
from hardware.softboard import RealClock, SoftBoard

BANNER = b"MicroPython v1.24.1 on 2024-11-29; denloa pty node (SoftBoard) with ESP32\r\n" \
         b'Type "help()" for more information.\r\n'
WINDOW = 128  # raw-paste flow-control window
_KEEP = ("hardware", "firmware", "protocol")  # packages dropped from sys.modules at a soft reboot

_in = sys.stdin.buffer
_out = sys.stdout.buffer


def _w(data):
    if isinstance(data, str):
        data = data.encode()
    _out.write(data)
    _out.flush() if hasattr(_out, "flush") else None


def _read1():
    b = _in.read(1)
    if not b:
        raise SystemExit(0)  # the pty went away
    return b[0]


class _Cooked(io.IOBase):
    """stdout for executed code: "\\n" goes out as "\\r\\n", as the ESP32 port's stdout does."""

    def write(self, data):
        if isinstance(data, str):
            data = data.encode()
        _w(bytes(data).replace(b"\n", b"\r\n"))
        return len(data)


_COOKED = _Cooked()


def _print(*args, **kw):
    """The REPL's print: to the pty with "\\r\\n" line ends (sys.stdout cannot be replaced here)."""
    if "file" not in kw:
        kw["file"] = _COOKED
    print(*args, **kw)


class _OsFix:
    """`os` for the node's code: the unix port's VfsPosix rename of two absolute paths on a
    mount with a root renames the second onto itself (one path buffer shared: ENOENT);
    relative to "/" it works. Installed as sys.modules["os"]; everything else is the real os."""

    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, old, new):
        cwd = os.getcwd()
        os.chdir("/")
        try:
            os.rename(_rel(old, cwd), _rel(new, cwd))
        finally:
            os.chdir(cwd)


def _rel(path, cwd):
    if not path.startswith("/"):
        path = cwd.rstrip("/") + "/" + path
    return path.lstrip("/")


def make_board(opts):
    prof = hardware.boards.profile(opts.get("board", "denloa-v1"))
    clock = RealClock(speed=opts.get("speed", 1.0))
    board = SoftBoard(clock, fs=DirFS("/data"), zones=prof["zone_count"], rtc=prof["rtc"],
                      photocell=prof["photocell"] is not None, pir=prof["pir"] is not None,
                      rtc_offset=opts.get("rtc_offset", 0.0))
    board.profile_name = opts.get("board", "denloa-v1")
    for name, value in opts.get("faults", {}).items():
        setattr(board, name, value)
    board.set_dark(opts.get("dark", True))
    if opts.get("motion", True):
        board.trigger_motion()
    board.log = lambda text: print(text)
    return board


class Node:
    def __init__(self, opts):
        self.opts = opts
        self.hal = make_board(opts)
        self.g = None
        self.soft_reset(first=True)

    def soft_reset(self, first=False):
        for name in list(sys.modules):
            if name.split(".")[0] in _KEEP:
                del sys.modules[name]
        sys.path[:] = ["", ".frozen", "/lib"]
        os.chdir("/")
        self.g = {"__name__": "__main__", "hal": self.hal, "print": _print}
        if not first:
            _w(b"MPY: soft reboot\r\n")

    def run(self, code):
        """Execute code; output to the pty; returns the exception (or None)."""
        try:
            exec(code, self.g)
        except SystemExit:
            return None
        except BaseException as exc:  # noqa: the REPL reports whatever the code raised
            return exc
        return None

    # ---- raw REPL -------------------------------------------------------------
    def raw(self):
        _w(b"raw REPL; CTRL-B to exit\r\n")
        while True:
            _w(b">")
            line = bytearray()
            while True:
                c = _read1()
                if c == 0x01:  # Ctrl-A again: start over
                    _w(b"\r\nraw REPL; CTRL-B to exit\r\n>")
                    line = bytearray()
                elif c == 0x02:  # Ctrl-B: back to the friendly REPL
                    _w(b"\r\n")
                    return
                elif c == 0x03:  # Ctrl-C: discard what came
                    line = bytearray()
                elif c == 0x05 and not line:  # Ctrl-E A Ctrl-A: raw paste
                    if _read1() == 0x41 and _read1() == 0x01:
                        _w(b"R\x01" + bytes((WINDOW & 0xFF, WINDOW >> 8)))
                        self.execute(self.paste(), ok=False)
                        break
                elif c == 0x04:
                    if not line:  # Ctrl-D on an empty line: soft reboot
                        self.soft_reset()
                        _w(b"raw REPL; CTRL-B to exit\r\n")
                    else:
                        self.execute(bytes(line), ok=True)
                    break
                else:
                    line.append(c)

    def paste(self):
        data = bytearray()
        used = 0
        while True:
            c = _read1()
            if c == 0x04:
                _w(b"\x04")
                return bytes(data)
            data.append(c)
            used += 1
            if used == WINDOW:
                used = 0
                _w(b"\x01")

    def execute(self, code, ok):
        if ok:
            _w(b"OK")
        exc = self.run(code)
        _w(b"\x04")
        if exc is not None:
            sys.print_exception(exc, _COOKED)
        _w(b"\x04")

    # ---- friendly REPL --------------------------------------------------------
    def friendly(self):
        _w(BANNER)
        while True:
            _w(b">>> ")
            line = bytearray()
            while True:
                c = _read1()
                if c == 0x01:
                    _w(b"\r\n")
                    self.raw()
                    _w(BANNER)
                    line = None
                    break
                if c == 0x02:
                    _w(b"\r\n" + BANNER)
                    line = None
                    break
                if c == 0x03:
                    _w(b"\r\n")
                    line = None
                    break
                if c == 0x04:
                    if not line:
                        _w(b"\r\n")
                        self.soft_reset()
                        _w(BANNER)
                        line = None
                        break
                    continue
                if c in (0x0D, 0x0A):
                    _w(b"\r\n")
                    break
                if c in (0x08, 0x7F):
                    if line:
                        line.pop()
                        _w(b"\x08 \x08")
                    continue
                if c >= 0x20:
                    line.append(c)
                    _w(bytes((c,)))
            if not line:
                continue
            self.interactive(bytes(line).decode())

    def interactive(self, text):
        try:
            code = compile(text, "<stdin>", "single")
        except SyntaxError as exc:
            sys.print_exception(exc, _COOKED)
            return
        exc = self.run(code)
        if exc is not None:
            sys.print_exception(exc, _COOKED)


def main():
    opts = json.loads(sys.argv[1])
    os.umount("/")
    os.mount(os.VfsPosix(opts["root"]), "/")
    sys.modules["os"] = _OsFix()
    node = Node(opts)
    _w(b"ready\r\n")
    node.friendly()


main()

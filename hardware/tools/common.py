"""What the technician's commands share: errors in Vietnamese and English, the serial port, progress.

CPython only (a laptop): this package is never compiled for the node.
"""
import errno
import os
import stat
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class ToolError(Exception):
    """A failure the technician can act on: `vi` and `en` say what and what to do. Exit status 2."""

    def __init__(self, vi, en, status=2):
        super().__init__(en)
        self.vi = vi
        self.en = en
        self.status = status

    def __str__(self):
        return "%s / %s" % (self.vi, self.en)


def say(text=""):
    print(text, flush=True)


def read_version(root=REPO):
    """VERSION from firmware/version.py, read as text (the tools do not import the firmware)."""
    import ast

    tree = ast.parse((Path(root) / "firmware" / "version.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "VERSION" for t in node.targets):
            return ast.literal_eval(node.value)
    raise ToolError("Không đọc được VERSION trong firmware/version.py",
                    "firmware/version.py has no VERSION")


# ---- the serial port ---------------------------------------------------------------------------
def check_port(port):
    """Refuse a port that does not exist, is not a serial device or is used by another program,
    before any tool opens it. Returns the port."""
    if "://" in port:  # a pyserial URL (socket://, rfc2217://): nothing to check locally
        return port
    if os.name == "nt":
        return _check_port_windows(port)
    import fcntl

    try:
        st = os.stat(port)
    except FileNotFoundError:
        raise ToolError(
            "Không có cổng %s: kiểm tra cáp USB đã cắm, và tên cổng (Linux: /dev/ttyUSB0 hoặc /dev/ttyACM0; "
            "Windows: COM3...). Lệnh `python -m serial.tools.list_ports` liệt kê các cổng có" % port,
            "No port %s: check the USB cable is plugged in and the port name (Linux /dev/ttyUSB0 or "
            "/dev/ttyACM0, Windows COM3...); `python -m serial.tools.list_ports` lists the ports there are" % port)
    except OSError as exc:
        raise ToolError("Không đọc được cổng %s: %s" % (port, exc.strerror),
                        "Cannot read port %s: %s" % (port, exc.strerror))
    if not stat.S_ISCHR(st.st_mode):
        raise ToolError("%s không phải là cổng nối tiếp (serial)" % port, "%s is not a serial port" % port)
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        raise ToolError(
            "Không có quyền mở cổng %s: thêm người dùng vào nhóm dialout (`sudo usermod -aG dialout $USER`, "
            "rồi đăng xuất và đăng nhập lại)" % port,
            "No permission to open %s: add yourself to the dialout group (`sudo usermod -aG dialout $USER`, "
            "then log out and in)" % port)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise port_busy(port)
        raise ToolError("Không mở được cổng %s: %s" % (port, exc.strerror),
                        "Cannot open port %s: %s" % (port, exc.strerror))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise port_busy(port)
        raise
    finally:
        os.close(fd)  # closing drops our lock
    return port


def _check_port_windows(port):
    """COM ports: open and close it; Windows says "access denied" when another program has it."""
    import serial

    try:
        serial.Serial(port).close()
    except serial.SerialException as exc:
        text = str(exc)
        if "FileNotFoundError" in text or "cannot find" in text.lower():
            raise ToolError("Không có cổng %s: kiểm tra cáp USB và tên cổng trong Device Manager (COM3...)" % port,
                            "No port %s: check the USB cable and the port name in Device Manager (COM3...)" % port)
        if "PermissionError" in text or "Access is denied" in text:
            raise port_busy(port)
        raise ToolError("Không mở được cổng %s: %s" % (port, text), "Cannot open port %s: %s" % (port, text))
    return port


def port_busy(port):
    return ToolError(
        "Không mở được cổng %s: đang được chương trình khác dùng / port in use (đóng Thonny, Arduino IDE, "
        "screen, một cửa sổ mpremote hay console khác rồi thử lại)" % port,
        "Cannot open port %s: it is in use by another program (close Thonny, the Arduino IDE, screen, "
        "another mpremote or console window, and try again)" % port)


# A firmware interrupted by Ctrl-C leaves the ESP32's hardware watchdog counting (MicroPython
# cannot stop it, and a soft reboot may not either): every session takes it over with a long
# timeout and feeds it (_f()) between steps; the session ends with a soft reboot, where the
# firmware arms its own. Where there is no machine.WDT (the pty node) _f does nothing.
_WATCHDOG = """
try:
    import machine
    _wd = machine.WDT(timeout=120000)
except Exception:
    _wd = None
def _f():
    if _wd is not None:
        _wd.feed()
"""


class Node:
    """The node's REPL over mpremote's serial transport, in raw REPL mode for the whole session.

    reboot() ends the session with a soft reboot: the node's main.py (the firmware) starts."""

    def __init__(self, port):
        self.port = check_port(port)
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.TransportError = TransportError
        try:
            self.t = SerialTransport(port, baudrate=115200)
        except TransportError:
            raise port_busy(port)
        try:
            self.t.enter_raw_repl(soft_reset=True)
        except TransportError as exc:
            self.t.close()
            raise no_repl(port, exc)
        self.exec(_WATCHDOG)

    def exec(self, code, timeout=10, on_output=None):
        """Run code on the node; its printed output (bytes). A node-side exception is a ToolError."""
        from mpremote.transport import TransportError

        try:
            out, err = self.t.exec_raw(code, timeout=timeout, data_consumer=on_output)
        except TransportError as exc:
            raise no_repl(self.port, exc)
        if err:
            raise ToolError("Lỗi trên thiết bị: %s" % err.decode(errors="replace").strip(),
                            "Error on the node: %s" % err.decode(errors="replace").strip())
        return out

    def reboot(self):
        """Leave the raw REPL and soft-reboot: main.py runs, the firmware starts."""
        self.t.exit_raw_repl()
        self.t.serial.write(b"\x04")
        self.t.serial.flush()

    def close(self):
        try:
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
        except Exception:
            pass
        self.t.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def no_repl(port, exc):
    return ToolError(
        "Thiết bị trên cổng %s không trả lời dấu nhắc MicroPython (%s): đã nạp MicroPython chưa (lệnh flash)? "
        "Nhấn nút EN/RST trên mạch rồi thử lại" % (port, exc),
        "The board on %s does not answer MicroPython's REPL (%s): is MicroPython flashed (the flash command)? "
        "Press the board's EN/RST button and try again" % (port, exc))


class Progress:
    """A progress bar (rich when it is there, else a plain line), for counted work."""

    def __init__(self, title, total):
        self.title = title
        self.total = max(1, total)
        self.done = 0
        self._rich = None
        if sys.stdout.isatty():
            try:
                from rich.progress import Progress as RichProgress

                self._rich = RichProgress()
                self._task = self._rich.add_task(title, total=self.total)
                self._rich.start()
            except ImportError:
                self._rich = None
        self._last = -1

    def advance(self, n, label=None):
        self.done += n
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done, description=label or self.title)
            return
        pct = self.done * 100 // self.total
        if pct // 10 != self._last // 10 or self.done >= self.total:
            self._last = pct
            say("  %s %3d%%%s" % (self.title, pct, " " + label if label else ""))

    def close(self):
        if self._rich is not None:
            self._rich.stop()

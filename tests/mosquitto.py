"""A real Mosquitto broker for tests (CPython only).

    from tests.mosquitto import Mosquitto, mosquitto  # noqa: F401  (the fixture)

    def test_x(mosquitto):            # started on a free port, stopped afterwards
        ... mosquitto.host, mosquitto.port ...

    with Mosquitto(tmp_path, passwords={"node": "secret"}, allow_anonymous=False) as broker:
        broker.restart()              # same port; persistence keeps sessions and queued QoS 1

The broker listens on 127.0.0.1 only, logs everything to `<dir>/mosquitto.log`
(`log_text()`), and keeps its persistence file in `<dir>` (saved on `stop()`,
not on `kill()`, as after a power cut). Every wait has a time limit.
"""
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from simulator.hosts import free_port  # noqa: F401  (re-exported for the tests)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MISSING = ("Mosquitto is not installed (looked for `mosquitto` on PATH and /usr/sbin/mosquitto): "
           "apt-get install mosquitto mosquitto-clients, or run `make setup` as root")


def password_line(user, password):
    """A mosquitto_passwd line in the `$6$` format (SHA-512 over password + salt)."""
    salt = os.urandom(12)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "%s:$6$%s$%s" % (user, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


class Mosquitto:
    host = "127.0.0.1"

    def __init__(self, directory, port=None, extra=(), passwords=None, password_file=None, acl=None,
                 allow_anonymous=True, exe=None):
        """`passwords`: {user: password}, hashed here; or `password_file`: its text as is. `acl`: ACL file text."""
        self.dir = str(directory)
        self.port = port or free_port()
        self.exe = exe or MOSQUITTO
        self.proc = None
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        self.log_path = os.path.join(self.dir, "mosquitto.log")
        os.makedirs(self.dir, exist_ok=True)
        lines = [
            "listener %d %s" % (self.port, self.host),
            "allow_anonymous %s" % ("true" if allow_anonymous else "false"),
            "persistence true",
            "persistence_location %s/" % self.dir,
            "log_dest file %s" % self.log_path,
            "log_type all",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to `mosquitto`, who cannot write here
        if passwords:
            password_file = "".join(password_line(u, p) + "\n" for u, p in passwords.items())
        if password_file is not None:
            lines.append("password_file %s" % self._write("passwords", password_file))
        if acl is not None:
            lines.append("acl_file %s" % self._write("acl", acl))
        lines.extend(extra)
        self._write("mosquitto.conf", "\n".join(lines) + "\n")

    def _write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    def start(self, timeout=10.0):
        """Start the broker and return once its port accepts connections."""
        if not os.path.exists(self.exe):
            raise RuntimeError(MISSING)
        if self.running():
            return self
        with open(os.path.join(self.dir, "stderr.log"), "ab") as err:
            self.proc = subprocess.Popen([self.exe, "-c", self.conf], stdout=err, stderr=err,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited with status %s:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError("mosquitto did not accept on port %d within %s s:\n%s"
                                       % (self.port, timeout, self.log_text()))
                time.sleep(0.02)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        """Clean shutdown (SIGTERM): clients see the link drop, persistence is saved."""
        if not self.running():
            return
        self.proc.send_signal(signal.SIGCONT)  # in case pause() stopped it
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        """Crash (SIGKILL): nothing is saved, unread packets are lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def pause(self):
        """Freeze the broker (SIGSTOP): connections stay open, nothing is read or answered."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def restart(self, timeout=10.0):
        self.stop(timeout)
        return self.start(timeout)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=10.0):
        """Wait until the broker's log matches `pattern` (a regex); return the match.

        Mosquitto writes a line after it has acted (a PUBACK is logged after
        the client sent it, which may be after the client already printed the
        message), so a test reads the log by waiting for its line, never by
        reading it once."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log_text())
            if found or time.monotonic() > deadline:
                assert found, "mosquitto log never matched %r within %.0f s:\n%s" % (pattern, timeout, self.log_text()[-3000:])
                return found
            time.sleep(0.05)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@pytest.fixture
def mosquitto(tmp_path):
    """A started Mosquitto on a free port (anonymous access allowed); stopped afterwards."""
    if not os.path.exists(MOSQUITTO):
        pytest.fail(MISSING)
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()

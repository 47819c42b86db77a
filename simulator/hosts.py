"""Start and drive MicroPython node hosts (simulator/node_host.py) from CPython; watch a site's broker."""
import json
import os
import queue
import subprocess
import threading
import time

import paho.mqtt.client as paho

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")


def free_port():
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NodeHost:
    """One node host process; stdout lines are collected, stdin takes commands."""

    def __init__(self, tmp, nodes, speed=1, start=None, heap="2M", epoch=None):
        self.spec_path = os.path.join(str(tmp), "host-%d.json" % id(self))
        with open(self.spec_path, "w") as f:
            # DENLOA_SIM_COUNT_SLEEPS=1 (the benchmarks): the host counts the firmware's sleeps by length
            json.dump({"speed": speed, "start": start, "epoch": epoch, "nodes": nodes,
                       "count_sleeps": bool(os.environ.get("DENLOA_SIM_COUNT_SLEEPS"))}, f)
        self.heap = heap
        self.lines = []
        self.proc = None
        self._ready = threading.Event()

    def start(self, timeout=15.0):
        self._ready.clear()
        self.proc = subprocess.Popen([MICROPYTHON, "-X", "heapsize=" + self.heap, "simulator/node_host.py",
                                      self.spec_path], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if not self._ready.wait(timeout):
            raise AssertionError("node host did not start:\n" + "\n".join(self.lines[-20:]))
        return self

    def _read(self, proc):
        for line in proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if line.startswith("ready"):
                self._ready.set()

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self):
        """SIGKILL: every node on this host loses power at once (RAM lost, flash kept)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)

    def truth(self, node, what):
        """Ground-truth values (t, value) a node's board reported for `what`."""
        out = []
        for line in list(self.lines):
            parts = line.split(" ", 4)
            if len(parts) == 5 and parts[0] == "truth" and parts[1] == node and parts[3] == what:
                out.append((float(parts[2]), json.loads(parts[4])))
        return out

    def all_truth(self, node):
        """Every ground-truth row (t, what, value) of a node, in order."""
        out = []
        for line in list(self.lines):
            parts = line.split(" ", 4)
            if len(parts) == 5 and parts[0] == "truth" and parts[1] == node:
                out.append((float(parts[2]), parts[3], json.loads(parts[4])))
        return out

    def reboots(self, node):
        """[(t, cause)] of each reboot the host did for a node (soft reset, watchdog)."""
        out = []
        for line in list(self.lines):
            parts = line.split()
            if len(parts) == 4 and parts[0] == "reboot" and parts[1] == node:
                out.append((float(parts[3]), parts[2]))
        return out

    def errors(self):
        return [l for l in self.lines if "Traceback" in l or l.startswith("error")]


class Watcher:
    """A paho subscriber on a site: what the gateway would see."""

    def __init__(self, host, port, topic, user=None, password=None):
        self.messages = queue.Queue()
        self.seen = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="watcher-%d" % id(self))
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(host, port, keepalive=30)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("watcher could not subscribe")

    def publish(self, topic, payload, qos=1):
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(10)

    def wait_for(self, predicate, timeout=15.0, what="message"):
        """The first (topic, payload, retain) seen (now or before) that satisfies predicate."""
        for msg in self.seen:
            if predicate(*msg):
                self.seen.remove(msg)
                return msg
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %.0f s; saw %s" % (what, timeout, [m[:2] for m in self.seen][-10:]))
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if predicate(*msg):
                return msg
            self.seen.append(msg)

    def drain(self):
        """Everything received so far, in order (also kept for later wait_for calls)."""
        while True:
            try:
                self.seen.append(self.messages.get_nowait())
            except queue.Empty:
                return list(self.seen)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


# ---- OTA: one node per process, running its own flash slot (simulator/ota_host.py) ----------------
def flash_node(root, files, manifest=None):
    """A node's flash as the flash tool leaves it (docs/ota.md): /main.py the bootstrap
    (firmware/boot.py), the bundle's `files` {path: bytes} in /app/a (with its manifest.json),
    /boot.json {"active": "a"}, an empty /data."""
    root = str(root)
    for path, data in files.items():
        full = os.path.join(root, "app", "a", path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
    if manifest is not None:
        with open(os.path.join(root, "app", "a", "manifest.json"), "wb") as f:
            f.write(manifest)
    with open(os.path.join(ROOT, "firmware", "boot.py"), "rb") as src, open(os.path.join(root, "main.py"), "wb") as f:
        f.write(src.read())
    with open(os.path.join(root, "boot.json"), "w") as f:
        json.dump({"active": "a"}, f)
    os.makedirs(os.path.join(root, "data"), exist_ok=True)


class OtaNodeHost:
    """One node in its own MicroPython process (simulator/ota_host.py), restarted on every reboot
    like a chip: the bootstrap on its flash picks the slot each time. `cut()` is a power cut (SIGKILL,
    no restart until `power_on()`). Lines of every run are kept, in order."""

    def __init__(self, tmp, root, config, board=None, speed=1, start=None, epoch=None, heap="2M"):
        self.spec_path = os.path.join(str(tmp), "ota-host-%s.json" % config["node"])
        self.spec = {"speed": speed, "start": start, "epoch": epoch if epoch is not None else time.time(),
                     "node": {"root": str(root), "config": config, "board": board or {"zones": 2}}}
        self.name = config["node"]
        self.root = str(root)
        self.heap = heap
        self.lines = []
        self.proc = None
        self.powered = False
        self._lock = threading.Lock()

    def _write_spec(self, cause):
        self.spec["node"]["cause"] = cause
        with open(self.spec_path, "w") as f:
            json.dump(self.spec, f)

    def power_on(self, cause="power_on"):
        with self._lock:
            self.powered = True
            self._spawn(cause)
        return self

    start = power_on

    def _spawn(self, cause):
        self._write_spec(cause)
        proc = subprocess.Popen([MICROPYTHON, "-X", "heapsize=" + self.heap, "simulator/ota_host.py", self.spec_path],
                                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        self.proc = proc
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc):
        cause = None
        for line in proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if line.startswith("reboot "):
                cause = line.split()[2]
        code = proc.wait()
        with self._lock:
            if proc is self.proc and self.powered and code == 3:  # the chip reset itself: it starts again
                self._spawn(cause or "soft")

    def cut(self):
        """Mains off at this instant: the process dies wherever it is (a write half done stays so)."""
        with self._lock:
            self.powered = False
            proc = self.proc
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def stop(self):
        with self._lock:
            self.powered = False
            proc = self.proc
        if proc and proc.poll() is None:
            try:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
                proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait(5)

    kill = cut

    def boots(self):
        """[(slot, trial, version, file firmware/node came from)] of every boot, in order."""
        out = []
        for line in list(self.lines):
            parts = line.split()
            if len(parts) == 6 and parts[0] == "booted":
                out.append((parts[2], parts[3] == "1", parts[4], parts[5]))
        return out

    def errors(self):
        return [l for l in self.lines if "Traceback" in l or l.startswith("error")]

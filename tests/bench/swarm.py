"""Many bare paho clients in one process, driven by one selector loop (no thread per client).

    python tests/bench/swarm.py SPEC.json      (CPython; started by tests/bench/scale_bench.py)

SPEC: {"host", "port", "clients": [{"id", "user", "password", "sub": [topic, ...], "pub": topic or null,
       "clean": true}], "connect_per_s": 0 (0: as fast as the broker accepts)}

A separate process, so that its clients never take the GIL from the gateway under test. One command a
line on stdin, one JSON line on stdout per command:

    mark                      forget what was received so far
    wait N TIMEOUT            until N messages arrived since `mark` (or TIMEOUT s): {"count", "first",
                              "last", "lag_p50", "lag_p99"}; times are Unix seconds (time.time()), lags
                              are receive time minus the payload's "ts" (when it has one)
    tele RATE SECONDS [N]     publish telemetry (QoS 0) round robin from the (first N) clients with a
                              "pub" topic, RATE messages a second for SECONDS: {"sent", "seconds"}
    quit

At start it prints {"ready": n, "connect_s": s} once every client is connected and subscribed.
"""
import json
import os
import selectors
import sys
import time

import paho.mqtt.client as paho

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


class Swarm:
    def __init__(self, spec):
        self.spec = spec
        self.sel = selectors.DefaultSelector()
        self.clients = []
        self.subscribed = 0
        self.times = []  # receive time of each message since mark
        self.lags = []

    def _make(self, c):
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=c["id"], clean_session=c.get("clean", True))
        client.username_pw_set(c["user"], c["password"])
        subs = [(t, 1) for t in c.get("sub", [])]

        def on_connect(cl, userdata, flags, rc, props):
            if subs:
                cl.subscribe(subs)
            else:
                self.subscribed += 1

        def on_subscribe(cl, userdata, mid, codes, props):
            self.subscribed += 1

        def on_message(cl, userdata, msg):
            now = time.time()
            self.times.append(now)
            try:
                ts = json.loads(msg.payload).get("ts")
            except (ValueError, AttributeError):
                ts = None
            if isinstance(ts, (int, float)):
                self.lags.append(now - ts)

        client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
        client.pub_topic = c.get("pub")
        return client

    def connect(self):
        per_s = self.spec.get("connect_per_s", 0)
        t0 = time.time()
        for i, c in enumerate(self.spec["clients"]):
            client = self._make(c)
            client.connect(self.spec["host"], self.spec["port"], keepalive=60)
            self.sel.register(client.socket(), selectors.EVENT_READ, client)
            self.clients.append(client)
            self.pump(0)
            if per_s:
                while time.time() < t0 + (i + 1) / per_s:
                    self.pump(0.005)
        deadline = time.time() + 120
        while self.subscribed < len(self.clients) and time.time() < deadline:
            self.pump(0.05)
        return time.time() - t0

    def pump(self, timeout):
        """One turn: read what arrived, write what is queued, keepalives once a second."""
        for key, _ in self.sel.select(timeout):
            key.data.loop_read()
        now = time.time()
        for client in self.clients:
            if client.want_write():
                client.loop_write()
        if now - getattr(self, "_misc", 0) >= 1:
            self._misc = now
            for client in self.clients:
                client.loop_misc()

    def wait(self, n, timeout):
        deadline = time.time() + timeout
        while len(self.times) < n and time.time() < deadline:
            self.pump(0.01)
        lags = sorted(self.lags)
        pick = lambda q: round(lags[min(len(lags) - 1, int(len(lags) * q))], 4) if lags else None
        return {"count": len(self.times), "first": min(self.times, default=None), "last": max(self.times, default=None),
                "lag_p50": pick(0.5), "lag_p99": pick(0.99)}

    def tele(self, rate, seconds, count=None):
        from protocol.messages import Telemetry

        pubs = [c for c in self.clients if c.pub_topic][:count]
        sent = 0
        t0 = time.time()
        while True:
            now = time.time()
            if now - t0 >= seconds:
                break
            due = int((now - t0) * rate)
            while sent < due:
                client = pubs[sent % len(pubs)]
                tele = Telemetry("b1", time.time(), sent, "synced",
                                 lamp={"lvl": 50, "relay": True, "w": 30.0, "wh": 1.0})
                client.publish(client.pub_topic, tele.encode(), qos=0)
                sent += 1
            self.pump(0.0005)
        for _ in range(50):
            self.pump(0.002)
        return {"sent": sent, "seconds": round(time.time() - t0, 3)}


def main(path):
    with open(path) as f:
        spec = json.load(f)
    swarm = Swarm(spec)
    took = swarm.connect()
    print(json.dumps({"ready": swarm.subscribed, "connect_s": round(took, 2)}), flush=True)
    import threading
    import queue

    lines = queue.Queue()

    def read():
        for line in sys.stdin:
            lines.put(line.strip())
        lines.put("quit")

    threading.Thread(target=read, daemon=True).start()
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            swarm.pump(0.01)
            continue
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "mark":
            swarm.times, swarm.lags = [], []
            print(json.dumps({"marked": True}), flush=True)
        elif words[0] == "wait":
            print(json.dumps(swarm.wait(int(words[1]), float(words[2]))), flush=True)
        elif words[0] == "tele":
            count = int(words[3]) if len(words) > 3 else None
            print(json.dumps(swarm.tele(float(words[1]), float(words[2]), count)), flush=True)
    for client in swarm.clients:
        try:
            client.disconnect()
            client.loop_write()
        except Exception:  # noqa: BLE001 - leaving anyway
            pass


if __name__ == "__main__":
    main(sys.argv[1])

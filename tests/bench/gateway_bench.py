"""Gateway benchmarks (CPython): telemetry ingest beside a raw subscriber, and emergency fan-out.

Prints one JSON line of figures (tests/bench/report.py files them):
- ingest: telemetry published at rising rates for a few seconds each on a
  real Mosquitto; the highest rate the gateway sustains with lag (receive
  time - the message's own timestamp) at most 1 s at the 99th percentile,
  beside the rate a raw paho subscriber on the same broker saw in that run;
- fan-out: an emergency to N real firmware nodes (MicroPython hosts), time
  from the API call until every node acked it applied.
"""
import asyncio
import json
import os
import sys
import tempfile
import threading
import time

import paho.mqtt.client as paho

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from protocol.messages import Telemetry  # noqa: E402
from tests.bench.peers import add_peer_users  # noqa: E402
from tests.gateway.harness import GatewayRig  # noqa: E402

RATES = (250, 500, 1000, 2000, 4000)
STEP_S = 3.0
NODES = 100
FANOUT_NODES = int(os.environ.get("DENLOA_BENCH_FANOUT", "100"))


class Raw:
    """A plain paho subscriber: what the broker can deliver, for comparison."""

    def __init__(self, port, password):
        self.lags = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-raw")
        self.client.username_pw_set("bench-raw", password)
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("denloa/+/node/+/tele", qos=0)
        self.client.loop_start()

    def _on(self, client, userdata, msg):
        self.lags.append(time.time() - json.loads(msg.payload)["ts"])

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def _p99(values):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]


def publish_at(port, password, rate, seconds, nodes):
    """Publish telemetry for `nodes` at `rate` msg/s from a thread (the load is not the gateway's loop)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-load-%d" % rate)
    client.username_pw_set("bench-load-%d" % rate, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent = 0
    t0 = time.time()
    while time.time() - t0 < seconds:
        due = int((time.time() - t0) * rate)
        while sent < due:
            node = nodes[sent % len(nodes)]
            tele = Telemetry("b1", time.time(), sent, "synced", lamp={"lvl": 50, "relay": True, "w": 30.0, "wh": 1.0})
            client.publish("denloa/xa-an-binh/node/%s/tele" % node, tele.encode(), qos=0)
            sent += 1
        time.sleep(0.001)
    time.sleep(1.5)
    client.loop_stop()
    client.disconnect()
    return sent


async def ingest_bench(tmp):
    rig = await GatewayRig(tmp / "ingest", broker="mosquitto").start()
    try:
        await rig.api("POST", "/api/zones", json={"id": "thon-1", "name": "Thôn 1"}, expect=201)
        nodes = ["den-%03d" % i for i in range(NODES)]
        for n in nodes:
            await rig.api("POST", "/api/nodes", json={"id": n, "zones": ["thon-1"], "kind": "lamp"}, expect=201)
        gw = rig.gw
        lags = []
        original = gw.ingest.handle

        def timed(topic, payload):
            original(topic, payload)
            if topic.endswith("/tele"):
                lags.append(time.time() - json.loads(payload)["ts"])

        gw.ingest.handle = timed
        password = await add_peer_users(gw, ["bench-raw"] + ["bench-load-%d" % r for r in RATES])
        best = {"gateway_msgs_per_s": 0}
        raw_best = 0
        steps = []
        for rate in RATES:
            lags.clear()
            raw = Raw(gw.broker.port, password)
            await asyncio.sleep(0.3)
            done = threading.Event()
            result = {}

            def load():
                result["sent"] = publish_at(gw.broker.port, password, rate, STEP_S, nodes)
                done.set()

            threading.Thread(target=load, daemon=True).start()
            while not done.is_set():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            raw.close()
            step = {"rate": rate, "sent": result["sent"], "gateway": len(lags), "raw": len(raw.lags),
                    "gateway_p99_lag_s": round(_p99(lags) or 0, 3), "raw_p99_lag_s": round(_p99(raw.lags) or 0, 3)}
            steps.append(step)
            if step["raw"] >= 0.99 * step["sent"] and step["raw_p99_lag_s"] <= 1.0:
                raw_best = round(step["raw"] / STEP_S)
            if step["gateway"] >= 0.99 * step["sent"] and step["gateway_p99_lag_s"] <= 1.0:
                best = {"gateway_msgs_per_s": round(step["gateway"] / STEP_S)}
            else:
                break  # the gateway fell behind: the previous step is its sustained rate
        return dict(best, raw_subscriber_msgs_per_s=raw_best, raw_note="same broker, same run, up to the step "
                    "where the gateway fell behind", ingest_steps=json.dumps(steps))
    finally:
        await rig.stop()


async def fanout_bench(tmp, n):
    rig = await GatewayRig(tmp / "fanout", broker="mosquitto").start()
    try:
        await rig.api("POST", "/api/zones", json={"id": "thon-1", "name": "Thôn 1"}, expect=201)
        specs = [{"id": "loa-%03d" % i, "zones": ["thon-1"], "kind": "speaker"} for i in range(n)]
        bundles = await rig.add_nodes(specs)
        per_host = 30
        for i in range(0, n, per_host):
            rig.start_host(bundles[i:i + per_host], board={"zones": 1})
        await rig.wait_online([s["id"] for s in specs], timeout=120)
        await asyncio.sleep(3)  # let births, time syncs and first programs settle
        t0 = time.monotonic()
        r = await rig.api("POST", "/api/emergency", expect=202,
                          json={"zones": ["thon-1"], "source": "line", "volume": 100, "duration_s": 30})
        batch = r.json()["batch"]
        api_s = time.monotonic() - t0
        while True:
            p = rig.gw.commands.batch_progress(batch)
            if p["applied"] == p["total"] or time.monotonic() - t0 > 30:
                break
            await asyncio.sleep(0.01)
        return {"fanout_nodes": n, "fanout_api_s": round(api_s, 3),
                "fanout_all_acked_s": round(time.monotonic() - t0, 3), "fanout_applied": p["applied"]}
    finally:
        await rig.stop()


async def main():
    with tempfile.TemporaryDirectory() as d:
        import pathlib

        tmp = pathlib.Path(d)
        figures = await ingest_bench(tmp)
        figures.update(await fanout_bench(tmp, FANOUT_NODES))
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())

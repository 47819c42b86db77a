"""Scale benchmarks (issue 9 part 4): the gateway beside raw Mosquitto, 1,000 clients, same run.

Prints one JSON line of figures (tests/bench/report.py files them, each beside its target):

- fan-out: 1,000 bare paho subscribers with the credentials of 1,000 registered loudspeakers (one
  persistent session each, subscribed to its own cmd topic, as the firmware is). The gateway's part:
  POST /api/emergency to all zones -> the last of the 1,000 signed commands delivered by the broker
  (and, from inside the gateway, -> the broker's PUBACK of the last one). Beside it, in the same run
  and on the same broker: one QoS 1 publish to 1,000 bare paho subscribers, until the last one has it.
  Target: the gateway's part at most 3x the raw fan-out. Median of several rounds.
- ingest: telemetry (QoS 0) published by node users (the registered nodes' own credentials) at rising
  rates; the gateway's receive lag (receive time - the message's ts) beside a raw paho subscriber of
  the same topics; the highest rate the gateway sustains (>= 99 % received, p99 lag <= 1 s). Target:
  >= 5,000 msg/s. The gateway's bad-message counter must not move.

The clients run in separate processes (tests/bench/swarm.py), never in the gateway's.
"""
import asyncio
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import paho.mqtt.client as paho

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.bench.peers import add_peer_users  # noqa: E402
from tests.gateway.harness import GatewayRig  # noqa: E402

SITE = "xa-an-binh"
NODES = int(os.environ.get("DENLOA_BENCH_SCALE_NODES", "1000"))
ZONES = 4
ROUNDS = int(os.environ.get("DENLOA_BENCH_SCALE_ROUNDS", "5"))
RATES = [int(x) for x in os.environ.get("DENLOA_BENCH_INGEST_RATES", "500,1000,2000,3000,4000,5000,6000,8000").split(",")]
STEP_S = 5.0
INGEST_PUBLISHERS = 200  # node users publishing telemetry, round robin


def figure(value, target, holds):
    return {"value": value, "target": target, "holds": bool(holds)}


class SwarmProc:
    """tests/bench/swarm.py in its own process."""

    def __init__(self, tmp, name, port, clients):
        path = os.path.join(str(tmp), "swarm-%s.json" % name)
        with open(path, "w") as f:
            json.dump({"host": "127.0.0.1", "port": port, "clients": clients}, f)
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "bench", "swarm.py"), path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    async def reply(self, timeout=180):
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        if not line:
            raise AssertionError("swarm process ended: %s" % self.proc.poll())
        return json.loads(line)

    async def ask(self, words, timeout=180):
        self.proc.stdin.write(words + "\n")
        self.proc.stdin.flush()
        return await self.reply(timeout)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


async def register(rig, n):
    """n loudspeakers in ZONES zones, registered as POST /api/nodes does, with one broker reload."""
    gw = rig.gw
    for z in range(ZONES):
        await rig.api("POST", "/api/zones", json={"id": "thon-%d" % (z + 1), "name": "Thôn %d" % (z + 1)}, expect=201)
    specs = [{"id": "loa-%04d" % i, "zones": ["thon-%d" % (i % ZONES + 1)], "kind": "speaker"} for i in range(n)]
    added = await gw.provisioning.add_nodes(specs, gw.cfg.site, gw.cfg.broker_host, gw.cfg.broker_port, gw.location)
    return [bundle for _node, bundle in added]


def _metric(text, name, label=None):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if label is None or label in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


async def fanout(rig, tmp, bundles, gw_password):
    port = rig.gw.broker.port
    nodes = SwarmProc(tmp, "nodes", port, [
        {"id": "%s.%s" % (SITE, b["node"]), "user": b["node"], "password": b["broker"]["password"],
         "sub": ["denloa/%s/node/%s/cmd" % (SITE, b["node"])], "pub": "denloa/%s/node/%s/tele" % (SITE, b["node"]),
         "clean": False} for b in bundles])
    raw = SwarmProc(tmp, "raw", port, [
        {"id": "raw-%04d" % i, "user": "raw-%04d" % i, "password": gw_password, "sub": ["denloa/%s/bench/fanout" % SITE]}
        for i in range(len(bundles))])
    try:
        up_nodes, up_raw = await nodes.reply(), await raw.reply()
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-fanout-pub")
        pub.username_pw_set("bench-pub", gw_password)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        n = len(bundles)
        raw_s = []
        for _ in range(ROUNDS):
            await raw.ask("mark")
            t0 = time.time()
            pub.publish("denloa/%s/bench/fanout" % SITE, json.dumps({"t0": t0}), qos=1)
            got = await raw.ask("wait %d 30" % n)
            raw_s.append(got["last"] - t0 if got["count"] >= n else float("inf"))
            await asyncio.sleep(0.5)
        pub.loop_stop()
        pub.disconnect()

        handed = []
        publish = getattr(rig.gw.commands, "publish", None)
        if publish is not None:  # the gateway's own view: when the broker acknowledged each command
            async def timed(items, *a, **kw):  # CommandService publishes a fan-out as one batch
                oks = await publish(items, *a, **kw)
                now = time.time()
                handed.extend(now for ok in oks if ok)
                return oks
            rig.gw.commands.publish = timed
        gw_s, gw_handed_s, api_s = [], [], []
        for _ in range(ROUNDS):
            await nodes.ask("mark")
            handed.clear()
            t0 = time.time()
            r = await rig.api("POST", "/api/emergency", expect=202, json={
                "zones": ["thon-%d" % (z + 1) for z in range(ZONES)], "source": "line", "volume": 100,
                "duration_s": 60})
            api_s.append(time.time() - t0)
            got = await nodes.ask("wait %d 30" % n)
            gw_s.append(got["last"] - t0 if got["count"] >= n else float("inf"))
            while len(handed) < n and time.time() - t0 < 30:
                await asyncio.sleep(0.01)
            if handed:
                gw_handed_s.append(max(handed) - t0)
            await asyncio.sleep(1.0)
        if publish is not None:
            rig.gw.commands.publish = publish
        raw_med, gw_med = statistics.median(raw_s), statistics.median(gw_s)
        handed_med = statistics.median(gw_handed_s) if gw_handed_s else float("inf")
        # The measure: the gateway's own part (API call -> the broker acknowledged the last command)
        # beside raw fan-out (one publish -> the last of 1,000 subscribers has it); and, stricter, the
        # gateway's call -> the last node client has its command, beside the same raw figure.
        ratio = handed_med / raw_med if raw_med else float("inf")
        ratio_delivered = gw_med / raw_med if raw_med else float("inf")
        out = {
            "fanout_clients": n,
            "fanout_raw_1000_subscribers_s": round(raw_med, 3),
            "fanout_raw_rounds_s": json.dumps([round(x, 3) for x in raw_s]),
            "fanout_gateway_api_to_last_puback_s": round(handed_med, 3),
            "fanout_gateway_puback_rounds_s": json.dumps([round(x, 3) for x in gw_handed_s]),
            "fanout_gateway_api_to_last_delivered_s": round(gw_med, 3),
            "fanout_gateway_rounds_s": json.dumps([round(x, 3) for x in gw_s]),
            "fanout_gateway_api_call_returns_s": round(statistics.median(api_s), 3),
            "fanout_gateway_vs_raw": figure(round(ratio, 2), "<= 3x (API call -> last PUBACK vs raw fan-out)",
                                            ratio <= 3.0),
            "fanout_gateway_delivered_vs_raw": round(ratio_delivered, 2),
            "fanout_connect_s": json.dumps({"nodes": up_nodes.get("connect_s"), "raw": up_raw.get("connect_s")}),
        }
        return out, nodes
    finally:
        raw.stop()


async def ingest(rig, tmp, nodes, gw_password):
    gw = rig.gw
    lags = []
    original = gw.ingest.handle

    def timed(topic, payload):
        original(topic, payload)
        if topic.endswith("/tele"):
            lags.append(time.time() - json.loads(payload)["ts"])

    gw.ingest.handle = timed
    raw = SwarmProc(tmp, "raw-tele", gw.broker.port, [
        {"id": "raw-tele", "user": "raw-tele", "password": gw_password, "sub": ["denloa/%s/node/+/tele" % SITE]}])
    try:
        await raw.reply()
        bad0 = _metric((await rig.api("GET", "/metrics")).text, "denloa_bad_messages_total")
        steps, best, raw_best, best_step, raw_step = [], 0, 0, None, None
        for rate in RATES:
            lags.clear()
            await raw.ask("mark")
            sent = await nodes.ask("tele %d %s %d" % (rate, STEP_S, INGEST_PUBLISHERS), timeout=STEP_S + 60)
            got = await raw.ask("wait %d 5" % sent["sent"])
            await asyncio.sleep(1.0)  # the gateway's last ones
            p99 = sorted(lags)[int(len(lags) * 0.99)] if lags else None
            step = {"rate": rate, "sent": sent["sent"], "gateway": len(lags),
                    "gateway_p99_lag_s": round(p99, 3) if p99 is not None else None,
                    "raw": got["count"], "raw_p99_lag_s": got["lag_p99"]}
            steps.append(step)
            achieved = sent["sent"] / STEP_S  # the step's rate (its last messages may go out a moment late)
            if step["raw"] >= 0.99 * step["sent"] and (got["lag_p99"] or 0) <= 1.0:
                raw_best = round(achieved)
                raw_step = step
            if step["gateway"] >= 0.99 * step["sent"] and p99 is not None and p99 <= 1.0:
                best = round(achieved)
                best_step = step
            else:
                break  # the gateway fell behind: the previous step is its sustained rate
            await asyncio.sleep(2.0)
        bad = _metric((await rig.api("GET", "/metrics")).text, "denloa_bad_messages_total") - bad0
        return {
            "ingest_gateway_msgs_per_s": figure(best, ">= 5000 msg/s, p99 lag <= 1 s", best >= 5000),
            "ingest_raw_subscriber_msgs_per_s": raw_best,
            "ingest_gateway_vs_raw_rate": figure(
                round(best / raw_best, 2) if raw_best else None,
                ">= 0.9 (the gateway's sustained rate / the raw paho subscriber's, same run and steps; the steps"
                " stop where the gateway falls behind)", bool(raw_best) and best >= 0.9 * raw_best),
            "ingest_gateway_p99_lag_s": figure(
                best_step["gateway_p99_lag_s"] if best_step else None, "<= 1 s at the sustained rate",
                best_step is not None and best_step["gateway_p99_lag_s"] <= 1.0),
            # the raw subscriber's lag at the gateway's sustained rate (else at the raw one's highest step)
            "ingest_raw_p99_lag_s": (best_step or raw_step or {}).get("raw_p99_lag_s"),
            "ingest_publishers": "%d node users (their own credentials), QoS 0" % INGEST_PUBLISHERS,
            "ingest_bad_messages": figure(int(bad), "0", bad == 0),
            "ingest_steps": json.dumps(steps),
        }
    finally:
        gw.ingest.handle = original
        raw.stop()


async def main():
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        rig = await GatewayRig(tmp / "scale", broker="mosquitto", retry_s=3600).start()
        nodes = None
        try:
            bundles = await register(rig, NODES)
            password = await add_peer_users(rig.gw, ["raw-%04d" % i for i in range(len(bundles))]
                                            + ["bench-pub", "raw-tele"])
            figures, nodes = await fanout(rig, tmp, bundles, password)
            # the ingest publishers: the first INGEST_PUBLISHERS of the same node users
            figures.update(await ingest(rig, tmp, nodes, password))
        finally:
            if nodes is not None:
                nodes.stop()
            await rig.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())

"""Simulator density: nodes per MicroPython host process, real time, tick lateness and memory.

K firmware nodes (lamp + loudspeaker) run on one host at 1x against a real
Mosquitto through the real gateway; after a warm-up the host reports how
late its event loop wakes (every node's 1 s tick waits on it) and its heap.
Prints one JSON line (tests/bench/report.py files it).
"""
import asyncio
import json
import os
import pathlib
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.gateway.harness import GatewayRig  # noqa: E402

SIZES = [int(x) for x in os.environ.get("DENLOA_BENCH_DENSITY", "25,50,100,200").split(",")]
WARM_S = 8
MEASURE_S = 20


async def one(tmp, k):
    rig = await GatewayRig(tmp / ("k%d" % k), broker="mosquitto").start()
    try:
        await rig.api("POST", "/api/zones", json={"id": "thon-1", "name": "Thôn 1"}, expect=201)
        specs = [{"id": "n-%03d" % i, "zones": ["thon-1"], "kind": "both"} for i in range(k)]
        bundles = await rig.add_nodes(specs)
        t0 = time.monotonic()
        host = rig.start_host(bundles, board={"zones": 1})
        await rig.wait_online([s["id"] for s in specs], timeout=120)
        up_s = time.monotonic() - t0
        await asyncio.sleep(WARM_S)
        host.send("stats")  # reset window: the warm-up samples are dropped by taking a later report
        await asyncio.sleep(MEASURE_S)
        host.send("stats")
        await asyncio.sleep(0.5)
        stats = [json.loads(l.split(" ", 1)[1]) for l in host.lines if l.startswith("stats ")][-1]
        return {"nodes": k, "all_online_s": round(up_s, 1), "tick_late_p50_ms": stats["p50_ms"],
                "tick_late_p99_ms": stats["p99_ms"], "host_heap_bytes": stats["heap_used"],
                "heap_per_node_bytes": stats["heap_used"] // k}
    finally:
        await rig.stop()


async def main():
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for k in SIZES:
            rows.append(await one(pathlib.Path(d), k))
    ok = [r for r in rows if r["tick_late_p99_ms"] <= 100]
    print(json.dumps({"density_nodes_per_host_p99_under_100ms": max((r["nodes"] for r in ok), default=0),
                      "density_runs": json.dumps(rows)}))


if __name__ == "__main__":
    asyncio.run(main())

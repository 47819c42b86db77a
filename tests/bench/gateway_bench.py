"""Gateway benchmark (CPython): emergency fan-out to real firmware nodes.

Prints one JSON line of figures (tests/bench/report.py files them): an
emergency to N real firmware nodes (MicroPython hosts), time from the API call
until every node acked it applied. Ingest throughput beside a raw subscriber,
and the fan-out beside raw Mosquitto at 1,000 clients, are in scale_bench.py
(its load and peers run in other processes, so they do not share this
process's interpreter lock with the gateway).
"""
import asyncio
import json
import os
import sys
import tempfile
import time


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.gateway.harness import GatewayRig  # noqa: E402

FANOUT_NODES = int(os.environ.get("DENLOA_BENCH_FANOUT", "100"))


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
        figures = await fanout_bench(tmp, FANOUT_NODES)
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())

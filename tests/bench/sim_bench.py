"""Simulator density at 1x: how many firmware nodes one MicroPython host process runs, and how many
the machine runs in total, with every node's control tick at most 100 ms late (p99).

Each size is a commune (tests/bench/simrun.py: day200.toml's site and program, the real gateway and
Mosquitto) run at 1x; after a warm-up, each node's control ticks are timed on the simulated clock
(simulator/node_host.py: the gap between two ticks minus the node's 1 s) and each host's event loop
lateness too. Per host: one host of K nodes (every node lamp + loudspeaker, the heaviest kind).
In total: hosts of 50 (the scenarios' nodes_per_host), day200's mix of kinds. 1,000 nodes at 1x are
also measured by `make bench-scale` (section scale_sim). Prints one JSON line.

    DENLOA_BENCH_DENSITY=50,100 DENLOA_BENCH_DENSITY_TOTAL=200,500 python tests/bench/sim_bench.py
"""
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.bench.simrun import run_commune  # noqa: E402

PER_HOST = [int(x) for x in os.environ.get("DENLOA_BENCH_DENSITY", "50,100").split(",") if x]
TOTAL = [int(x) for x in os.environ.get("DENLOA_BENCH_DENSITY_TOTAL", "200,500").split(",") if x]
WARM_S = 15
MEASURE_S = 25
LIMIT_MS = 100


def figure(value, target, holds):
    return {"value": value, "target": target, "holds": bool(holds)}


def row(r):
    return {k: r[k] for k in ("nodes", "hosts", "tick_p50_sim_ms", "tick_p99_sim_ms", "tick_max_sim_ms",
                              "ticks_per_node_s", "loop_p99_ms", "host_heap_bytes", "cpu_s", "cpu_us_per_node_sim_s",
                              "wall_s")}


def main():
    rows_host, rows_total = [], []
    with tempfile.TemporaryDirectory() as d:
        for k in PER_HOST:
            rows_host.append(row(run_commune(d, k, 1, WARM_S + MEASURE_S, k, WARM_S, kind_mix=False)))
            print("density per host: %s" % json.dumps(rows_host[-1]), flush=True)
        for n in TOTAL:
            rows_total.append(row(run_commune(d, n, 1, WARM_S + MEASURE_S, 50, WARM_S)))
            print("density in total: %s" % json.dumps(rows_total[-1]), flush=True)
    ok_host = [r["nodes"] for r in rows_host if r["tick_p99_sim_ms"] is not None and r["tick_p99_sim_ms"] <= LIMIT_MS]
    ok_total = [r["nodes"] for r in rows_total if r["tick_p99_sim_ms"] is not None and r["tick_p99_sim_ms"] <= LIMIT_MS]
    best_host, best_total = max(ok_host, default=0), max(ok_total, default=0)
    out = {
        "density_nodes_per_host_1x": figure(
            best_host, ">= 50 per host (nodes_per_host) within 100 ms p99 tick lateness at 1x; tried %s"
            % ",".join(str(k) for k in PER_HOST), best_host >= 50),
        "density_nodes_total_1x": figure(
            best_total, ">= 200 in total (hosts of 50) within 100 ms p99 tick lateness at 1x; tried %s (1,000: scale_sim)"
            % ",".join(str(k) for k in TOTAL), best_total >= 200),
        "density_per_host_runs": json.dumps(rows_host),
        "density_total_runs": json.dumps(rows_total),
    }
    for r in rows_host:
        out["density_host_%d_tick_p99_ms" % r["nodes"]] = r["tick_p99_sim_ms"]
        out["density_host_%d_heap_per_node_bytes" % r["nodes"]] = (r["host_heap_bytes"] or 0) // r["nodes"]
    for r in rows_total:
        out["density_total_%d_tick_p99_ms" % r["nodes"]] = r["tick_p99_sim_ms"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()

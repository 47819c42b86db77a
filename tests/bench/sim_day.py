"""24 h of a 200-node commune (tests/bench/day200.toml) through the simulator: its wall time, its
assertions, and how faithfully the nodes ran (every node's control tick timed on the simulated clock
by its host: simulator/node_host.py). A speed only means something if the ticks keep up: at 100x the
hosts of this 2-core machine give each node a tick every few simulated seconds instead of every one
(see tests/bench/sim_speed.py for the speed that keeps them honest). Prints one JSON line.

    DENLOA_BENCH_DAY_SPEED=100 python tests/bench/sim_day.py
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEED = os.environ.get("DENLOA_BENCH_DAY_SPEED")
TARGET_S = 300

t0 = time.monotonic()
out = os.path.join(ROOT, "build", "sim", "day200")
cmd = [sys.executable, "-m", "simulator", "run", "tests/bench/day200.toml", "--report", out]
if SPEED:
    cmd += ["--speed", SPEED]
proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
wall = time.monotonic() - t0
with open(os.path.join(out, "summary.json")) as f:
    summary = json.load(f)
print(proc.stdout[-3000:])
m = summary.get("metrics", {})
nodes = len(summary.get("nodes", [])) or 1
sim_s = (summary.get("end") or 0) - summary["start"] if summary.get("end") else 86400
per_node_s = round(m.get("ticks", 0) / nodes / max(1.0, sim_s), 3) if m.get("ticks") else None
p99 = m.get("tick_late_p99_sim_ms")
honest = p99 is not None and p99 <= 1000
print(json.dumps({
    "day200_wall_s": {"value": round(wall, 1), "target": "<= %d s, ticks honest (p99 tick lateness <= 1 s simulated)"
                      % TARGET_S, "holds": wall <= TARGET_S and honest},
    "day200_speed": summary.get("speed"),
    "day200_tick_late_p99_sim_ms": {"value": p99, "target": "<= 1000 ms simulated (the whole run, boot included)",
                                    "holds": honest},
    "day200_tick_late_max_sim_ms": m.get("tick_late_max_sim_ms"),
    "day200_ticks_per_node_s": {"value": per_node_s, "target": ">= 0.95 (the firmware ticks every simulated second)",
                                "holds": per_node_s is not None and per_node_s >= 0.95},
    "day200_assertions_held": sum(1 for a in summary["assertions"] if a["ok"]),
    "day200_assertions": len(summary["assertions"]), "day200_exit": proc.returncode,
}))

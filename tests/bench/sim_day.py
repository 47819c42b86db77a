"""24 h of a 200-node commune (tests/bench/day200.toml) through the simulator: its wall time and verdict."""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

t0 = time.monotonic()
out = os.path.join(ROOT, "build", "sim", "day200")
proc = subprocess.run([sys.executable, "-m", "simulator", "run", "tests/bench/day200.toml", "--report", out],
                      cwd=ROOT, capture_output=True, text=True)
wall = time.monotonic() - t0
with open(os.path.join(out, "summary.json")) as f:
    summary = json.load(f)
print(proc.stdout[-3000:])
print(json.dumps({"day200_wall_s": round(wall, 1), "day200_speed": summary.get("speed"),
                  "day200_assertions_held": sum(1 for a in summary["assertions"] if a["ok"]),
                  "day200_assertions": len(summary["assertions"]), "day200_exit": proc.returncode}))

"""The CI scenarios, each run exactly as a developer would: python -m simulator run ...

Reports (summary.json, junit.xml, index.html) are kept in build/sim/<scenario>.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = ["bad-hardware", "outage", "smoke", "emergency", "boot-loop", "daily-news", "broadcast-tts",
             "emergency-stream", "tls"]  # long/: make sim only


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(name, figure):
    out = os.path.join(ROOT, "build", "sim", name)
    proc = subprocess.run([sys.executable, "-m", "simulator", "run", os.path.join("tests", "scenarios", name + ".toml"),
                           "--report", out], cwd=ROOT, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert os.path.exists(os.path.join(out, "index.html")), log
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    failed = [a for a in summary["assertions"] if not a["ok"]]
    assert proc.returncode == 0 and not failed, log
    figure("scenario %s: %d assertions held, %s s wall, report build/sim/%s/index.html"
           % (name, len(summary["assertions"]), summary.get("wall_seconds"), name))

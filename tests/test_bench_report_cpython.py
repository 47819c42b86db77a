"""tests/bench/report.py: figures merged into report.json and the Markdown table beside it."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _feed(cwd, section, figures):
    r = subprocess.run([sys.executable, str(REPO / "tests" / "bench" / "report.py"), section], cwd=cwd,
                       input="a line of progress\n" + json.dumps(figures) + "\n", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_sections_merge_and_the_table_says_which_targets_hold(tmp_path):
    out = _feed(tmp_path, "node", {"heap_peak_b": {"value": 48032, "target": "<= 49152 B", "holds": True},
                                   "tick_ms": 1.5})
    assert "a line of progress" in out and "DOES NOT HOLD" not in out
    out = _feed(tmp_path, "ota", {"zone_s": {"value": 325, "target": "<= 300 s", "holds": False}})
    assert "DOES NOT HOLD" in out
    report = json.loads((tmp_path / "build" / "bench" / "report.json").read_text())
    assert set(report) == {"node", "ota"}
    md = (tmp_path / "build" / "bench" / "report.md").read_text()
    assert "| node | heap_peak_b | 48032 | <= 49152 B | yes |" in md
    assert "| node | tick_ms | 1.5 | | |" in md
    assert "| ota | zone_s | 325 | <= 300 s | **no** |" in md
    assert "1 of 2 targets hold." in md


def test_a_benchmark_that_printed_no_figure_fails(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "tests" / "bench" / "report.py"), "x"], cwd=tmp_path,
                       input="Traceback: it broke\n", capture_output=True, text=True)
    assert r.returncode == 1 and "no figures" in r.stderr

"""`make bench`: every benchmark of the project, one after the other, each bounded, into one report.

    python tests/bench/run_all.py [--day] [--only node,sun,...] [--budget-min 28]

(--only: those steps again, their sections replaced in the last build/bench/report.json)

Each step is a process whose JSON lines are its figures (tests/bench/report.py files them under the
step's section); its other lines are shown. A step that fails or runs out of time leaves its figures
missing, and the report says so (never silently absent): build/bench/report.md lists the issue's
figures first, each with its value, target and verdict, or MISSING and why. The whole run is
bounded: no step starts after the budget (default 28 minutes) is spent, and each step's timeout is cut
to what is left. For each step the report also keeps its exit status, wall time, the CPU its processes
used and the CPU the rest of the machine used meanwhile (figures taken on a shared machine are
pessimistic; this says by how much it was shared).

--day adds the 24-hour run (make bench-day, about 15 minutes) after the rest.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.bench import report  # noqa: E402

PY = sys.executable
MPY = os.path.join(ROOT, ".venv", "bin", "micropython")


def _sim(scenario, out, report_script):
    """A scenario run, then its figures from summary.json whatever the run's verdict (exit status kept)."""
    return ["bash", "-c", "%s -m simulator run %s --report %s; rc=$?; %s %s %s/summary.json; exit $rc"
            % (PY, scenario, out, PY, report_script, out)]


# (section, argv, cwd, timeout s, what it measures)
STEPS = [
    ("node", [MPY, "-X", "heapsize=2M", "-m", "tests.bench.node_bench"], "build/mpy", 300,
     "node heap (idle day, playing), tick cost, decode, start error"),
    ("node_memory", [PY, "tests/bench/node_memory.py"], ".", 600,
     "node live heap from the memory tests under the 64 KB budget: a day, clip + download, stream, OTA, with TLS"),
    ("sun", [PY, "tests/bench/sun_bench.py"], ".", 180, "sun times vs astral, double and single precision"),
    ("gateway", [PY, "tests/bench/gateway_bench.py"], ".", 300, "emergency to 100 real firmware nodes"),
    ("scale", [PY, "tests/bench/scale_bench.py"], ".", 600,
     "fan-out to 1,000 beside raw Mosquitto; ingest beside a raw paho subscriber"),
    ("simulator", [PY, "tests/bench/sim_bench.py"], ".", 600, "simulator density at 1x, per host and in total"),
    ("speed", [PY, "tests/bench/sim_speed.py"], ".", 600, "simulated speed of a 200-node commune, tick honesty"),
    ("stream", [PY, "tests/bench/stream_bench.py"], ".", 300, "live stream latency, gateway part"),
    ("ota", [PY, "tests/bench/ota_bench.py"], ".", 600, "OTA of a 50-node zone"),
    ("audio_sim", _sim("tests/bench/audio20.toml", "build/sim/audio-bench", "tests/bench/audio_report.py"), ".",
     400, "broadcast start spread on 20 loudspeakers, glass-to-horn stream latency"),
    ("scale_sim", _sim("tests/bench/scale1000.toml", "build/sim/scale-1000", "tests/bench/scale_report.py"), ".",
     600, "1,000 nodes at 1x: boot storm, emergency, broker restart"),
]
DAY = ("simulator_day", [PY, "tests/bench/sim_day.py"], ".", 3600, "24 h of a 200-node commune (make bench-day)")


def _busy():
    """(busy, total) jiffies of the whole machine (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def run_step(section, argv, cwd, timeout):
    """Run one step; returns (figures, run record)."""
    t0, b0, c0 = time.monotonic(), _busy(), os.times()
    load0 = os.getloadavg()[0]
    proc = subprocess.Popen(argv, cwd=os.path.join(ROOT, cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    figures, tail, timed_out = {}, [], False
    deadline = time.monotonic() + timeout

    import threading

    def read():
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("{"):
                try:
                    figures.update(json.loads(line))
                    continue
                except ValueError:
                    pass
            if line and "pending publish calls" not in line:
                print("  %s| %s" % (section, line[:300]), flush=True)
                tail.append(line)
                del tail[:-20]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        if time.monotonic() > deadline:
            timed_out = True
            try:
                os.killpg(proc.pid, 9)  # the step's own process group: its gateway, broker and hosts
            except OSError:
                pass
            break
        time.sleep(0.5)
    proc.wait()
    reader.join(10)
    wall = time.monotonic() - t0
    c1, b1 = os.times(), _busy()
    ours = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)
    rec = {"exit": proc.returncode, "wall_s": round(wall, 1), "timed_out": timed_out,
           "cpu_s": round(ours, 1), "load_1min_at_start": round(load0, 2)}
    if b0 and b1:
        hz = os.sysconf("SC_CLK_TCK")
        busy_s = (b1[0] - b0[0]) / hz
        rec["machine_busy_cores"] = round(busy_s / max(wall, 1e-6), 2)
        rec["others_busy_cores"] = round(max(0.0, busy_s - ours) / max(wall, 1e-6), 2)
    if timed_out:
        rec["why"] = "timed out after %d s" % timeout
    elif proc.returncode:
        rec["why"] = "exit status %d: %s" % (proc.returncode, (tail[-1] if tail else "")[:200])
    return figures, rec


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--day", action="store_true", help="also the 24-hour run (make bench-day)")
    p.add_argument("--only", default="", help="comma-separated sections to run (others: not run)")
    p.add_argument("--budget-min", type=float, default=float(os.environ.get("DENLOA_BENCH_BUDGET_MIN", "28")))
    args = p.parse_args(argv)
    steps = list(STEPS) + ([DAY] if args.day else [])
    only = [s for s in args.only.split(",") if s]
    out = pathlib.Path(ROOT) / "build" / "bench" / "report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rep = {"_runs": {}}
    if only and out.exists():  # a partial run updates the last report: its other sections stay
        rep = json.loads(out.read_text())
        rep.setdefault("_runs", {})
    start = time.monotonic()
    total_key = "_total_partial" if only else "_total"  # a partial run keeps the whole run's wall time
    budget = args.budget_min * 60
    if args.day:
        budget += DAY[3]
    for section, cmd, cwd, timeout, what in steps:
        if only and section not in only:
            continue
        left = budget - (time.monotonic() - start)
        if left < 30:
            rep["_runs"][section] = {"exit": None, "why": "not run: the bench's %.0f-minute budget was spent"
                                     % args.budget_min}
            continue
        print("== bench %s: %s" % (section, what), flush=True)
        figures, rec = run_step(section, cmd, cwd, min(timeout, left))
        if figures:
            rep[section] = figures
        rep["_runs"][section] = rec
        print("== bench %s: %s in %.0f s (machine busy %.2f cores, others %.2f)%s" % (
            section, "ok" if rec["exit"] == 0 else "FAILED", rec["wall_s"], rec.get("machine_busy_cores", 0),
            rec.get("others_busy_cores", 0), "" if not rec.get("why") else ": " + rec["why"]), flush=True)
        rep["_runs"][total_key] = {"wall_s": round(time.monotonic() - start, 1), "day": args.day,
                                   "steps": ",".join(only) or "all"}
        out.write_text(json.dumps(rep, indent=2, sort_keys=True) + "\n")
        out.with_suffix(".md").write_text(report.markdown(rep))
    rep["_runs"][total_key] = {"wall_s": round(time.monotonic() - start, 1), "day": args.day,
                               "steps": ",".join(only) or "all"}
    if not args.day and not only:
        rep["_runs"].setdefault("simulator_day", {"exit": None, "why": "not run: the 24-hour run is separate"
                                                  " (make bench-day, or make bench BENCH_DAY=1)"})
    out.write_text(json.dumps(rep, indent=2, sort_keys=True) + "\n")
    out.with_suffix(".md").write_text(report.markdown(rep))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

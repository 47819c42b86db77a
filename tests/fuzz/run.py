"""`make fuzz`: 100,000+ cases over the four targets, then a table; exit 1 on any failure.

Counts per target from FUZZ_CASES (total, default 100000) split as node 50 %, ingest 30 %, api 19 %,
audio 1 % (an upload runs ffmpeg: ~5-10 per second); FUZZ_MINUTES bounds the wall time (default 25),
shared out in the same proportions; FUZZ_SEED picks the seed (default: the time). Failures are saved as
JSON under build/fuzz/failures/.
"""
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.fuzz import targets  # noqa: E402
from tests.fuzz.node_fuzz import ROOT as _ROOT  # noqa: E402

SHARES = (("node", 0.50), ("ingest", 0.30), ("api", 0.19), ("audio", 0.01))


def main():
    total = int(os.environ.get("FUZZ_CASES", "100000"))
    minutes = float(os.environ.get("FUZZ_MINUTES", "25"))
    seed = int(os.environ.get("FUZZ_SEED", str(int(time.time()) % 100000)))
    only = [t for t in os.environ.get("FUZZ_TARGETS", "node,ingest,api,audio").split(",") if t]
    failures_dir = os.path.join(_ROOT, "build", "fuzz", "failures")
    print("fuzz: %d cases, seed %d, at most %.0f min; failures go to %s" % (total, seed, minutes, failures_dir))
    rows, failed = [], []
    targets.STOP["on_failure"] = False
    for name, share in SHARES:
        if name not in only:
            continue
        count = max(1, int(total * share))
        deadline = time.monotonic() + minutes * 60 * share if name != "audio" else time.monotonic() + minutes * 60 * 0.05
        t0 = time.monotonic()
        try:
            tally = getattr(targets, "fuzz_" + name)(count, seed=seed, derandomize=False, deadline=deadline)
        except Exception as exc:  # the runner itself failed (failures of cases are counted, not raised)
            print("fuzz %s: FAILED: %s" % (name, str(exc)[:1500]), flush=True)
            failed.append(name)
            continue
        wall = time.monotonic() - t0
        row = tally.row()
        rows.append(row + (wall,))
        print("fuzz %s: %d cases in %.0f s" % (name, tally.cases, wall), flush=True)
        if tally.failures:
            failed.append(name)
    print()
    print("| target | cases | crashes | actuations | 5xx | other failures | cases/s (in target) | wall s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, cases, crashes, act, e5, other, rate, wall in rows:
        print("| %s | %d | %d | %d | %d | %d | %.0f | %.0f |" % (name, cases, crashes, act, e5, other, rate, wall))
    print("| total | %d | | | | | | |" % sum(r[1] for r in rows))
    if failed:
        print("FAILED: %s (cases saved in %s)" % (", ".join(failed), failures_dir))
        return 1
    print("no failures (seed %d)" % seed)
    return 0


sys.exit(main())

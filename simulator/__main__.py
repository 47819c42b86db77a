"""python -m simulator run SCENARIO.toml [--speed X] [--seed N] [--report DIR]

Runs the scenario on the real gateway, broker and firmware, writes
summary.json, junit.xml and index.html into the report directory, prints
the assertions, and exits 0 only if every assertion held.
"""
import argparse
import asyncio
import os
import sys


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a scenario")
    r.add_argument("scenario", help="a scenario TOML file (see simulator/scenario.py)")
    r.add_argument("--speed", type=float, help="simulated seconds per real second (default: the scenario's)")
    r.add_argument("--seed", type=int, help="seed for every random choice (default: the scenario's)")
    r.add_argument("--report", default=None, help="report directory (default build/sim/<scenario>)")
    k = sub.add_parser("soak", help="the seeded soak (simulator/soak.py): faults and staff work, judged on truth")
    k.add_argument("--nodes", type=int, default=200)
    k.add_argument("--hours", type=float, default=48.0)
    k.add_argument("--seed", type=int, default=1)
    k.add_argument("--speed", type=float, default=144.0, help="simulated seconds per real second")
    k.add_argument("--start", default="2026-11-23T12:00", help="site local time the run begins")
    k.add_argument("--min-ratio", type=float, default=0.999, help="share of lamp node-minutes that must be right")
    k.add_argument("--max-gaps", type=int, default=0, help="event gaps the nodes did not report dropping that are tolerated (default 0)")
    k.add_argument("--report", default=None, help="report directory (default build/sim/soak)")
    k.add_argument("--write-scenario", default=None, help="also write the drawn scenario (JSON) here")
    k.add_argument("--dry-run", action="store_true", help="print the drawn scenario and stop")
    k.add_argument("--verbose", action="store_true", help="print every fault and action as it happens")
    args = p.parse_args(argv)
    if args.cmd == "soak":
        from simulator import soak

        return soak.main(args)

    from simulator.report import write_report
    from simulator.runner import Run
    from simulator.scenario import Scenario, ScenarioError

    try:
        scenario = Scenario.load(args.scenario)
    except ScenarioError as exc:
        print("simulator: %s" % exc, file=sys.stderr)
        return 2
    out = args.report or os.path.join("build", "sim", scenario.name)
    print("scenario %s: %s — %d nodes, %.0f s simulated at %gx" % (
        scenario.name, scenario.title, len(scenario.nodes), scenario.duration, args.speed or scenario.speed), flush=True)
    run = Run(scenario, out, speed=args.speed, seed=args.seed, log=lambda t: print(t, flush=True))
    try:
        record = asyncio.run(run.run())
    except KeyboardInterrupt:
        return 130
    paths = write_report(record, out)
    failed = [a for a in record["assertions"] if not a["ok"]]
    for a in record["assertions"]:
        print("  %s %s: %s" % ("PASS" if a["ok"] else "FAIL", a["name"], a["detail"]))
    print("report: %s (%.0f s wall)" % (paths.get("html", out), record["wall_seconds"]))
    return 1 if failed or not record["assertions"] else 0


if __name__ == "__main__":
    sys.exit(main())

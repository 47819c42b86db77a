"""The figures of a scale scenario run (make bench-scale), from its summary.json, one JSON line.

    python tests/bench/scale_report.py build/sim/scale-1000/summary.json | python tests/bench/report.py scale_sim

Each figure beside its target (issue 9, part 4) and whether it holds; the scenario's own assertions
judge the same things (simulator/assertions.py), these are the measured values.
"""
import json
import sys


def figure(value, target, holds):
    return {"value": value, "target": target, "holds": bool(holds)}


def main(path):
    with open(path) as f:
        s = json.load(f)
    m = s.get("metrics", {})
    nodes = len(s.get("nodes", []))
    out = {"scale_nodes": nodes, "scale_wall_s": s.get("wall_seconds"),
           "scale_assertions": "%d passed, %d failed" % (s["counts"]["passed"], s["counts"]["failed"])}
    online = m.get("all_online_wall_s")
    out["scale_all_online_after_run_start_s"] = figure(online, "<= 60 s", online is not None and online <= 60)
    out["scale_hosts_started_after_run_start_s"] = m.get("hosts_started_wall_s")
    for e in s.get("emergencies", [])[:1]:
        out["scale_amplifiers_on_slowest_s"] = figure(e["slowest_s"], "<= 1.0 s after the API call, all on",
                                                      e["on"] == e["speakers"] and e["slowest_s"] <= 1.0)
        out["scale_amplifiers_on_p50_p90_s"] = "%s / %s (%d of %d on)" % (e["p50_s"], e["p90_s"], e["on"], e["speakers"])
    gaps = m.get("event_gaps")
    out["scale_event_gaps"] = figure(gaps, "0", gaps == 0)
    on_end = m.get("nodes_online_at_end")
    out["scale_online_at_end"] = figure(on_end, "all %d" % nodes, on_end == nodes)
    answered = next((a for a in s.get("assertions", []) if "command" in a["name"]), None)
    if answered is not None:
        out["scale_commands_answered"] = figure("%d created, %d applied" % (m.get("commands", 0), m.get("applied", 0)),
                                                "every command answered", answered["ok"])
    reborn = next((a for a in s.get("assertions", []) if "birth" in a["name"]), None)
    restart = next((f for f in s.get("faults", []) if f["kind"] == "broker_restart"), None)
    if reborn is not None and restart is not None:
        first = {}
        for t, node in s.get("births", []):
            if t > restart["t"] and node not in first:
                first[node] = t
        slowest = round(max(first.values()) - restart["t"], 1) if first else None
        out["scale_broker_restart_all_rebirthed_s"] = figure(slowest, "<= 30 s, all %d" % nodes,
                                                             reborn["ok"] and len(first) == nodes)
        # Mosquitto's log counts connections per wall second; the restart's wall time splits boot from restart
        cut = int(restart.get("t_real", 0))
        rates = sorted((int(sec), n) for sec, n in s.get("connects", {}).items())
        out["scale_connects_peak_per_s_boot"] = max((n for sec, n in rates if sec < cut), default=None)
        out["scale_connects_peak_per_s_after_restart"] = max((n for sec, n in rates if sec >= cut), default=None)
        out["scale_connects_per_s"] = json.dumps([n for _, n in rates])
    hosts = m.get("hosts") or []
    if hosts:  # the control ticks of every node on the simulated clock (1x: simulated ms = real ms)
        p99 = m.get("tick_late_p99_sim_ms")
        out["scale_tick_late_p99_ms"] = figure(p99, "<= 100 ms at 1x (%d nodes, %d hosts; boot storm, emergency and"
                                               " broker restart included)" % (nodes, len(hosts)),
                                               p99 is not None and p99 <= 100)
        out["scale_tick_late_max_ms"] = m.get("tick_late_max_sim_ms")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])

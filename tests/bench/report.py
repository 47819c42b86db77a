"""Merge benchmark JSON lines into build/bench/report.json and print the figures.

    some_bench | python tests/bench/report.py SECTION     (make bench-audio, bench-scale, bench-day)

A figure that has a target is {"value": v, "target": "<= 1.0 s", "holds": true}; it is printed beside
its target and whether it holds. build/bench/report.md is rewritten from the whole report.json each
time: first the figures issue 13 asks for (ISSUE), each with its value, target and verdict, or
MISSING and why (the step failed, timed out, was not run); then every section's figures; then each
step's run (exit status, wall time, how busy the machine was). tests/bench/run_all.py (make bench)
runs every step and writes the same files."""
import json
import pathlib
import sys


def main(argv):
    out = pathlib.Path("build/bench/report.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(out.read_text()) if out.exists() else {}
    section = argv[0]
    figures = {}
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("{"):
            figures.update(json.loads(line))
        elif line and "pending publish calls" not in line:
            print(line)
    if not figures:
        print("bench %s: no figures produced" % section, file=sys.stderr)
        return 1
    report[section] = figures
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    for key, value in sorted(figures.items()):
        if isinstance(value, dict) and "target" in value:  # a figure beside its target
            value = "%s   (target %s: %s)" % (value.get("value"), value["target"],
                                          "holds" if value.get("holds") else "DOES NOT HOLD")
        print("%-14s %-34s %s" % (section, key, value))
    return 0


# The figures issue 13 names, in its order: (what, section, figure key). A key missing from report.json
# is listed as MISSING with the reason its step's run left (report.json "_runs").
ISSUE = [
    ("node peak heap, idle (a day, full program, 50-item plan)", "node", "node_heap_peak_idle_bytes"),
    ("node peak heap, playing a clip while downloading the next", "node_memory",
     "node_heap_clip_playing_download_in_flight_bytes"),
    ("  ... the same with the TLS context (production)", "node_memory", "node_heap_tls_clip_playing_download_in_flight_bytes"),
    ("node peak heap, a live stream receiving (TLS context)", "node_memory", "node_heap_tls_stream_receiving_bytes"),
    ("node peak heap, OTA download beside a 50-item plan", "node_memory", "node_heap_ota_download_peak_bytes"),
    ("node tick cost", "node", "node_tick_us"),
    ("sun accuracy (double precision)", "sun", "sun_worst_error_s_double"),
    ("sun accuracy (ESP32 single precision)", "sun", "sun_worst_error_s_single"),
    ("gateway ingest msg/s", "scale", "ingest_gateway_msgs_per_s"),
    ("raw paho subscriber msg/s (same run)", "scale", "ingest_raw_subscriber_msgs_per_s"),
    ("gateway ingest vs raw subscriber", "scale", "ingest_gateway_vs_raw_rate"),
    ("gateway ingest p99 lag", "scale", "ingest_gateway_p99_lag_s"),
    ("raw subscriber p99 lag (same run)", "scale", "ingest_raw_p99_lag_s"),
    ("emergency fan-out to 1,000 nodes (API call -> last PUBACK)", "scale", "fanout_gateway_api_to_last_puback_s"),
    ("raw Mosquitto fan-out to 1,000 subscribers (same run)", "scale", "fanout_raw_1000_subscribers_s"),
    ("fan-out: gateway vs raw Mosquitto", "scale", "fanout_gateway_vs_raw"),
    ("emergency to 1,000 simulated nodes, slowest amplifier", "scale_sim", "scale_amplifiers_on_slowest_s"),
    ("broker restart with 1,000 nodes: all reborn", "scale_sim", "scale_broker_restart_all_rebirthed_s"),
    ("simulator density per host at 1x (p99 tick <= 100 ms)", "simulator", "density_nodes_per_host_1x"),
    ("simulator density in total at 1x (p99 tick <= 100 ms)", "simulator", "density_nodes_total_1x"),
    ("1,000 nodes at 1x: p99 tick lateness", "scale_sim", "scale_tick_late_p99_ms"),
    ("simulated speed: best honest speed, 200 nodes", "speed", "speed_best_honest_x"),
    ("simulated speed: 24 h of 200 nodes at that speed (projected)", "speed", "speed_day200_wall_s_at_best"),
    ("simulated speed: honest speed with the machine to itself (projected)", "speed", "speed_projected_idle_machine_x"),
    ("  ... 24 h of 200 nodes at that speed (projected)", "speed", "speed_projected_idle_day200_wall_s"),
    ("simulated speed: 24 h of 200 nodes, wall time (make bench-day)", "simulator_day", "day200_wall_s"),
    ("  ... its p99 tick lateness", "simulator_day", "day200_tick_late_p99_sim_ms"),
    ("broadcast start spread (20 loudspeakers, 1x)", "audio_sim", "audio_start_spread_max_ms"),
    ("stream latency glass to horn, p50", "audio_sim", "audio_stream_latency_p50_s"),
    ("stream latency glass to horn, max", "audio_sim", "audio_stream_latency_max_s"),
    ("stream latency, gateway part (pipe), p50", "stream", "latency_pipe_p50_s"),
    ("OTA time, a zone of 50 nodes", "ota", "ota_zone_sim_s"),
]


def _why_missing(report, section):
    run = report.get("_runs", {}).get(section)
    if run is None:
        return "its step was not run (no record)"
    if run.get("why"):
        return run["why"]
    if section in report:
        return "its step ran but did not produce this figure"
    return "its step produced no figures (exit status %s)" % run.get("exit")


def _cell(v):
    if isinstance(v, float):
        v = round(v, 3)
    text = json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)
    return text.replace("|", "\\|")


def markdown(report):
    """The whole report as one Markdown table: figure, value, target, verdict."""
    lines = ["# denloa benchmarks", "",
             "Figures of the last `make bench` run (build/bench/report.json); a target's verdict is"
             " judged by the benchmark that measured it.", "",
             "## The figures issue 13 asks for", "",
             "| figure | value | target | holds |", "| --- | --- | --- | --- |"]
    missing = []
    for what, section, key in ISSUE:
        value = report.get(section, {}).get(key)
        if value is None:
            why = _why_missing(report, section)
            missing.append((what, section, key, why))
            lines.append("| %s | **MISSING** | %s | (%s/%s) |" % (what, why.replace("|", "\\|"), section, key))
        elif isinstance(value, dict) and "target" in value:
            lines.append("| %s | %s | %s | %s |" % (what, _cell(value.get("value")), _cell(value["target"]),
                                                    "yes" if value.get("holds") else "**no**"))
        else:
            lines.append("| %s | %s | | |" % (what, _cell(value)))
    lines += ["", "%d of %d of these figures missing." % (len(missing), len(ISSUE)), "",
              "## Every figure", "",
              "| section | figure | value | target | holds |", "| --- | --- | --- | --- | --- |"]
    for section in sorted(k for k in report if not k.startswith("_")):
        for key, value in sorted(report[section].items()):
            if isinstance(value, dict) and "target" in value:
                verdict = "yes" if value.get("holds") else "**no**"
                lines.append("| %s | %s | %s | %s | %s |" % (section, key, _cell(value.get("value")),
                                                             _cell(value["target"]), verdict))
            else:
                lines.append("| %s | %s | %s | | |" % (section, key, _cell(value)))
    held = [v.get("holds") for k, s in report.items() if not k.startswith("_")
            for v in s.values() if isinstance(v, dict) and "target" in v]
    lines += ["", "%d of %d targets hold." % (sum(1 for h in held if h), len(held)), ""]
    runs = report.get("_runs", {})
    if runs:
        lines += ["## The steps", "", "Each step's exit status and wall time; the CPU its processes used; how busy the"
                  " machine was meanwhile (cores; others: the rest of the machine, e.g. other people's tests: figures"
                  " taken on a busy machine are pessimistic).", "",
                  "| step | exit | wall s | CPU s | machine busy | others busy | note |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name in sorted(runs):
            r = runs[name]
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                name, r.get("exit", ""), r.get("wall_s", ""), r.get("cpu_s", ""), r.get("machine_busy_cores", ""),
                r.get("others_busy_cores", ""), _cell(r.get("why", "") or "")))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

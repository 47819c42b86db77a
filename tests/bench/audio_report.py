"""The figures of the audio bench scenario (make bench-audio), from its summary.json, one JSON line.

    python tests/bench/audio_report.py build/sim/audio-bench/summary.json | python tests/bench/report.py audio_sim

Start spread of a TTS notice across 20 loudspeakers at 1x (ground truth: when each board's DAC gave the
first sample), and glass-to-horn latency of a live stream (the source turns loud at a known instant; the
first loud sample at each DAC). The scenario's assertions judge the same things; these are the values.
"""
import json
import sys


def figure(value, target, holds):
    return {"value": value, "target": target, "holds": bool(holds)}


def main(path):
    with open(path) as f:
        s = json.load(f)
    fig = s.get("figures", {})
    spread = fig.get("start_spread_ms")
    out = {
        "audio_nodes": len(s.get("nodes", [])),
        "audio_wall_s": s.get("wall_seconds"),
        "audio_assertions": "%d passed, %d failed" % (s["counts"]["passed"], s["counts"]["failed"]),
        "audio_start_spread_max_ms": figure(spread, "<= 20 ms across the loudspeakers",
                                            spread is not None and spread <= 20),
        "audio_start_p50_deviation_ms": fig.get("start_p50_dev_ms"),
        "audio_start_offset_p50_ms": fig.get("start_offset_p50_ms"),
    }
    p50, worst = fig.get("stream_latency_p50_s"), fig.get("stream_latency_max_s")
    out["audio_stream_latency_p50_s"] = figure(p50, "<= 2 s glass to horn", p50 is not None and p50 <= 2)
    out["audio_stream_latency_max_s"] = figure(worst, "<= 2 s glass to horn", worst is not None and worst <= 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])

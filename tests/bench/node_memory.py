"""The node's live heap figures, from the memory tests themselves under the 64 KB budget of
`make test-mpy` (tests/mpy_run.py --budget): the same runs, the same numbers the tests judge.

Measured in a process of its own per test file, after the runner has set the budget: figures taken
inside a longer benchmark process depend on what that process freed meanwhile (they came out from
17 KB to 42 KB for the same run), so they are not used. Prints one JSON line (section node_memory).

    python tests/bench/node_memory.py          (after make mpy-build)
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPY = os.path.join(ROOT, ".venv", "bin", "micropython")
BUILD = os.path.join(ROOT, "build", "mpy")
LIMIT = 49152  # 48 KB: the node's data target (the brief)
TARGET = "<= 49152 (48 KB of the 64 KB test heap)"

# (test file, [(regex, [figure names in group order])])
TESTS = [
    ("tests/firmware/test_node_memory.py",
     [(r"peak over a simulated day: (\d+) bytes", ["day_50_item_plan"])]),
    ("tests/firmware/test_clips_memory.py",
     [(r"node live heap: (-?\d+) B with the 50-item plan; (-?\d+) B with a clip on air.*?; (-?\d+) B with a live stream",
       ["plan", "clip_playing_download_in_flight", "stream_receiving"]),
      (r"node live heap \(TLS context kept\): (-?\d+) B with the 50-item plan; (-?\d+) B with a clip on air.*?;"
       r" (-?\d+) B with a live stream",
       ["tls_plan", "tls_clip_playing_download_in_flight", "tls_stream_receiving"])]),
    ("tests/firmware/test_ota_memory.py",
     [(r"during an update: (\d+) B with the 50-item plan; peak (\d+) B", ["ota_plan", "ota_download_peak"])]),
]


def main():
    figures = {}
    failed = []
    for path, patterns in TESTS:
        proc = subprocess.run([MPY, "tests/mpy_run.py", "--heap=1M", "--budget=64K", path], cwd=BUILD,
                              capture_output=True, text=True, timeout=600)
        out = proc.stdout + proc.stderr
        if proc.returncode:
            failed.append(path)
            print(out[-2000:])
        for regex, names in patterns:
            found = re.search(regex, out)
            for i, name in enumerate(names):
                if found is None:
                    continue
                value = int(found.group(i + 1))
                figures["node_heap_" + name + "_bytes"] = {
                    "value": value, "target": TARGET + ("; -1: no room for the stream's ring, stream lost"
                                                        if "stream" in name else ""),
                    "holds": 0 <= value <= LIMIT}
    figures["node_memory_tests_failed"] = failed
    print(json.dumps(figures))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

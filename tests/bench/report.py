"""Merge benchmark JSON lines into build/bench/report.json and print the figures.

A figure that has a target is {"value": v, "target": "<= 1.0 s", "holds": true}; it is printed beside
its target and whether it holds."""
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
    for key, value in sorted(figures.items()):
        if isinstance(value, dict) and "target" in value:  # a figure beside its target
            value = "%s   (target %s: %s)" % (value.get("value"), value["target"],
                                          "holds" if value.get("holds") else "DOES NOT HOLD")
        print("%-14s %-34s %s" % (section, key, value))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

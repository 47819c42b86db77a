"""Merge benchmark JSON lines into build/bench/report.json and print the figures.

A figure that has a target is {"value": v, "target": "<= 1.0 s", "holds": true}; it is printed beside
its target and whether it holds. build/bench/report.md is rewritten from the whole report.json each
time: one Markdown table of every section's figures, targets and verdicts."""
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
             "| section | figure | value | target | holds |", "| --- | --- | --- | --- | --- |"]
    for section in sorted(report):
        for key, value in sorted(report[section].items()):
            if isinstance(value, dict) and "target" in value:
                verdict = "yes" if value.get("holds") else "**no**"
                lines.append("| %s | %s | %s | %s | %s |" % (section, key, _cell(value.get("value")),
                                                             _cell(value["target"]), verdict))
            else:
                lines.append("| %s | %s | %s | | |" % (section, key, _cell(value)))
    held = [v.get("holds") for s in report.values() for v in s.values() if isinstance(v, dict) and "target" in v]
    lines += ["", "%d of %d targets hold." % (sum(1 for h in held if h), len(held)), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

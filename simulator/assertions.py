"""Scenario assertions, judged on ground truth (what the boards did) and the gateway's store.

    [[assert]] kind = "lamps_follow_program"   zone?, from?, to?, tolerance_s = 120, except_faulted = true
    [[assert]] kind = "lamp_level"             node | zone, at, level, tolerance = 0
    [[assert]] kind = "amplifiers_on_within"   emergency = 0 (index among emergency actions), seconds = 1.0 (real time)
    [[assert]] kind = "aired"                  zone?, from, to, min_nodes
    [[assert]] kind = "no_command_lost"        grace = "5m" (commands created this close to the end may still be on their way)
    [[assert]] kind = "no_event_gap"
    [[assert]] kind = "recovered_within"       after = "+2h", within = "10m", zone? | nodes?
    [[assert]] kind = "alert"                  alert = "lamp_fault", nodes? | zone?
    [[assert]] kind = "lamps_off_without_clock" nodes  (no RTC after a power cut: safe behaviour = photocell)
"""
import json

from protocol.program import LampProgram, SunSource, default_program
from simulator.scenario import seconds

SAMPLE_S = 60


def state_series(rows, what):
    """[(t, value)] of one kind of truth row."""
    return [(t, v) for t, w, v in rows if w == what]


def value_at(series, t, default=None):
    value = default
    for ts, v in series:
        if ts > t:
            break
        value = v
    return value


def _light(rows, t):
    light = value_at(state_series(rows, "light"), t, [0, 0])
    return light[0] if isinstance(light, list) else light


def _off_windows(record, node_id):
    """(start, end) windows in which a node was powered off or partitioned (its faults)."""
    out = []
    down = None
    for f in record["faults"]:
        if node_id not in f["targets"] and f["targets"]:
            continue
        if f["kind"] == "power_cut":
            down = f["t"]
        elif f["kind"] == "power_on" and down is not None:
            out.append((down, f["t"]))
            down = None
    if down is not None:
        out.append((down, record["end"]))
    return out


def _result(name, ok, detail, t=None):
    return {"name": name, "ok": bool(ok), "detail": detail, "t": t}


def lamps_follow_program(spec, sc, record, db, run):
    program = LampProgram.from_json(dict(sc.program, version=0)) if sc.program else default_program()
    site = sc.site
    sun = SunSource(site["lat"], site["lon"], site["utc_offset"])
    tz_s = int(site["utc_offset"] * 3600)
    t0 = record["start"] + seconds(spec.get("from", 0), "from")
    t1 = record["start"] + seconds(spec["to"], "to") if "to" in spec else record["end"]
    tol = seconds(spec.get("tolerance_s", 120), "tolerance_s")
    faulted = {n["id"] for n in sc.nodes if n["faults"]}
    faulted |= {t for f in record["faults"] for t in f["targets"] if f["kind"] in ("burnt", "stuck", "rtc_dead", "clock_jump")}
    nodes = [n for n in sc.nodes if n["kind"] in ("lamp", "both") and (spec.get("zone") in (None, n["zone"]))
             and not (spec.get("except_faulted", True) and n["id"] in faulted)]
    checked = bad = 0
    worst = None
    for node in nodes:
        rows = record["truth"][node["id"]]
        windows = _off_windows(record, node["id"])
        t = t0 + SAMPLE_S
        while t < t1 - tol:
            near_change = any(abs(program.decide(int(x), tz_s, sun).level - program.decide(int(t), tz_s, sun).level)
                              for x in (t - tol, t + tol))
            if not near_change and not any(a - tol <= t <= b + tol for a, b in windows):
                want = program.decide(int(t), tz_s, sun).level
                got = _light(rows, t)
                checked += 1
                if got != want and not (want == 0 and got == 0):
                    bad += 1
                    if worst is None:
                        worst = "%s at %s: light %s%%, program %s%%" % (node["id"], _hhmm(t, tz_s), got, want)
            t += SAMPLE_S
    detail = "%d nodes, %d samples every %d s checked, %d wrong%s" % (
        len(nodes), checked, SAMPLE_S, bad, "; first: " + worst if worst else "")
    return _result(spec.get("name", "lamps follow the program"), checked > 0 and bad == 0, detail)


def lamp_level(spec, sc, record, db, run):
    t = record["start"] + seconds(spec["at"], "at")
    ids = sc.targets(spec)
    levels = {n: _light(record["truth"][n], t) for n in ids}
    wrong = {n: v for n, v in levels.items() if abs(v - spec["level"]) > spec.get("tolerance", 0)}
    return _result(spec.get("name", "lamp level %s%% at %s" % (spec["level"], spec["at"])), ids and not wrong,
                   "%d nodes; wrong: %s" % (len(ids), wrong or "none"))


def amplifiers_on_within(spec, sc, record, db, run):
    index = spec.get("emergency", 0)
    if index >= len(run.batches):
        return _result("amplifiers on", False, "no emergency action %d ran" % index)
    batch = run.batches[index]
    limit = float(spec.get("seconds", 1.0))
    zones = batch["zones"]
    speakers = [n for n in sc.nodes if n["kind"] in ("speaker", "both") and (zones == "all" or n["zone"] in zones)]
    late, worst = [], 0.0
    for node in speakers:
        on = [t for t, v in state_series(record["truth"][node["id"]], "amp") if v is True and t >= batch["t"] - 1]
        if not on:
            late.append(node["id"])
            continue
        real = (on[0] - batch["t"]) / run.speed
        worst = max(worst, real)
        if real > limit:
            late.append(node["id"])
    return _result(spec.get("name", "every amplifier on within %.1f s of the emergency" % limit),
                   speakers and not late,
                   "%d loudspeakers, slowest %.2f s (real time); late or never: %s" % (
                       len(speakers), worst, late[:10] or "none"))


def aired(spec, sc, record, db, run):
    t0 = record["start"] + seconds(spec["from"], "from")
    t1 = record["start"] + seconds(spec["to"], "to")
    nodes = [n for n in sc.nodes if n["kind"] in ("speaker", "both") and spec.get("zone") in (None, n["zone"])]
    airing = []
    for n in nodes:
        source = state_series(record["truth"][n["id"]], "source")
        # airing at the window's start (it may have begun a moment before), or starting inside it
        if value_at(source, t0) or any(v and t0 <= t <= t1 for t, v in source):
            airing.append(n["id"])
    need = spec.get("min_nodes", len(nodes))
    return _result(spec.get("name", "broadcast aired on %d nodes" % need), len(airing) >= need,
                   "%d of %d loudspeakers aired between +%s and +%s" % (len(airing), len(nodes), spec["from"], spec["to"]))


def no_command_lost(spec, sc, record, db, run):
    grace = seconds(spec.get("grace", "5m"), "grace")
    open_ = [c for c in db["commands"] if c["status"] in ("pending", "sent") and c["created"] < record["end"] - grace]
    done = [c for c in db["commands"] if c["status"] in ("applied", "rejected", "expired", "superseded")]
    return _result(spec.get("name", "no command lost"), not open_,
                   "%d commands: %d answered or expired; unanswered: %s" % (
                       len(db["commands"]), len(done), [(c["id"], c["node_id"], c["op"]) for c in open_][:8] or "none"))


def no_event_gap(spec, sc, record, db, run):
    gaps = db["gaps"]
    return _result(spec.get("name", "no event gap"), not gaps,
                   "gaps: %s" % ([(g["node_id"], g["boot_id"], g["missing"]) for g in gaps][:8] or "none"))


def recovered_within(spec, sc, record, db, run):
    """Each node is online again (as the gateway sees it) within `within` of `after`."""
    after = record["start"] + seconds(spec["after"], "after")
    within = seconds(spec["within"], "within")
    ids = sc.targets(spec)
    late, worst = [], 0.0
    for node_id in ids:
        log = [(t, on) for t, n, on in run.online_log if n == node_id]
        state = value_at(log, after, False)
        back = after if state else next((t for t, on in log if t >= after and on), None)
        if back is None or back - after > within:
            late.append(node_id)
        else:
            worst = max(worst, back - after)
    return _result(spec.get("name", "nodes recovered within %s" % spec["within"]), ids and not late,
                   "%d nodes online again after +%s, slowest %.0f s (simulated); late: %s"
                   % (len(ids), spec["after"], worst, late[:10] or "none"))


def alert(spec, sc, record, db, run):
    ids = set(sc.targets(spec)) if ("nodes" in spec or "zone" in spec) else None
    found = {a["node_id"] for a in db["alerts"] if a["kind"] == spec["alert"]}
    missing = sorted(ids - found) if ids is not None else ([] if found else ["(any)"])
    return _result(spec.get("name", "alert %s raised" % spec["alert"]), not missing,
                   "raised for %s; missing: %s" % (sorted(found)[:10] or "nobody", missing or "none"))


def lamps_off_without_clock(spec, sc, record, db, run):
    """After a power cut with a dead RTC battery the node has no time: it must follow the photocell."""
    ids = sc.targets(spec)
    bad = []
    for node_id in ids:
        invalid = [e for e in db["events"] if e["node_id"] == node_id and e["kind"] == "boot"
                   and json.loads(e["data"]).get("clock") == "invalid"]
        if not invalid:
            bad.append(node_id + " (booted with a clock)")
    return _result(spec.get("name", "no-clock nodes boot on the photocell"), ids and not bad,
                   "%d nodes; problems: %s" % (len(ids), bad or "none"))


KINDS = {f.__name__: f for f in (lamps_follow_program, lamp_level, amplifiers_on_within, aired, no_command_lost,
                                  no_event_gap, recovered_within, alert, lamps_off_without_clock)}


def evaluate(sc, record, db, run):
    out = []
    for spec in sc.assertions:
        fn = KINDS.get(spec.get("kind"))
        if fn is None:
            out.append(_result(spec.get("kind", "?"), False, "unknown assertion kind"))
            continue
        try:
            out.append(fn(spec, sc, record, db, run))
        except (KeyError, ValueError, IndexError) as exc:
            out.append(_result(spec.get("name", spec["kind"]), False, "could not evaluate: %r" % exc))
    return out


def _hhmm(t, tz_s):
    import time

    return time.strftime("%d/%m %H:%M", time.gmtime(t + tz_s))

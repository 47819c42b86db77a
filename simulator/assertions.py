"""Scenario assertions, judged on ground truth (what the boards did) and the gateway's store.

    [[assert]] kind = "lamps_follow_program"   zone?, from?, to?, tolerance_s = 120, except_faulted = true,
                                               jump_window_s = 900 (clock_jump nodes are judged too, except
                                               this long after each jump: the gateway's correction)
    [[assert]] kind = "lamp_level"             node | zone, at, level, tolerance = 0
    [[assert]] kind = "amplifiers_on_within"   emergency = 0 (index among emergency actions), seconds = 1.0 (real time)
    [[assert]] kind = "aired"                  zone?, from, to, min_nodes
    [[assert]] kind = "no_command_lost"        grace = "5m" (commands created this close to the end may still be on
                                               their way); a command that expired unanswered although its node
                                               was reachable during its life (reachable_s = 60 simulated seconds,
                                               and reachable_real_s real seconds if given) is lost
    [[assert]] kind = "no_event_gap"
    [[assert]] kind = "recovered_within"       after = "+2h", within = "10m", zone? | nodes?
    [[assert]] kind = "alert"                  alert = "lamp_fault", nodes? | zone?
    [[assert]] kind = "lamps_off_without_clock" nodes, tolerance_s = 5  (whenever the board's RTC is invalid the
                                               light follows the photocell: 0 when light, on when dark)
    [[assert]] kind = "safe_mode"              nodes? | zone?  (the gateway got safe_mode then safe_mode_ended,
                                               and the board really rebooted at least 3 times)
    [[assert]] kind = "airings"                zone?, per_day = 1  (the gateway's airings: per_day per local day,
                                               each "ended", and the monthly report counts exactly those)
    [[assert]] kind = "never_offline"          nodes? | zone?, from?  (the gateway never showed them offline)
    [[assert]] kind = "all_online"             nodes? | zone?, wall_s? (the gateway shows every one online at the
                                               end; with wall_s, it saw all of them online at once within wall_s
                                               real seconds of the run's start, setup and host start-up included)
    [[assert]] kind = "soak_commands" | "soak_broadcasts" | "soak_report" | "soak_event_gaps" | "soak_lamps" (min_ratio = 0.999,
                                               tolerance_s = 120, jump_window_s = 900): the soak's judgement,
                                               see simulator/soak.py
    [[assert]] kind = "rebirthed_within"       after = "+70s", within = "30s", nodes? | zone?  (the gateway handled a
                                               birth of each node in (after, after + within]: after a broker
                                               restart, the node is back and said so)
"""
import hashlib
import json
import os

from gateway.registry import has_lamp, has_speaker
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
    jump_window = seconds(spec.get("jump_window_s", 900), "jump_window_s")
    faulted = {n["id"] for n in sc.nodes if {k for k in n["faults"] if k != "clock_jump"}}
    faulted |= {t for f in record["faults"] for t in f["targets"] if f["kind"] in ("burnt", "stuck", "rtc_dead")}
    nodes = [n for n in sc.nodes if has_lamp(n) and (spec.get("zone") in (None, n["zone"]))
             and not (spec.get("except_faulted", True) and n["id"] in faulted)]
    checked = bad = 0
    worst = None
    for node in nodes:
        rows = record["truth"][node["id"]]
        windows = _off_windows(record, node["id"])
        windows += [(f["t"], f["t"] + jump_window) for f in record["faults"]  # the gateway corrects a jump
                    if f["kind"] == "clock_jump" and (node["id"] in f["targets"] or not f["targets"])]
        if "clock_jump" in node["faults"]:
            windows.append((record["start"], record["start"] + jump_window))
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
    speakers = [n for n in sc.nodes if has_speaker(n) and (zones == "all" or n["zone"] in zones)]
    late, worst, delays, by_node = [], 0.0, [], {}
    for node in speakers:
        on = [t for t, v in state_series(record["truth"][node["id"]], "amp") if v is True and t >= batch["t"] - 1]
        if not on:
            late.append(node["id"])
            continue
        real = (on[0] - batch["t"]) / run.speed
        delays.append(real)
        by_node[node["id"]] = round(real, 3)
        worst = max(worst, real)
        if real > limit:
            late.append(node["id"])
    delays.sort()
    pick = lambda q: delays[min(len(delays) - 1, int(len(delays) * q))] if delays else float("nan")
    record.setdefault("emergencies", []).append({"index": index, "speakers": len(speakers), "on": len(delays),
                                                  "p50_s": round(pick(0.5), 3), "p90_s": round(pick(0.9), 3),
                                                  "slowest_s": round(worst, 3), "by_node": by_node})
    return _result(spec.get("name", "every amplifier on within %.1f s of the emergency" % limit),
                   speakers and not late,
                   "%d loudspeakers, slowest %.2f s (real time; p50 %.2f, p90 %.2f); late or never: %s" % (
                       len(speakers), worst, pick(0.5), pick(0.9), late[:10] or "none"))


def aired(spec, sc, record, db, run):
    t0 = record["start"] + seconds(spec["from"], "from")
    t1 = record["start"] + seconds(spec["to"], "to")
    nodes = [n for n in sc.nodes if has_speaker(n) and spec.get("zone") in (None, n["zone"])]
    airing = []
    for n in nodes:
        source = state_series(record["truth"][n["id"]], "source")
        # airing at the window's start (it may have begun a moment before), or starting inside it
        if value_at(source, t0) or any(v and t0 <= t <= t1 for t, v in source):
            airing.append(n["id"])
    need = spec.get("min_nodes", len(nodes))
    return _result(spec.get("name", "broadcast aired on %d nodes" % need), len(airing) >= need,
                   "%d of %d loudspeakers aired between +%s and +%s" % (len(airing), len(nodes), spec["from"], spec["to"]))


def _unreachable_windows(record, node_id):
    """Power cuts of the node and partitions of its zone (or of every zone)."""
    out = list(_off_windows(record, node_id))
    zone = next((n["zones"][0] for n in record["nodes"] if n["id"] == node_id), None)
    cut = None
    for f in record["faults"]:
        f_zone = f["detail"][5:] if f["detail"].startswith("zone ") else None
        if f["kind"] == "partition" and f_zone in ("all", zone):
            cut = f["t"] if cut is None else cut
        elif f["kind"] == "heal" and cut is not None and f_zone in (None, "all", zone):  # None: an older record
            out.append((cut, f["t"]))
            cut = None
    if cut is not None:
        out.append((cut, record["end"]))
    return out


def _reachable_during(run, record, node_id, t0, t1):
    """Seconds within [t0, t1] in which the gateway saw the node online outside its power cut and partition windows."""
    by_node = getattr(run, "_online_by_node", None)
    if by_node is None or by_node[0] != len(run.online_log):  # indexed once: thousands of commands ask
        index = {}
        for t, n, on in run.online_log:
            index.setdefault(n, []).append((t, on))
        by_node = run._online_by_node = (len(run.online_log), {n: sorted(v) for n, v in index.items()})
    log = by_node[1].get(node_id, [])
    spans, since = [], None
    for t, on in log:
        if on and since is None:
            since = t
        elif not on and since is not None:
            spans.append((since, t))
            since = None
    if since is not None:
        spans.append((since, record["end"]))
    cache = getattr(run, "_unreachable_cache", None)
    if cache is None:
        cache = run._unreachable_cache = {}
    if node_id not in cache:
        cache[node_id] = _unreachable_windows(record, node_id)
    blocked = cache[node_id]
    total = 0.0
    for a, b in spans:
        a, b = max(a, t0), min(b, t1)
        if b <= a:
            continue
        cuts = sorted((max(a, x), min(b, y)) for x, y in blocked if y > a and x < b)
        free, at = 0.0, a
        for x, y in cuts:
            if x > at:
                free += x - at
            at = max(at, y)
        free += max(0.0, b - at)
        total += free
    return total


def no_command_lost(spec, sc, record, db, run):
    # the gateway's housekeeping wakes about once a second of real time: at high speed that is minutes simulated
    grace = max(seconds(spec.get("grace", "5m"), "grace"), 5.0 * run.speed)
    reach_s = float(spec.get("reachable_s", 60))  # online this long during its life: it could have been delivered
    # at high speed 60 simulated seconds are a fraction of a real second: reachable_real_s asks for that much
    # real time too (the gateway retries every max(30, speed) simulated seconds, about one real second)
    reach_s = max(reach_s, float(spec.get("reachable_real_s", 0)) * run.speed)
    end = record["end"]
    unanswered = [c for c in db["commands"] if c["status"] in ("pending", "sent")]
    # still open and live at the end, long after it was made: lost; open but past its expiry: judged as expired
    open_ = [c for c in unanswered if c["created"] < end - grace and (c.get("expires") or end + 1) > end]
    expired = [c for c in db["commands"] if c["status"] == "expired"] + [
        c for c in unanswered if (c.get("expires") or end + 1) <= end]
    lost_expired = [c for c in expired if _reachable_during(
        run, record, c["node_id"], c["created"], c.get("expires") or record["end"]) >= reach_s]
    done = [c for c in db["commands"] if c["status"] in ("applied", "rejected", "superseded")]
    lost = open_ + lost_expired
    _figures(run)["commands_lost"] = len(lost)
    return _result(spec.get("name", "no command lost"), not lost,
                   "%d commands: %d answered, %d expired (%d of them while the node was reachable); "
                   "unanswered: %s" % (len(db["commands"]), len(done), len(expired), len(lost_expired),
                                       [(c["id"], c["node_id"], c["op"], c["status"]) for c in lost][:8] or "none"))


def no_event_gap(spec, sc, record, db, run):
    gaps = db["gaps"]
    _figures(run)["event_gaps"] = len(gaps)
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


def _dark_series(sc, record, node_id):
    """[(t, dark)] as the scenario set the node's photocell (False until told otherwise)."""
    node = next(n for n in sc.nodes if n["id"] == node_id)
    out = [(record["start"], bool(node["faults"].get("dark", False)))]
    for f in record["faults"]:
        if f["kind"] == "dark" and (node_id in f["targets"] or not f["targets"]):
            out.append((f["t"], f["detail"] not in ("False", "false", "0")))
    return out


def lamps_off_without_clock(spec, sc, record, db, run):
    """Whenever the board's RTC is invalid (after the first power-on) the light follows the photocell."""
    ids = sc.targets(spec)
    tol = seconds(spec.get("tolerance_s", 5), "tolerance_s")
    step = 5.0
    bad, checked, windows_seen = [], 0, 0
    for node_id in ids:
        rows = record["truth"][node_id]
        rtc = state_series(rows, "rtc")
        power = state_series(rows, "power")
        dark = _dark_series(sc, record, node_id)
        changes = sorted([t for t, _ in rtc] + [t for t, _ in power] + [t for t, _ in dark])
        windows, since = [], None
        for t, valid in rtc:
            if not valid and since is None:
                since = t
            elif valid and since is not None:
                windows.append((since, t))
                since = None
        if since is not None:
            windows.append((since, record["end"]))
        windows_seen += len(windows)
        first = None
        for a, b in windows:
            t = a + tol
            while t < b:
                if value_at(power, t, False) and not any(0 <= t - c < tol for c in changes):
                    want_on = value_at(dark, t, False)
                    got = _light(rows, t)
                    checked += 1
                    if bool(got) != want_on and first is None:
                        first = "%s at %s: no clock, %s, light %s%%" % (
                            node_id, _hhmm(t, int(sc.site["utc_offset"] * 3600)), "dark" if want_on else "daylight", got)
                t += step
        if first:
            bad.append(first)
        elif not windows:
            bad.append(node_id + " (its clock was never invalid)")
    return _result(spec.get("name", "without a clock the lamps follow the photocell"), ids and not bad,
                   "%d nodes, %d windows without a clock, %d samples; problems: %s" % (
                       len(ids), windows_seen, checked, bad[:5] or "none"))


def _ids(spec, sc):
    return sc.targets(spec) if ("nodes" in spec or "zone" in spec) else [n["id"] for n in sc.nodes]


def safe_mode(spec, sc, record, db, run):
    """The gateway heard safe_mode and then safe_mode_ended; the board really rebooted at least 3 times."""
    ids = _ids(spec, sc)
    need = int(spec.get("reboots", 3))
    bad = []
    for node_id in ids:
        events = sorted((e["received"], e["kind"]) for e in db["events"] if e["node_id"] == node_id)
        entered = next((t for t, k in events if k == "safe_mode"), None)
        ended = next((t for t, k in events if k == "safe_mode_ended" and entered is not None and t >= entered), None)
        reboots = len(record.get("reboots", {}).get(node_id, []))
        power_ons = sum(1 for _, v in state_series(record["truth"][node_id], "power") if v) - 1
        n = max(reboots, power_ons)
        if entered is None:
            bad.append(node_id + ": no safe_mode event")
        elif ended is None:
            bad.append(node_id + ": safe_mode never ended")
        if n < need:
            bad.append("%s: %d reboots" % (node_id, n))
    return _result(spec.get("name", "safe mode entered and left"), ids and not bad,
                   "%d nodes; problems: %s" % (len(ids), bad[:6] or "none"))


def airings(spec, sc, record, db, run):
    import time

    per_day = int(spec.get("per_day", 1))
    tz_s = int(sc.site["utc_offset"] * 3600)
    day = lambda t: time.strftime("%Y-%m-%d", time.gmtime(t + tz_s))
    speakers = [n["id"] for n in sc.nodes if has_speaker(n) and spec.get("zone") in (None, n["zone"])]
    days = []
    t = record["start"]
    last = min(record["end"], sc.start + sc.duration) - 1  # the run ends a moment after its duration
    while day(t) <= day(last):
        if day(t) not in days:
            days.append(day(t))
        t += 3600
    rows = [a for a in db["airings"] if a["node_id"] in speakers]
    bad = []
    for node_id in speakers:
        for d in days:
            n = sum(1 for a in rows if a["node_id"] == node_id and day(a["started"]) == d)
            if n != per_day:
                bad.append("%s on %s: %d airings" % (node_id, d, n))
    not_ended = [(a["node_id"], a["item_id"], a["outcome"]) for a in rows if a["outcome"] != "ended"]
    if not_ended:
        bad.append("not ended: %s" % not_ended[:6])
    for month, rep in sorted(db.get("reports", {}).items()):
        if "error" in rep:
            bad.append("report %s: %s" % (month, rep["error"]))
            continue
        mine = [a for a in db["airings"] if time.strftime("%Y-%m", time.gmtime(a["started"] + tz_s)) == month]
        items = len({a["item_id"] for a in mine})
        minutes = sum(a["samples"] / 16000.0 if a.get("samples") is not None else a["secs"]
                      for a in mine if a["outcome"] != "missed") / 60.0
        # the report rounds to 0.1 minute: judged against the exact sum, not a second rounding of it
        if rep["broadcasts"] != items or abs(rep["speaker_minutes"] - minutes) > 0.05 + 1e-9:
            bad.append("report %s: %s broadcasts, %s speaker-minutes; airings: %d, %s" % (
                month, rep["broadcasts"], rep["speaker_minutes"], items, round(minutes, 3)))
    return _result(spec.get("name", "%d airing(s) a day on every loudspeaker" % per_day), speakers and not bad,
                   "%d loudspeakers, %d days, %d airings; problems: %s" % (
                       len(speakers), len(days), len(rows), bad[:6] or "none"))


def never_offline(spec, sc, record, db, run):
    ids = _ids(spec, sc)
    t0 = record["start"] + seconds(spec.get("from", "10m"), "from")  # the first connection takes a moment
    bad = []
    for node_id in ids:
        log = [(t, on) for t, n, on in run.online_log if n == node_id]
        if not value_at(log, t0, False):
            bad.append("%s not online at +%s" % (node_id, spec.get("from", "10m")))
        offs = [t for t, on in log if not on and t > t0]
        if offs:
            bad.append("%s offline at %s" % (node_id, _hhmm(offs[0], int(sc.site["utc_offset"] * 3600))))
    return _result(spec.get("name", "the gateway never showed a node offline"), ids and not bad,
                   "%d nodes; problems: %s" % (len(ids), bad[:6] or "none"))


def all_online(spec, sc, record, db, run):
    ids = _ids(spec, sc)
    off = [n for n in ids if not db["online"].get(n)]
    limit = spec.get("wall_s")
    took = getattr(run, "all_online_wall_s", None)
    late = limit is not None and (took is None or took > float(limit))
    name = spec.get("name", "every node online" + (" within %s s of the run's start" % limit if limit else ""))
    return _result(name, ids and not off and not late,
                   "%d nodes; %d online at the end; all online %s after the run began; offline: %s" % (
                       len(ids), len(ids) - len(off), "%.1f s" % took if took is not None else "never",
                       off[:10] or "none"))


def rebirthed_within(spec, sc, record, db, run):
    after = record["start"] + seconds(spec["after"], "after")
    within = seconds(spec["within"], "within")
    ids = _ids(spec, sc)
    first = {}
    for t, node_id in record.get("births", []):
        if after < t and node_id not in first:
            first[node_id] = t
    late = [n for n in ids if n not in first or first[n] - after > within]
    worst = max((first[n] - after for n in ids if n in first), default=0.0)
    return _result(spec.get("name", "every node back with a birth within %s" % spec["within"]), ids and not late,
                   "%d nodes, births after +%s: %d, slowest %.1f s (simulated); late or never: %s" % (
                       len(ids), spec["after"], len(first), worst, late[:10] or "none"))


# ---- audio: judged on the PCM each board's I2S really received ---------------------------------------------
def pcm_sessions(rows, t0=None, t1=None):
    """The board's I2S sessions ({start, end, samples, sha256, ...}) that started within [t0, t1]."""
    out = []
    for t, what, value in rows:
        if what == "pcm" and isinstance(value, dict):
            start = value.get("start")
            if start is None or (t0 is not None and start < t0) or (t1 is not None and start > t1):
                continue
            out.append(value)
    return out


def _clip_pcm(run, name):
    """(clip row, decoded samples) of a clip the scenario made, read from the gateway's library file."""
    from protocol import ima

    clip = run.clips[name]
    path = os.path.join(run.gw.cfg.data_dir, "clips", clip["id"] + ".wav")
    with open(path, "rb") as f:
        raw = f.read()
    off, size, n = ima.parse_header(raw)
    return clip, ima.decode(raw[off:off + size])[:n]


def _pcm_sha(samples, volume, master=100):
    from protocol import ima

    return hashlib.sha256(ima.pcm_bytes(samples, volume * master * 256 // 10000)).hexdigest()


def _percentile(values, q):
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def clip_played(spec, sc, record, db, run):
    """Every loudspeaker of the zone played the whole clip once, from `at`: its I2S received exactly the clip's
    samples (count and SHA-256 of the PCM at the item's volume), no underrun; starts spread at most
    max_spread_ms across nodes and each within max_offset_ms of `at`."""
    at = record["start"] + seconds(spec["at"], "at")
    clip, samples = _clip_pcm(run, spec["clip"])
    want_sha = _pcm_sha(samples, int(spec.get("volume", 100)))
    n = len(samples)
    max_spread = float(spec.get("max_spread_ms", 50))
    max_offset = float(spec.get("max_offset_ms", 500))
    ids = [i for i in _ids(spec, sc) if has_speaker(next(x for x in sc.nodes if x["id"] == i))
           and i not in spec.get("except", [])]
    starts = {}
    bad = []
    for node_id in ids:
        got = pcm_sessions(record["truth"][node_id], at - 5, at + n / 16000.0)
        if len(got) != 1:
            bad.append("%s: %d I2S sessions near the slot" % (node_id, len(got)))
            continue
        pcm = got[0]
        if pcm["samples"] != n or pcm["sha256"] != want_sha:
            bad.append("%s: %d of %d samples, %s PCM" % (node_id, pcm["samples"], n,
                                                          "same" if pcm["sha256"] == want_sha else "different"))
        if pcm.get("underruns"):
            bad.append("%s: %d underruns (%s ms of gaps)" % (node_id, pcm["underruns"], pcm.get("gap_ms")))
        starts[node_id] = (pcm["start"] - at) * 1000.0
    offsets = sorted(starts.values())
    spread = offsets[-1] - offsets[0] if offsets else None
    far = [k for k, v in starts.items() if abs(v) > max_offset]
    if far:
        bad.append("started more than %g ms off the slot: %s" % (max_offset, far[:6]))
    if spread is None or spread > max_spread:
        bad.append("start spread %s ms > %g ms" % (None if spread is None else round(spread, 1), max_spread))
    run.figures = getattr(run, "figures", {})
    if offsets:
        mid = _percentile(offsets, 0.5)
        run.figures["start_spread_ms"] = round(spread, 1)
        run.figures["start_p50_dev_ms"] = round(_percentile([abs(v - mid) for v in offsets], 0.5), 1)
        run.figures["start_offset_p50_ms"] = round(mid, 1)
    detail = "%d loudspeakers, clip %s (%d samples, %.1f s); starts vs slot: min %s, p50 %s, max %s ms; spread %s ms;" \
             " problems: %s" % (
                 len(ids), clip["id"][:12], n, n / 16000.0, _r(offsets[0] if offsets else None),
                 _r(_percentile(offsets, 0.5)), _r(offsets[-1] if offsets else None), _r(spread), bad[:6] or "none")
    return _result(spec.get("name", "the clip played completely and together"), ids and not bad, detail)


def _r(v):
    return None if v is None else round(v, 1)


def audio_report_matches_truth(spec, sc, record, db, run):
    """Each I2S session of every loudspeaker is one airing segment the node reported (same start within 1.5 s,
    same samples) and each audio segment reported is one session; then the monthly report's counts and minutes
    (by zone, category, priority) equal those computed from ground truth with the items the segments name."""
    import time

    tz_s = int(sc.site["utc_offset"] * 3600)
    speakers = {n["id"]: n for n in sc.nodes if has_speaker(n)}
    segs = [a for a in db["airings"] if a["node_id"] in speakers and a.get("samples")]
    used = set()
    bad = []
    matched = []
    sessions = 0
    for node_id in speakers:
        for pcm in pcm_sessions(record["truth"][node_id]):
            if not pcm.get("samples"):
                continue
            sessions += 1
            hit = None
            for i, a in enumerate(segs):
                if i not in used and a["node_id"] == node_id and abs(a["started"] - pcm["start"]) <= 1.5 \
                        and a["samples"] == pcm["samples"]:
                    hit = i
                    break
            if hit is None:
                bad.append("%s: I2S session at %s (%d samples) not reported" % (
                    node_id, _hhmm(pcm["start"], tz_s), pcm["samples"]))
                continue
            used.add(hit)
            matched.append((pcm, segs[hit]))
    for i, a in enumerate(segs):
        if i not in used:
            bad.append("%s: reported %s (%d samples) with no I2S session" % (a["node_id"], a["item_id"], a["samples"]))
    truth_rep = {}
    for pcm, a in matched:
        month = time.strftime("%Y-%m", time.gmtime(a["started"] + tz_s))
        rep = truth_rep.setdefault(month, {"zone": {}, "cat": {}, "prio": {}})
        mins = pcm["samples"] / (16000 * 60.0)
        cat = "emergency" if a["priority"] == 2 and a["category"] == "other" else a["category"]
        keys = [("cat", cat), ("prio", ("routine", "priority", "emergency")[a["priority"]])]
        keys += [("zone", z) for z in speakers[a["node_id"]].get("zones", [speakers[a["node_id"]]["zone"]])]
        for table, key in keys:
            entry = rep[table].setdefault(key, [set(), 0.0])
            entry[0].add(a["item_id"])
            entry[1] += mins
    names = {"zone": ("by_zone", "speaker_minutes"), "cat": ("by_category", "minutes"),
             "prio": ("by_priority", "minutes")}
    for month, rep in sorted(truth_rep.items()):
        got = db.get("reports", {}).get(month)
        if not got or "error" in got:
            bad.append("no report for %s" % month)
            continue
        for table, (field, minutes) in names.items():
            for key, (items, mins) in rep[table].items():
                row = got[field].get(key)
                if row is None or row["broadcasts"] != len(items) or abs(row[minutes] - mins) > 0.05 + 1e-9:
                    bad.append("%s %s %s: report %s, truth %d broadcasts %.1f min" % (
                        month, field, key, row, len(items), mins))
    return _result(spec.get("name", "the aired report counts exactly what the loudspeakers played"),
                   sessions > 0 and not bad,
                   "%d I2S sessions, %d reported segments, %d matched; problems: %s" % (
                       sessions, len(segs), len(matched), bad[:6] or "none"))


def missed_reported(spec, sc, record, db, run):
    """The loudspeakers named could not air the item at `at`: each reported it missed with a reason in `why`,
    and none was silent about it or played anything in the slot."""
    at = record["start"] + seconds(spec["at"], "at")
    window = seconds(spec.get("window", "2m"), "window")
    whys = spec.get("why", ["clip_missing", "clip_bad"])
    ids = _ids(spec, sc)
    bad = []
    for node_id in ids:
        played = [p for p in pcm_sessions(record["truth"][node_id], at - 5, at + window) if p.get("samples")]
        if played:
            bad.append("%s played %d samples" % (node_id, sum(p["samples"] for p in played)))
        missed = [a for a in db["airings"] if a["node_id"] == node_id and a["outcome"] == "missed"
                  and at - 60 <= a["started"] <= at + window]
        if not missed:
            bad.append("%s did not report the item missed" % node_id)
        elif missed[0].get("why") not in whys:
            bad.append("%s: missed because %s" % (node_id, missed[0].get("why")))
    return _result(spec.get("name", "a clip that could not be fetched is reported missed, not silent"),
                   ids and not bad, "%d loudspeakers; problems: %s" % (len(ids), bad[:6] or "none"))


def clip_preempted(spec, sc, record, db, run):
    """A routine clip from `at` is cut by an emergency at `cut`: the board shows the clip's first part (exact
    samples from its start), then the emergency's audio; the node reported the clip interrupted with exactly
    the samples the board played and by the emergency; after the emergency the clip resumes where it was cut
    (`resume = true`: the rest of its samples, exactly) and the item is complete."""
    at = record["start"] + seconds(spec["at"], "at")
    cut = record["start"] + seconds(spec["cut"], "cut")
    clip, samples = _clip_pcm(run, spec["clip"])
    volume = int(spec.get("volume", 100))
    gain = volume * 100 * 256 // 10000
    from protocol import ima

    ids = [i for i in _ids(spec, sc) if has_speaker(next(x for x in sc.nodes if x["id"] == i))]
    bad = []
    for node_id in ids:
        sessions = pcm_sessions(record["truth"][node_id], at - 5, None)
        if len(sessions) < 2:
            bad.append("%s: %d I2S sessions" % (node_id, len(sessions)))
            continue
        first = sessions[0]
        k = first["samples"]
        if not 0 < k < len(samples) or first["sha256"] != hashlib.sha256(ima.pcm_bytes(samples[:k], gain)).hexdigest():
            bad.append("%s: first session %d samples, not the clip's start" % (node_id, k))
        if not cut - 2 <= first["end"] <= cut + 2:
            bad.append("%s: the clip stopped %.1f s from the emergency" % (node_id, first["end"] - cut))
        reported = [a for a in db["airings"] if a["node_id"] == node_id and a["outcome"] == "interrupted"
                    and a.get("samples") == k]
        if not reported:
            bad.append("%s: no interrupted report with %d samples" % (node_id, k))
        elif spec.get("by") and not str(reported[0].get("by_item") or "").startswith(spec["by"]):
            bad.append("%s: interrupted by %s" % (node_id, reported[0].get("by_item")))
        if spec.get("resume", True):
            rest = [p for p in sessions[2:] if p["samples"] == len(samples) - k]
            want = hashlib.sha256(ima.pcm_bytes(samples[k:], gain)).hexdigest()
            if not rest or rest[0]["sha256"] != want:
                bad.append("%s: no resumed session with the clip's last %d samples" % (node_id, len(samples) - k))
            ended = [a for a in db["airings"] if a["node_id"] == node_id and a["outcome"] == "ended"
                     and a.get("complete")]
            if not ended:
                bad.append("%s: the item was not reported complete" % node_id)
    return _result(spec.get("name", "an emergency cuts a routine clip, which is reported and resumes"),
                   ids and not bad, "%d loudspeakers; problems: %s" % (len(ids), bad[:6] or "none"))


def stream_latency(spec, sc, record, db, run):
    """Glass-to-horn: the stream's source turns loud `onset_s` after the staff started it at `at`; each
    loudspeaker's DAC gives its first loud sample (ground truth) at most `max_s` later."""
    action = next(a for a in run.actions if a["action"] == "stream" and
                  (spec.get("stream") is None or a["index"] == _action_index(sc, spec["stream"])))
    loud_at = action["t"] + float(spec.get("onset_s", 0))
    max_s = float(spec.get("max_s", 2.0))
    ids = [i for i in _ids(spec, sc) if has_speaker(next(x for x in sc.nodes if x["id"] == i))]
    lat = {}
    bad = []
    for node_id in ids:
        firsts = [p["first_loud"] for p in pcm_sessions(record["truth"][node_id], action["t"] - 1, None)
                  if p.get("first_loud") is not None and p["first_loud"] >= loud_at - 0.5]
        if not firsts:
            bad.append("%s: no loud sound after the stream started" % node_id)
            continue
        lat[node_id] = min(firsts) - loud_at
    values = sorted(lat.values())
    slow = [k for k, v in lat.items() if v > max_s]
    if slow:
        bad.append("later than %g s: %s" % (max_s, slow[:6]))
    run.figures = getattr(run, "figures", {})
    if values:
        run.figures["stream_latency_p50_s"] = round(_percentile(values, 0.5), 3)
        run.figures["stream_latency_max_s"] = round(values[-1], 3)
    return _result(spec.get("name", "live audio reaches every horn within %g s" % max_s), ids and not bad,
                   "%d loudspeakers; source to horn: p50 %s s, max %s s; problems: %s" % (
                       len(ids), _r(_percentile(values, 0.5)) if values else None, _r(values[-1]) if values else None,
                       bad[:6] or "none"))


def tls_links(spec, sc, record, db, run):
    """Every node connection the broker logged came in on its TLS listener ([tls] mqtt_port), none on the
    plain one, and every node's bundle carried the site CA (scenario `tls = true`)."""
    import re

    cfg, broker = run.gw.cfg, run.gw.broker
    tls_port = cfg.tls_mqtt_port
    ports = {}  # "host:port" of a connection -> the listener's port
    by_port = {}  # listener port -> node ids that logged in there
    with open(broker.log_path, errors="replace") as f:
        for line in f:
            m = re.search(r"New connection from (\S+) on port (\d+)", line)
            if m:
                ports[m.group(1)] = int(m.group(2))
                continue
            m = re.search(r"New client connected from (\S+) as \S+ \(.*u'([^']+)'\)", line)
            if m and m.group(2) != "gateway":
                by_port.setdefault(ports.get(m.group(1)), set()).add(m.group(2))
    ids = {n["id"] for n in sc.nodes}
    over_tls = by_port.get(tls_port, set()) & ids
    elsewhere = sorted(n for p, names in by_port.items() if p != tls_port for n in names & ids)
    no_ca = sorted(n for n in ids if not (run.bundles.get(n, {}).get("tls") or {}).get("ca")
                   or not (run.bundles.get(n, {}).get("files") or {}).get("tls"))  # and HTTPS for downloads
    ok = cfg.tls_enabled and over_tls == ids and not elsewhere and not no_ca
    return _result(spec.get("name", "every node connects over TLS only"), ok,
                   "%d of %d nodes logged in on the TLS port %d; on other ports: %s; bundles without the CA or HTTPS: %s"
                   % (len(over_tls), len(ids), tls_port, elsewhere[:6] or "none", no_ca[:6] or "none"))


def _action_index(sc, name):
    for entry in sc.timeline:
        if entry["type"] == "action" and entry.get("name") == name:
            return entry["index"]
    raise KeyError("no action named %r" % name)


KINDS = {f.__name__: f for f in (lamps_follow_program, lamp_level, amplifiers_on_within, aired, no_command_lost,
                                  no_event_gap, recovered_within, alert, lamps_off_without_clock, safe_mode, airings,
                                  never_offline, all_online, rebirthed_within, clip_played, audio_report_matches_truth,
                                  missed_reported, clip_preempted, stream_latency, tls_links)}


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


# ---- the soak (simulator/soak.py): judged on ground truth and the gateway's command history -----------------
EMERGENCY_EXPIRES_S = 120  # gateway/emergency.py EXPIRES_S: an emergency not delivered by then is not aired late


def _figures(run):
    run.figures = getattr(run, "figures", {})
    return run.figures


def _spans(series, on=lambda v: v is not None and v is not False):
    """[(a, b)] in which a truth series' value is `on` (the last one open until +inf)."""
    out, since = [], None
    for t, v in series:
        if on(v) and since is None:
            since = t
        elif not on(v) and since is not None:
            out.append((since, t))
            since = None
    if since is not None:
        out.append((since, float("inf")))
    return out


def _overlaps(windows, a, b):
    return any(x < b and y > a for x, y in windows)


def _soak_windows(sc, record, run, node_id):
    """The node's injected-fault windows: unreachable (power cuts, partitions of its zone), gateway/broker
    restarts (everyone, a minute each), clock jumps (the correction window), reboots."""
    unreach = _unreachable_windows(record, node_id)
    restarts = [(f["t"], f["t"] + max(60.0, 10 * run.speed)) for f in record["faults"]
                if f["kind"] in ("broker_restart", "gateway_restart")]
    jumps = [(f["t"], f["t"] + 900.0) for f in record["faults"]
             if f["kind"] == "clock_jump" and node_id in f["targets"]]
    reboots = [(t, t + 60.0) for t, _cause in record.get("reboots", {}).get(node_id, [])]
    return unreach, restarts, jumps, reboots


def soak_items(sc, record, run):
    """Every broadcast the staff asked for and every emergency: {id, kind, zones, start, end, created, cancelled,
    category, priority}; schedule occurrences get the gateway's item id (schedule.YYYYMMDDHHMM, local)."""
    import time as _time

    from simulator.scenario import local_time

    tz = sc.site["utc_offset"]
    tz_s = int(tz * 3600)
    done = {a["index"]: a for a in run.actions}
    cancels = {}
    for e in sc.timeline:
        if e["type"] == "action" and e["do"] == "cancel" and e["index"] in done:
            cancels[e["body"]["id"]] = done[e["index"]]["t"]
    zone_ids = [z["id"] for z in sc.zones]
    items = []
    for e in sc.timeline:
        if e["type"] != "action" or e["index"] not in done:
            continue
        act = done[e["index"]]
        if e["do"] == "schedule":
            if not act["result"].startswith("201"):
                continue
            body = e["body"]
            first = local_time(body["start"], tz, "start")
            starts = [first]
            if body.get("rrule") == "FREQ=DAILY":
                day0 = first + ((record["start"] - 86400 - first) // 86400 + 1) * 86400 if first < record["start"] else first
                starts = [day0 + 86400 * k for k in range(int((record["end"] - day0) // 86400) + 2)]
            for s in starts:
                end = s + body["duration_s"]
                if s < act["t"] + 60 or end > record["end"] - 300:
                    continue  # before the schedule existed, or not over when the run ended
                items.append({"id": "%s.%s" % (body["id"], _time.strftime("%Y%m%d%H%M", _time.gmtime(s + tz_s))),
                              "kind": "schedule", "zones": list(body["zones"]), "start": s, "end": end,
                              "created": act["t"], "cancelled": cancels.get(body["id"]) if cancels.get(
                                  body["id"], float("inf")) < s else None,
                              "category": body.get("category", "news"), "priority": int(body.get("priority", 0))})
        elif e["do"] == "emergency":
            batch = next((b for b in run.batches if b["index"] == e["index"]), None)
            if batch is None:
                continue
            stop = next((a["t"] for a in run.actions if a["action"] == "stop_emergency" and a["t"] >= act["t"]
                         and a["result"].startswith("202")), None)
            end = act["t"] + e["body"].get("duration_s", 900)
            if stop is not None and stop < end:
                end = stop
            zones = zone_ids if e["body"].get("zones", "all") == "all" else list(e["body"]["zones"])
            items.append({"id": batch["batch"], "kind": "emergency", "zones": zones, "start": act["t"], "end": end,
                          "created": act["t"], "cancelled": None, "category": "emergency", "priority": 2,
                          "stopped": stop})
    return items


def soak_sessions(record, node_id):
    """Stretches of time in which the node's board had a sound source on (ground truth)."""
    rows = record["truth"][node_id]
    return [(a, min(b, record["end"])) for a, b in _spans(state_series(rows, "source"))]


def _attribute(sc, record, run):
    """Each speaker's sound sessions matched to the item airing in its zone then (items never overlap in a zone).
    Returns (per (item id, node): [sessions], unexplained: [(node, a, b, why)])."""
    items = soak_items(sc, record, run)
    slack = max(60.0, 0.5 * run.speed)  # half a second of real time: a node's reaction, its tick, the gateway's loop
    got, unexplained = {}, []
    too_late = 0  # airings of cancelled items the cancel reached too late, reported by the gateway
    for n in sc.nodes:
        if not has_speaker(n):
            continue
        mine = [i for i in items if n["zone"] in i["zones"]]
        unreach, restarts, jumps, reboots = _soak_windows(sc, record, run, n["id"])
        for a, b in soak_sessions(record, n["id"]):
            hit = sorted((i for i in mine if i["start"] - slack <= a <= i["end"] + slack),
                         key=lambda i: max(0.0, i["start"] - a, a - i["end"]))  # the nearest item
            if hit:
                item = hit[0]
                if item["cancelled"] is not None and not _overlaps(unreach + restarts, item["cancelled"] - slack, a):
                    late = _cancel_too_late(run, n["id"], item, a, b, slack)
                    if late:
                        unexplained.append((n["id"], a, b, "cancelled %s aired (%s)" % (item["id"], late)))
                    else:
                        too_late += 1
                got.setdefault((item["id"], n["id"]), []).append((a, b))
            elif _overlaps(jumps, a - slack, b):
                continue  # a jumped clock airs at the wrong time until the gateway corrects it: injected
            else:
                unexplained.append((n["id"], a, b, "no item"))
    _figures(run)["broadcasts_cancel_too_late"] = too_late
    return items, got, unexplained


def _cancel_too_late(run, node_id, item, a, b, slack):
    """Why an airing (a, b) of a cancelled item is wrong, or "" when it is the cancel's lateness, reported: the
    gateway had no ack of a plan pushed after the cancel before the airing began (at high speed the plan push can
    reach the loudspeaker after the start: one real second is minutes), the airing stopped by the time that ack came
    (the node drops the item as soon as it has the plan), and the gateway said so (an aired_after_cancel alert)."""
    if run.gw is None:
        return "no gateway to ask"
    acks = [r["acked"] for r in run.gw.db.all(
        "SELECT acked FROM commands WHERE node_id = ? AND op = 'set_program' AND status = 'applied'"
        " AND created >= ?", node_id, item["cancelled"] - 1)]
    acked = min(acks) if acks else None
    if acked is not None and acked <= a:
        return "the node had acked the plan without it %.0f s before" % (a - acked)
    if acked is not None and b > acked + slack:
        return "still on %.0f s after the node acked the plan without it" % (b - acked)
    reported = False
    for r in run.gw.db.all("SELECT data FROM alerts WHERE node_id = ? AND kind = 'aired_after_cancel'", node_id):
        try:
            reported = reported or json.loads(r["data"]).get("item") == item["id"]
        except ValueError:
            pass
    return "" if reported else "the cancel came too late but the gateway did not report it"


def soak_commands(spec, sc, record, db, run):
    """At most one effect per cmd_id, judged on ground truth: each reboot command reboots its node at most once
    (the board's reboots of cause "soft"), and an item never plays twice on a node unless a power cut or a
    reboot cut it (a duplicate delivery, e.g. after a broker restart, must not replay)."""
    bad = []
    reboot_cmds = {}
    for c in db["commands"]:
        if c["op"] == "reboot":
            reboot_cmds[c["node_id"]] = reboot_cmds.get(c["node_id"], 0) + 1
    soft = {n: sum(1 for _t, cause in r if cause == "soft") for n, r in record.get("reboots", {}).items()}
    for node_id, k in sorted(soft.items()):
        if k > reboot_cmds.get(node_id, 0):
            bad.append("%s rebooted %d times for %d reboot commands" % (node_id, k, reboot_cmds.get(node_id, 0)))
    watchdog = [(n, t) for n, r in record.get("reboots", {}).items() for t, cause in r if cause == "watchdog"]
    crash_nodes = {x for f in record["faults"] if f["kind"] == "boot_crash" for x in f["targets"]}
    stray = [(n, t) for n, t in watchdog if n not in crash_nodes]
    if stray:
        bad.append("watchdog reboots no injected crash explains: %s" % stray[:4])
    items, got, _unexplained = _attribute(sc, record, run)
    dup = 0
    for (item_id, node_id), sessions in sorted(got.items()):
        item = next(i for i in items if i["id"] == item_id)
        cuts = [t for t, _ in state_series(record["truth"][node_id], "power") if item["start"] <= t <= item["end"]]
        cuts += [t for t, _c in record.get("reboots", {}).get(node_id, []) if item["start"] <= t <= item["end"]]
        if len(sessions) > 1 + len(cuts):
            dup += len(sessions) - 1 - len(cuts)
            bad.append("%s played %s %d times (%d interruptions)" % (node_id, item_id, len(sessions), len(cuts)))
    f = _figures(run)
    f["duplicate_effects"] = dup + sum(max(0, k - reboot_cmds.get(n, 0)) for n, k in soft.items())
    f["reboots"] = sum(len(r) for r in record.get("reboots", {}).values())
    f["commands"] = len(db["commands"])
    return _result(spec.get("name", "at most one effect per cmd_id"), not bad,
                   "%d commands (%d reboot commands, %d soft reboots, %d watchdog reboots after injected crashes); "
                   "%d item plays judged; problems: %s" % (
                       len(db["commands"]), sum(reboot_cmds.values()), sum(soft.values()), len(watchdog),
                       len(got), bad[:6] or "none"))


def soak_broadcasts(spec, sc, record, db, run):
    """Every occurrence of every schedule, and every emergency, on every loudspeaker of its zones: aired (the
    board's source on in its slot), or reported missed with a reason: by the node (broadcast_missed, its why), by
    the gateway (a broadcast_missed alert for the item: the loudspeaker did not start it), or, for an
    emergency, its command expired or refused (the gateway's command history). Silence fails. Nothing airs that
    no item explains (a cancelled broadcast; an emergency after its stop)."""
    items, got, unexplained = _attribute(sc, record, run)
    missed = {(a["item_id"], a["node_id"]): a.get("why") for a in db["airings"] if a["outcome"] == "missed"}
    alerts = set()
    if run.gw is not None:
        for r in run.gw.db.all("SELECT node_id, data FROM alerts WHERE kind = 'broadcast_missed'"):
            try:
                alerts.add((json.loads(r["data"]).get("item"), r["node_id"]))
            except ValueError:
                pass
    cmd = {}
    for c in run.gw.db.all("SELECT node_id, batch, status FROM commands WHERE batch IS NOT NULL") if run.gw else []:
        cmd[(c["batch"], c["node_id"])] = c["status"]
    due = aired = node_missed = gw_missed = cancelled_ok = 0
    explained = 0
    silent = []
    for item in items:
        for n in sc.nodes:
            if not has_speaker(n) or n["zone"] not in item["zones"]:
                continue
            key = (item["id"], n["id"])
            if item["cancelled"] is not None:
                cancelled_ok += key not in got
                continue
            due += 1
            unreach, restarts, jumps, reboots = _soak_windows(sc, record, run, n["id"])
            if key in got:
                aired += 1
            elif key in missed:
                node_missed += 1
            elif key in alerts:
                gw_missed += 1
                explained += _overlaps(unreach + restarts + jumps + reboots, item["created"], item["end"])
            elif item["kind"] == "emergency" and cmd.get(key) in ("expired", "rejected", "failed"):
                gw_missed += 1
                explained += _overlaps(unreach + restarts + jumps + reboots, item["start"],
                                       item["start"] + EMERGENCY_EXPIRES_S)
            elif item["kind"] == "emergency" and item.get("stopped") is not None and \
                    item["stopped"] - item["start"] < 60 and cmd.get(key) == "superseded":
                gw_missed += 1
            else:
                why = []
                if _overlaps(unreach, item["created"], item["end"]):
                    why.append("unreachable")
                if _overlaps(jumps, item["start"] - 900, item["end"]):
                    why.append("clock jump")
                silent.append("%s %s (%s; command %s)" % (n["id"], item["id"], ",".join(why) or "no fault",
                                                          cmd.get(key, "-")))
    f = _figures(run)
    f.update({"broadcasts_due": due, "broadcasts_aired": aired, "broadcasts_reported_missed": node_missed + gw_missed,
              "broadcasts_explained_by_faults": explained, "broadcasts_silent": len(silent),
              "unexplained_airings": len(unexplained)})
    bad = silent + ["%s aired %s-%s: %s" % (n, _hhmm(a, int(sc.site["utc_offset"] * 3600)),
                                            _hhmm(b, int(sc.site["utc_offset"] * 3600)), why)
                    for n, a, b, why in unexplained]
    return _result(spec.get("name", "every broadcast aired or reported missed with a reason"), due and not bad,
                   "%d items (%d emergencies, %d cancelled); %d loudspeaker-items due: %d aired, %d reported missed by "
                   "the node, %d by the gateway (alert or undelivered emergency; %d of those during injected faults), "
                   "%d silent; cancelled ones not aired: %d; airings nothing explains: %d; problems: %s" % (
                       len(items), sum(1 for i in items if i["kind"] == "emergency"),
                       sum(1 for i in items if i["cancelled"] is not None), due, aired, node_missed, gw_missed,
                       explained, len(silent), cancelled_ok, len(unexplained), bad[:6] or "none"))


def soak_report(spec, sc, record, db, run):
    """The gateway's monthly report (by zone, category, priority) equals what the boards aired: broadcasts
    (distinct items) exactly, minutes within 1 % + 6 s per session, plus the size of a clock jump injected on the
    node during (or up to 30 min before the end of) a session: line input is timed by the node's clock, which
    the gateway corrects mid-airing."""
    import time as _time

    tz_s = int(sc.site["utc_offset"] * 3600)
    items, got, _unexplained = _attribute(sc, record, run)
    by_id = {i["id"]: i for i in items}
    truth = {}
    segments = {}
    slack = {}  # minutes a clock jump may add or take: line input is timed by the node's clock
    jumps = [(f["t"], set(f["targets"]), abs(float(f["detail"] or 0))) for f in record["faults"]
             if f["kind"] == "clock_jump"]
    for (item_id, node_id), sessions in got.items():
        item = by_id[item_id]
        zone = next(n["zone"] for n in sc.nodes if n["id"] == node_id)
        for a, b in sessions:
            jumped = sum(v for t, ids, v in jumps if node_id in ids and t - 60 <= b and a <= t + 1800) / 60.0
            month = _time.strftime("%Y-%m", _time.gmtime(a + tz_s))
            rep = truth.setdefault(month, {"by_zone": {}, "by_category": {}, "by_priority": {}})
            mins = (b - a) / 60.0
            for table, key in (("by_zone", zone), ("by_category", item["category"]),
                               ("by_priority", ("routine", "priority", "emergency")[item["priority"]])):
                entry = rep[table].setdefault(key, [set(), 0.0])
                entry[0].add(item_id)
                entry[1] += mins
                segments[(month, table, key)] = segments.get((month, table, key), 0) + 1
                slack[(month, table, key)] = slack.get((month, table, key), 0.0) + jumped
    bad = []
    compared = 0
    for month, rep in sorted(truth.items()):
        got_rep = db.get("reports", {}).get(month)
        if not got_rep or "error" in got_rep:
            bad.append("no report for %s" % month)
            continue
        for table, rows in rep.items():
            minutes_field = "speaker_minutes" if table == "by_zone" else "minutes"
            for key in set(rows) | set(got_rep[table]):
                items_t, mins_t = rows.get(key, [set(), 0.0])
                row = got_rep[table].get(key) or {"broadcasts": 0, minutes_field: 0.0}
                compared += 1
                tol = 0.01 * mins_t + 0.1 * segments.get((month, table, key), 0) + 0.05 + slack.get(
                    (month, table, key), 0.0)
                if row["broadcasts"] != len(items_t) or abs(row[minutes_field] - mins_t) > tol:
                    bad.append("%s %s %s: report %d broadcasts %.1f min, truth %d broadcasts %.1f min" % (
                        month, table, key, row["broadcasts"], row[minutes_field], len(items_t), mins_t))
    _figures(run)["report_mismatches"] = len(bad)
    return _result(spec.get("name", "the monthly report equals what ground truth says aired"), compared and not bad,
                   "%d report rows compared with ground truth; problems: %s" % (compared, bad[:6] or "none"))


def soak_lamps(spec, sc, record, db, run):
    """Each lamp's light every minute equals the program in force (the latest the staff set) or its override, in
    at least `min_ratio` of the node-minutes judged. Not judged: power cuts of the node (to its first good boot,
    crashes included), `tolerance_s` around each reboot, each program step and each change, `jump_window_s`
    after a clock jump (the gateway corrects it), a program change made while the node was unreachable until it
    is reachable again, and an override until the node acknowledged it (the gateway's command history; an
    override that expired unacknowledged is not expected on the lamp)."""
    from bisect import bisect_right

    tz_s = int(sc.site["utc_offset"] * 3600)
    site = sc.site
    sun = SunSource(site["lat"], site["lon"], site["utc_offset"])
    tol = seconds(spec.get("tolerance_s", 120), "tolerance_s")
    jump_window = seconds(spec.get("jump_window_s", 900), "jump_window_s")
    min_ratio = float(spec.get("min_ratio", 0.999))
    t0 = record["start"] + seconds(spec.get("from", "10m"), "from")
    t1 = record["end"] - tol
    done = {a["index"]: a for a in run.actions}
    programs = [(record["start"], LampProgram.from_json(dict(sc.program, version=0)) if sc.program
                 else default_program())]
    overrides = []  # (t, node, until, level)
    for e in sc.timeline:
        if e["type"] != "action" or e["index"] not in done:
            continue
        act = done[e["index"]]
        if e["do"] == "program" and act["result"].startswith("200"):
            programs.append((act["t"], LampProgram.from_json(dict(e["body"], version=0))))
        elif e["do"] == "override":
            for node_id in sc.targets(e):
                overrides.append((act["t"], node_id, e["body"].get("until", 0), e["body"].get("level")))
    changes = [t for t, _p in programs[1:]]
    override_cmds = [dict(r) for r in run.gw.db.all(
        "SELECT node_id, created, acked, status FROM commands WHERE op = 'lamp_override'")] if run.gw else []
    cache = {}

    def want(t):
        k = bisect_right(changes, t)
        key = (k, t)
        if key not in cache:
            cache[key] = programs[k][1].decide(int(t), tz_s, sun).level
        return cache[key]

    checked = wrong = 0
    examples = []
    steps = [t0 + SAMPLE_S * i for i in range(int((t1 - t0) // SAMPLE_S) + 1)]
    # a sample near a program step (or a change) is not judged: the ramp and the decision's timing
    stable = {}
    for t in steps:
        w = want(t)
        stable[t] = w == want(t - tol) == want(t + tol) and not any(c - 5 <= t - tol <= c + tol or
                                                                     c <= t <= c + tol for c in changes)
    for node in sc.nodes:
        if not has_lamp(node):
            continue
        nid = node["id"]
        rows = record["truth"][nid]
        light = [(t, v[0] if isinstance(v, list) else v) for t, v in state_series(rows, "light")]
        times = [t for t, _ in light]
        unreach, _restarts, jumps, reboots = _soak_windows(sc, record, run, nid)
        skip = []
        for a, b in _off_windows(record, nid):  # to its first good boot after the power-on (crashes included)
            boots = [t for t, _c in record.get("reboots", {}).get(nid, []) if b <= t <= b + 1800]
            skip.append((a - tol, max([b] + boots) + tol))
        skip += [(t - tol, t + tol) for t, _c in record.get("reboots", {}).get(nid, [])]
        skip += [(a, a + jump_window) for a, _b in jumps]
        for c in changes:
            for a, b in unreach:
                if a <= c <= b:
                    skip.append((c, b + tol))
        mine = []
        for t, n, until, level in overrides:
            if n != nid:
                continue
            # the gateway's history says whether (and when) the node took it: an override that expired while the
            # node was away is not expected on the lamp (the program is)
            cmd = min((c for c in override_cmds if c["node_id"] == nid and c["created"] >= t - 1),
                      key=lambda c: c["created"] - t, default=None)
            skip.append((t - 5, t + tol))
            if cmd is None or cmd["status"] != "applied":
                continue
            skip.append((t, (cmd["acked"] or t) + tol))
            skip.append((until - tol, until + tol))
            mine.append((t, until, level))
        skip.sort()
        for t in steps:
            if any(a <= t <= b for a, b in skip):
                continue
            ov = [(ts, level) for ts, until, level in mine if ts <= t < until]
            if ov:
                w = ov[-1][1]
                if w is None:
                    continue
            elif not stable[t]:
                continue
            else:
                w = want(t)
            i = bisect_right(times, t) - 1
            got = light[i][1] if i >= 0 else 0
            checked += 1
            if got != w:
                wrong += 1
                if len(examples) < 5:
                    examples.append("%s at %s: light %s%%, want %s%%" % (nid, _hhmm(t, tz_s), got, w))
    ratio = 1 - wrong / checked if checked else 0.0
    f = _figures(run)
    f.update({"lamp_node_minutes": checked, "lamp_node_minutes_wrong": wrong,
              "lamp_correct_pct": round(100.0 * ratio, 4)})
    return _result(spec.get("name", "lamps correct in >= %g %% of node-minutes" % (100 * min_ratio)),
                   checked and ratio >= min_ratio,
                   "%d lamp node-minutes judged, %d wrong: %.3f %% correct (need %.1f %%); %d program changes; "
                   "first wrong: %s" % (checked, wrong, 100.0 * ratio, 100 * min_ratio, len(changes),
                                        examples or "none"))


def soak_event_gaps(spec, sc, record, db, run):
    """0 unexplained event gaps: the gateway's per-boot sequence tracker. Events are numbered per boot (a random
    boot id) and sent in order, each kept until the broker has it, so a fault that wipes a node's RAM (a power cut,
    a crash, a reboot) loses only the tail of that boot, which no tracker counts: it explains no gap. The one gap a
    node may cause is its queue overflowing while it cannot send (firmware/events.py), which it reports itself
    (`events_dropped`, with the count): such a gap, up to the counts that boot reported, is explained. Any other
    gap is an event lost between the node and the gateway's store, and fails."""
    dropped = {}
    if run.gw is not None:
        for r in run.gw.db.all("SELECT node_id, boot_id, data FROM events WHERE kind = 'events_dropped'"):
            try:
                count = int(json.loads(r["data"]).get("count", 0))
            except (ValueError, TypeError, AttributeError):
                count = 0
            key = (r["node_id"], r["boot_id"])
            dropped[key] = dropped.get(key, 0) + count
    gaps = db["gaps"]
    unexplained = [g for g in gaps if g["missing"] > dropped.get((g["node_id"], g["boot_id"]), 0)]
    f = _figures(run)
    f["event_gaps"] = len(unexplained)
    f["event_gaps_reported_dropped"] = len(gaps) - len(unexplained)
    allowed = int(spec.get("max_unexplained", 0))
    return _result(spec.get("name", "0 unexplained event gaps"), len(unexplained) <= allowed,
                   "%d gaps, %d of them events the node reported dropping (its queue full while it could not send); "
                   "unexplained: %s" % (len(gaps), len(gaps) - len(unexplained),
                                        [(g["node_id"], g["boot_id"], g["missing"]) for g in unexplained][:8] or "none"))


KINDS.update({f.__name__: f for f in (soak_commands, soak_broadcasts, soak_report, soak_lamps, soak_event_gaps)})

"""The seeded soak: a commune under random faults and staff work for days, judged on ground truth.

    python -m simulator soak [--nodes 200] [--hours 48] [--seed 1] [--speed 144] [--report DIR]
                             [--write-scenario FILE]

`scenario(nodes, hours, seed, ...)` draws, from the seed alone, a commune (zones of lamps and
loudspeakers) and a timeline: partitions of a zone (cut or blackhole) healed later, power cuts of a
few nodes restored later (some of them crash at their next two boots: the watchdog reboots them),
broker restarts, gateway restarts, clock jumps, reboot commands; and the staff's work through the
gateway's HTTP API: recurring daily broadcasts, one-off broadcasts, some of both cancelled
(DELETE /api/schedules/ID), lamp program changes, lamp overrides, emergencies and their stop.
The same seed gives the same scenario (`--write-scenario` writes it as JSON for the record).

Broadcasts and emergencies never overlap in a zone (10 minutes apart at least), so every stretch
of sound a loudspeaker's board made (ground truth) belongs to at most one item. The judgement
(`simulator/assertions.py`, kinds `soak_*`, plus `no_command_lost` and `no_event_gap`):

- soak_event_gaps: 0 event gaps, except on nodes whose RAM an injected fault wiped (power cut, crash,
  reboot): the events they had not yet handed to the broker died with it;
- no_command_lost: 0 commands silently lost (the gateway's history: every command answered, or expired
  while its node was unreachable), and at most one effect per cmd_id: each reboot command reboots its
  node at most once (the board's reboots), and no item plays twice on a node unless a power cut or
  reboot cut it (a duplicate delivery after a broker restart must not replay);
- soak_broadcasts: every scheduled occurrence and every emergency, on every loudspeaker of its
  zones, aired (the board's source was on in its slot), or was reported missed with a reason, or
  could not be delivered because of an injected fault (power cut, partition, blackhole); nothing
  aired that no item explains (a cancelled broadcast, an emergency after its stop);
- soak_lamps: the light of every lamp each minute equals the program in force (or the override),
  in at least `min_ratio` (0.999) of node-minutes outside injected power cuts, reboots, clock-jump
  correction windows and changes the node could not receive (unreachable);
- soak_report: the gateway's monthly report equals what ground truth says aired (broadcasts by
  zone, category and priority exactly; minutes within 1 % + 6 s per segment).
"""
import json
import os
import random
import time

ZONE_NAMES = ["Thôn Đông", "Thôn Tây", "Thôn Nam", "Thôn Bắc", "Thôn Trung", "Thôn Thượng"]
PROGRAMS = [
    {"days": {"thuong": {"on": "sunset", "off": "sunrise", "level": 100,
                         "steps": [{"at": "23:00", "level": 40}, {"at": "04:30", "level": 0}]}},
     "calendar": [{"day": "thuong"}]},
    {"days": {"tiet-kiem": {"on": "sunset+10", "off": "sunrise-10", "level": 80,
                            "steps": [{"at": "22:00", "level": 30}, {"at": "05:00", "level": 60}]}},
     "calendar": [{"day": "tiet-kiem"}]},
    {"days": {"le-hoi": {"on": "17:30", "off": "06:00", "level": 100, "steps": [{"at": "00:30", "level": 50}]}},
     "calendar": [{"day": "le-hoi"}]},
]
CATEGORIES = ("news", "security", "disaster", "campaign", "health", "music")
DAILY = [("tin-sang", "Bản tin sáng", "05:30", 20, "news"), ("tin-chieu", "Bản tin chiều", "17:00", 20, "news")]
GAP_S = 600  # nothing else airs this close to an item in the same zone
QUIET_END_S = 1800  # no fault and no action in the run's last half hour: commands land, reports arrive


def _local(t, utc_offset):
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t + utc_offset * 3600))


def scenario(nodes=200, hours=48.0, seed=1, speed=144.0, start="2026-11-23T12:00", name=None,
             min_ratio=0.999, max_gaps=0):
    """The soak's scenario as a raw dict (simulator/scenario.py's format), drawn from `seed` alone."""
    from simulator.scenario import local_time

    rng = random.Random("denloa-soak-%d" % seed)
    utc_offset = 7
    t_start = local_time(start, utc_offset, "start")
    dur = int(hours * 3600)
    n_zones = max(2, min(len(ZONE_NAMES), nodes // 50 + (2 if nodes < 100 else 0)))
    zones = [{"id": "thon-%d" % (k + 1), "name": ZONE_NAMES[k], "lat": 21.0285 + 0.004 * ((k % 3) - 1),
              "lon": 105.8542 + 0.004 * (k // 3)} for k in range(n_zones)]
    groups, members = [], {z["id"]: [] for z in zones}
    per = [nodes // n_zones + (1 if k < nodes % n_zones else 0) for k in range(n_zones)]
    for z, count in zip(zones, per):
        speakers = max(1, count // 5)
        groups.append({"zone": z["id"], "prefix": "loa-%s" % z["id"][5:], "count": speakers, "kind": "both"})
        groups.append({"zone": z["id"], "prefix": "den-%s" % z["id"][5:], "count": count - speakers, "kind": "lamp"})
        members[z["id"]] = ["loa-%s-%02d" % (z["id"][5:], i + 1) for i in range(speakers)] + [
            "den-%s-%02d" % (z["id"][5:], i + 1) for i in range(count - speakers)]
    all_ids = [n for z in zones for n in members[z["id"]]]
    zone_ids = [z["id"] for z in zones]
    actions, faults = [], []
    busy = {z: [] for z in zone_ids}  # (a, b) offsets in which something airs in the zone

    def free(zs, a, b):
        return all(b + GAP_S <= x or a >= y + GAP_S for z in zs for x, y in busy[z])

    def take(zs, a, b):
        for z in zs:
            busy[z].append((a, b))

    def offset_of(local_hm, day):
        hh, mm = (int(p) for p in local_hm.split(":"))
        midnight = t_start - ((t_start + utc_offset * 3600) % 86400)
        return midnight + day * 86400 + hh * 3600 + mm * 60 - t_start

    window = (600, dur - QUIET_END_S)  # the first ten minutes: the nodes boot and connect

    def when(lo=None, hi=None):
        lo = window[0] if lo is None else lo
        hi = window[1] if hi is None else hi
        return rng.uniform(lo, max(hi, lo + 60))  # a short run: squeezed, never outside the run

    # ---- staff: recurring broadcasts (all zones), one recurring per zone, one-offs, cancels -----------------
    days = int((dur + 86400) // 86400) + 1
    for sid, title, hm, mins, cat in DAILY:
        actions.append({"at": 120, "do": "schedule", "body": {
            "id": sid, "title": title, "category": cat, "zones": zone_ids, "source": "line", "volume": 80,
            "start": "2026-11-01T%s" % hm, "duration_s": mins * 60, "rrule": "FREQ=DAILY"}})
        for d in range(-1, days):
            a = offset_of(hm, d)
            take(zone_ids, a, a + mins * 60)
    zone_daily = zone_ids[rng.randrange(n_zones)]
    actions.append({"at": 150, "do": "schedule", "body": {
        "id": "loa-%s" % zone_daily, "title": "Phát thanh thôn", "category": "campaign", "zones": [zone_daily],
        "source": "line", "volume": 70, "start": "2026-11-01T19:30", "duration_s": 600, "rrule": "FREQ=DAILY"}})
    for d in range(-1, days):
        a = offset_of("19:30", d)
        take([zone_daily], a, a + 600)
    # the zone's daily broadcast is cancelled after its first occurrence (if the run sees one)
    firsts = [offset_of("19:30", d) for d in range(-1, days) if offset_of("19:30", d) > 300]
    if firsts and firsts[0] + 1800 < window[1]:
        actions.append({"at": round(firsts[0] + 1800 + rng.uniform(0, 3600)), "do": "cancel",
                        "body": {"id": "loa-%s" % zone_daily}})
    n_oneoff = max(3, int(hours / 2))
    k = 0
    for _ in range(n_oneoff * 20):
        if k >= n_oneoff:
            break
        made = when(window[0], window[1] - 2 * 3600)
        air = made + rng.uniform(1200, max(1800, min(6 * 3600, window[1] - made - 900)))
        length = rng.choice([300, 600, 900])
        zs = sorted(rng.sample(zone_ids, rng.randint(1, n_zones)))
        if air + length > window[1] or not free(zs, air, air + length):
            continue
        take(zs, air, air + length)
        k += 1
        sid = "mot-lan-%d" % k
        local = _local(t_start + air, utc_offset)
        actions.append({"at": round(made), "do": "schedule", "body": {
            "id": sid, "title": "Thông báo %d" % k, "category": rng.choice(CATEGORIES), "zones": zs,
            "source": "line", "volume": rng.choice([60, 80, 100]), "start": local, "duration_s": length}})
        if k % 3 == 0:  # every third is cancelled before it airs
            actions.append({"at": round(rng.uniform(made + 60, air - 300)), "do": "cancel", "body": {"id": sid}})
    # ---- staff: emergencies (some stopped, some left to their end) ------------------------------------------------
    n_emerg = max(2, int(hours / 6))
    k = 0
    last_end = 0
    for _ in range(n_emerg * 30):
        if k >= n_emerg:
            break
        at = when(max(window[0], last_end + GAP_S))
        length = 900
        stop = rng.uniform(180, 600) if k % 3 != 2 else None
        zs = zone_ids if rng.random() < 0.3 else sorted(rng.sample(zone_ids, rng.randint(1, n_zones)))
        end = at + (stop if stop else length)
        if end > window[1] or not free(zs, at, at + length):
            continue  # the whole 15 minutes stay free: a stop that does not land leaves the item running
        take(zs, at, at + length)
        k += 1
        last_end = at + length  # one emergency at a time: stop_emergency stops the last one
        actions.append({"at": round(at), "do": "emergency", "body": {
            "zones": zs if len(zs) < n_zones else "all", "source": "line", "volume": 100, "duration_s": length}})
        if stop:
            actions.append({"at": round(at + stop), "do": "stop_emergency"})
    # ---- staff: program changes, overrides ----------------------------------------------------------------------
    for k in range(max(2, int(hours / 8))):
        actions.append({"at": round(when()), "do": "program", "body": PROGRAMS[(k + 1) % len(PROGRAMS)]})
    lamps = all_ids
    for k in range(max(2, int(hours / 8))):
        at = when()
        until = t_start + at + rng.uniform(1800, 7200)
        actions.append({"at": round(at), "do": "override", "nodes": sorted(rng.sample(lamps, rng.randint(1, 3))),
                        "body": {"level": rng.choice([0, 20, 50, 100]), "until": int(until)}})
    # ---- faults ------------------------------------------------------------------------------------------
    cut_zone = {z: [] for z in zone_ids}
    for k in range(max(2, int(hours / 6))):
        for _ in range(50):
            z = rng.choice(zone_ids)
            a = when(window[0], window[1] - 5400)
            b = min(a + rng.uniform(600, 5400), window[1])
            if all(b + 600 <= x or a >= y + 600 for x, y in cut_zone[z]):
                cut_zone[z].append((a, b))
                faults.append({"at": round(a), "do": "partition", "zone": z,
                               "mode": "blackhole" if k % 3 == 1 else "cut"})
                faults.append({"at": round(b), "do": "heal", "zone": z})
                break
    down = {n: [] for n in all_ids}
    for k in range(max(2, int(hours / 4))):
        for _ in range(50):
            targets = sorted(rng.sample(all_ids, max(1, int(len(all_ids) * rng.uniform(0.01, 0.05)))))
            a = when(window[0], window[1] - 3600)
            b = min(a + rng.uniform(300, 3600), window[1])
            if all(all(b + 600 <= x or a >= y + 600 for x, y in down[n]) for n in targets):
                for n in targets:
                    down[n].append((a, b + 900))
                faults.append({"at": round(a), "do": "power_cut", "nodes": targets})
                if k % 3 == 1:  # the next two boots crash: the watchdog reboots them, the third boot runs
                    faults.append({"at": round(b) - 60, "do": "boot_crash", "nodes": targets[:2], "value": 2})
                faults.append({"at": round(b), "do": "power_on", "nodes": targets})
                break
    for k in range(max(2, int(hours / 8))):
        faults.append({"at": round(when()), "do": "broker_restart", "down_s": round(rng.uniform(1, 3), 1)})
    for k in range(max(1, int(hours / 12))):
        faults.append({"at": round(when()), "do": "gateway_restart", "down_s": round(rng.uniform(1, 2), 1)})
    for k in range(max(2, int(hours / 6))):
        faults.append({"at": round(when()), "do": "clock_jump", "nodes": [rng.choice(all_ids)],
                       "value": rng.choice([-1, 1]) * rng.randint(120, 1800)})
    for k in range(max(2, int(hours / 6))):
        n = rng.choice(all_ids)
        at = when()
        if any(x - 600 <= at <= y for x, y in down[n]):
            continue
        faults.append({"at": round(at), "do": "reboot", "nodes": [n]})
    actions.sort(key=lambda e: e["at"])
    faults.sort(key=lambda e: e["at"])
    return {
        "name": name or "soak-%dn-%gh-s%d" % (nodes, hours, seed),
        "title": "Soak: %d thiết bị, %g giờ, seed %d / %d nodes, %g h, seed %d" % (nodes, hours, seed, nodes, hours,
                                                                                  seed),
        "seed": seed, "speed": speed, "start": start, "duration": dur, "broker": "mosquitto", "nodes_per_host": 50,
        "site": {"id": "xa-soak", "name": "Xã Soak", "lat": 21.0285, "lon": 105.8542, "utc_offset": utc_offset},
        "program": PROGRAMS[0], "zones": zones, "nodes": groups, "actions": actions, "faults": faults,
        "assert": [
            {"kind": "no_command_lost", "name": "0 commands silently lost", "reachable_real_s": 3},
            {"kind": "soak_event_gaps", "max_unexplained": max_gaps,
             "name": "0 unexplained event gaps" if not max_gaps else "at most %d unexplained event gaps" % max_gaps},
            {"kind": "soak_commands", "name": "at most one effect per cmd_id"},
            {"kind": "soak_broadcasts", "name": "every broadcast aired or reported missed with a reason"},
            {"kind": "soak_lamps", "min_ratio": min_ratio, "tolerance_s": max(120, round(1.5 * speed)),
             "name": "lamps correct in >= %g %% of node-minutes outside power cuts" % (100 * min_ratio)},
            {"kind": "soak_report", "name": "the monthly report equals what ground truth says aired"},
        ],
    }


def summary_lines(record):
    """The soak's figures, readable."""
    f = record.get("figures", {})
    out = ["soak %s: %d nodes, %.0f h simulated at %gx in %.0f s wall, seed %s" % (
        record["scenario"], len(record["nodes"]), (record["end"] - record["start"]) / 3600.0, record["speed"],
        record["wall_seconds"], record["seed"])]
    kinds = {}
    for x in record["faults"]:
        kinds[x["kind"]] = kinds.get(x["kind"], 0) + 1
    acts = {}
    for x in record["actions"]:
        acts[x["action"]] = acts.get(x["action"], 0) + 1
    out.append("  faults: %s" % ", ".join("%s %d" % kv for kv in sorted(kinds.items())))
    out.append("  staff actions: %s" % ", ".join("%s %d" % kv for kv in sorted(acts.items())))
    for a in record["assertions"]:
        out.append("  %s %s: %s" % ("PASS" if a["ok"] else "FAIL", a["name"], a["detail"]))
    if f.get("host_tick_late_p99_ms") is not None:
        out.append("  node hosts: event-loop lateness p99 %s ms (worst window), median window p99 %s ms, max %s ms" % (
            f.get("host_tick_late_p99_ms"), f.get("host_tick_late_p99_median_ms"), f.get("host_tick_late_max_ms")))
    return out


def host_figures(record):
    """Event-loop lateness of the node hosts (every node's tick waits on it), from their `stats` answers; each
    answer covers the host's last 60 s; the first answer of each host (its start-up) is left out."""
    by_host = {}
    for s in record.get("host_stats", []):
        by_host.setdefault(s["host"], []).append(s)
    p99 = sorted(s["p99_ms"] for rows in by_host.values() for s in rows[1:])
    if not p99:
        return {}
    return {"host_tick_late_p99_ms": p99[-1], "host_tick_late_p99_median_ms": p99[len(p99) // 2],
            "host_tick_late_max_ms": max(s["max_ms"] for rows in by_host.values() for s in rows[1:]),
            "host_stats_windows": len(p99)}


def figures(record):
    """One JSON object for tests/bench/report.py (section soak)."""
    f = dict(record.get("figures", {}))
    held = {a["name"]: a["ok"] for a in record["assertions"]}
    speed = record["speed"]
    sim_h = (record["end"] - record["start"]) / 3600.0
    out = {"nodes": len(record["nodes"]), "simulated_hours": round(sim_h, 2), "speed": speed, "seed": record["seed"],
           "wall_s": record["wall_seconds"],
           "assertions_held": "%d of %d" % (sum(held.values()), len(held))}
    for key, target, ok in (
            ("commands_lost", "0", lambda v: v == 0), ("duplicate_effects", "0", lambda v: v == 0),
            ("event_gaps", "0", lambda v: v == 0), ("broadcasts_silent", "0", lambda v: v == 0),
            ("unexplained_airings", "0", lambda v: v == 0),
            ("lamp_correct_pct", ">= 99.9", lambda v: v >= 99.9), ("report_mismatches", "0", lambda v: v == 0),
            ("host_tick_late_p99_ms", "<= 100 ms", lambda v: v <= 100)):
        if key in f and f[key] is not None:
            out[key] = {"value": f[key], "target": target, "holds": bool(ok(f[key]))}
    for key in ("commands", "broadcasts_due", "broadcasts_aired", "broadcasts_reported_missed",
                "broadcasts_explained_by_faults", "lamp_node_minutes", "lamp_node_minutes_wrong", "reboots",
                "host_tick_late_p99_median_ms"):
        if key in f:
            out[key] = f[key]
    return out


def main(args):
    import asyncio

    from simulator.report import write_report
    from simulator.runner import Run
    from simulator.scenario import Scenario

    raw = scenario(nodes=args.nodes, hours=args.hours, seed=args.seed, speed=args.speed, start=args.start,
                   min_ratio=args.min_ratio, max_gaps=args.max_gaps)
    sc = Scenario(raw, raw["name"])
    out = args.report or os.path.join("build", "sim", "soak")
    os.makedirs(out, exist_ok=True)
    with open(args.write_scenario or os.path.join(out, "scenario.json"), "w") as f:
        json.dump(raw, f, ensure_ascii=False, indent=1)
    if args.dry_run:
        print(json.dumps(raw, ensure_ascii=False, indent=1))
        return 0
    print("soak %s: %d nodes, %g h simulated at %gx (about %.0f s of wall time), %d faults, %d staff actions" % (
        sc.name, len(sc.nodes), args.hours, args.speed, sc.duration / args.speed,
        len(raw["faults"]), len(raw["actions"])), flush=True)
    run = Run(sc, out, speed=args.speed, seed=args.seed, log=(lambda t: print(t, flush=True)) if args.verbose
              else (lambda t: None))
    run.stats_every_s = 20.0
    try:
        record = asyncio.run(run.run())
    except KeyboardInterrupt:
        return 130
    record["figures"].update(host_figures(record))
    write_report(record, out)
    for line in summary_lines(record):
        print(line)
    print(json.dumps(figures(record)))
    print("report: %s" % os.path.join(out, "index.html"))
    return 0 if record["assertions"] and all(a["ok"] for a in record["assertions"]) else 1

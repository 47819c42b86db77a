"""Step 4 of the broadcast pipeline: each node's lamp program and plan, pushed when they change.

Staff set lamp programs for the whole site (default), a zone or a node, and
broadcast schedules (gateway/schedules.py). For every node `PlanPusher` works
out its lamp program and its plan over the rolling horizon
(gateway/node_plans.py); a content digest says whether anything changed, and
only then is the version bumped and a signed set_program sent. A node whose
birth reports other versions than the ones on record gets the current ones
again.

This module owns the tables `programs`, `schedules` and `node_plans`: no
other gateway module queries them (their schema is in gateway/db.py's
migrations). Everything here is synchronous, so no transaction spans an
`await`; it is meant to run on the event loop thread, the database's owner.
"""
from __future__ import annotations

import calendar
import hashlib
import math
import json
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

from gateway.errors import GatewayError, NotFound
from gateway.node_plans import lamp_program_for, node_plan
from gateway.registry import has_lamp, has_speaker
from gateway.schedules import Occurrence, Schedule, expand, parse_schedule
from protocol import commands as ops
from protocol.errors import ProtocolError
from protocol.messages import Event, State
from protocol.program import LampProgram, default_program

if TYPE_CHECKING:
    from gateway.alerts import Alerts
    from gateway.commands import CommandService
    from gateway.db import Database
    from gateway.ingest import Ingest
    from gateway.registry import Registry

ROLL_EVERY_S = 600
RESUME_S = 300  # a clip item's window beyond the clip's length by default: a cut clip can still finish


def needs_approval(required: bool, role: str) -> bool:
    """Does a schedule an account of `role` creates or edits wait for approval? Only an operator's, and only
    while the site's `approval_required` setting is on; an admin's own schedules air at once."""
    return bool(required) and role != "admin"


class Clock(Protocol):
    def now(self) -> float: ...


ProgramTables = dict[str, dict[str, LampProgram]]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _plan_changed(previous_json: str | None, current: dict[str, list[Any]], now: int) -> bool:
    """Does the node need a new plan? Not when items merely ended (the node drops those itself):
    only when an item is new or different, or one it holds was cancelled before its end."""
    if previous_json is None:
        return True
    previous = json.loads(previous_json)
    for item_id, (digest, _end) in current.items():
        if previous.get(item_id, [None])[0] != digest:
            return True
    return any(end > now and item_id not in current for item_id, (_d, end) in previous.items())


class PlanPusher:
    """Lamp programs and schedules as staff set them, and each node's program and plan pushed as commands."""

    def __init__(self, *, db: Database, clock: Clock, registry: Registry, alerts: Alerts, commands: CommandService,
                 ingest: Ingest, log: Callable[[str], None], utc_offset: float, horizon_days: int,
                 clip_seconds: Callable[[str], float | None] | None = None) -> None:
        self.db = db
        self.clock = clock
        self.registry = registry
        self.alerts = alerts
        self.commands = commands
        self.ingest = ingest  # what nodes reported: did an item start?
        self.log = log
        self.utc_offset = utc_offset  # hours: the site's fixed UTC offset
        self.horizon_days = horizon_days  # how far ahead each node's plan reaches
        self._last_roll = 0.0
        self.clip_seconds = clip_seconds  # a library clip's length, None when the library has no such clip

    # ---- lamp programs -----------------------------------------------------
    def set_program(self, scope: str, target: str, body: Any, user: str | None) -> dict[str, Any]:
        if scope == "zone":
            self.registry.zone(target)
        elif scope == "node":
            self.registry.node(target)
        elif target != "site":
            raise GatewayError("program.target", "Chương trình mặc định có đích là 'site'",
                               "The default program's target is 'site'", "target")
        try:
            program = LampProgram.from_json(dict(body, version=0) if isinstance(body, dict) else body)
        except ProtocolError as exc:
            raise GatewayError("program.invalid", "Chương trình đèn không hợp lệ: %s" % exc,
                               "Invalid lamp program: %s" % exc)
        with self.db.tx():
            self.db.run("INSERT OR REPLACE INTO programs (scope, target, body, updated, updated_by) VALUES (?, ?, ?, ?, ?)",
                        scope, target, json.dumps(program.to_json()), self.clock.now(), user)
            pushed = self.refresh()
        return {"scope": scope, "target": target, "program": program.to_json(), "pushed": pushed}

    def delete_program(self, scope: str, target: str) -> None:
        with self.db.tx():
            if self.db.run("DELETE FROM programs WHERE scope = ? AND target = ?", scope, target).rowcount == 0:
                raise NotFound("program.unknown", "Không có chương trình %s/%s" % (scope, target),
                               "No program %s/%s" % (scope, target))
            self.refresh()

    def programs(self) -> list[dict[str, Any]]:
        return [{"scope": r["scope"], "target": r["target"], "program": json.loads(r["body"]),
                 "updated": r["updated"], "updated_by": r["updated_by"]}
                for r in self.db.all("SELECT * FROM programs ORDER BY scope, target")]

    def _program_tables(self) -> ProgramTables:
        by: ProgramTables = {"default": {}, "zone": {}, "node": {}}
        for r in self.db.all("SELECT scope, target, body FROM programs"):
            by[r["scope"]][r["target"]] = LampProgram.from_json(json.loads(r["body"]))
        return by

    # ---- schedules ---------------------------------------------------------
    def put_schedule(self, body: Any, user: str | None, new: bool, pending: bool = False) -> dict[str, Any]:
        """Store a schedule. `pending`: it waits for an admin's approval (approve_schedule) and airs nowhere
        until then (the site's approval_required setting, for an operator's schedule: see needs_approval)."""
        if isinstance(body, dict):  # what GET /api/schedules adds is not part of the schedule
            body = dict((k, v) for k, v in body.items() if k not in ("pending", "approval", "approved_by"))
        body = self._clip_window(body)
        schedule = parse_schedule(body, self.registry.zone_ids(), self.utc_offset)
        with self.db.tx():
            exists = self.db.one("SELECT 1 FROM schedules WHERE id = ?", schedule.id)
            if new and exists:
                raise GatewayError("schedule.exists", "Lịch %s đã có" % schedule.id,
                                   "Schedule %s already exists" % schedule.id, "id", status=409)
            if not new and not exists:
                raise NotFound("schedule.unknown", "Không có lịch %s" % schedule.id, "No schedule %s" % schedule.id)
            self.db.run("INSERT OR REPLACE INTO schedules (id, body, updated, updated_by, approval, approved_by)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        schedule.id, json.dumps(schedule.to_json(), ensure_ascii=False), self.clock.now(), user,
                        "pending" if pending else None, None if pending else user)
            pushed = self.refresh()
        return dict(schedule.to_json(), pushed=pushed, pending=pending)

    def approve_schedule(self, schedule_id: str, user: str | None, approve: bool = True) -> dict[str, Any]:
        """An admin's answer to a pending schedule: approved, it airs (plans pushed); rejected, it stays
        stored as 'rejected' and airs nowhere until edited again."""
        with self.db.tx():
            row = self.db.one("SELECT approval FROM schedules WHERE id = ?", schedule_id)
            if row is None:
                raise NotFound("schedule.unknown", "Không có lịch %s" % schedule_id, "No schedule %s" % schedule_id)
            if row["approval"] != "pending":
                raise GatewayError("schedule.not_pending", "Lịch %s không chờ duyệt" % schedule_id,
                                   "Schedule %s is not waiting for approval" % schedule_id, status=409)
            self.db.run("UPDATE schedules SET approval = ?, approved_by = ? WHERE id = ?",
                        None if approve else "rejected", user, schedule_id)
            pushed = self.refresh() if approve else []
        return {"id": schedule_id, "approved": approve, "pushed": pushed}

    def _clip_window(self, body: Any) -> Any:
        """A clip source must name a clip of the library, and its window must hold the whole clip; with no
        duration given the window is the clip's length + RESUME_S (room to resume after an emergency)."""
        if not isinstance(body, dict) or body.get("source") != "clip" or self.clip_seconds is None:
            return body
        ref = body.get("ref")
        secs = self.clip_seconds(ref) if isinstance(ref, str) else None
        if secs is None:
            raise GatewayError("clip.unknown", "Không có tệp âm thanh này trong thư viện",
                               "No such clip in the audio library", "ref")
        need = int(math.ceil(secs))
        if "duration_s" not in body:
            return dict(body, duration_s=need + RESUME_S)
        duration = body["duration_s"]
        if isinstance(duration, int) and not isinstance(duration, bool) and duration < need:
            raise GatewayError("duration_s.too_short",
                               "Thời lượng %d giây ngắn hơn tệp âm thanh (%d giây)" % (duration, need),
                               "Duration %d s is shorter than the clip (%d s)" % (duration, need), "duration_s")
        return body

    def delete_schedule(self, schedule_id: str) -> None:
        with self.db.tx():
            if self.db.run("DELETE FROM schedules WHERE id = ?", schedule_id).rowcount == 0:
                raise NotFound("schedule.unknown", "Không có lịch %s" % schedule_id, "No schedule %s" % schedule_id)
            self.refresh()

    def schedules(self) -> list[dict[str, Any]]:
        """Every stored schedule, with `pending` (waits for approval) and `approval` (None, pending, rejected)."""
        return [dict(json.loads(r["body"]), pending=r["approval"] == "pending", approval=r["approval"],
                     approved_by=r["approved_by"], updated=r["updated"], updated_by=r["updated_by"])
                for r in self.db.all("SELECT * FROM schedules ORDER BY id")]

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        for s in self.schedules():
            if s["id"] == schedule_id:
                return s
        raise NotFound("schedule.unknown", "Không có lịch %s" % schedule_id, "No schedule %s" % schedule_id)

    def _schedules(self, airing_only: bool = True) -> list[Schedule]:
        """The valid schedules; with `airing_only` (what node plans are built from) not the ones waiting
        for approval or rejected."""
        zones = self.registry.zone_ids()
        out = []
        sql = "SELECT body FROM schedules" + (" WHERE approval IS NULL" if airing_only else "")
        for r in self.db.all(sql):
            try:
                out.append(parse_schedule(json.loads(r["body"]), zones, self.utc_offset))
            except GatewayError as exc:  # e.g. a zone deleted since: the schedule waits for staff
                self.log("schedule skipped: %s" % exc.en)
        return out

    def occurrences_between(self, start_utc: int, end_utc: int) -> list[dict[str, Any]]:
        """Every occurrence of every stored schedule (pending and rejected ones too, marked) overlapping
        [start, end): the staff calendar."""
        rows = dict((s["id"], s) for s in self.schedules())
        out = []
        for o in expand(self._schedules(airing_only=False), max(0, start_utc), end_utc, self.utc_offset):
            s = rows[o.schedule_id]
            out.append({"schedule": o.schedule_id, "id": o.item_id, "start": o.start_utc, "end": o.end_utc,
                        "priority": o.priority, "zones": list(o.zones), "source": o.source, "ref": o.ref,
                        "volume": o.volume, "category": o.category, "title": s["title"],
                        "approval": s["approval"]})
        return out

    def check_schedule(self, body: Any, days: int) -> dict[str, Any]:
        """What a schedule being edited would clash with over the next `days`: for each overlap with an
        airing schedule in a shared zone, which one the loudspeakers play (protocol/plan.py `_outranks`:
        the higher priority; at equal priority the one that started last; a cut clip resumes while its
        window is open). Nothing is stored. Raises GatewayError when the schedule itself is invalid."""
        body = self._clip_window(body)
        candidate = parse_schedule(body, self.registry.zone_ids(), self.utc_offset)
        now = int(self.clock.now())
        end = now + max(1, min(days, 62)) * 86400
        others = [s for s in self._schedules() if s.id != candidate.id]
        titles = dict((s.id, s.title) for s in others)
        mine = expand([candidate], now, end, self.utc_offset)
        theirs = expand(others, now, end, self.utc_offset)
        found = []
        for a in mine:
            for b in theirs:
                if b.start_utc >= a.end_utc:
                    break
                shared = [z for z in a.zones if z in b.zones]
                if not shared or not a.overlaps(b):
                    continue
                if a.priority != b.priority:
                    new_wins = a.priority > b.priority
                else:
                    new_wins = (a.start_utc, a.item_id) > (b.start_utc, b.item_id)
                found.append({"start": a.start_utc, "end": a.end_utc, "other": b.schedule_id,
                              "other_title": titles[b.schedule_id], "other_start": b.start_utc,
                              "other_end": b.end_utc, "other_priority": b.priority, "priority": a.priority,
                              "zones": shared, "new_wins": new_wins,
                              "same_priority": a.priority == b.priority})
        return {"occurrences": len(mine), "days": days, "duration_s": candidate.duration_s, "conflicts": found}

    def upcoming(self, days: int) -> list[dict[str, Any]]:
        now = int(self.clock.now())
        occurrences = expand(self._schedules(), now, now + max(1, min(days, 31)) * 86400, self.utc_offset)
        return [{"schedule": o.schedule_id, "id": o.item_id, "start": o.start_utc, "end": o.end_utc,
                 "priority": o.priority, "zones": list(o.zones), "source": o.source, "ref": o.ref,
                 "volume": o.volume, "category": o.category} for o in occurrences]

    # ---- per-node program and plan -----------------------------------------
    def refresh(self, node_ids: Collection[str] | None = None) -> list[str]:
        """Recompute programs and plans; send set_program where content changed. Returns command ids."""
        now = int(self.clock.now())
        tables = self._program_tables()
        default = tables["default"].get("site") or default_program()
        occurrences = expand(self._schedules(), now, now + self.horizon_days * 86400, self.utc_offset)
        sent = []
        for node in self.registry.nodes():
            if node_ids is not None and node["id"] not in node_ids:
                continue
            cmd = self._refresh_node(node, tables, default, occurrences, now)
            if cmd:
                sent.append(cmd)
        return sent

    def _refresh_node(self, node: dict[str, Any], tables: ProgramTables, default: LampProgram,
                      occurrences: list[Occurrence], now: int, force: bool = False) -> str | None:
        """Send set_program if the node's program or plan changed (or `force`); returns the command id."""
        row = self.db.one("SELECT * FROM node_plans WHERE node_id = ?", node["id"])
        if row is None:
            self.db.run("INSERT INTO node_plans (node_id) VALUES (?)", node["id"])
            row = self.db.one("SELECT * FROM node_plans WHERE node_id = ?", node["id"])
        if row is None:
            raise RuntimeError("node_plans row of %s vanished inside its transaction" % node["id"])
        lamp = plan = None
        lamp_changed = plan_changed = False
        if has_lamp(node):
            program = lamp_program_for(node["id"], node["zones"], tables["node"], tables["zone"], default)
            lamp = dict(program.to_json(), version=0)
            lamp_digest = _digest(lamp)
            lamp_changed = lamp_digest != row["lamp_digest"]
        if has_speaker(node):
            result = node_plan(occurrences, node["zones"], 0, now)
            plan = result.plan.to_json()
            sent = {i[0]: [_digest(i), i[1] + i[2]] for i in plan["items"]}  # id -> [digest, end]
            plan_changed = _plan_changed(row["plan_digest"], sent, now)
        if not (force or lamp_changed or plan_changed):
            return None
        if self._pending_program(node["id"]):
            force = True  # the new command carries everything, so the older ones can be dropped
        args = {}
        if lamp is not None and (force or lamp_changed):
            version = row["lamp_version"] + (1 if lamp_changed else 0)
            args["lamp"] = dict(lamp, version=version)
            self.db.run("UPDATE node_plans SET lamp_version = ?, lamp_digest = ? WHERE node_id = ?",
                        version, lamp_digest, node["id"])
        if plan is not None and (force or plan_changed):
            version = row["plan_version"] + (1 if plan_changed else 0)
            args["plan"] = dict(plan, version=version)
            self.db.run("UPDATE node_plans SET plan_version = ?, plan_digest = ?, dropped = ? WHERE node_id = ?",
                        version, json.dumps(sent), result.dropped, node["id"])
            if result.dropped:
                self.alerts.open("plan_truncated", node["id"], {"dropped": result.dropped})
        if not args:
            return None
        self.db.run("UPDATE node_plans SET updated = ? WHERE node_id = ?", self.clock.now(), node["id"])
        self.commands.supersede(node["id"], ops.SET_PROGRAM)  # an older program arriving late must not undo this one
        return self.commands.create(node["id"], ops.SET_PROGRAM, args, user="planner")

    def roll(self) -> None:
        """Called by housekeeping: the horizon moves, new occurrences come into it."""
        now = self.clock.now()
        if now - self._last_roll >= ROLL_EVERY_S:
            self._last_roll = now
            with self.db.tx():
                self.refresh()

    def check_missed(self, grace_s: int = 120, lookback_s: int = 3600) -> int:
        """Alert for scheduled items a loudspeaker did not start (its own events say what aired)."""
        now = int(self.clock.now())
        occurrences = expand(self._schedules(), now - lookback_s, now - grace_s, self.utc_offset)
        speakers = [n for n in self.registry.nodes() if has_speaker(n)]
        opened = 0
        for occ in occurrences:
            if occ.start_utc > now - grace_s:
                continue
            for node in speakers:
                if not set(node["zones"]) & set(occ.zones):
                    continue
                if (not self.ingest.item_started(node["id"], occ.item_id)
                        and not self.alerts.opened_for("broadcast_missed", node["id"], "item", occ.item_id)):
                    self.alerts.open("broadcast_missed", node["id"], {"item": occ.item_id}, at=occ.start_utc)
                    opened += 1
        return opened

    def on_event(self, node_id: str, evt: Event) -> None:
        """A loudspeaker started an occurrence of a schedule staff had deleted before its start: the cancel's plan
        push reached it too late (the node drops an item as soon as it gets the plan without it). Reported as an
        alert, never hidden: the airing itself is in the report as it played."""
        if evt.kind != "broadcast_started" or not isinstance(evt.data.get("id"), str):
            return
        item = evt.data["id"]
        schedule_id, _, stamp = item.rpartition(".")
        if not schedule_id or len(stamp) != 12 or not stamp.isdigit():
            return  # not an occurrence of a schedule (an emergency, a broadcast now)
        if self.db.one("SELECT 1 FROM schedules WHERE id = ?", schedule_id) is not None:
            return
        row = self.db.one("SELECT at FROM audit WHERE action = 'schedule.delete' AND target = ? ORDER BY id DESC"
                          " LIMIT 1", schedule_id)
        try:
            start = calendar.timegm(time.strptime(stamp, "%Y%m%d%H%M")) - self.utc_offset * 3600
        except ValueError:
            return
        if row is None or row["at"] >= start or self.alerts.opened_for("aired_after_cancel", node_id, "item", item):
            return
        self.alerts.open("aired_after_cancel", node_id, {"item": item, "cancelled": time.strftime(
            "%H:%M", time.gmtime(row["at"] + self.utc_offset * 3600))}, at=evt.ts if evt.ts is not None else None)

    def on_birth(self, node_id: str, state: State) -> None:
        """A node that runs other versions than the ones on record gets the current ones again."""
        row = self.db.one("SELECT lamp_version, plan_version FROM node_plans WHERE node_id = ?", node_id)
        node = self.registry.node(node_id)
        wants_lamp = has_lamp(node)
        wants_plan = has_speaker(node)
        if row is None or (wants_lamp and state.lamp_version != row["lamp_version"]) or (
                wants_plan and state.plan_version != row["plan_version"]):
            now = int(self.clock.now())
            tables = self._program_tables()
            default = tables["default"].get("site") or default_program()
            occurrences = expand(self._schedules(), now, now + self.horizon_days * 86400, self.utc_offset)
            with self.db.tx():
                self._refresh_node(node, tables, default, occurrences, now, force=True)

    def _pending_program(self, node_id: str) -> bool:
        return self.commands.has_open(node_id, ops.SET_PROGRAM)

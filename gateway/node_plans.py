"""Step 3 of the broadcast pipeline: occurrences -> each node's plan (and its lamp program).

Pure logic: no I/O, no clock, no database. `node_plan` cuts from the
occurrences (gateway/schedules.py, step 2) the items that concern one node's
zones, at most MAX_ITEMS; `plan_digest` says whether a plan's content
changed; `lamp_program_for` picks a node's lamp program. Pushing them to the
nodes is gateway/plan_push.py.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from gateway.errors import GatewayError
from gateway.schedules import Occurrence
from protocol.errors import ProtocolError
from protocol.messages import MAX_SEQ
from protocol.plan import MAX_ITEMS, MAX_ZONES, BroadcastPlan
from protocol.topics import check_id

P = TypeVar("P")


def _fail(code: str, vi: str, en: str, field_name: str | None = None) -> NoReturn:
    raise GatewayError(code, vi, en, field_name)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class NodePlan:
    """A node's plan and what did not fit: `dropped` items (the latest ones) beyond MAX_ITEMS.

    When `dropped` > 0 the plan is complete only until `complete_until` (the start of the first
    dropped item): staff should be warned, and the gateway must re-plan before then.
    """

    plan: BroadcastPlan
    dropped: int = 0
    complete_until: int | None = None

    @property
    def digest(self) -> str:
        return plan_digest(self.plan)


def node_plan(occurrences: Iterable[Occurrence], node_zones: Sequence[str], version: int,
              now_utc: float) -> NodePlan:
    """The items that concern a node (its zones only) and have not ended, soonest first, at most MAX_ITEMS."""
    if not isinstance(node_zones, (list, tuple)) or len(node_zones) > MAX_ZONES:
        _fail("planner.node_zones", "Một nút chỉ thuộc tối đa %d khu vực" % MAX_ZONES,
              "A node belongs to at most %d zones" % MAX_ZONES, "zones")
    for zone in node_zones:
        try:
            check_id(zone, "zone id")
        except ProtocolError as e:
            _fail("planner.node_zones", "Mã khu vực không hợp lệ: %r" % (zone,), str(e), "zones")
    if not _is_int(version) or not 0 <= version <= MAX_SEQ:
        _fail("planner.version", "Số phiên bản kế hoạch không hợp lệ", "Invalid plan version %r" % (version,))
    mine = set(node_zones)
    chosen, ids = [], set()
    for occ in sorted(occurrences, key=lambda o: (o.start_utc, o.item_id)):
        zones = [z for z in occ.zones if z in mine]
        if not zones or occ.end_utc <= now_utc:
            continue
        if occ.item_id in ids:
            _fail("planner.duplicate_item", "Buổi phát %s bị lặp" % occ.item_id,
                  "Occurrence %s is listed twice" % occ.item_id)
        ids.add(occ.item_id)
        chosen.append(occ.item(zones))
    dropped = max(0, len(chosen) - MAX_ITEMS)
    complete_until = chosen[MAX_ITEMS].start if dropped else None
    return NodePlan(BroadcastPlan(version, chosen[:MAX_ITEMS]), dropped, complete_until)


def plan_digest(plan: "BroadcastPlan | NodePlan") -> str:
    """SHA-256 (hex) of a plan's items, not its version: equal content, equal digest."""
    if isinstance(plan, NodePlan):
        plan = plan.plan
    items = plan.to_json()["items"]
    return hashlib.sha256(json.dumps(items, separators=(",", ":"), ensure_ascii=True).encode()).hexdigest()


# --- lamp programs -------------------------------------------------------------------------------------


def lamp_program_for(node_id: str, node_zones: Iterable[str], node_programs: Mapping[str, P],
                     zone_programs: Mapping[str, P], default: P) -> P:
    """A node's own program wins, else that of its first zone (in its zone order) that has one, else `default`."""
    own = node_programs.get(node_id)
    if own is not None:
        return own
    for zone in node_zones:
        program = zone_programs.get(zone)
        if program is not None:
            return program
    return default

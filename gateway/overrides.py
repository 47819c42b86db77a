"""Lamp overrides staff set: "these lamps at this level until that time", and their cancelling.

An override is a signed lamp_override command (protocol/commands.py: level, until) to each lamp of a
node or a zone; the node keeps it on flash and it ends by itself at `until` (firmware/node.py: among
live overrides the latest set wins). Cancelling sends lamp_override with no level, which clears every
override of that node: its lamps go back to their program.

No table of its own: the commands table is the record. One request is one batch of commands
("ovr:<scope>:<target>:<ms>"); an override counts as active while its until is ahead, its command was
not refused or expired, and no clear to that node was issued after it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.clock import Clock
from gateway.commands import CommandService
from gateway.errors import GatewayError
from gateway.registry import Registry, has_lamp
from protocol import commands as ops

MAX_HOURS = 72  # longer than three nights is a program change, not an override
FAILED = ("rejected", "expired", "superseded")


class Overrides:
    def __init__(self, *, commands: CommandService, registry: Registry, clock: Clock,
                 expiry_s: Callable[[], float]) -> None:
        self.commands = commands
        self.registry = registry
        self.clock = clock
        self.expiry_s = expiry_s  # the usual command expiry (cfg.command_expiry_s)

    def lamps_of(self, scope: str, target: str) -> list[dict[str, Any]]:
        """The lamp nodes an override of (scope, target) reaches; GatewayError when there are none."""
        if scope == "node":
            nodes = [self.registry.node(target)]
        elif scope == "zone":
            self.registry.zone(target)
            nodes = self.registry.nodes_in_zones([target])
        else:
            raise GatewayError("override.scope", "Chỉ chọn được một thôn hoặc một thiết bị",
                               "Choose a zone or a node", "target")
        lamps = [n for n in nodes if has_lamp(n)]
        if not lamps:
            raise GatewayError("override.no_lamp", "Không có đèn nào ở đây", "There is no lamp here", "target")
        return lamps

    def set(self, scope: str, target: str, level: int, until: int, user: str | None) -> dict[str, Any]:
        """Lamps of a node or zone at `level` % until `until` (Unix s); returns the batch and its commands."""
        now = self.clock.now()
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 100:
            raise GatewayError("override.level", "Mức sáng phải từ 0 đến 100 %", "Level must be 0 to 100 %", "level")
        if until <= now + 30:
            raise GatewayError("override.until", "Thời điểm kết thúc phải sau bây giờ",
                               "The end must be later than now", "until")
        if until > now + MAX_HOURS * 3600:
            raise GatewayError("override.until", "Không đặt quá %d giờ; hãy sửa chương trình đèn" % MAX_HOURS,
                               "At most %d hours; change the lamp program instead" % MAX_HOURS, "until")
        lamps = self.lamps_of(scope, target)
        batch = "ovr:%s:%s:%d" % (scope, target, int(now * 1000))
        expires = max(10.0, min(float(self.expiry_s()), until - now))  # arriving after its end is pointless
        ids = self.commands.create_many([(n["id"], ops.LAMP_OVERRIDE, {"level": level, "until": int(until)})
                                         for n in lamps], user=user, batch=batch, expires_s=expires)
        return {"batch": batch, "commands": ids, "nodes": [n["id"] for n in lamps]}

    def cancel(self, batch: str, user: str | None) -> list[str]:
        """Clear the overrides on every node of a batch (all of that node's overrides); returns command ids."""
        nodes = self.commands.nodes_of_batch(batch)
        if not batch.startswith("ovr:") or not nodes:
            raise GatewayError("override.unknown", "Không có lệnh đặt đèn này", "No such override", status=404)
        until = int(self.clock.now()) + 60
        return self.commands.create_many([(n, ops.LAMP_OVERRIDE, {"until": until}) for n in nodes],
                                         user=user, batch="ovr-clear:" + batch[4:])

    def active(self, node_id: str | None = None) -> list[dict[str, Any]]:
        """Overrides still in force (or on their way), newest first, one entry per batch:
        {batch, scope, target, level, until, set_by, created, nodes: {node: status}}."""
        now = self.clock.now()
        rows = self.commands.of_op(ops.LAMP_OVERRIDE, now - MAX_HOURS * 3600 - 3600, node_id)
        cleared: dict[str, float] = {}  # node -> latest clear issued
        for r in rows:
            if r["args"].get("level") is None and r["status"] not in FAILED:
                cleared[r["node_id"]] = max(cleared.get(r["node_id"], 0.0), r["created"])
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            level, until = r["args"].get("level"), r["args"].get("until", 0)
            if (level is None or until <= now or r["status"] in FAILED or not r["batch"]
                    or cleared.get(r["node_id"], -1.0) >= r["created"]):
                continue
            parts = str(r["batch"]).split(":")
            scope, target = (parts[1], parts[2]) if len(parts) == 4 else ("node", r["node_id"])
            entry = out.setdefault(r["batch"], {"batch": r["batch"], "scope": scope, "target": target,
                                                "level": level, "until": until, "set_by": r["created_by"],
                                                "created": r["created"], "nodes": {}})
            entry["nodes"][r["node_id"]] = r["status"]
        return sorted(out.values(), key=lambda e: -e["created"])

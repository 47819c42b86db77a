"""Emergency broadcasts: one signed broadcast_now per loudspeaker of the chosen zones, sent at once;
a stop sends stop_broadcast to the same nodes. Both are batches whose progress counts node acks."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gateway.commands import CommandService
from gateway.db import Database
from gateway.errors import GatewayError, NotFound
from gateway.registry import Registry, has_speaker
from protocol import commands as ops
from protocol.plan import EMERGENCY

EXPIRES_S = 120  # an emergency that could not reach a node in two minutes is reported, not aired late


def _unknown(batch: str) -> NotFound:
    return NotFound("batch.unknown", "Không có lệnh khẩn cấp %s" % batch, "No emergency %s" % batch)


class Emergencies:
    def __init__(self, *, db: Database, registry: Registry, commands: CommandService,
                 clip_seconds: Callable[[str], float | None] | None = None) -> None:
        self.db = db
        self.registry = registry
        self.commands = commands
        self.clip_seconds = clip_seconds  # a library clip's length (None: no such clip)

    def zones(self, zones: list[str] | str) -> list[str]:
        """The zones asked for ("all" or a list), checked against the registry."""
        known = self.registry.zone_ids()
        chosen = sorted(known) if isinstance(zones, str) and zones == "all" else [str(z) for z in zones]
        unknown = [z for z in chosen if z not in known]
        if unknown or not chosen:
            raise GatewayError("zones.unknown", "Không có cụm: %s" % ", ".join(unknown or ["(trống)"]),
                               "Unknown zones: %s" % ", ".join(unknown or ["(none)"]), "zones")
        return chosen

    async def start(self, zones: list[str] | str, source: str, ref: str | None, volume: int, duration_s: int,
                    user: str | None = None) -> dict[str, Any]:
        """Air an emergency now on every loudspeaker of `zones`; returns {batch, zones, progress}."""
        chosen = self.zones(zones)
        if (source == "line") != (ref is None):
            raise GatewayError("ref.invalid", "Nguồn clip/stream cần mã; nguồn line thì không",
                               "A clip or stream source needs ref; line takes none", "ref")
        if source == "clip" and self.clip_seconds is not None and ref is not None:
            secs = self.clip_seconds(ref)
            if secs is None:
                raise GatewayError("clip.unknown", "Không có tệp âm thanh này trong thư viện",
                                   "No such clip in the audio library", "ref")
            duration_s = max(duration_s, int(math.ceil(secs)))  # an emergency clip always plays to its end
        nodes = [n for n in self.registry.nodes_in_zones(chosen) if has_speaker(n)]
        batch = "e%d" % self.db.next_counter("batch")
        commands = []
        for node in nodes:
            args: dict[str, Any] = {"id": batch, "dur": duration_s, "src": source, "vol": volume,
                                    "zones": [z for z in node["zones"] if z in chosen], "prio": EMERGENCY}
            if source == "clip":
                args["clip"] = ref
            elif source == "stream":
                args["stream"] = ref
            commands.append((node["id"], ops.BROADCAST_NOW, args))
        await self.commands.fan_out(commands, user=user, batch=batch, expires_s=EXPIRES_S)
        return {"batch": batch, "zones": chosen, "progress": self.commands.batch_progress(batch)}

    async def stop(self, batch: str, user: str | None = None) -> dict[str, Any]:
        """Stop an emergency on every node it went to; returns the stop batch and its progress."""
        nodes = self.commands.nodes_of_batch(batch)
        if not nodes or not batch.startswith("e"):
            raise _unknown(batch)
        stop = "s" + batch
        await self.commands.fan_out([(n, ops.STOP_BROADCAST, {"id": batch}) for n in nodes], user=user, batch=stop)
        return {"batch": stop, "progress": self.commands.batch_progress(stop)}

    def progress(self, batch: str) -> dict[str, Any]:
        progress = self.commands.batch_progress(batch)
        if not progress["total"]:
            raise _unknown(batch)
        return {"batch": batch, "progress": progress}

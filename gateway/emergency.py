"""Emergency broadcasts: one signed broadcast_now per loudspeaker of the chosen zones, sent at once;
a stop sends stop_broadcast to the same nodes. Both are batches whose progress counts node acks."""
from __future__ import annotations

import asyncio
import io
import json
import math
import wave
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gateway.commands import CommandService
from gateway.db import Database
from gateway.errors import GatewayError, NotFound
from gateway.registry import Registry, has_speaker
from protocol import commands as ops
from protocol.plan import EMERGENCY

EXPIRES_S = 120  # an emergency that could not reach a node in two minutes is reported, not aired late
MAX_REPEATS = 5
REPEAT_GAP_S = 2.0  # silence between two readings of a repeated emergency clip
FETCH_MARGIN_S = 60  # a commanded clip ends the item at its last sample; the margin only covers fetching it
ACTIVE_WITHIN_S = 6 * 3600  # how far back the dashboard looks for an emergency still airing


class ClipStore(Protocol):
    """What the repeat preparation needs of the clip library (gateway/audio/library.py)."""

    def require(self, clip_id: str) -> dict[str, Any]: ...

    def browser_audio(self, clip_id: str) -> Awaitable[bytes]: ...

    def add_upload(self, data: bytes, filename: str | None, title: str | None, category: str,
                   user: str | None, source: str = "upload") -> Awaitable[dict[str, Any]]: ...


def _repeat_wav(pcm_wav: bytes, repeats: int, gap_s: float) -> bytes:
    """N readings of a 16-bit PCM WAV, with silence between them, as one WAV."""
    with wave.open(io.BytesIO(pcm_wav)) as src:
        params = src.getparams()
        frames = src.readframes(src.getnframes())
    gap = b"\0" * (int(params.framerate * gap_s) * params.sampwidth * params.nchannels)
    out = io.BytesIO()
    with wave.open(out, "wb") as dst:
        dst.setnchannels(params.nchannels)
        dst.setsampwidth(params.sampwidth)
        dst.setframerate(params.framerate)
        dst.writeframes(gap.join([frames] * repeats))
    return out.getvalue()


async def repeated_clip(clips: ClipStore, clip_id: str, repeats: int, user: str | None) -> dict[str, Any]:
    """The clip to air for `repeats` readings of `clip_id`.

    A node plays a commanded clip once and ends the item at its last sample
    (firmware/speaker.py: the item's duration only bounds it, nothing loops), so
    repeats are made on the gateway: one library clip of N readings with 2 s of
    silence between them (content-addressed: the same request gives the same clip)."""
    row = clips.require(clip_id)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEATS:
        raise GatewayError("repeats.invalid", "Số lần phát từ 1 đến %d" % MAX_REPEATS,
                           "Repeats must be 1 to %d" % MAX_REPEATS, "repeats")
    if repeats == 1:
        return row
    audio = await clips.browser_audio(clip_id)
    data = await asyncio.to_thread(_repeat_wav, audio, repeats, REPEAT_GAP_S)
    title = "%s (x%d)" % (str(row.get("title") or clip_id[:8])[:100], repeats)
    return await clips.add_upload(data, "repeat.wav", title, str(row.get("category") or "emergency"), user)


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

    def duration_for(self, clip_id: str) -> int:
        """The broadcast_now duration for an emergency clip: its length and a margin to fetch it."""
        secs = self.clip_seconds(clip_id) if self.clip_seconds is not None else None
        if secs is None:
            raise GatewayError("clip.unknown", "Không có tệp âm thanh này trong thư viện",
                               "No such clip in the audio library", "ref")
        return int(math.ceil(secs)) + FETCH_MARGIN_S

    def commands_of(self, batch: str) -> list[dict[str, Any]]:
        """The latest command of the batch to each node, by node id (for the progress view)."""
        latest: dict[str, dict[str, Any]] = {}
        for row in self.commands.list(batch=batch, limit=1000):
            if row["node_id"] not in latest:  # newest first
                latest[row["node_id"]] = row
        return [latest[n] for n in sorted(latest)]

    def active(self, now: float) -> list[dict[str, Any]]:
        """Emergencies not stopped whose time has not run out, newest first: {batch, started, until, zones}."""
        rows = self.db.all(
            "SELECT batch, MIN(created) AS started, MAX(json_extract(args, '$.dur')) AS dur,"
            " json_group_array(json_extract(args, '$.zones')) AS zones FROM commands"
            " WHERE op = ? AND batch LIKE 'e%' AND created > ? AND batch NOT IN"
            " (SELECT DISTINCT substr(batch, 2) FROM commands WHERE batch LIKE 'se%')"
            " GROUP BY batch ORDER BY started DESC", ops.BROADCAST_NOW, now - ACTIVE_WITHIN_S)
        out = []
        for r in rows:
            until = float(r["started"]) + float(r["dur"] or 0)
            if until <= now:
                continue
            lists = [json.loads(zs) if isinstance(zs, str) else zs for zs in json.loads(r["zones"])]
            zones = sorted({str(z) for zs in lists if isinstance(zs, list) for z in zs})
            out.append({"batch": r["batch"], "started": r["started"], "until": until, "zones": zones})
        return out

    def stopped(self, batch: str) -> dict[str, int] | None:
        """The stop's progress when this emergency was stopped, else None."""
        progress = self.commands.batch_progress("s" + batch)
        return progress if progress["total"] else None

    def progress(self, batch: str) -> dict[str, Any]:
        progress = self.commands.batch_progress(batch)
        if not progress["total"]:
            raise _unknown(batch)
        return {"batch": batch, "progress": progress}

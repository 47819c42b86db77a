"""What a node may fetch over HTTP: who it is (Basic auth) and which clips it may have.

Nodes fetch clips by content hash from `<data_dir>/clips/<sha256>.wav` (the
audio library writes them there; docs/audio.md section 4). A node logs in
with its broker user (its id) and broker password; the registry keeps only
the Mosquitto-format hash of that password, checked here with the broker's
own `verify_password`. That check is PBKDF2-SHA512 of 101 iterations (or a
salted SHA-512): 0.23 ms here, so it runs on the loop for every request
and nothing is cached (a re-provisioned node's old password stops working at
once).

A node may fetch a clip only when an item of its current plan (the newest
set_program command that carried a plan to it) or one of its recent
broadcast_now commands (still within its duration) refers to it; anything
else gets the same 404 as an unknown clip, so nothing leaks.

Runs on the event loop (it reads the database); the file itself is sent by
Starlette's FileResponse, which reads it with anyio's thread-backed file IO
and handles `Range` (206, Content-Range, 416).
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
from typing import Any

from gateway.broker.passwords import verify_password
from gateway.clock import Clock
from gateway.db import Database
from protocol import commands as ops

SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
GRACE_S = 300  # a broadcast_now's clip stays fetchable this long after its window
MAX_DURATION_S = 6 * 3600  # the longest broadcast_now (protocol/plan.py MAX_DURATION)
REALM = "denloa-node"


def clips_dir(data_dir: str) -> str:
    """Where the audio library keeps the node-format clip files."""
    return os.path.join(data_dir, "clips")


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = text.partition(":")
    if not sep or not user:
        return None
    return user, password


class NodeFiles:
    """Node authentication and clip access rules; every method runs on the loop that owns `db`."""

    def __init__(self, *, db: Database, clock: Clock, data_dir: str) -> None:
        self.db = db
        self.clock = clock
        self.dir = clips_dir(data_dir)

    def authenticate(self, header: str | None) -> dict[str, Any] | None:
        """The node ({id, zones, kind}) whose id and broker password the header carries, else None.
        A revoked node is refused."""
        creds = parse_basic(header)
        if creds is None:
            return None
        user, password = creds
        row = self.db.one("SELECT id, zones, kind, mqtt_hash FROM nodes WHERE id = ? AND revoked = 0", user)
        if row is None or not verify_password(password, row["mqtt_hash"]):
            return None
        return {"id": row["id"], "zones": json.loads(row["zones"]), "kind": row["kind"]}

    def path(self, sha: str) -> str | None:
        """The clip file of this content hash if the name is one and the file exists."""
        if not SHA256_HEX.match(sha):
            return None
        path = os.path.join(self.dir, sha + ".wav")
        return path if os.path.isfile(path) else None

    def allowed(self, node_id: str, sha: str) -> bool:
        """May this node fetch this clip: its current plan or a recent broadcast_now names it?"""
        return self._in_plan(node_id, sha) or self._in_broadcast(node_id, sha)

    def _in_plan(self, node_id: str, sha: str) -> bool:
        row = self.db.one("SELECT args FROM commands WHERE node_id = ? AND op = ? AND args LIKE ?"
                          " ORDER BY rowid DESC LIMIT 1", node_id, ops.SET_PROGRAM, '%"plan":%')
        if row is None:
            return False
        plan = json.loads(row["args"]).get("plan") or {}
        for item in plan.get("items", ()):
            # [id, start, dur, prio, src, ref, zones, vol, cat] (protocol/plan.py)
            if isinstance(item, list) and len(item) > 5 and item[4] == "clip" and item[5] == sha:
                return True
        return False

    def _in_broadcast(self, node_id: str, sha: str) -> bool:
        now = self.clock.now()
        rows = self.db.all("SELECT args, created FROM commands WHERE node_id = ? AND op = ? AND created >= ?"
                           " AND args LIKE ?", node_id, ops.BROADCAST_NOW, now - MAX_DURATION_S - GRACE_S,
                           "%" + sha + "%")
        for row in rows:
            args = json.loads(row["args"])
            if args.get("clip") == sha and row["created"] + int(args.get("dur", 0)) + GRACE_S >= now:
                return True
        return False

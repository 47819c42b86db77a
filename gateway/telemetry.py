"""A bounded history of node telemetry, for the staff UI's charts (lamp power, energy, RSSI, free heap).

Nodes send telemetry every few seconds; keeping every reading would fill the
Pi's SD card. `TelemetryHistory` keeps, per node:
- at most one reading per `every_s` (60 s): later ones in the same interval are dropped;
- after `fine_s` (2 days), at most one reading per `coarse_s` (15 min) (the first of each);
- nothing older than `keep_s` (14 days).
So a node costs at most fine_s/every_s + (keep_s - fine_s)/coarse_s rows (2,880 + 1,152), whatever
its telemetry rate. `prune()` does the thinning and the expiry; housekeeping calls it (gateway/service.py).

The table `telemetry (node_id, ts, data)` (migration 4) belongs to the ingest side: only this class,
held by gateway/ingest.py's Ingest, touches it. Everything runs on the event loop (the database's owner).
"""
from __future__ import annotations

import json
from typing import Any

from gateway.db import Database

EVERY_S = 60
FINE_S = 2 * 86400
COARSE_S = 900
KEEP_S = 14 * 86400
PRUNE_EVERY_S = 3600
SERIES = ("w", "wh", "lvl", "rssi", "heap", "vol")  # what a row keeps (all optional)


def compact(tele: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of a telemetry message the charts use."""
    out: dict[str, Any] = {}
    lamp = tele.get("lamp")
    if isinstance(lamp, dict):
        out["w"] = lamp.get("w")
        out["wh"] = lamp.get("wh")
        out["lvl"] = lamp.get("lvl")
    amp = tele.get("amp")
    if isinstance(amp, dict):
        out["amp"] = 1 if amp.get("on") else 0
        out["vol"] = amp.get("vol")
    if tele.get("rssi") is not None:
        out["rssi"] = tele["rssi"]
    if tele.get("heap") is not None:
        out["heap"] = tele["heap"]
    return {k: v for k, v in out.items() if v is not None}


class TelemetryHistory:
    def __init__(self, db: Database, every_s: float = EVERY_S, fine_s: float = FINE_S, coarse_s: float = COARSE_S,
                 keep_s: float = KEEP_S) -> None:
        self.db = db
        self.every_s = every_s
        self.fine_s = fine_s
        self.coarse_s = coarse_s
        self.keep_s = keep_s
        self._last: dict[str, float] = {}  # node -> time of its last stored row
        self._last_prune = 0.0

    def record(self, node_id: str, now: float, tele: dict[str, Any]) -> bool:
        """Store a reading unless one of this node is younger than `every_s`; True if stored.
        Runs inside the caller's transaction (ingest's savepoint per message)."""
        last = self._last.get(node_id)
        if last is None:
            row = self.db.one("SELECT MAX(ts) FROM telemetry WHERE node_id = ?", node_id)
            last = row[0] if row is not None and row[0] is not None else None
        if last is not None and 0 <= now - last < self.every_s:
            return False
        data = compact(tele)
        if not data:
            return False
        self.db.run("INSERT OR IGNORE INTO telemetry (node_id, ts, data) VALUES (?, ?, ?)",
                    node_id, now, json.dumps(data, separators=(",", ":")))
        self._last[node_id] = now
        return True

    def series(self, node_id: str, since: float, until: float | None = None) -> dict[str, list[Any]]:
        """Columns for a chart: {"t": [...], "w": [...], ...} oldest first; a missing value is None."""
        sql, args = "SELECT ts, data FROM telemetry WHERE node_id = ? AND ts >= ?", [node_id, since]
        if until is not None:
            sql += " AND ts <= ?"
            args.append(until)
        rows = self.db.all(sql + " ORDER BY ts", *args)
        out: dict[str, list[Any]] = {"t": []}
        for key in SERIES:
            out[key] = []
        for r in rows:
            data = json.loads(r["data"])
            out["t"].append(r["ts"])
            for key in SERIES:
                out[key].append(data.get(key))
        return out

    def count(self, node_id: str | None = None) -> int:
        if node_id is None:
            return int(self.db.scalar("SELECT COUNT(*) FROM telemetry"))
        return int(self.db.scalar("SELECT COUNT(*) FROM telemetry WHERE node_id = ?", node_id))

    def prune(self, now: float, force: bool = False) -> int:
        """Drop readings older than `keep_s`, thin those older than `fine_s` to one per `coarse_s`.
        At most once per PRUNE_EVERY_S unless forced; returns how many rows went."""
        if not force and now - self._last_prune < PRUNE_EVERY_S:
            return 0
        self._last_prune = now
        removed = 0
        with self.db.tx():
            nodes = [r[0] for r in self.db.all("SELECT DISTINCT node_id FROM telemetry")]
            for node_id in nodes:  # per node: the primary key (node_id, ts) serves every query
                removed += self.db.run("DELETE FROM telemetry WHERE node_id = ? AND ts < ?",
                                       node_id, now - self.keep_s).rowcount
                # the first row of each coarse bucket stays; its later rows in the thinned range go
                removed += self.db.run(
                    "DELETE FROM telemetry WHERE node_id = ? AND ts < ? AND ts NOT IN ("
                    " SELECT MIN(ts) FROM telemetry WHERE node_id = ? AND ts < ?"
                    " GROUP BY CAST(ts / ? AS INTEGER))",
                    node_id, now - self.fine_s, node_id, now - self.fine_s, self.coarse_s).rowcount
        return removed

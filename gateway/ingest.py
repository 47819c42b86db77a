"""What nodes say, turned into live state, stored events, alerts and report data.

Every payload is decoded by protocol/ (which raises only ProtocolError);
anything malformed, oversized, from an unknown node or another site is
counted and dropped: it never stops the gateway.

Ingest owns the tables of what nodes said: node_state (live state), events,
seq_tracker, airings, lamp_days, lamp_counters, and (through
`self.history`, gateway/telemetry.py) the bounded telemetry history. A batch of messages is stored
in one transaction with a savepoint per message: one bad message rolls back
only itself, and a burst costs one commit.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from gateway.alerts import Alerts
from gateway.clock import Clock
from gateway.commands import CommandService
from gateway.config import GatewayConfig
from gateway.db import Database
from gateway.metrics import Metrics
from gateway.registry import Registry
from gateway.telemetry import TelemetryHistory
from protocol import messages, topics
from protocol.errors import ProtocolError

STALE_AFTER_S = 180  # no word from an online node for this long: treat it as offline
SUSPICIOUS = ("bad_signature", "replay", "wrong_target")
SKEW_S = 30  # a node's telemetry time further off than this gets a fresh time sync
SKEW_EVERY_S = 600
LAMP_FAULTS = ("lamp_fault", "day_burner")
AUDIO_RATE = 16000  # samples a second of the node playback format (protocol/ima.py)
MISSED_WHY = {  # why a node did not air an item (its broadcast_missed event), in plain words
    "clip_missing": ("loa chưa tải được tệp âm thanh kịp giờ", "the loudspeaker could not fetch the audio in time"),
    "clip_bad": ("tệp âm thanh trên loa bị hỏng", "the audio file on the loudspeaker is damaged"),
    "no_clock": ("loa chưa có giờ chuẩn", "the loudspeaker has no valid time"),
    "stream_unavailable": ("loa không nhận được luồng phát trực tiếp", "the loudspeaker could not get the live stream"),
    "no_audio": ("bộ phát âm thanh của loa bị lỗi", "the loudspeaker's audio output failed"),
}


class Ingest:
    def __init__(self, *, db: Database, cfg: GatewayConfig, clock: Clock, registry: Registry,
                 commands: CommandService, alerts: Alerts, metrics: Metrics, log: Callable[[str], None]) -> None:
        self.db = db
        self.cfg = cfg
        self.clock = clock
        self.registry = registry
        self.commands = commands
        self.alerts = alerts
        self.metrics = metrics
        self.log = log
        self.tele: dict[str, tuple[float, messages.Telemetry]] = {}  # node -> latest (received, tele), in memory
        self.on_birth: list[Callable[[str, messages.State], None]] = []
        self.on_time_request: list[Callable[[str, int, int], None]] = []  # (node_id, t1, received_ms)
        self.on_clock_skew: list[Callable[[str, float], None]] = []  # the node's clock disagrees with ours
        self.on_event: list[Callable[[str, messages.Event], None]] = []  # every new event, after it was handled
        self._skew_sent: dict[str, float] = {}
        # how long a node stays offline before its `offline` alert opens (the admin setting
        # offline_alert_min; gateway/app.py wires it): a short drop, e.g. a broker restart, stays quiet
        self.offline_alert_after: Callable[[], float] = lambda: 0.0
        self.history = TelemetryHistory(db)  # the bounded telemetry history of the charts (table telemetry)

    def handle_batch(self, batch: list[tuple[str, bytes]]) -> None:
        """Messages as they arrived, stored in one transaction (a savepoint each). Never raises."""
        try:
            with self.db.tx():
                for topic, payload in batch:
                    self.handle(topic, payload)
        except Exception as exc:  # the commit itself failed (disk full?): say so, keep the gateway up
            self.metrics.bad("internal")
            self.log("could not store %d messages: %r" % (len(batch), exc))

    def handle(self, topic: str, payload: bytes) -> None:
        """One MQTT message. Never raises."""
        try:
            site, node_id, kind = topics.parse_topic(topic)
        except ProtocolError:
            self.metrics.bad("topic")
            return
        if site != self.cfg.site or node_id is None:
            return  # our own gateway state, or a bridged neighbour
        if not self.registry.known(node_id):
            self.metrics.bad("unknown_node")
            return
        self.metrics.message(kind)
        try:
            with self.db.tx():  # a savepoint inside a batch: this message, all or nothing
                self._dispatch(node_id, kind, payload)
        except ProtocolError as exc:
            self.metrics.bad(kind)
            self.log("dropped a malformed %s from %s: %s" % (kind, node_id, exc))
        except Exception as exc:  # a bug here must not stop ingest of everything else
            self.metrics.bad("internal")
            self.log("error handling %s from %s: %r" % (kind, node_id, exc))

    def _dispatch(self, node_id: str, kind: str, payload: bytes) -> None:
        if kind == topics.STATE:
            self._state(node_id, messages.State.decode(payload))
        elif kind == topics.TELE:
            self._tele(node_id, messages.Telemetry.decode(payload))
        elif kind == topics.EVT:
            self._event(node_id, messages.Event.decode(payload))
        elif kind == topics.ACK:
            self.commands.on_ack(node_id, messages.Ack.decode(payload))

    # ---- state -------------------------------------------------------------
    def _state(self, node_id: str, state: messages.State) -> None:
        now = self.clock.now()
        row = self.db.one("SELECT online, boot_id FROM node_state WHERE node_id = ?", node_id)
        if not state.online:
            if row and row["online"] and (state.boot_id is None or state.boot_id == row["boot_id"]):
                with self.db.tx():
                    self.db.run("UPDATE node_state SET online = 0, offline_since = ? WHERE node_id = ?", now, node_id)
                    if self.offline_alert_after() <= 0:
                        self.alerts.open("offline", node_id, at=now)
            return
        with self.db.tx():
            self.db.run(
                "UPDATE node_state SET online = 1, boot_id = ?, last_seen = ?, online_since = ?, firmware = ?,"
                " caps = ?, clock = ?, lamp_version = ?, plan_version = ?, safe = ?, failed = ? WHERE node_id = ?",
                state.boot_id, now, now, state.firmware, json.dumps(state.caps), state.clock,
                state.lamp_version, state.plan_version, int(state.safe_mode), json.dumps(state.failed), node_id)
            self.alerts.close("offline", node_id)
            for part in state.failed:  # one alert per part, open while the node's births list it
                self.alerts.open("part_failed", node_id, {"part": part}, subject=part)
            self.alerts.close("part_failed", node_id, keep=state.failed)
            self._clock_alert(node_id, state.clock)
            if not state.safe_mode:
                self.alerts.close("safe_mode", node_id)
        for fn in self.on_birth:
            fn(node_id, state)

    def _clock_alert(self, node_id: str, clock: str) -> None:
        if clock == messages.CLOCK_INVALID:
            self.alerts.open("clock_invalid", node_id)
        else:
            self.alerts.close("clock_invalid", node_id)

    # ---- telemetry ---------------------------------------------------------
    def _tele(self, node_id: str, tele: messages.Telemetry) -> None:
        now = self.clock.now()
        previous = self.tele.get(node_id)
        self.tele[node_id] = (now, tele)
        if previous is None or previous[1].clock != tele.clock:
            self._clock_alert(node_id, tele.clock)
        if tele.ts is not None and abs(tele.ts - now) > SKEW_S and now - self._skew_sent.get(node_id, 0) > SKEW_EVERY_S:
            self._skew_sent[node_id] = now  # a jumped or drifting RTC: send the time again, once in a while
            for fn in self.on_clock_skew:
                fn(node_id, tele.ts - now)
        with self.db.tx():
            self.db.run("UPDATE node_state SET last_seen = ?, tele = ? WHERE node_id = ?",
                        now, json.dumps(tele.to_json()), node_id)
            self.history.record(node_id, now, tele.to_json())
            if tele.lamp is not None and "on_s" in tele.lamp:
                ts = tele.ts if tele.ts is not None and tele.clock != messages.CLOCK_INVALID else now
                self._lamp_reading(node_id, ts, self._local_day(ts), tele.lamp["on_s"], tele.lamp["wh"])
            elif tele.lamp is not None:
                self._lamp_day(node_id, now, tele.lamp)  # older firmware without its own on-time counter

    def _local_day(self, t: float) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(t + self.cfg.tz_s))

    def _lamp_reading(self, node_id: str, ts: float, day: str, on_s: float, wh: float) -> None:
        """A reading of the node's own counters (seconds lit, Wh; kept across its reboots): what they grew
        since the last reading goes to `day`. A reading older than the last one is already counted."""
        last = self.db.one("SELECT on_s, wh, ts FROM lamp_counters WHERE node_id = ?", node_id)
        if last is not None and ts <= last["ts"]:
            return  # e.g. a buffered midnight event arriving after fresh telemetry
        if last is not None:
            d_on, d_wh = on_s - last["on_s"], wh - last["wh"]
            if d_on < 0 or d_wh < 0:
                d_on, d_wh = on_s, wh  # the node's counters started again (reflashed)
            if d_on or d_wh:
                self.db.run("INSERT INTO lamp_days (node_id, day, on_s, ctr_wh) VALUES (?, ?, ?, ?)"
                            " ON CONFLICT (node_id, day) DO UPDATE SET on_s = on_s + excluded.on_s,"
                            " ctr_wh = ctr_wh + excluded.ctr_wh", node_id, day, d_on, d_wh)
        self.db.run("INSERT OR REPLACE INTO lamp_counters (node_id, on_s, wh, ts) VALUES (?, ?, ?, ?)",
                    node_id, on_s, wh, ts)

    def _lamp_day(self, node_id: str, now: float, lamp: dict[str, Any]) -> None:
        day = self._local_day(now)
        row = self.db.one("SELECT * FROM lamp_days WHERE node_id = ? AND day = ?", node_id, day)
        on = 1 if lamp["lvl"] > 0 else 0
        if row is None:
            self.db.run("INSERT INTO lamp_days (node_id, day, wh_first, wh_last, on_s, last_ts, last_on)"
                        " VALUES (?, ?, ?, ?, 0, ?, ?)", node_id, day, lamp["wh"], lamp["wh"], now, on)
            return
        gap = now - (row["last_ts"] or now)
        on_s = row["on_s"] + (gap if row["last_on"] and 0 < gap < 2 * STALE_AFTER_S else 0)
        self.db.run("UPDATE lamp_days SET wh_first = COALESCE(wh_first, ?), wh_last = ?, on_s = ?, last_ts = ?,"
                    " last_on = ? WHERE node_id = ? AND day = ?", lamp["wh"], lamp["wh"], on_s, now, on, node_id, day)

    # ---- events ------------------------------------------------------------
    def _event(self, node_id: str, evt: messages.Event) -> None:
        now = self.clock.now()
        with self.db.tx():
            cur = self.db.run(
                "INSERT OR IGNORE INTO events (node_id, boot_id, seq, kind, ts, received, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                node_id, evt.boot_id, evt.seq, evt.kind, evt.ts, now, json.dumps(evt.data))
            if cur.rowcount == 0:
                return  # a QoS 1 redelivery: already stored and handled
            event_id = cur.lastrowid
            self._track_seq(node_id, evt)
            self.db.run("UPDATE node_state SET last_seen = ? WHERE node_id = ?", now, node_id)
            self._apply_event(node_id, evt, event_id, now)
            for fn in self.on_event:
                fn(node_id, evt)

    def _track_seq(self, node_id: str, evt: messages.Event) -> None:
        row = self.db.one("SELECT next_seq, missing FROM seq_tracker WHERE node_id = ? AND boot_id = ?",
                          node_id, evt.boot_id)
        if row is None:
            missing = evt.seq  # a boot we first hear of at seq n: 0..n-1 never arrived
            self.db.run("INSERT INTO seq_tracker (node_id, boot_id, next_seq, missing) VALUES (?, ?, ?, ?)",
                        node_id, evt.boot_id, evt.seq + 1, missing)
        elif evt.seq >= row["next_seq"]:
            missing = evt.seq - row["next_seq"]
            self.db.run("UPDATE seq_tracker SET next_seq = ?, missing = missing + ? WHERE node_id = ? AND boot_id = ?",
                        evt.seq + 1, missing, node_id, evt.boot_id)
        else:
            missing = 0  # a late one filling an earlier gap
            self.db.run("UPDATE seq_tracker SET missing = MAX(missing - 1, 0) WHERE node_id = ? AND boot_id = ?",
                        node_id, evt.boot_id)
        if missing:
            self.metrics.gap(missing)
            self.alerts.open("event_gap", node_id, {"missing": missing, "boot": evt.boot_id})

    def _apply_event(self, node_id: str, evt: messages.Event, event_id: int | None, now: float) -> None:
        kind, data = evt.kind, evt.data
        if kind in LAMP_FAULTS:
            self.alerts.open(kind, node_id, data)
        elif kind == "lamp_ok":
            self.alerts.close(data.get("was", "lamp_fault"), node_id)
        elif kind == "cmd_rejected" and data.get("reason") in SUSPICIOUS:
            if not (data.get("reason") == "replay"
                    and self.commands.desynced(node_id, data.get("id"), data.get("ctr"), data.get("got"))):
                self.alerts.open("cmd_rejected", node_id, data)  # a desync of our own counter is no attack
        elif kind in ("broadcast_ended", "broadcast_interrupted"):
            self._airing(node_id, evt, event_id, now, "ended" if kind == "broadcast_ended" else "interrupted")
        elif kind == "broadcast_missed":
            self._airing(node_id, evt, event_id, now, "missed")
            why = str(data.get("why", "?"))
            why_vi, why_en = MISSED_WHY.get(why, (why, why))
            self.alerts.open("broadcast_not_aired", node_id,
                             {"item": data.get("id", "?"), "why": why, "why_vi": why_vi, "why_en": why_en},
                             at=evt.ts if evt.ts is not None else now)
        elif kind == "broadcast_failed":
            self.alerts.open("broadcast_failed", node_id, {"item": data.get("id", "?")})
        elif kind == "clock_invalid":
            self.alerts.open("clock_invalid", node_id)
        elif kind == "clock_set":
            self.alerts.close("clock_invalid", node_id)
        elif kind == "safe_mode":
            self.alerts.open("safe_mode", node_id)
        elif kind == "safe_mode_ended":
            self.alerts.close("safe_mode", node_id)
        elif kind == "events_dropped":
            self.alerts.open("events_dropped", node_id, data)
        elif kind == "storage_error":
            self.alerts.open("storage_error", node_id, data)
        elif kind == "lamp_counters" and _number(data.get("on_s")) and _number(data.get("wh")):
            ts = evt.ts if evt.ts is not None else now
            midnight = ts - (ts + self.cfg.tz_s) % 86400  # sent at the local midnight: for the day that ended
            self._lamp_reading(node_id, ts, self._local_day(midnight - 1), data["on_s"], data["wh"])
        elif kind == "time_request" and _ms_ticks(data.get("t1")):
            for fn in self.on_time_request:
                fn(node_id, data["t1"], int(now * 1000))

    def _airing(self, node_id: str, evt: messages.Event, event_id: int | None, now: float, outcome: str) -> None:
        """One segment of a broadcast as the node says it played (or was missed): the report's source."""
        data = evt.data
        secs = _int(data.get("secs")) or 0
        samples = _int(data.get("samples"))
        if samples is not None:  # audio: what left the DAC, to the sample
            secs = samples // AUDIO_RATE
        ts = evt.ts if evt.ts is not None else now
        started = _int(data.get("start")) or (ts - secs)
        complete = data.get("complete")
        zones = data.get("zones")
        self.db.run("INSERT OR IGNORE INTO airings (node_id, item_id, category, priority, source, started, secs,"
                    " outcome, event_id, samples, of_samples, complete, why, by_item, zones)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    node_id, str(data.get("id")), str(data.get("cat", "other")), _int(data.get("prio")) or 0,
                    data.get("src"), started, secs, outcome, event_id, samples, _int(data.get("of")),
                    None if complete is None else int(bool(complete)),
                    str(data["why"])[:40] if data.get("why") is not None else None,
                    str(data["by"])[:40] if data.get("by") is not None else None,
                    json.dumps(zones[:8]) if isinstance(zones, list) else None)

    # ---- what the API and the UI read -------------------------------------
    def live(self, node_id: str) -> dict[str, Any]:
        """A node's live state as last reported ({} before it ever spoke)."""
        row = self.db.one("SELECT * FROM node_state WHERE node_id = ?", node_id)
        if row is None:
            return {}
        live = {k: row[k] for k in ("online", "boot_id", "last_seen", "online_since", "offline_since",
                                    "firmware", "clock", "lamp_version", "plan_version", "safe")}
        live["online"] = bool(live["online"])
        live["safe"] = bool(live["safe"])
        live["caps"] = json.loads(row["caps"]) if row["caps"] else []
        live["tele"] = json.loads(row["tele"]) if row["tele"] else None
        live["failed"] = json.loads(row["failed"]) if row["failed"] else []
        return live

    def events(self, node_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Stored events, newest first."""
        sql, args = "SELECT * FROM events", []
        if node_id:
            sql += " WHERE node_id = ?"
            args.append(node_id)
        rows = self.db.all(sql + " ORDER BY id DESC LIMIT ?", *args, limit)
        return [dict(r) | {"data": json.loads(r["data"])} for r in rows]

    def item_on_air(self, node_id: str, item_id: str) -> bool:
        """Does this node's latest word say it is airing this item now? Its newest broadcast event for the
        item (started, or ended/interrupted/missed/failed), unless a telemetry reading came after it."""
        row = self.db.one("SELECT kind, received FROM events WHERE node_id = ? AND kind IN ('broadcast_started',"
                          " 'broadcast_ended', 'broadcast_interrupted', 'broadcast_missed', 'broadcast_failed')"
                          " AND json_extract(data, '$.id') = ? ORDER BY id DESC LIMIT 1", node_id, item_id)
        got = self.tele.get(node_id)
        if got is not None and (row is None or got[0] > row["received"]):
            amp = got[1].amp if isinstance(got[1].amp, dict) else {}
            return bool(amp.get("on")) and amp.get("item") == item_id
        return row is not None and row["kind"] == "broadcast_started"

    def item_started(self, node_id: str, item_id: str) -> bool:
        """Did this node report starting this broadcast item?"""
        return self.db.one("SELECT 1 FROM events WHERE node_id = ? AND kind = 'broadcast_started'"
                           " AND json_extract(data, '$.id') = ?", node_id, item_id) is not None

    def online_count(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM node_state WHERE online = 1"))

    # ---- liveness ----------------------------------------------------------
    def sweep(self) -> int:
        """Mark online nodes that went silent (no will seen: e.g. the broker itself restarted), then open
        the `offline` alert of each node offline for longer than the setting; returns how many went silent."""
        now = self.clock.now()
        rows = self.db.all("SELECT node_id, last_seen FROM node_state WHERE online = 1 AND last_seen < ?",
                           now - STALE_AFTER_S)
        for row in rows:
            with self.db.tx():
                self.db.run("UPDATE node_state SET online = 0, offline_since = ? WHERE node_id = ?",
                            row["last_seen"], row["node_id"])
        self.open_offline_alerts()
        return len(rows)

    def open_offline_alerts(self) -> int:
        """An `offline` alert (since the node went offline) for each node offline at least the setting's
        minutes without one open; it closes when the node is back (`_state`). Returns how many opened."""
        rows = self.db.all("SELECT node_id, offline_since FROM node_state s WHERE online = 0 AND offline_since <= ?"
                           " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.kind = 'offline' AND a.node_id = s.node_id"
                           " AND a.closed IS NULL)", self.clock.now() - self.offline_alert_after())
        opened = 0
        for row in rows:
            with self.db.tx():
                if self.alerts.open("offline", row["node_id"], at=row["offline_since"]) is not None:
                    opened += 1
        return opened


def _int(v: object) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e15 else None


def _ms_ticks(v: object) -> bool:
    """A node's monotonic ms as a time_sync answer may carry it (protocol: a whole number, 0..2**31)."""
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2 ** 31


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e15

"""Commands to nodes: stored before they are sent, signed per node, retried until answered.

Each command gets the node's next counter inside the same transaction that
stores it, so a restart of the gateway can never sign two commands with one
counter. A command is retried (same bytes) until the node acks it or it
expires; if a newer command to that node was sent meanwhile, the retry is
re-signed with a fresh counter and the same cmd_id (the node remembers
applied cmd_ids, so there is still at most one effect).

A node whose counter is ahead of ours (a gateway restored from a backup)
refuses with "replay" and its counter: the command is re-signed above it
once (`resynced`) and sent again. "clock_invalid" and "no_memory" refusals are retried.

Every method runs on the event loop; `send_many` reads and re-signs in one
transaction, publishes with no transaction open, then records what the broker
took in another.
"""
from __future__ import annotations

import builtins
import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from gateway.clock import Clock
from gateway.config import GatewayConfig
from gateway.db import Database
from gateway.errors import GatewayError
from gateway.registry import Registry
from protocol.commands import Command
from protocol.errors import ProtocolError
from protocol.messages import APPLIED, Ack

PublishMany = Callable[[list[tuple[str, bytes]]], Awaitable[list[bool]]]  # QoS 1; True: the broker took it

PENDING = "pending"  # stored, not yet published
SENT = "sent"  # published at least once, no answer yet
REPLAY = "replay"  # rejection reasons that get special handling
CLOCK_INVALID = "clock_invalid"
NO_MEMORY = "no_memory"  # protocol.commands.NO_MEMORY: authentic, the node's heap was short; retried
DONE_STATES = (APPLIED, "rejected", "expired", "superseded")  # superseded: a newer command carries its content


class CommandService:
    def __init__(self, *, db: Database, cfg: GatewayConfig, clock: Clock, registry: Registry,
                 publish: PublishMany | None, log: Callable[[str], None]) -> None:
        self.db = db
        self.cfg = cfg
        self.clock = clock
        self.registry = registry
        self.publish = publish  # async [(topic, payload)] -> [bool]: False while the link is down
        self.log = log
        self.on_result: list[Callable[[dict[str, Any]], None]] = []  # a command answered or expired
        self.work = asyncio.Event()  # set when there is something new to send
        self._publishing: set[str] = set()  # ids being published now: nobody else sends them meanwhile

    def create(self, node_id: str, op: str, args: dict[str, Any], user: str | None = None,
               batch: str | None = None, expires_s: float | None = None) -> str:
        """Validate, number, sign and store one command, and wake the sender; returns its id.
        Raises GatewayError."""
        return self.create_many([(node_id, op, args)], user=user, batch=batch, expires_s=expires_s)[0]

    async def fan_out(self, commands: builtins.list[tuple[str, str, dict[str, Any]]], user: str | None = None,
                      batch: str | None = None, expires_s: float | None = None) -> builtins.list[str]:
        """Store many commands in one transaction and publish them at once (an emergency); returns their
        ids once the broker has taken them. (Storing in chunks while earlier ones went out measured no
        faster: the loop's own per-message work is the bound.)"""
        ids = self.create_many(commands, user=user, batch=batch, expires_s=expires_s)
        # A task of its own: a request that goes away must not stop the sending half way.
        await asyncio.shield(asyncio.ensure_future(self.send_many(ids)))
        return ids

    def create_many(self, commands: builtins.list[tuple[str, str, dict[str, Any]]], user: str | None = None,
                    batch: str | None = None, expires_s: float | None = None) -> builtins.list[str]:
        """Store many commands [(node_id, op, args)] in one transaction (an emergency to every loudspeaker):
        ids numbered once for all, each command validated, numbered and signed for its node. All or none:
        an unknown node or an invalid command refuses the lot (GatewayError)."""
        if not commands:
            return []
        keys = self.registry.keys(sorted({node_id for node_id, _op, _args in commands}))
        for node_id, _op, _args in commands:
            if node_id not in keys:
                raise GatewayError("node.unknown", "Không có thiết bị %s" % node_id, "No node %s" % node_id, "node")
        now = self.clock.now()
        expires = int(now + (expires_s or self.cfg.command_expiry_s))
        checked = set()  # (op, args) already validated in this batch: the node id is the only difference
        ids, rows = [], []
        with self.db.tx():
            first = self.db.next_counter("command", len(commands)) - len(commands) + 1
            for i, (node_id, op, args) in enumerate(commands):
                cmd_id = "c%d" % (first + i)
                counter = self._next_counter(node_id)
                args_json = json.dumps(_jsonable(args), sort_keys=True)
                shape = (op, args_json)
                topic, payload = self._sign(node_id, cmd_id, counter, expires, op, args, now, key=keys[node_id],
                                            check=shape not in checked)
                checked.add(shape)
                ids.append(cmd_id)
                rows.append((cmd_id, node_id, op, args_json, counter, now, expires, topic, payload, PENDING, user,
                             batch))
            self.db.run_many(
                "INSERT INTO commands (id, node_id, op, args, counter, created, expires, topic, payload, status,"
                " created_by, batch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.work.set()
        return ids

    def _next_counter(self, node_id: str) -> int:
        row = self.db.one("UPDATE nodes SET counter = counter + 1 WHERE id = ? RETURNING counter", node_id)
        if row is None:  # callers check the node is registered first, and node rows are never deleted
            raise RuntimeError("node %s has no row in the nodes table" % node_id)
        counter: int = row[0]
        return counter

    def _sign(self, node_id: str, cmd_id: str, counter: int, expires: int, op: str, args: dict[str, Any],
              now: float, key: bytes | None = None, check: bool = True) -> tuple[str, bytes]:
        """(topic, payload); `check=False` only for a command whose op and args were validated just before."""
        cmd = Command(self.cfg.site, node_id, cmd_id, counter, expires, op, args, issued=int(now))
        try:
            return cmd.sign(key if key is not None else self.registry.key(node_id), check=check)
        except ProtocolError as exc:
            raise GatewayError("command.invalid", "Lệnh không hợp lệ: %s" % exc, "Invalid command: %s" % exc)

    def _resign(self, row: sqlite3.Row) -> tuple[str, bytes, int]:
        """Sign a stored command again with the node's next counter, same cmd_id (inside a transaction)."""
        counter = self._next_counter(row["node_id"])
        topic, payload = self._sign(row["node_id"], row["id"], counter, int(row["expires"]), row["op"],
                                    json.loads(row["args"]), row["created"])
        self.db.run("UPDATE commands SET counter = ?, payload = ? WHERE id = ?", counter, payload, row["id"])
        return topic, payload, counter

    def desynced(self, node_id: str, cmd_id: Any, node_ctr: Any, got: Any = None) -> bool:
        """A "replay" refusal that means our counter fell behind the node's (a restored or re-provisioned
        gateway), not someone replaying: the command is ours, not applied, and the node's counter is at
        least the command's (`got`, the counter the node saw, else ours)."""
        if not isinstance(node_ctr, int) or isinstance(node_ctr, bool) or not isinstance(cmd_id, str):
            return False
        row = self.db.one("SELECT status, counter FROM commands WHERE id = ? AND node_id = ?", cmd_id, node_id)
        if row is None or row["status"] == APPLIED:
            return False
        counter = got if isinstance(got, int) and not isinstance(got, bool) and got <= row["counter"] else row["counter"]
        return node_ctr >= counter

    async def send(self, cmd_id: str) -> bool:
        """Publish a stored command now (first time or retry). True if the broker took it."""
        return await self.send_many([cmd_id]) == 1

    async def send_many(self, cmd_ids: Iterable[str]) -> int:
        """Publish these stored commands concurrently (an emergency fan-out); returns how many the broker took."""
        publish = self.publish
        if publish is None:
            return 0
        out = []
        wanted = [c for c in dict.fromkeys(cmd_ids) if c not in self._publishing]  # others publish those now
        node_counter: dict[str, int] = {}  # the node's counter as it moves while we re-sign
        sent_above: dict[str, int] = {}  # the highest counter this call publishes to each node
        with self.db.tx():
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                rows = {r["id"]: r for r in self.db.all(
                    "SELECT c.*, n.counter AS node_counter FROM commands c JOIN nodes n ON n.id = c.node_id"
                    " WHERE c.id IN (%s)" % ",".join("?" * len(chunk)), *chunk)}
                for cmd_id in chunk:  # in the order asked (counter order for a node)
                    row = rows.get(cmd_id)
                    if row is None or row["status"] in DONE_STATES:
                        continue
                    node = row["node_id"]
                    current = node_counter.setdefault(node, row["node_counter"])
                    topic, payload, counter = row["topic"], bytes(row["payload"]), row["counter"]
                    # A node refuses a counter at or below one it saw: a retry overtaken by a newer command,
                    # or one that would go out after a higher counter in this same call, is re-signed.
                    if (row["attempts"] and current > counter) or counter <= sent_above.get(node, -1):
                        topic, payload, counter = self._resign(row)  # same cmd_id, the node's next counter
                        node_counter[node] = counter
                    sent_above[node] = counter
                    out.append((cmd_id, topic, payload))
        if not out:
            return 0
        taken = {cmd_id for cmd_id, _t, _p in out}
        self._publishing |= taken
        try:
            results = await publish([(topic, payload) for _id, topic, payload in out])
        finally:
            self._publishing -= taken
        sent = [cmd_id for (cmd_id, _t, _p), ok in zip(out, results) if ok]
        now = self.clock.now()
        with self.db.tx():
            self.db.run_many("UPDATE commands SET status = CASE WHEN status = ? THEN ? ELSE status END,"
                             " attempts = attempts + 1, last_sent = ? WHERE id = ?",
                             [(PENDING, SENT, now, cmd_id) for cmd_id in sent])
        return len(sent)

    def on_ack(self, node_id: str, ack: Ack) -> dict[str, Any] | None:
        """An Ack from `node_id`; returns the updated command row or None if it is not ours."""
        if ack.cmd_id is None:
            return None
        row = self.db.one("SELECT * FROM commands WHERE id = ? AND node_id = ?", ack.cmd_id, node_id)
        if row is None:
            self.log("ack for unknown command %s from %s" % (ack.cmd_id, node_id))
            return None
        if row["status"] == APPLIED:
            return None  # a duplicate ack of a retry
        if not ack.applied and row["status"] in (PENDING, SENT):
            if ack.reason in (CLOCK_INVALID, NO_MEMORY):
                # the node has no valid time yet, or no heap to parse it right now: not final,
                # housekeeping retries it until it expires
                self.db.run("UPDATE commands SET reason = ?, detail = ? WHERE id = ?", ack.reason, ack.detail, row["id"])
                return self.get(row["id"])
            if ack.reason == REPLAY and not row["resynced"] and self.desynced(node_id, row["id"], ack.ctr):
                with self.db.tx():  # our counter fell behind the node's: continue above it, once per command
                    self.db.run("UPDATE nodes SET counter = MAX(counter, ?) WHERE id = ?", ack.ctr, node_id)
                    self._resign(row)
                    self.db.run("UPDATE commands SET resynced = 1, status = ?, reason = ?, detail = ? WHERE id = ?",
                                PENDING, ack.reason, ack.detail, row["id"])
                self.log("%s is ahead of our counter (%d): %s re-signed" % (node_id, ack.ctr, row["id"]))
                return self.get(row["id"])
        status = APPLIED if ack.applied else "rejected"
        with self.db.tx():
            self.db.run("UPDATE commands SET status = ?, acked = ?, reason = ?, detail = ? WHERE id = ?",
                        status, self.clock.now(), ack.reason, ack.detail, ack.cmd_id)
        result = self.get(ack.cmd_id)
        for fn in self.on_result:
            fn(result)
        return result

    def supersede(self, node_id: str, op: str) -> None:
        """Unanswered commands of this op to this node are superseded: a newer one carries their content."""
        self.db.run("UPDATE commands SET status = 'superseded' WHERE node_id = ? AND op = ? AND status IN (?, ?)",
                    node_id, op, PENDING, SENT)

    def has_open(self, node_id: str, op: str) -> bool:
        """Is a command of this op to this node still unanswered?"""
        return self.db.one("SELECT 1 FROM commands WHERE node_id = ? AND op = ? AND status IN (?, ?)",
                           node_id, op, PENDING, SENT) is not None

    def due(self) -> list[str]:
        """Ids of commands to publish now: new ones, and unanswered ones to online nodes whose retry
        time has come (an offline node's persistent session already holds the first copy)."""
        now = self.clock.now()
        rows = self.db.all(
            "SELECT c.id FROM commands c LEFT JOIN node_state s ON s.node_id = c.node_id"
            " WHERE c.expires > ? AND (c.status = ? OR (c.status = ? AND c.last_sent <= ? AND s.online = 1))"
            " ORDER BY c.counter", now, PENDING, SENT, now - self.cfg.command_retry_s)
        return [r[0] for r in rows if r[0] not in self._publishing]

    def expire(self) -> list[dict[str, Any]]:
        """Mark commands past their expiry; returns their rows."""
        now = self.clock.now()
        rows = self.db.all("SELECT id FROM commands WHERE status IN (?, ?) AND expires <= ?", PENDING, SENT, now)
        out = []
        for (cmd_id,) in rows:
            with self.db.tx():
                self.db.run("UPDATE commands SET status = 'expired', reason = 'expired' WHERE id = ?", cmd_id)
            result = self.get(cmd_id)
            out.append(result)
            for fn in self.on_result:
                fn(result)
        return out

    def get(self, cmd_id: str) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM commands WHERE id = ?", cmd_id)
        if row is None:
            raise GatewayError("command.unknown", "Không có lệnh %s" % cmd_id, "No command %s" % cmd_id, status=404)
        return _row(row)

    def list(self, node_id: str | None = None, batch: str | None = None, status: str | None = None,
             limit: int = 200) -> builtins.list[dict[str, Any]]:
        sql, args = "SELECT * FROM commands WHERE 1=1", builtins.list[Any]()
        for column, value in (("node_id", node_id), ("batch", batch), ("status", status)):
            if value is not None:
                sql += " AND %s = ?" % column
                args.append(value)
        sql += " ORDER BY created DESC LIMIT ?"
        args.append(limit)
        return [_row(r) for r in self.db.all(sql, *args)]

    def of_op(self, op: str, created_after: float, node_id: str | None = None) -> builtins.list[dict[str, Any]]:
        """Commands of one op created after a time (optionally to one node), newest first."""
        sql, args = "SELECT * FROM commands WHERE op = ? AND created > ?", builtins.list[Any]([op, created_after])
        if node_id is not None:
            sql += " AND node_id = ?"
            args.append(node_id)
        return [_row(r) for r in self.db.all(sql + " ORDER BY created DESC", *args)]

    def nodes_of_batch(self, batch: str) -> builtins.list[str]:
        """The nodes a batch of commands went to."""
        return [r[0] for r in self.db.all("SELECT DISTINCT node_id FROM commands WHERE batch = ? ORDER BY node_id",
                                          batch)]

    def batch_progress(self, batch: str) -> dict[str, int]:
        rows = self.db.all("SELECT status, COUNT(*) FROM commands WHERE batch = ? GROUP BY status", batch)
        counts = {r[0]: r[1] for r in rows}
        return {"total": sum(counts.values()), "applied": counts.get(APPLIED, 0),
                "rejected": counts.get("rejected", 0), "expired": counts.get("expired", 0),
                "waiting": counts.get(PENDING, 0) + counts.get(SENT, 0)}


def _row(row: sqlite3.Row) -> dict[str, Any]:
    out = {k: row[k] for k in ("id", "node_id", "op", "counter", "created", "expires", "status", "attempts",
                               "last_sent", "acked", "reason", "detail", "created_by", "batch")}
    out["resynced"] = bool(row["resynced"])
    out["args"] = json.loads(row["args"])
    return out


def _jsonable(args: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.to_json() if hasattr(v, "to_json") else v) for k, v in args.items()}

"""The gateway's SQLite store: one file, schema migrations by PRAGMA user_version.

WAL mode with synchronous=NORMAL: a commit survives a crash of the process
(what a power cut of the Pi may still take is the last moments, never a
corrupt file). Every write that belongs together happens in one transaction
(`with db.tx():`), so nothing is half-applied.

One owner, by construction (docs/gateway.md, "Who owns what"): the connection
belongs to the thread that opened it, which is the gateway's event loop. Every
HTTP route is `async def` and runs on that loop; slow work that needs no
database (Argon2) goes to a worker thread and comes back with a plain value.
A call from any other thread raises `WrongThread` instead of racing. On the
loop, a transaction is synchronous code: a second task touching the database
while one is open (an `await` inside `with db.tx():`) raises `TransactionOverlap`
instead of joining and committing someone else's half-done work. A nested
`tx()` is a SAVEPOINT: its failure rolls back only its own part.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

MIGRATIONS = [
    # 1: registry, live state, events, commands, programs, schedules, reports, users, audit
    """
    CREATE TABLE zones (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'thon', created REAL NOT NULL);
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, zones TEXT NOT NULL, relays TEXT NOT NULL,
        lat REAL, lon REAL, board TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'lamp',
        mqtt_hash TEXT NOT NULL, hmac_key BLOB NOT NULL, counter INTEGER NOT NULL DEFAULT 0,
        revoked INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
    CREATE TABLE node_state (
        node_id TEXT PRIMARY KEY REFERENCES nodes(id), online INTEGER NOT NULL DEFAULT 0, boot_id TEXT,
        last_seen REAL, online_since REAL, offline_since REAL, firmware TEXT, caps TEXT, clock TEXT,
        lamp_version INTEGER, plan_version INTEGER, safe INTEGER NOT NULL DEFAULT 0, tele TEXT);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY, node_id TEXT NOT NULL, boot_id TEXT NOT NULL, seq INTEGER NOT NULL,
        kind TEXT NOT NULL, ts REAL, received REAL NOT NULL, data TEXT NOT NULL,
        UNIQUE (node_id, boot_id, seq));
    CREATE INDEX events_by_time ON events (received);
    CREATE TABLE seq_tracker (
        node_id TEXT NOT NULL, boot_id TEXT NOT NULL, next_seq INTEGER NOT NULL, missing INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (node_id, boot_id));
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY, node_id TEXT, kind TEXT NOT NULL, severity TEXT NOT NULL,
        message_vi TEXT NOT NULL, message_en TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}',
        opened REAL NOT NULL, closed REAL);
    CREATE INDEX alerts_open ON alerts (closed, node_id, kind);
    CREATE TABLE commands (
        id TEXT PRIMARY KEY, node_id TEXT NOT NULL, op TEXT NOT NULL, args TEXT NOT NULL,
        counter INTEGER NOT NULL, created REAL NOT NULL, expires REAL NOT NULL,
        topic TEXT NOT NULL, payload BLOB NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        last_sent REAL, acked REAL, reason TEXT, detail TEXT, created_by TEXT, batch TEXT);
    CREATE INDEX commands_open ON commands (status, node_id);
    CREATE INDEX commands_batch ON commands (batch);
    CREATE TABLE programs (
        scope TEXT NOT NULL, target TEXT NOT NULL, body TEXT NOT NULL, updated REAL NOT NULL, updated_by TEXT,
        PRIMARY KEY (scope, target));
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY, body TEXT NOT NULL, updated REAL NOT NULL, updated_by TEXT);
    CREATE TABLE node_plans (
        node_id TEXT PRIMARY KEY, plan_version INTEGER NOT NULL DEFAULT 0, plan_digest TEXT,
        lamp_version INTEGER NOT NULL DEFAULT 0, lamp_digest TEXT, dropped INTEGER NOT NULL DEFAULT 0,
        updated REAL);
    CREATE TABLE airings (
        id INTEGER PRIMARY KEY, node_id TEXT NOT NULL, item_id TEXT NOT NULL, category TEXT NOT NULL,
        priority INTEGER NOT NULL, source TEXT, started REAL NOT NULL, secs INTEGER NOT NULL,
        outcome TEXT NOT NULL, event_id INTEGER UNIQUE);
    CREATE INDEX airings_by_time ON airings (started);
    CREATE TABLE lamp_days (
        node_id TEXT NOT NULL, day TEXT NOT NULL, wh_first REAL, wh_last REAL, on_s REAL NOT NULL DEFAULT 0,
        last_ts REAL, last_on INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (node_id, day));
    CREATE TABLE users (
        id INTEGER PRIMARY KEY, username TEXT UNIQUE NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
        password_hash TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
    CREATE TABLE sessions (
        token TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), csrf TEXT NOT NULL,
        created REAL NOT NULL, expires REAL NOT NULL);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY, at REAL NOT NULL, username TEXT, action TEXT NOT NULL, target TEXT,
        detail TEXT NOT NULL DEFAULT '{}');
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
    # 2: replay resync once per command, failed parts, per-part alerts, the nodes' own lamp counters
    """
    ALTER TABLE commands ADD COLUMN resynced INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE node_state ADD COLUMN failed TEXT;
    ALTER TABLE alerts ADD COLUMN subject TEXT;
    ALTER TABLE lamp_days ADD COLUMN ctr_wh REAL NOT NULL DEFAULT 0;
    CREATE TABLE lamp_counters (
        node_id TEXT PRIMARY KEY, on_s REAL NOT NULL, wh REAL NOT NULL, ts REAL NOT NULL);
    """,
    # 3: what really played (audio samples, complete or why not), broadcasts the nodes missed, and the
    #    audio clip library (gateway/audio/library.py): id = SHA-256 of the node-format file
    """
    ALTER TABLE airings ADD COLUMN samples INTEGER;
    ALTER TABLE airings ADD COLUMN of_samples INTEGER;
    ALTER TABLE airings ADD COLUMN complete INTEGER;
    ALTER TABLE airings ADD COLUMN why TEXT;
    ALTER TABLE airings ADD COLUMN by_item TEXT;
    ALTER TABLE airings ADD COLUMN zones TEXT;
    CREATE TABLE clips (
        id TEXT PRIMARY KEY, title TEXT NOT NULL, category TEXT NOT NULL, duration_ms INTEGER NOT NULL,
        samples INTEGER NOT NULL, size INTEGER NOT NULL, source TEXT NOT NULL CHECK (source IN ('upload', 'tts', 'recording')),
        created_by TEXT, created_at REAL NOT NULL, filename TEXT, pcm_sha256 TEXT NOT NULL,
        text TEXT, spoken TEXT, voice TEXT, speed REAL, input_lufs REAL, lufs REAL, true_peak REAL);
    CREATE INDEX clips_by_time ON clips (created_at);
    """,
    # 4: the staff web UI: site settings, approval of broadcasts, telemetry history for the charts
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated REAL NOT NULL, updated_by TEXT);
    ALTER TABLE schedules ADD COLUMN approval TEXT;
    ALTER TABLE schedules ADD COLUMN approved_by TEXT;
    CREATE TABLE telemetry (
        node_id TEXT NOT NULL, ts REAL NOT NULL, data TEXT NOT NULL, PRIMARY KEY (node_id, ts));
    """,
    # 5: over-the-air update (gateway/firmware.py): bundles, their content-addressed files, staged rollouts
    """
    CREATE TABLE firmware (
        version TEXT PRIMARY KEY, manifest_sha TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, files INTEGER NOT NULL,
        signed INTEGER NOT NULL, min_micropython TEXT, built REAL, uploaded REAL NOT NULL, uploaded_by TEXT);
    CREATE TABLE firmware_files (version TEXT NOT NULL, sha TEXT NOT NULL, PRIMARY KEY (version, sha));
    CREATE INDEX firmware_files_by_sha ON firmware_files (sha);
    CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY, version TEXT NOT NULL, first_zones TEXT NOT NULL, state TEXT NOT NULL,
        stage INTEGER NOT NULL, reason TEXT, created REAL NOT NULL, created_by TEXT, updated REAL NOT NULL);
    CREATE TABLE rollout_nodes (
        rollout INTEGER NOT NULL, node_id TEXT NOT NULL, stage INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT,
        cmd_id TEXT, updated REAL NOT NULL, PRIMARY KEY (rollout, node_id));
    CREATE INDEX rollout_nodes_by_node ON rollout_nodes (node_id, status);
    """,
    # 6: login rate limit and lockout (gateway/users.py): failed logins by username and client address, the
    #    usernames locked until a time (survive a restart); sessions end after an idle time too (last_seen)
    """
    CREATE TABLE login_failures (
        id INTEGER PRIMARY KEY, at REAL NOT NULL, username TEXT, address TEXT NOT NULL);
    CREATE INDEX login_failures_by_user ON login_failures (username, at);
    CREATE INDEX login_failures_by_address ON login_failures (address, at);
    CREATE TABLE login_locks (
        username TEXT PRIMARY KEY, since REAL NOT NULL, until REAL NOT NULL, address TEXT NOT NULL);
    ALTER TABLE sessions ADD COLUMN last_seen REAL;
    """,
]


class WrongThread(RuntimeError):
    """The database was used from a thread other than its owner's (a design error, never input)."""


class TransactionOverlap(RuntimeError):
    """A task used the database while another task's transaction was open (an await inside tx())."""


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: plain synchronous use (tools, tests)
        return None


class Database:
    """The gateway's one SQLite connection, owned by the thread that opened it."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        self._owner = threading.get_ident()
        self.conn = sqlite3.connect(path, isolation_level=None)  # check_same_thread stays on
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=5000")
        if path != ":memory:":
            os.chmod(path, 0o600)  # node keys live here
        self._depth = 0
        self._tx_task: asyncio.Task[Any] | None = None
        self.migrate()

    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        for number in range(self.version, len(MIGRATIONS)):
            with self.tx():
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute("PRAGMA user_version = %d" % (number + 1))

    def _check(self) -> None:
        if threading.get_ident() != self._owner:
            raise WrongThread("the gateway database is owned by its event loop's thread; "
                              "this call came from thread %s" % threading.current_thread().name)
        if self._depth and _current_task() is not self._tx_task:
            raise TransactionOverlap("another task's transaction is open: an await inside `with db.tx():`?")

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A transaction: all of it, or none of it. Nested, a savepoint that fails alone."""
        self._check()
        if self._depth:
            name = "sp%d" % self._depth
            self.conn.execute("SAVEPOINT " + name)
            self._depth += 1
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK TO " + name)
                self.conn.execute("RELEASE " + name)
                raise
            else:
                self.conn.execute("RELEASE " + name)
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth, self._tx_task = 1, _current_task()
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth, self._tx_task = 0, None

    def one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        self._check()
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        self._check()
        return self.conn.execute(sql, args).fetchall()

    def run(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check()
        return self.conn.execute(sql, args)

    def run_many(self, sql: str, rows: list[tuple[Any, ...]]) -> sqlite3.Cursor:
        self._check()
        return self.conn.executemany(sql, rows)

    def scalar(self, sql: str, *args: Any) -> Any:
        """The first column of the first row, or None."""
        row = self.one(sql, *args)
        return None if row is None else row[0]

    def next_counter(self, name: str, n: int = 1) -> int:
        """A durable, strictly increasing number (ids, batch numbers); with `n`, the last of n new ones."""
        with self.tx():
            row = self.one("SELECT value FROM counters WHERE name = ?", name)
            value = (row[0] if row else 0) + n
            self.run("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", name, value)
        return int(value)

    def close(self) -> None:
        self._check()
        self.conn.close()

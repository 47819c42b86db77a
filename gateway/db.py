"""The gateway's SQLite store: one file, schema migrations by PRAGMA user_version.

WAL mode with synchronous=NORMAL: a commit survives a crash of the process
(what a power cut of the Pi may still take is the last moments, never a
corrupt file). Every write that belongs together happens in one transaction
(`with db.tx():`), so nothing is half-applied.
"""
import contextlib
import os
import sqlite3
import threading

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
]


class Database:
    def __init__(self, path):
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=5000")
        if path != ":memory:":
            os.chmod(path, 0o600)  # node keys live here
        self._depth = 0
        # Until the gateway's data path has one owner (issue 9), the event loop and FastAPI's
        # thread pool share this connection: one lock serialises every statement and holds a
        # transaction whole, so no thread starts or commits inside another's transaction.
        self._lock = threading.RLock()
        self.migrate()

    @property
    def version(self):
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self):
        for number in range(self.version, len(MIGRATIONS)):
            with self.tx():
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute("PRAGMA user_version = %d" % (number + 1))

    @contextlib.contextmanager
    def tx(self):
        """A transaction (nested calls on the same thread join the outer one): all of it, or none of it."""
        with self._lock:
            yield from self._tx()

    def _tx(self):
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth = 0

    def one(self, sql, *args):
        with self._lock:
            return self.conn.execute(sql, args).fetchone()

    def all(self, sql, *args):
        with self._lock:
            return self.conn.execute(sql, args).fetchall()

    def run(self, sql, *args):
        with self._lock:
            return self.conn.execute(sql, args)

    def next_counter(self, name):
        """A durable, strictly increasing number (ids, batch numbers)."""
        with self.tx():
            row = self.one("SELECT value FROM counters WHERE name = ?", name)
            value = (row[0] if row else 0) + 1
            self.run("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", name, value)
        return value

    def close(self):
        self.conn.close()

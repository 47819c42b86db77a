"""Staff accounts, sessions and the audit log.

Passwords are Argon2id hashes (argon2-cffi). Roles: viewer (sees), operator
(schedules, airs, sets programs), admin (also nodes, zones, users).
A session is a random token in an HttpOnly cookie plus a CSRF token that
every state-changing request must echo in the X-CSRF-Token header. It ends
12 h after the login, or earlier after `idle_s` without a request.

Logins are rate limited (the table login_failures, so a restart forgets
nothing): USER_MAX_FAILURES wrong passwords for one username within
FAIL_WINDOW_S lock that username for LOCK_S (known or not, so a lock tells
nothing about who exists), and ADDRESS_MAX_FAILURES from one client address
within the window refuse that address (429) until the window has moved on.
An admin ends a lock early (`unlock`); a successful login clears the
username's failures. An unknown username is verified against a dummy hash,
so it costs the same time as a known user's wrong password.

Argon2 is slow on purpose (tens of ms): hashing and verifying run in a worker
thread with plain strings in and out; every database read and write stays on
the event loop (gateway/db.py).
"""
from __future__ import annotations

import builtins
import asyncio
import json
import math
import secrets
import time
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.clock import Clock
from gateway.db import Database
from gateway.errors import Conflict, Forbidden, GatewayError, NotFound

ROLES = ("viewer", "operator", "admin")
SESSION_S = 12 * 3600
IDLE_S = 30 * 60                 # default idle timeout ([http] session_idle_min)
FAIL_WINDOW_S = 15 * 60          # failures older than this no longer count
USER_MAX_FAILURES = 5            # this many in the window lock the username ...
LOCK_S = 15 * 60                 # ... for this long
ADDRESS_MAX_FAILURES = 20        # this many from one address in the window: that address waits (429)
USERNAME_KEY_LEN = 64            # what is kept of a typed username (junk cannot grow the table's rows)
EXPIRED_KEPT_S = 24 * 3600       # an ended session's row stays this long, to say "your session expired"


class LoginRefused(GatewayError):
    """Too many failed logins: the username is locked, or the client address must wait (429, `until`)."""

    status = 429

    def __init__(self, code: str, vi: str, en: str, until: float) -> None:
        super().__init__(code, vi, en)
        self.until = until


class Users:
    def __init__(self, db: Database, clock: Clock, idle_s: float = IDLE_S, tz_s: int = 0) -> None:
        self.db = db
        self.clock = clock
        self.idle_s = float(idle_s)
        self.tz_s = tz_s  # the site's offset, for "try again after 14:32"
        self.hasher = PasswordHasher()
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))  # unknown users cost the same

    def _verify(self, hashed: str, password: str) -> bool:
        """In a worker thread: no database here."""
        try:
            return bool(self.hasher.verify(hashed, password))
        except (VerificationError, InvalidHashError):
            return False

    async def add(self, username: str, name: str, role: str, password: str) -> dict[str, Any]:
        if not isinstance(username, str) or not 2 <= len(username) <= 32 or not username.replace("-", "").replace(
                "_", "").replace(".", "").isalnum() or not username.isascii():
            raise GatewayError("username.invalid", "Tên đăng nhập: 2-32 ký tự chữ không dấu, số, - _ .",
                               "Username: 2-32 characters of a-z, 0-9, - _ .", "username")
        if role not in ROLES:
            raise GatewayError("role.invalid", "Vai trò phải là viewer, operator hoặc admin",
                               "Role must be viewer, operator or admin", "role")
        if not isinstance(password, str) or len(password) < 10:
            raise GatewayError("password.weak", "Mật khẩu phải có ít nhất 10 ký tự",
                               "The password must have at least 10 characters", "password")
        self._refuse_taken(username)
        hashed = await asyncio.to_thread(self.hasher.hash, password)
        with self.db.tx():
            self._refuse_taken(username)  # again: another request may have taken it while we hashed
            self.db.run("INSERT INTO users (username, name, role, password_hash, created) VALUES (?, ?, ?, ?, ?)",
                        username, name or username, role, hashed, self.clock.now())
        return self.get(username)

    def _refuse_taken(self, username: str) -> None:
        if self.db.one("SELECT 1 FROM users WHERE username = ?", username):
            raise Conflict("user.exists", "Người dùng %s đã có" % username, "User %s already exists" % username,
                           "username")

    def get(self, username: str) -> dict[str, Any]:
        row = self.db.one("SELECT id, username, name, role, disabled FROM users WHERE username = ?", username)
        if row is None:
            raise NotFound("user.unknown", "Không có người dùng %s" % username, "No user %s" % username)
        return dict(row)

    def list(self) -> builtins.list[dict[str, Any]]:
        return [dict(r) for r in self.db.all("SELECT id, username, name, role, disabled FROM users ORDER BY username")]

    def count(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM users"))

    def _hhmm(self, t: float) -> str:
        """The site's local time of `t`, rounded up to the minute ("after 14:32" is then true)."""
        return time.strftime("%H:%M", time.gmtime(math.ceil(t / 60.0) * 60 + self.tz_s))

    def _locked(self, until: float) -> LoginRefused:
        at = self._hhmm(until)
        return LoginRefused("login.locked", "Tài khoản tạm khóa do nhập sai nhiều lần, thử lại sau %s" % at,
                            "The account is locked for a while after repeated wrong passwords; try again after %s"
                            % at, until)

    def _throttled(self, until: float) -> LoginRefused:
        at = self._hhmm(until)
        return LoginRefused("login.throttled", "Quá nhiều lần đăng nhập sai từ máy này, thử lại sau %s" % at,
                            "Too many failed logins from this device; try again after %s" % at, until)

    def lock_until(self, username: str) -> float | None:
        """When the username's lock ends, or None when it is not locked."""
        row = self.db.one("SELECT until FROM login_locks WHERE username = ?", username[:USERNAME_KEY_LEN])
        return float(row[0]) if row is not None and row[0] > self.clock.now() else None

    def unlock(self, username: str) -> bool:
        """End a username's lock and forget its failures (an admin's button); whether it was locked."""
        key = username[:USERNAME_KEY_LEN]
        was = self.lock_until(key) is not None
        with self.db.tx():
            self.db.run("DELETE FROM login_locks WHERE username = ?", key)
            self.db.run("DELETE FROM login_failures WHERE username = ?", key)
        return was

    def _admit(self, key: str, address: str, now: float) -> int:
        """Refuse a login attempt that the limits forbid, else record it as a failure until it succeeds (so
        attempts running in parallel count before their slow verification ends); the failure's row id."""
        refused: LoginRefused | None = None
        with self.db.tx():
            self.db.run("DELETE FROM login_failures WHERE at < ?", now - FAIL_WINDOW_S)
            self.db.run("DELETE FROM login_locks WHERE until < ?", now)
            rows = self.db.all("SELECT at FROM login_failures WHERE address = ? ORDER BY at", address)
            lock = self.db.one("SELECT until FROM login_locks WHERE username = ?", key)
            mine = self.db.all("SELECT at FROM login_failures WHERE username = ? ORDER BY at", key)
            attempt = 0
            if len(rows) >= ADDRESS_MAX_FAILURES:
                refused = self._throttled(rows[len(rows) - ADDRESS_MAX_FAILURES][0] + FAIL_WINDOW_S)
            elif lock is not None or len(mine) >= USER_MAX_FAILURES:  # counts against the address, not the name
                self.db.run("INSERT INTO login_failures (at, username, address) VALUES (?, NULL, ?)", now, address)
                refused = self._locked(lock[0] if lock is not None
                                       else mine[len(mine) - USER_MAX_FAILURES][0] + FAIL_WINDOW_S)
            else:
                attempt = int(self.db.run("INSERT INTO login_failures (at, username, address) VALUES (?, ?, ?)",
                                          now, key, address).lastrowid or 0)
        if refused is not None:  # raised after the commit: the refused attempt stays counted
            raise refused
        return attempt

    def _failed(self, key: str, address: str) -> None:
        """After a wrong password: lock the username, or note the address's limit, when this one reached it."""
        now = self.clock.now()
        mine = int(self.db.scalar("SELECT COUNT(*) FROM login_failures WHERE username = ? AND at >= ?",
                                  key, now - FAIL_WINDOW_S))
        if mine >= USER_MAX_FAILURES and self.lock_until(key) is None:
            until = now + LOCK_S
            with self.db.tx():  # the lock counts from now; its failures still count against their addresses
                self.db.run("INSERT OR REPLACE INTO login_locks (username, since, until, address) VALUES (?, ?, ?, ?)",
                            key, now, until, address)
                self.db.run("UPDATE login_failures SET username = NULL WHERE username = ?", key)
            self.audit(key, "login_locked", key, {"address": address, "failures": mine, "until": until})
        theirs = int(self.db.scalar("SELECT COUNT(*) FROM login_failures WHERE address = ? AND at >= ?",
                                    address, now - FAIL_WINDOW_S))
        if theirs == ADDRESS_MAX_FAILURES:
            self.audit(key, "login_throttled", address, {"address": address, "failures": theirs})

    async def login(self, username: str, password: str, address: str = "") -> tuple[str, str, dict[str, Any]]:
        """(session token, csrf token, user) or a GatewayError that does not say which part was wrong;
        LoginRefused (429) while the username is locked or the client `address` has failed too often."""
        username = username if isinstance(username, str) else ""
        key, address = username[:USERNAME_KEY_LEN], (address or "?")[:64]
        try:
            attempt = self._admit(key, address, self.clock.now())
        except LoginRefused as exc:
            self.audit(key or None, "login_refused", None, {"address": address, "reason": exc.code})
            raise
        row = self.db.one("SELECT * FROM users WHERE username = ?", username)
        usable = row is not None and not row["disabled"]
        hashed = row["password_hash"] if usable and row is not None else self._dummy_hash
        ok = await asyncio.to_thread(self._verify, hashed, password or "")  # same work for unknown users
        if ok and row is not None:  # the account as it is now, after the wait: not disabled nor changed since
            now_row = self.db.one("SELECT disabled, password_hash FROM users WHERE id = ?", row["id"])
            usable = now_row is not None and not now_row["disabled"] and now_row["password_hash"] == hashed
        ok = ok and usable
        if not ok or row is None:
            self.audit(key, "login_failed", None, {"address": address})
            self._failed(key, address)
            raise GatewayError("login.failed", "Sai tên đăng nhập hoặc mật khẩu", "Wrong username or password",
                               status=401)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = self.clock.now()
        with self.db.tx():
            self.db.run("DELETE FROM login_failures WHERE id = ? OR username = ?", attempt, key)
            self.db.run("DELETE FROM sessions WHERE expires < ? OR COALESCE(last_seen, created) < ?",
                        now - EXPIRED_KEPT_S, now - self.idle_s - EXPIRED_KEPT_S)
            self.db.run("INSERT INTO sessions (token, user_id, csrf, created, expires, last_seen)"
                        " VALUES (?, ?, ?, ?, ?, ?)", token, row["id"], csrf, now, now + SESSION_S, now)
        self.audit(username, "login", None, {"address": address})
        return token, csrf, self.get(username)

    def session(self, token: str | None, touch: bool = True) -> tuple[dict[str, Any], str] | None:
        """(user dict, csrf) of a live session, or None; a request on it counts as activity (idle timeout)
        unless `touch` is False (a check made by the server itself, e.g. an open event stream each second)."""
        if not token:
            return None
        row = self.db.one(
            "SELECT u.username, u.name, u.role, u.disabled, s.csrf, s.expires, COALESCE(s.last_seen, s.created)"
            " AS seen FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token = ?", token)
        now = self.clock.now()
        if row is None or row["disabled"] or self._ended(row["expires"], row["seen"], now):
            return None
        if touch and now - row["seen"] >= 5:  # at most one write per session every 5 s (pages that poll)
            self.db.run("UPDATE sessions SET last_seen = ? WHERE token = ?", now, token)
        return {"username": row["username"], "name": row["name"], "role": row["role"]}, row["csrf"]

    def _ended(self, expires: float, seen: float, now: float) -> bool:
        return expires < now or seen + self.idle_s < now

    def session_expired(self, token: str | None) -> bool:
        """Whether `token` names a session that ended by time (idle or 12 h), as opposed to none at all."""
        if not token:
            return False
        row = self.db.one("SELECT expires, COALESCE(last_seen, created) AS seen FROM sessions WHERE token = ?", token)
        return row is not None and self._ended(row["expires"], row["seen"], self.clock.now())

    def logout(self, token: str | None) -> None:
        self.db.run("DELETE FROM sessions WHERE token = ?", token)

    @staticmethod
    def require(user: dict[str, Any], role: str) -> None:
        if ROLES.index(user["role"]) < ROLES.index(role):
            raise Forbidden("role.forbidden", "Tài khoản của bạn không có quyền này (cần %s)" % role,
                            "Your account may not do this (needs %s)" % role)

    # ---- administration (Admin → Users): every change checked first, then one transaction ----------
    def _admins_left(self, without: str) -> int:
        """Enabled admins other than `without`."""
        return int(self.db.scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND username != ?",
                                  without))

    def _refuse_last_admin(self, user: dict[str, Any]) -> None:
        if user["role"] == "admin" and not user["disabled"] and self._admins_left(user["username"]) == 0:
            raise Conflict("user.last_admin", "Xã phải còn ít nhất một quản trị viên đang hoạt động",
                           "The commune must keep at least one active admin", "role")

    def end_sessions(self, username: str) -> int:
        """Log a user out everywhere; how many sessions ended."""
        return self.db.run("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = ?)",
                           username).rowcount

    def update(self, username: str, by: str, *, name: str | None = None, role: str | None = None,
               disabled: bool | None = None) -> dict[str, Any]:
        """Change a user's name, role or disabled flag (all or nothing). Disabling ends the user's sessions;
        nobody disables themself, and no change leaves the commune without an active admin."""
        user = self.get(username)
        if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 80):
            raise GatewayError("name.invalid", "Họ tên: 1-80 ký tự", "Name: 1-80 characters", "name")
        if role is not None and role not in ROLES:
            raise GatewayError("role.invalid", "Vai trò phải là viewer, operator hoặc admin",
                               "Role must be viewer, operator or admin", "role")
        if disabled and username == by:
            raise Conflict("user.self_disable", "Không thể tự khoá tài khoản của chính mình",
                           "You cannot disable your own account", "disabled")
        if (role is not None and role != "admin") or disabled:
            self._refuse_last_admin(user)
        with self.db.tx():
            if name is not None:
                self.db.run("UPDATE users SET name = ? WHERE username = ?", name.strip(), username)
            if role is not None:
                self.db.run("UPDATE users SET role = ? WHERE username = ?", role, username)
            if disabled is not None:
                self.db.run("UPDATE users SET disabled = ? WHERE username = ?", 1 if disabled else 0, username)
                if disabled:
                    self.end_sessions(username)
        return self.get(username)

    @staticmethod
    def generate_password() -> str:
        """A password an admin can read out over the phone: 3 groups of 4 (no 0/o/1/l), 14 characters."""
        alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
        return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))

    async def set_password(self, username: str, password: str, by: str) -> None:
        """A new password; the user's other sessions end (the admin's own session stays when it is theirs)."""
        self.get(username)
        if not isinstance(password, str) or len(password) < 10:
            raise GatewayError("password.weak", "Mật khẩu phải có ít nhất 10 ký tự",
                               "The password must have at least 10 characters", "password")
        hashed = await asyncio.to_thread(self.hasher.hash, password)
        with self.db.tx():
            self.db.run("UPDATE users SET password_hash = ? WHERE username = ?", hashed, username)
            if username != by:
                self.end_sessions(username)

    def audit(self, username: str | None, action: str, target: str | None, detail: dict[str, Any]) -> None:
        self.db.run("INSERT INTO audit (at, username, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                    self.clock.now(), username, action, target, json.dumps(detail, ensure_ascii=False))

    def audit_log(self, limit: int = 200, offset: int = 0, username: str | None = None,
                  action: str | None = None) -> builtins.list[dict[str, Any]]:
        """Newest first; `username` exact, `action` exact or a prefix ending in "." (e.g. "user.")."""
        where, args = self._audit_where(username, action)
        rows = self.db.all("SELECT * FROM audit%s ORDER BY id DESC LIMIT ? OFFSET ?" % where, *args,
                           min(max(0, limit), 10 ** 6), min(max(0, offset), 10 ** 12))
        return [dict(r) | {"detail": json.loads(r["detail"])} for r in rows]

    def audit_count(self, username: str | None = None, action: str | None = None) -> int:
        where, args = self._audit_where(username, action)
        return int(self.db.scalar("SELECT COUNT(*) FROM audit%s" % where, *args))

    def audit_actions(self) -> builtins.list[str]:
        return [r[0] for r in self.db.all("SELECT DISTINCT action FROM audit ORDER BY action")]

    @staticmethod
    def _audit_where(username: str | None, action: str | None) -> tuple[str, builtins.list[Any]]:
        parts: builtins.list[str] = []
        args: builtins.list[Any] = []
        if username:
            parts.append("username = ?")
            args.append(username)
        if action:
            if action.endswith("."):
                parts.append("substr(action, 1, ?) = ?")
                args.extend([len(action), action])
            else:
                parts.append("action = ?")
                args.append(action)
        return (" WHERE " + " AND ".join(parts) if parts else ""), args

"""Staff accounts, sessions and the audit log.

Passwords are Argon2id hashes (argon2-cffi). Roles: viewer (sees), operator
(schedules, airs, sets programs), admin (also nodes, zones, users).
A session is a random token in an HttpOnly cookie plus a CSRF token that
every state-changing request must echo in the X-CSRF-Token header.

Argon2 is slow on purpose (tens of ms): hashing and verifying run in a worker
thread with plain strings in and out; every database read and write stays on
the event loop (gateway/db.py).
"""
from __future__ import annotations

import builtins
import asyncio
import json
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.clock import Clock
from gateway.db import Database
from gateway.errors import Conflict, Forbidden, GatewayError, NotFound

ROLES = ("viewer", "operator", "admin")
SESSION_S = 12 * 3600


class Users:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
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

    async def login(self, username: str, password: str) -> tuple[str, str, dict[str, Any]]:
        """(session token, csrf token, user) or a GatewayError that does not say which part was wrong."""
        row = self.db.one("SELECT * FROM users WHERE username = ?", username or "")
        usable = row is not None and not row["disabled"]
        hashed = row["password_hash"] if usable and row is not None else self._dummy_hash
        ok = await asyncio.to_thread(self._verify, hashed, password or "")  # same work for unknown users
        if ok and row is not None:  # the account as it is now, after the wait: not disabled nor changed since
            now_row = self.db.one("SELECT disabled, password_hash FROM users WHERE id = ?", row["id"])
            usable = now_row is not None and not now_row["disabled"] and now_row["password_hash"] == hashed
        ok = ok and usable
        if not ok or row is None:
            self.audit(username, "login_failed", None, {})
            raise GatewayError("login.failed", "Sai tên đăng nhập hoặc mật khẩu", "Wrong username or password",
                               status=401)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = self.clock.now()
        with self.db.tx():
            self.db.run("DELETE FROM sessions WHERE expires < ?", now)
            self.db.run("INSERT INTO sessions (token, user_id, csrf, created, expires) VALUES (?, ?, ?, ?, ?)",
                        token, row["id"], csrf, now, now + SESSION_S)
        self.audit(username, "login", None, {})
        return token, csrf, self.get(username)

    def session(self, token: str | None) -> tuple[dict[str, Any], str] | None:
        """(user dict, csrf) of a live session, or None."""
        if not token:
            return None
        row = self.db.one(
            "SELECT u.username, u.name, u.role, u.disabled, s.csrf, s.expires FROM sessions s"
            " JOIN users u ON u.id = s.user_id WHERE s.token = ?", token)
        if row is None or row["expires"] < self.clock.now() or row["disabled"]:
            return None
        return {"username": row["username"], "name": row["name"], "role": row["role"]}, row["csrf"]

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

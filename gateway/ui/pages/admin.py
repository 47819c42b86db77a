"""The admin pages (admin role): users and roles, the audit log, the site settings.

- /admin: the users, and a form to add one; /admin/users/{username}: change
  name and role, disable or enable, reset the password (typed by the admin,
  or generated and shown once on the answer page, never stored in clear).
- /admin/audit: the audit log, 50 a page, filtered by user and action.
- /admin/settings: one field per setting of gateway/settings.py, labelled in
  the page's language; every value checked before any is stored.
Each handler parses, calls one service method (gateway/users.py,
gateway/settings.py), audits, and renders; an error goes next to its field.
"""
from __future__ import annotations

import re
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from gateway.errors import GatewayError
from gateway.settings import CHOICES, RANGES, SETTINGS
from gateway.ui.web import Ctx, Web
from gateway.users import ROLES

AUDIT_PAGE = 50
WHOLE = re.compile(r"-?[0-9]{1,9}")  # ASCII digits only: '²'.isdigit() is True but int('²') fails
SHOWN_ONCE_S = 300  # a generated password not looked at within this is forgotten


def N_(message: str) -> str:
    """Marks a string for the catalogue; translated where it is shown."""
    return message


DONE = {"created": N_("The user was added."), "saved": N_("Saved."), "disabled": N_("The account is disabled; its sessions have ended."),
        "enabled": N_("The account is enabled."), "password": N_("The new password is set; the user's sessions have ended."),
        "settings": N_("The settings are saved."),
        "unlocked": N_("The account is unlocked: the person can log in again.")}
# each setting of gateway/settings.py, labelled from the catalogue
LABELS = {"approval_required": N_("An operator's new broadcast waits for an approver before it airs"),
          "default_lang": N_("Default language of the UI"),
          "emergency_repeat": N_("Default number of readings of an emergency broadcast"),
          "offline_alert_min": N_("Report a device offline after (minutes)")}
ROLE_LABELS = {"viewer": N_("viewer"), "operator": N_("operator"), "admin": N_("admin")}


def _flash(ctx: Ctx, done: str | None) -> str | None:
    return ctx._(DONE[done]) if done in DONE else None


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def routes(web: Web, router: APIRouter) -> None:
    users = web.gw.users
    # a generated password waits here (token -> admin, user, expiry, password) for the one page that shows it
    shown_once: dict[str, tuple[str, str, float, str]] = {}

    def users_page(ctx: Ctx, status: int = 200, **values: Any) -> HTMLResponse:
        return web.render(ctx, "admin/users.html", status=status, users=users.list(), roles=ROLES,
                          role_labels=ROLE_LABELS, **values)

    def user_page(ctx: Ctx, username: str, status: int = 200, **values: Any) -> HTMLResponse:
        return web.render(ctx, "admin/user.html", status=status, subject=users.get(username), roles=ROLES,
                          role_labels=ROLE_LABELS, locked_until=users.lock_until(username), **values)

    # ---- users -------------------------------------------------------------
    @router.get("/admin")
    async def admin_index(request: Request, done: str | None = None) -> HTMLResponse:
        ctx = web.ctx(request, "admin")
        return users_page(ctx, flash=_flash(ctx, done), new={"role": "viewer"})

    @router.post("/admin/users")
    async def add_user(request: Request) -> Response:
        ctx, form = await web.form(request, "admin")
        new = {"username": _text(form, "username"), "name": _text(form, "name"), "role": _text(form, "role")}
        password = form.get("password")
        try:
            if not new["name"]:
                raise GatewayError("name.invalid", "Hãy nhập họ tên", "Enter the person's name", "name")
            await users.add(new["username"], new["name"], new["role"], password if isinstance(password, str) else "")
        except GatewayError as exc:
            return users_page(ctx, status=exc.status, new=new, errors={exc.field or "form": ctx.error_text(exc)})
        users.audit(ctx.user["username"] if ctx.user else None, "user.add", new["username"], {"role": new["role"]})
        return web.redirect("/admin/users/%s?done=created" % new["username"])

    @router.get("/admin/users/{username}")
    async def user_detail(username: str, request: Request, done: str | None = None,
                          once: str | None = None) -> HTMLResponse:
        ctx = web.ctx(request, "admin")
        kept = shown_once.pop(once, None) if once else None
        generated = kept[3] if kept and kept[0] == (ctx.user or {}).get("username") and kept[1] == username \
            and kept[2] >= web.gw.clock.now() else None
        return user_page(ctx, username, flash=_flash(ctx, done), generated=generated)

    async def change(request: Request, username: str, **changes: Any) -> Response:
        ctx, _form = await web.form(request, "admin")
        me = ctx.user["username"] if ctx.user else ""
        try:
            users.update(username, me, **changes)
        except GatewayError as exc:
            if exc.status == 404:
                raise
            return user_page(ctx, username, status=exc.status, errors={exc.field or "form": ctx.error_text(exc)})
        users.audit(me, "user.update", username, changes)
        done = "saved" if "disabled" not in changes else ("disabled" if changes["disabled"] else "enabled")
        return web.redirect("/admin/users/%s?done=%s" % (username, done))

    @router.post("/admin/users/{username}")
    async def save_user(username: str, request: Request) -> Response:
        ctx, form = await web.form(request, "admin")
        me = ctx.user["username"] if ctx.user else ""
        changes = {"name": _text(form, "name"), "role": _text(form, "role")}
        try:
            users.update(username, me, name=changes["name"], role=changes["role"])
        except GatewayError as exc:
            if exc.status == 404:
                raise
            return user_page(ctx, username, status=exc.status, values=changes,
                             errors={exc.field or "form": ctx.error_text(exc)})
        users.audit(me, "user.update", username, changes)
        return web.redirect("/admin/users/%s?done=saved" % username)

    @router.post("/admin/users/{username}/disable")
    async def disable_user(username: str, request: Request) -> Response:
        return await change(request, username, disabled=True)

    @router.post("/admin/users/{username}/enable")
    async def enable_user(username: str, request: Request) -> Response:
        return await change(request, username, disabled=False)

    @router.post("/admin/users/{username}/unlock")
    async def unlock_user(username: str, request: Request) -> Response:
        """End a lock after repeated wrong passwords (gateway/users.py) before it runs out."""
        ctx, _form = await web.form(request, "admin")
        users.get(username)  # unknown: 404 page
        was = users.unlock(username)
        users.audit(ctx.user["username"] if ctx.user else None, "user.unlock", username, {"was_locked": was})
        return web.redirect("/admin/users/%s?done=unlocked" % username)

    @router.post("/admin/users/{username}/password")
    async def reset_password(username: str, request: Request) -> Response:
        ctx, form = await web.form(request, "admin")
        me = ctx.user["username"] if ctx.user else ""
        users.get(username)  # unknown: 404 page
        generate = _text(form, "mode") == "generate"
        typed = form.get("password")
        password = users.generate_password() if generate else (typed if isinstance(typed, str) else "")
        try:
            await users.set_password(username, password, me)
        except GatewayError as exc:
            return user_page(ctx, username, status=exc.status, errors={exc.field or "form": ctx.error_text(exc)})
        users.audit(me, "user.password", username, {"generated": generate})
        if generate:  # kept in memory for the one page that shows it (a reload does not make another)
            token = secrets.token_urlsafe(16)
            now = web.gw.clock.now()
            for old in [k for k, v in shown_once.items() if v[2] < now]:
                del shown_once[old]
            shown_once[token] = (me, username, now + SHOWN_ONCE_S, password)
            return web.redirect("/admin/users/%s?done=password&once=%s" % (username, token))
        return web.redirect("/admin/users/%s?done=password" % username)

    # ---- audit log ---------------------------------------------------------
    @router.get("/admin/audit")
    async def audit_log(request: Request, user: str = "", action: str = "", page: str = "1") -> HTMLResponse:
        ctx = web.ctx(request, "admin")
        number = int(page) if WHOLE.fullmatch(page) and int(page) > 0 else 1
        total = users.audit_count(user or None, action or None)
        pages = max(1, (total + AUDIT_PAGE - 1) // AUDIT_PAGE)
        number = min(number, pages)
        rows = users.audit_log(AUDIT_PAGE, (number - 1) * AUDIT_PAGE, user or None, action or None)
        return web.render(ctx, "admin/audit.html", rows=rows, total=total, page=number, pages=pages,
                          filter_user=user, filter_action=action, usernames=[u["username"] for u in users.list()],
                          actions=users.audit_actions())

    # ---- settings ----------------------------------------------------------
    def settings_page(ctx: Ctx, status: int = 200, **values: Any) -> HTMLResponse:
        fields = []
        for key, (default, _vi, _en) in SETTINGS.items():
            kind = "bool" if isinstance(default, bool) else "int" if isinstance(default, int) else "choice" \
                if key in CHOICES else "text"
            fields.append({"key": key, "label": ctx._(LABELS[key]), "kind": kind,
                           "choices": CHOICES.get(key, ()), "range": RANGES.get(key)})
        current = values.pop("current", None) or web.gw.settings.all()
        return web.render(ctx, "admin/settings.html", status=status, fields=fields, current=current, **values)

    @router.get("/admin/settings")
    async def settings(request: Request, done: str | None = None) -> HTMLResponse:
        ctx = web.ctx(request, "admin")
        return settings_page(ctx, flash=_flash(ctx, done))

    @router.post("/admin/settings")
    async def save_settings(request: Request) -> Response:
        ctx, form = await web.form(request, "admin")
        typed: dict[str, Any] = {}
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for key, (default, _vi, _en) in SETTINGS.items():
            raw = form.get(key)
            text = raw.strip() if isinstance(raw, str) else ""
            typed[key] = text
            value: Any = text
            if isinstance(default, bool):
                value = text in ("on", "1", "true")
                typed[key] = value
            elif isinstance(default, int):
                value = int(text) if WHOLE.fullmatch(text) else text
            try:
                values[key] = web.gw.settings.check(key, value)
            except GatewayError as exc:
                errors[key] = ctx.error_text(exc)
        if errors:  # nothing stored: the form again, with what was typed and each message beside its field
            return settings_page(ctx, status=400, current=typed, errors=errors)
        before = web.gw.settings.all()
        web.gw.settings.update(values, ctx.user["username"] if ctx.user else None)
        users.audit(ctx.user["username"] if ctx.user else None, "settings.update", None,
                    dict((k, v) for k, v in values.items() if before.get(k) != v))
        return web.redirect("/admin/settings?done=settings")

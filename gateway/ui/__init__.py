"""The staff web UI: server-rendered Vietnamese-first pages on the gateway (docs/ui.md).

`mount_ui(app, gw)` adds the static files, the session pages (login, logout,
language) and every page group of gateway/ui/pages/. Each group is a module
with `routes(web, router)`; templates live in templates/<group>/, strings in
the one catalogue (gateway/ui/i18n.py).
"""
from __future__ import annotations

import importlib
import math
import os
import secrets
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from gateway.errors import GatewayError
from gateway.service import Gateway
from gateway.ui.i18n import LANGS
from gateway.ui.web import HERE, LANG_COOKIE, SESSION_COOKIE, Ctx, LoginNeeded, Web, client_address
from gateway.users import LoginRefused

GROUPS = ("dashboard", "broadcasts", "emergency", "lamps", "nodes", "reports", "admin", "firmware")
LOGIN_CSRF_COOKIE = "denloa_login_csrf"  # double-submit token of the login form (no session exists yet)


def safe_next(url: str | None) -> str:
    """Only a local path may be a redirect target after login."""
    if not url or not url.startswith("/") or url.startswith("//") or urlsplit(url).netloc:
        return "/"
    return url


def mount_ui(app: FastAPI, gw: Gateway) -> Web:
    web = Web(gw)
    app.mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static")
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    async def login_page(request: Request, next: str = "/", expired: str = "") -> HTMLResponse:
        ctx = web.ctx(request, None)
        if ctx.user is not None:
            return web.redirect(safe_next(next))  # type: ignore[return-value]
        notice = ctx._("Your session expired; please log in again.") if expired else None
        answer = _login_form(web, ctx, safe_next(next), notice=notice)
        if expired:
            answer.delete_cookie(SESSION_COOKIE)
        return answer

    @router.post("/login")
    async def login(request: Request) -> Any:
        ctx = web.ctx(request, None)
        form = await request.form()
        next_url = safe_next(str(form.get("next") or "/"))
        token = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not token or form.get("csrf") != token:
            return _login_form(web, ctx, next_url, ctx._("The page had expired; please log in again."), 403)
        try:
            session, _csrf, _user = await gw.users.login(str(form.get("username") or ""),
                                                         str(form.get("password") or ""), client_address(request))
        except GatewayError as exc:  # wrong, or refused for a while (429: the message says until when)
            refused = _login_form(web, ctx, next_url, ctx.error_text(exc), exc.status,
                                  str(form.get("username") or ""))
            if isinstance(exc, LoginRefused):
                refused.headers["Retry-After"] = str(max(1, math.ceil(exc.until - gw.clock.now())))
            return refused
        answer = web.redirect(next_url)
        answer.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", max_age=12 * 3600,
                          secure=request.url.scheme == "https")  # over HTTPS: never sent in clear
        answer.delete_cookie(LOGIN_CSRF_COOKIE)
        return answer

    @router.post("/logout")
    async def logout(request: Request) -> RedirectResponse:
        await web.form(request, "viewer")
        gw.users.logout(request.cookies.get(SESSION_COOKIE))
        answer = web.redirect("/login")
        answer.delete_cookie(SESSION_COOKIE)
        return answer

    @router.get("/lang/{lang}")
    async def language(lang: str, request: Request, next: str = "/") -> RedirectResponse:
        """A preference, not a change of state: a plain link switches the language."""
        answer = web.redirect(safe_next(next))
        if lang in LANGS:
            answer.set_cookie(LANG_COOKIE, lang, samesite="lax", max_age=365 * 86400)
        return answer

    for group in GROUPS:
        importlib.import_module("gateway.ui.pages." + group).routes(web, router)
    app.include_router(router)
    return web


def _login_form(web: Web, ctx: Ctx, next_url: str, error: str | None = None, status: int = 200,
                username: str = "", notice: str | None = None) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    answer = web.render(ctx, "login.html", status=status, next_url=next_url, error=error, login_csrf=token,
                        username=username, notice=notice)
    answer.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", max_age=3600)
    return answer


__all__ = ["mount_ui", "LoginNeeded", "Web", "GROUPS"]

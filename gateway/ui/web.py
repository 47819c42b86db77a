"""What every page of the staff UI shares: templates, the language, the login and role checks, CSRF, errors.

A page handler is `async def` and runs on the event loop that owns the
database (gateway/db.py), like the JSON API; it reads the gateway's services
directly (never through HTTP) and renders a Jinja2 template.

- Login: the same session cookie as the API (gateway/api.py). A page asked
  for without a session redirects to /login?next=... (with &expired=1 when
  the session ended by time: idle or 12 h; the form says so and leads back
  to the page after the login); a role too low gets a 403 page in plain
  words. Templates hide what the role may not do (`can()`).
- CSRF: every form carries a hidden `csrf` field, every htmx request and
  every fetch() of app.js sends the X-CSRF-Token header; `Web.form()` checks
  one of them against the session's token before a handler changes anything.
- Errors: a GatewayError becomes its message in the page's language;
  anything else a plain "nothing was changed" page (the log has the rest).
"""
from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData

from gateway.errors import GatewayError
from gateway.service import Gateway
from gateway.ui.i18n import LANGS, pick_lang, tr, translations
from gateway.ui.js_strings import for_lang as js_strings
from gateway.users import ROLES

HERE = os.path.dirname(os.path.abspath(__file__))
SESSION_COOKIE = "denloa_session"  # the API's (gateway/api.py COOKIE)
LANG_COOKIE = "denloa_lang"


def client_address(request: Request) -> str:
    """The client's address as the server saw it (a reverse proxy in front would make it the proxy's)."""
    return request.client.host if request.client else "?"


class LoginNeeded(Exception):
    """A page was asked for without a live session: the app answers with a redirect to /login."""

    def __init__(self, next_url: str, expired: bool = False) -> None:
        super().__init__(next_url)
        self.next_url = next_url
        self.expired = expired


class Ctx:
    """Who is asking, in which language, with which CSRF token: handed to every page handler."""

    def __init__(self, request: Request, user: dict[str, Any] | None, csrf: str | None, lang: str) -> None:
        self.request = request
        self.user = user
        self.csrf = csrf
        self.lang = lang

    def can(self, role: str) -> bool:
        return self.user is not None and ROLES.index(self.user["role"]) >= ROLES.index(role)

    def _(self, message: str, **values: object) -> str:
        return tr(self.lang, message, **values)

    def error_text(self, exc: GatewayError) -> str:
        return exc.vi if self.lang == "vi" else exc.en


class Web:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.envs = dict((lang, self._env(lang)) for lang in LANGS)

    def _env(self, lang: str) -> Environment:
        env = Environment(loader=FileSystemLoader(os.path.join(HERE, "templates")),
                          autoescape=select_autoescape(default=True), extensions=["jinja2.ext.i18n"],
                          trim_blocks=True, lstrip_blocks=True)
        env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
        def local(t: float | None, fmt: str) -> str:  # the site's zone, read when a page renders
            return "" if t is None else time.strftime(fmt, time.gmtime(float(t) + self.gw.cfg.tz_s))

        env.filters["dmy"] = lambda t: local(t, "%d/%m/%Y")           # dates dd/mm/yyyy
        env.filters["hm"] = lambda t: local(t, "%H:%M")               # 24-hour clock
        env.filters["dmyhm"] = lambda t: local(t, "%d/%m/%Y %H:%M")
        env.filters["hms"] = lambda t: local(t, "%H:%M:%S")
        env.filters["num"] = lambda v, d=0: self.number(v, lang, d)
        env.globals["LANGS"] = LANGS
        return env

    @staticmethod
    def number(value: float | int | None, lang: str, decimals: int = 0) -> str:
        """1.234,5 in Vietnamese, 1,234.5 in English."""
        if value is None:
            return "–"
        text = "{:,.{}f}".format(float(value), decimals)
        return text.replace(",", "\0").replace(".", ",").replace("\0", ".") if lang == "vi" else text

    # ---- who is asking -----------------------------------------------------
    def lang(self, request: Request) -> str:
        return pick_lang(request.cookies.get(LANG_COOKIE) or self.gw.settings.get("default_lang"))

    def ctx(self, request: Request, role: str | None = "viewer") -> Ctx:
        """The request's context; raises LoginNeeded, or Forbidden when the role is too low (role None: no login)."""
        found = self.gw.users.session(request.cookies.get(SESSION_COOKIE))
        user, csrf = found if found else (None, None)
        ctx = Ctx(request, user, csrf, self.lang(request))
        if role is not None:
            if user is None:
                raise LoginNeeded(self.back_to(request), self.gw.users.session_expired(request.cookies.get(SESSION_COOKIE)))
            self.gw.users.require(user, role)
        return ctx

    async def form(self, request: Request, role: str = "operator") -> tuple[Ctx, FormData]:
        """For a POST from a page: the session, the role and the CSRF token checked; then the form."""
        ctx = self.ctx(request, role)
        form = await request.form()
        sent = request.headers.get("x-csrf-token") or form.get("csrf")
        if not ctx.csrf or sent != ctx.csrf:
            raise GatewayError("csrf.invalid", "Phiên làm việc không hợp lệ, hãy tải lại trang",
                               "Missing or wrong CSRF token: reload the page", status=403)
        return ctx, form

    # ---- answers -----------------------------------------------------------
    def render(self, ctx: Ctx, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        page = self.envs[ctx.lang].get_template(template)
        html = page.render(ctx=ctx, user=ctx.user, csrf=ctx.csrf, lang=ctx.lang, can=ctx.can,
                           site_name=self.gw.cfg.site_name, path=ctx.request.url.path, tz_s=self.gw.cfg.tz_s,
                           now=self.gw.clock.now(), js_strings=js_strings(ctx.lang), **values)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def error_page(self, request: Request, status: int, message: str, code: str | None = None) -> HTMLResponse:
        found = self.gw.users.session(request.cookies.get(SESSION_COOKIE))
        ctx = Ctx(request, found[0] if found else None, found[1] if found else None, self.lang(request))
        return self.render(ctx, "error.html", status=status, status_code=status, message=message, code=code)

    def invalid_page(self, request: Request, field: str | None) -> HTMLResponse:
        text = tr(self.lang(request), "The address or the form is not valid%(field)s.",
                  field=" (%s)" % field if field else "")
        return self.error_page(request, 400, text, "request.invalid")

    def internal_page(self, request: Request) -> HTMLResponse:
        text = tr(self.lang(request), "Something went wrong in the system; nothing was changed. Please try again.")
        return self.error_page(request, 500, text, "internal")

    @staticmethod
    def redirect(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    @staticmethod
    def back_to(request: Request) -> str:
        """Where the login should lead back to: the page asked for; for a form sent (a POST), the page it was
        sent from when that is one of ours, else the home page."""
        if request.method == "GET":
            return request.url.path + ("?" + request.url.query if request.url.query else "")
        referer = urlsplit(request.headers.get("referer") or "")
        if referer.netloc and referer.netloc != request.url.netloc:
            return "/"
        return (referer.path or "/") + ("?" + referer.query if referer.query else "")

    @staticmethod
    def login_url(next_url: str, expired: bool = False) -> str:
        return "/login?next=" + quote(next_url, safe="/") + ("&expired=1" if expired else "")


def is_page(path: str) -> bool:
    """A UI path (HTML answers), as opposed to the JSON API, the nodes' files, metrics and the OpenAPI docs."""
    return not path.startswith(("/api/", "/node/", "/metrics", "/docs", "/openapi.json", "/redoc", "/static/"))

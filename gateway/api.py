"""HTTP JSON API for staff tools (the web UI, scripts); OpenAPI at /docs when `[http] api_docs = true`.

Login gives an HttpOnly session cookie and a CSRF token; every request that
changes something must send the token in X-CSRF-Token. Errors are JSON
{"error", "message" (Vietnamese), "message_en", "field"} with a 4xx status;
nothing is half-applied. Every change is written to the audit log.

Exposure: every route wants a staff session but the login, /api/health,
/api/categories, the nodes' own routes (gateway/api_node.py: node
credentials) and /metrics, which answers as `[http] metrics` says (the
gateway's own host only, a Bearer token, or anyone) and is a plain 404 to
anyone else. FastAPI's /docs, /redoc and /openapi.json exist only with
`[http] api_docs = true`, and then for logged-in staff only.

Every route and dependency is `async def`: it runs on the event loop that
owns the database (gateway/db.py), never in a thread pool. A handler parses,
authorises, calls one service method and shapes the answer.
"""
from __future__ import annotations

import hmac
import math
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from gateway.api_audio import audio_router
from gateway.api_firmware import firmware_router
from gateway.api_node import node_router
from gateway.api_streams import streams_router
from gateway.errors import GatewayError
from gateway.plan_push import needs_approval
from gateway.reports import monthly, monthly_csv
from gateway.service import Gateway
from gateway.ui import mount_ui
from gateway.ui.web import LoginNeeded, Web, client_address, is_page
from gateway.users import LoginRefused
from protocol.plan import CATEGORIES

COOKIE = "denloa_session"
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
LOCALHOST = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
NOT_FOUND = {"detail": "Not Found"}  # what FastAPI answers for a path it does not know: /metrics refused says no more


def metrics_token(gw: Gateway) -> bytes | None:
    """The Bearer token of `[http] metrics = "token"` (read once, at start), or None for the other modes."""
    if gw.cfg.metrics_access != "token":
        return None
    path = gw.cfg.metrics_token_file
    try:
        with open(path, "rb") as f:
            token = f.read().strip()
    except OSError as exc:
        raise GatewayError("config.http.metrics_token_file", "Không đọc được tệp mã /metrics %s: %s" % (path, exc.strerror),
                           "Cannot read the /metrics token file %s: %s" % (path, exc.strerror), "http.metrics_token_file")
    if len(token) < 16:
        raise GatewayError("config.http.metrics_token_file", "Mã /metrics trong %s phải dài ít nhất 16 ký tự" % path,
                           "The /metrics token in %s must be at least 16 characters long" % path,
                           "http.metrics_token_file")
    return token


def metrics_allowed(access: str, token: bytes | None, client: str | None, authorization: str | None) -> bool:
    """Whether a request may read /metrics under `[http] metrics` (the token compared in constant time)."""
    if access == "open":
        return True
    if access == "localhost":
        return client in LOCALHOST
    if access == "token" and token:
        sent = (authorization or "").encode("utf-8", "replace")
        return hmac.compare_digest(sent, b"Bearer " + token)
    return False


class Login(BaseModel):
    username: str
    password: str


class NewUser(BaseModel):
    username: str
    name: str = ""
    role: Literal["viewer", "operator", "admin"] = "viewer"
    password: str


class UserChange(BaseModel):
    name: str | None = None
    role: Literal["viewer", "operator", "admin"] | None = None
    disabled: bool | None = None


class NewPassword(BaseModel):
    password: str | None = Field(None, description="the new password; left out: one is generated and answered once")


class NewZone(BaseModel):
    id: str
    name: str
    kind: str = "thon"


class NewNode(BaseModel):
    id: str
    name: str | None = None
    zones: list[str]
    relays: dict[str, int] | None = None
    kind: Literal["lamp", "speaker", "both"] = "both"
    lat: float | None = None
    lon: float | None = None
    board: str = "denloa-v1"


class Emergency(BaseModel):
    zones: list[str] | Literal["all"] = "all"
    source: Literal["clip", "stream", "line"] = "line"
    ref: str | None = Field(None, description="clip content hash, or stream id")
    volume: int = Field(100, ge=0, le=100)
    duration_s: int = Field(600, ge=1, le=6 * 3600)


class NodeCommand(BaseModel):
    op: Literal["lamp_override", "set_volume", "reboot", "self_test", "rebirth", "stop_broadcast"]
    args: dict = {}


def create_app(gw: Gateway) -> FastAPI:
    users = gw.users
    scrape_token = metrics_token(gw)
    app = FastAPI(title="denloa gateway", version="0.1.0",
                  description="Đèn an ninh và loa truyền thanh của xã / commune security lights and loudspeakers",
                  docs_url=None, redoc_url=None, openapi_url=None)  # /docs etc.: below, behind a login, when enabled

    web: Web | None = None  # the staff pages (gateway/ui), mounted at the end; they answer in HTML

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        if web is not None and is_page(request.url.path):
            if exc.status == 401:
                return web.redirect(web.login_url(web.back_to(request), exc.code == "session.expired"))
            return web.error_page(request, exc.status, exc.vi if web.lang(request) == "vi" else exc.en, exc.code)
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(LoginNeeded)
    async def login_needed(request: Request, exc: LoginNeeded) -> Response:
        return Web.redirect(Web.login_url(exc.next_url, exc.expired))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        if web is not None and is_page(request.url.path):
            return web.invalid_page(request, field)
        return JSONResponse({"error": "request.invalid", "field": field,
                             "message": "Dữ liệu gửi lên không hợp lệ%s" % (" (%s)" % field if field else ""),
                             "message_en": "Invalid request%s: %s" % (" (%s)" % field if field else "",
                                                                      first.get("msg", ""))}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        gw.log("HTTP %s %s failed: %r" % (request.method, request.url.path, exc))  # the log has it, staff never
        if web is not None and is_page(request.url.path):
            return web.internal_page(request)
        return JSONResponse({"error": "internal", "message": "Có lỗi trong hệ thống; thao tác chưa được thực hiện",
                             "message_en": "Internal error; nothing was changed"}, status_code=500)

    async def current(request: Request) -> dict[str, Any]:
        found = users.session(request.cookies.get(COOKIE))
        if found is None:
            if users.session_expired(request.cookies.get(COOKIE)):
                raise GatewayError("session.expired", "Phiên đăng nhập đã hết hạn, vui lòng đăng nhập lại",
                                   "Your session expired; please log in again", status=401)
            raise GatewayError("login.required", "Vui lòng đăng nhập", "Please log in", status=401)
        user, csrf = found
        if request.method in UNSAFE and request.headers.get("x-csrf-token") != csrf:
            raise GatewayError("csrf.invalid", "Phiên làm việc không hợp lệ, hãy tải lại trang",
                               "Missing or wrong CSRF token: reload the page", status=403)
        return user

    def role(name: str) -> Any:
        async def check(user: dict[str, Any] = Depends(current)) -> dict[str, Any]:
            users.require(user, name)
            return user
        return check

    viewer, operator, admin = role("viewer"), role("operator"), role("admin")

    def audit(user: dict[str, Any], action: str, target: str | None, detail: dict[str, Any] | None = None) -> None:
        users.audit(user["username"], action, target, detail or {})

    # ---- session -----------------------------------------------------------
    @app.post("/api/login")
    async def login(body: Login, request: Request, response: Response) -> Any:
        try:
            token, csrf, user = await users.login(body.username, body.password, client_address(request))
        except LoginRefused as exc:  # locked or throttled: 429 with when to come back
            wait = max(1, math.ceil(exc.until - gw.clock.now()))
            return JSONResponse(exc.to_json() | {"retry_after": wait}, status_code=exc.status,
                                headers={"Retry-After": str(wait)})
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=12 * 3600,
                            secure=request.url.scheme == "https")  # over HTTPS: never sent in clear
        return {"user": user, "csrf": csrf}

    @app.post("/api/logout")
    async def logout(request: Request, response: Response, user: dict = Depends(current)) -> dict[str, Any]:
        users.logout(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE)
        return {"ok": True}

    @app.get("/api/me")
    async def me(request: Request, user: dict = Depends(current)) -> dict[str, Any]:
        found = users.session(request.cookies.get(COOKIE))
        return {"user": user, "csrf": found[1] if found else None}

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return gw.health()

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not metrics_allowed(gw.cfg.metrics_access, scrape_token, request.client.host if request.client else None,
                               request.headers.get("authorization")):
            return JSONResponse(NOT_FOUND, status_code=404)
        return Response(gw.metrics_text(), media_type=gw.metrics.content_type)

    if gw.cfg.api_docs:  # FastAPI's schema and its two viewers, for logged-in staff only
        @app.get("/openapi.json", include_in_schema=False)
        async def openapi_json(user: dict = Depends(current)) -> JSONResponse:
            return JSONResponse(app.openapi())

        @app.get("/docs", include_in_schema=False)
        async def swagger(user: dict = Depends(current)) -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title + " – API")

        @app.get("/redoc", include_in_schema=False)
        async def redoc(user: dict = Depends(current)) -> HTMLResponse:
            return get_redoc_html(openapi_url="/openapi.json", title=app.title + " – API")

    # ---- users -------------------------------------------------------------
    @app.get("/api/users")
    async def list_users(user: dict = Depends(admin)) -> list[dict[str, Any]]:
        return users.list()

    @app.post("/api/users", status_code=201)
    async def add_user(body: NewUser, user: dict = Depends(admin)) -> dict[str, Any]:
        created = await users.add(body.username, body.name, body.role, body.password)
        audit(user, "user.add", body.username, {"role": body.role})
        return created

    @app.patch("/api/users/{username}")
    async def change_user(username: str, body: UserChange, user: dict = Depends(admin)) -> dict[str, Any]:
        changes = body.model_dump(exclude_none=True)
        changed = users.update(username, user["username"], **changes)
        audit(user, "user.update", username, changes)
        return changed

    @app.post("/api/users/{username}/password")
    async def user_password(username: str, body: NewPassword, user: dict = Depends(admin)) -> dict[str, Any]:
        generated = body.password is None
        password = users.generate_password() if generated else str(body.password)
        await users.set_password(username, password, user["username"])
        audit(user, "user.password", username, {"generated": generated})
        return {"ok": True, "password": password} if generated else {"ok": True}

    @app.post("/api/users/{username}/unlock")
    async def unlock_user(username: str, user: dict = Depends(admin)) -> dict[str, Any]:
        users.get(username)
        was = users.unlock(username)
        audit(user, "user.unlock", username, {"was_locked": was})
        return {"ok": True, "was_locked": was}

    @app.get("/api/audit")
    async def audit_log(limit: int = 200, offset: int = 0, username: str | None = None, action: str | None = None,
                        user: dict = Depends(admin)) -> list[dict[str, Any]]:
        return users.audit_log(min(max(limit, 1), 1000), min(max(offset, 0), 10 ** 9), username, action)

    @app.get("/api/settings")
    async def get_settings(user: dict = Depends(admin)) -> dict[str, Any]:
        return gw.settings.all()

    @app.put("/api/settings")
    async def put_settings(body: dict[str, Any], user: dict = Depends(admin)) -> dict[str, Any]:
        before = gw.settings.all()
        result = gw.settings.update(body, user["username"])
        audit(user, "settings.update", None, {k: v for k, v in body.items() if before.get(k) != v})
        return result

    # ---- zones and nodes ---------------------------------------------------
    @app.get("/api/zones")
    async def zones(user: dict = Depends(viewer)) -> list[dict[str, Any]]:
        return gw.registry.zones()

    @app.post("/api/zones", status_code=201)
    async def add_zone(body: NewZone, user: dict = Depends(admin)) -> dict[str, Any]:
        zone = gw.registry.add_zone(body.model_dump())
        audit(user, "zone.add", body.id, {"name": body.name})
        return zone

    @app.get("/api/nodes")
    async def nodes(user: dict = Depends(viewer)) -> list[dict[str, Any]]:
        return [gw.node_status(n) for n in gw.registry.nodes()]

    @app.get("/api/nodes/{node_id}")
    async def node(node_id: str, user: dict = Depends(viewer)) -> dict[str, Any]:
        return gw.node_status(gw.registry.node(node_id))

    @app.post("/api/nodes", status_code=201)
    async def add_node(body: NewNode, user: dict = Depends(admin)) -> dict[str, Any]:
        node, bundle = await gw.provisioning.add_node(body.model_dump(exclude_none=True), gw.cfg.site,
                                                      gw.cfg.broker_host, gw.cfg.broker_port, gw.location)
        audit(user, "node.add", node["id"], {"zones": node["zones"]})
        return {"node": node, "provisioning": bundle}

    @app.post("/api/nodes/{node_id}/reprovision")
    async def reprovision(node_id: str, user: dict = Depends(admin)) -> dict[str, Any]:
        bundle = await gw.provisioning.reprovision(node_id, gw.cfg.site, gw.cfg.broker_host, gw.cfg.broker_port,
                                                   gw.location)
        audit(user, "node.reprovision", node_id)
        return {"provisioning": bundle}

    @app.delete("/api/nodes/{node_id}")
    async def revoke(node_id: str, user: dict = Depends(admin)) -> dict[str, Any]:
        await gw.provisioning.revoke(node_id)
        audit(user, "node.revoke", node_id)
        return {"ok": True}

    @app.post("/api/nodes/{node_id}/commands", status_code=202)
    async def node_command(node_id: str, body: NodeCommand, user: dict = Depends(operator)) -> dict[str, Any]:
        cmd_id = gw.commands.create(node_id, body.op, body.args, user=user["username"])
        audit(user, "command." + body.op, node_id, body.args)
        return gw.commands.get(cmd_id)

    @app.get("/api/commands")
    async def commands(node: str | None = None, batch: str | None = None, status: str | None = None,
                       user: dict = Depends(viewer)) -> list[dict[str, Any]]:
        return gw.commands.list(node, batch, status)

    @app.get("/api/commands/{cmd_id}")
    async def command(cmd_id: str, user: dict = Depends(viewer)) -> dict[str, Any]:
        return gw.commands.get(cmd_id)

    # ---- emergency ---------------------------------------------------------
    @app.post("/api/emergency", status_code=202)
    async def emergency(body: Emergency, user: dict = Depends(operator)) -> dict[str, Any]:
        started = await gw.emergencies.start(body.zones, body.source, body.ref, body.volume, body.duration_s,
                                             user["username"])
        audit(user, "emergency.start", started["batch"], {"zones": started["zones"], "source": body.source})
        return {"batch": started["batch"], "progress": started["progress"]}

    @app.get("/api/emergency/{batch}")
    async def emergency_progress(batch: str, user: dict = Depends(viewer)) -> dict[str, Any]:
        return gw.emergencies.progress(batch)

    @app.post("/api/emergency/{batch}/stop", status_code=202)
    async def emergency_stop(batch: str, user: dict = Depends(operator)) -> dict[str, Any]:
        stopped = await gw.emergencies.stop(batch, user["username"])
        audit(user, "emergency.stop", batch)
        return stopped

    # ---- programs and schedules -------------------------------------------
    @app.get("/api/programs")
    async def programs(user: dict = Depends(viewer)) -> Any:
        return gw.plans.programs()

    @app.put("/api/programs/{scope}/{target}")
    async def set_program(scope: Literal["default", "zone", "node"], target: str, body: dict,
                          user: dict = Depends(operator)) -> Any:
        result = gw.plans.set_program(scope, target, body, user["username"])
        audit(user, "program.set", "%s/%s" % (scope, target))
        return result

    @app.delete("/api/programs/{scope}/{target}")
    async def delete_program(scope: Literal["zone", "node"], target: str, user: dict = Depends(operator)) -> Any:
        gw.plans.delete_program(scope, target)
        audit(user, "program.delete", "%s/%s" % (scope, target))
        return {"ok": True}

    @app.get("/api/schedules")
    async def schedules(user: dict = Depends(viewer)) -> Any:
        return gw.plans.schedules()

    @app.post("/api/schedules", status_code=201)
    async def add_schedule(body: dict, user: dict = Depends(operator)) -> Any:
        pending = needs_approval(gw.settings.get("approval_required"), user["role"])
        result = gw.plans.put_schedule(body, user["username"], new=True, pending=pending)
        audit(user, "schedule.add", result["id"], {"title": result.get("title"), "pending": pending})
        return result

    @app.put("/api/schedules/{schedule_id}")
    async def put_schedule(schedule_id: str, body: dict, user: dict = Depends(operator)) -> Any:
        pending = needs_approval(gw.settings.get("approval_required"), user["role"])
        result = gw.plans.put_schedule(dict(body, id=schedule_id), user["username"], new=False, pending=pending)
        audit(user, "schedule.update", schedule_id, {"pending": pending})
        return result

    @app.post("/api/schedules/{schedule_id}/approve")
    async def approve_schedule(schedule_id: str, user: dict = Depends(admin)) -> Any:
        result = gw.plans.approve_schedule(schedule_id, user["username"], approve=True)
        audit(user, "schedule.approve", schedule_id)
        return result

    @app.post("/api/schedules/{schedule_id}/reject")
    async def reject_schedule(schedule_id: str, user: dict = Depends(admin)) -> Any:
        result = gw.plans.approve_schedule(schedule_id, user["username"], approve=False)
        audit(user, "schedule.reject", schedule_id)
        return result

    @app.delete("/api/schedules/{schedule_id}")
    async def delete_schedule(schedule_id: str, user: dict = Depends(operator)) -> Any:
        gw.plans.delete_schedule(schedule_id)
        audit(user, "schedule.delete", schedule_id)
        return {"ok": True}

    @app.get("/api/occurrences")
    async def occurrences(days: int = 1, user: dict = Depends(viewer)) -> Any:
        return gw.plans.upcoming(days)

    @app.get("/api/categories")
    async def categories() -> list[str]:
        return list(CATEGORIES)

    app.include_router(audio_router(gw, viewer, operator, audit))  # clips and text-to-speech: gateway/api_audio.py

    # ---- alerts, events, reports ------------------------------------------
    @app.get("/api/alerts")
    async def alerts(open_only: bool = True, user: dict = Depends(viewer)) -> list[dict[str, Any]]:
        return gw.alerts.list(open_only)

    @app.get("/api/events")
    async def events(node: str | None = None, limit: int = 200, user: dict = Depends(viewer)) -> list[dict[str, Any]]:
        return gw.ingest.events(node, min(max(limit, 1), 1000))

    @app.get("/api/reports/monthly")
    async def report(month: str, user: dict = Depends(viewer)) -> dict[str, Any]:
        return monthly(gw.db, month, gw.cfg.tz_s)

    @app.get("/api/reports/monthly.csv")
    async def report_csv(month: str, user: dict = Depends(viewer)) -> PlainTextResponse:
        text = monthly_csv(monthly(gw.db, month, gw.cfg.tz_s))
        return PlainTextResponse(text, media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="denloa-%s.csv"' % month})

    app.include_router(node_router(gw))
    app.include_router(firmware_router(gw, viewer, operator, admin, audit))  # bundles and rollouts: gateway/api_firmware.py
    app.include_router(streams_router(gw, viewer, operator, audit))
    web = mount_ui(app, gw)  # the staff web UI (gateway/ui): last, so /api routes win
    return app

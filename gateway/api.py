"""HTTP JSON API for staff tools (the web UI, scripts), with OpenAPI at /docs.

Login gives an HttpOnly session cookie and a CSRF token; every request that
changes something must send the token in X-CSRF-Token. Errors are JSON
{"error", "message" (Vietnamese), "message_en", "field"} with a 4xx status;
nothing is half-applied. Every change is written to the audit log.
"""
from typing import Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from gateway.errors import GatewayError
from gateway.reports import monthly, monthly_csv
from protocol import commands as ops
from protocol.plan import CATEGORIES

COOKIE = "denloa_session"
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


class Login(BaseModel):
    username: str
    password: str


class NewUser(BaseModel):
    username: str
    name: str = ""
    role: Literal["viewer", "operator", "admin"] = "viewer"
    password: str


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


def create_app(gw):
    users = gw.users
    app = FastAPI(title="denloa gateway", version="0.1.0",
                  description="Đèn an ninh và loa truyền thanh của xã / commune security lights and loudspeakers")

    @app.exception_handler(GatewayError)
    async def gateway_error(request, exc):
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return JSONResponse({"error": "request.invalid", "field": field,
                             "message": "Dữ liệu gửi lên không hợp lệ%s" % (" (%s)" % field if field else ""),
                             "message_en": "Invalid request%s: %s" % (" (%s)" % field if field else "",
                                                                      first.get("msg", ""))}, status_code=422)

    def current(request: Request):
        found = users.session(request.cookies.get(COOKIE))
        if found is None:
            raise GatewayError("login.required", "Vui lòng đăng nhập", "Please log in", status=401)
        user, csrf = found
        if request.method in UNSAFE and request.headers.get("x-csrf-token") != csrf:
            raise GatewayError("csrf.invalid", "Phiên làm việc không hợp lệ, hãy tải lại trang",
                               "Missing or wrong CSRF token: reload the page", status=403)
        return user

    def role(name):
        def check(user=Depends(current)):
            users.require(user, name)
            return user
        return check

    viewer, operator, admin = role("viewer"), role("operator"), role("admin")

    # ---- session -----------------------------------------------------------
    @app.post("/api/login")
    def login(body: Login, response: Response):
        token, csrf, user = users.login(body.username, body.password)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=12 * 3600)
        return {"user": user, "csrf": csrf}

    @app.post("/api/logout")
    def logout(request: Request, response: Response, user=Depends(current)):
        users.logout(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE)
        return {"ok": True}

    @app.get("/api/me")
    def me(request: Request, user=Depends(current)):
        return {"user": user, "csrf": users.session(request.cookies.get(COOKIE))[1]}

    @app.get("/", include_in_schema=False)
    def home():
        from fastapi.responses import HTMLResponse

        return HTMLResponse(
            "<!doctype html><html lang=vi><meta charset=utf-8><title>denloa</title>"
            "<h1>Đèn an ninh và loa truyền thanh — %s</h1>"
            "<p>Giao diện web cho cán bộ xã đang được xây dựng; API: <a href=/docs>/docs</a>.</p>"
            "<p lang=en>The staff web UI is on its way; the API is documented at <a href=/docs>/docs</a>.</p>"
            % gw.cfg.site_name)

    @app.get("/api/health")
    def health():
        return {"ok": True, "mqtt": gw.client is not None, "site": gw.cfg.site}

    @app.get("/metrics")
    def metrics():
        gw._gauges()
        return Response(gw.metrics.render(), media_type=gw.metrics.content_type)

    # ---- users -------------------------------------------------------------
    @app.get("/api/users")
    def list_users(user=Depends(admin)):
        return users.list()

    @app.post("/api/users", status_code=201)
    def add_user(body: NewUser, user=Depends(admin)):
        created = users.add(body.username, body.name, body.role, body.password)
        users.audit(user["username"], "user.add", body.username, {"role": body.role})
        return created

    @app.get("/api/audit")
    def audit(user=Depends(admin)):
        return users.audit_log()

    # ---- zones and nodes ---------------------------------------------------
    @app.get("/api/zones")
    def zones(user=Depends(viewer)):
        return gw.registry.zones()

    @app.post("/api/zones", status_code=201)
    def add_zone(body: NewZone, user=Depends(admin)):
        zone = gw.registry.add_zone(body.model_dump())
        users.audit(user["username"], "zone.add", body.id, {"name": body.name})
        return zone

    @app.get("/api/nodes")
    def nodes(user=Depends(viewer)):
        return [gw.node_status(n) for n in gw.registry.nodes()]

    @app.get("/api/nodes/{node_id}")
    def node(node_id: str, user=Depends(viewer)):
        return gw.node_status(gw.registry.node(node_id))

    @app.post("/api/nodes", status_code=201)
    async def add_node(body: NewNode, user=Depends(admin)):
        node, bundle = await gw.provisioning.add_node(body.model_dump(exclude_none=True), gw.cfg.site,
                                                      gw.cfg.broker_host, gw.cfg.broker_port, gw.location)
        users.audit(user["username"], "node.add", node["id"], {"zones": node["zones"]})
        if gw.plans is not None:
            gw.plans.refresh([node["id"]])
        return {"node": node, "provisioning": bundle}

    @app.post("/api/nodes/{node_id}/reprovision")
    async def reprovision(node_id: str, user=Depends(admin)):
        bundle = await gw.provisioning.reprovision(node_id, gw.cfg.site, gw.cfg.broker_host, gw.cfg.broker_port,
                                                   gw.location)
        users.audit(user["username"], "node.reprovision", node_id, {})
        return {"provisioning": bundle}

    @app.delete("/api/nodes/{node_id}")
    async def revoke(node_id: str, user=Depends(admin)):
        await gw.provisioning.revoke(node_id)
        users.audit(user["username"], "node.revoke", node_id, {})
        return {"ok": True}

    @app.post("/api/nodes/{node_id}/commands", status_code=202)
    def node_command(node_id: str, body: NodeCommand, user=Depends(operator)):
        cmd_id = gw.command(node_id, body.op, body.args, user=user["username"])
        users.audit(user["username"], "command." + body.op, node_id, body.args)
        return gw.commands.get(cmd_id)

    @app.get("/api/commands")
    def commands(node: str | None = None, batch: str | None = None, status: str | None = None,
                 user=Depends(viewer)):
        return gw.commands.list(node, batch, status)

    @app.get("/api/commands/{cmd_id}")
    def command(cmd_id: str, user=Depends(viewer)):
        return gw.commands.get(cmd_id)

    # ---- emergency ---------------------------------------------------------
    @app.post("/api/emergency", status_code=202)
    async def emergency(body: Emergency, user=Depends(operator)):
        known = gw.registry.zone_ids()
        zones = sorted(known) if body.zones == "all" else body.zones
        unknown = [z for z in zones if z not in known]
        if unknown or not zones:
            raise GatewayError("zones.unknown", "Không có cụm: %s" % ", ".join(unknown or ["(trống)"]),
                               "Unknown zones: %s" % ", ".join(unknown or ["(none)"]), "zones")
        if (body.source == "line") != (body.ref is None):
            raise GatewayError("ref.invalid", "Nguồn clip/stream cần mã; nguồn line thì không",
                               "A clip or stream source needs ref; line takes none", "ref")
        batch = await gw.emergency(zones, body.source, body.ref, body.volume, body.duration_s, user["username"])
        users.audit(user["username"], "emergency.start", batch, {"zones": zones, "source": body.source})
        return {"batch": batch, "progress": gw.commands.batch_progress(batch)}

    @app.get("/api/emergency/{batch}")
    def emergency_progress(batch: str, user=Depends(viewer)):
        progress = gw.commands.batch_progress(batch)
        if not progress["total"]:
            raise GatewayError("batch.unknown", "Không có lệnh khẩn cấp %s" % batch, "No emergency %s" % batch,
                               status=404)
        return {"batch": batch, "progress": progress}

    @app.post("/api/emergency/{batch}/stop", status_code=202)
    async def emergency_stop(batch: str, user=Depends(operator)):
        nodes = sorted({c["node_id"] for c in gw.commands.list(batch=batch, limit=10000)})
        if not nodes:
            raise GatewayError("batch.unknown", "Không có lệnh khẩn cấp %s" % batch, "No emergency %s" % batch,
                               status=404)
        stop = "s" + batch
        with gw.db.tx():
            ids = [gw.commands.create(n, ops.STOP_BROADCAST, {"id": batch}, user=user["username"], batch=stop)
                   for n in nodes]
        await gw.send_now(ids)
        users.audit(user["username"], "emergency.stop", batch, {})
        return {"batch": stop, "progress": gw.commands.batch_progress(stop)}

    # ---- programs and schedules -------------------------------------------
    @app.get("/api/programs")
    def programs(user=Depends(viewer)):
        return gw.plans.programs()

    @app.put("/api/programs/{scope}/{target}")
    def set_program(scope: Literal["default", "zone", "node"], target: str, body: dict, user=Depends(operator)):
        result = gw.plans.set_program(scope, target, body, user["username"])
        users.audit(user["username"], "program.set", "%s/%s" % (scope, target), {})
        return result

    @app.delete("/api/programs/{scope}/{target}")
    def delete_program(scope: Literal["zone", "node"], target: str, user=Depends(operator)):
        gw.plans.delete_program(scope, target)
        users.audit(user["username"], "program.delete", "%s/%s" % (scope, target), {})
        return {"ok": True}

    @app.get("/api/schedules")
    def schedules(user=Depends(viewer)):
        return gw.plans.schedules()

    @app.post("/api/schedules", status_code=201)
    def add_schedule(body: dict, user=Depends(operator)):
        result = gw.plans.put_schedule(body, user["username"], new=True)
        users.audit(user["username"], "schedule.add", result["id"], {"title": result.get("title")})
        return result

    @app.put("/api/schedules/{schedule_id}")
    def put_schedule(schedule_id: str, body: dict, user=Depends(operator)):
        result = gw.plans.put_schedule(dict(body, id=schedule_id), user["username"], new=False)
        users.audit(user["username"], "schedule.update", schedule_id, {})
        return result

    @app.delete("/api/schedules/{schedule_id}")
    def delete_schedule(schedule_id: str, user=Depends(operator)):
        gw.plans.delete_schedule(schedule_id)
        users.audit(user["username"], "schedule.delete", schedule_id, {})
        return {"ok": True}

    @app.get("/api/occurrences")
    def occurrences(days: int = 1, user=Depends(viewer)):
        return gw.plans.upcoming(days)

    @app.get("/api/categories")
    def categories():
        return list(CATEGORIES)

    # ---- alerts, events, reports ------------------------------------------
    @app.get("/api/alerts")
    def alerts(open_only: bool = True, user=Depends(viewer)):
        return gw.alerts.list(open_only)

    @app.get("/api/events")
    def events(node: str | None = None, limit: int = 200, user=Depends(viewer)):
        return gw.events(node, min(max(limit, 1), 1000))

    @app.get("/api/reports/monthly")
    def report(month: str, user=Depends(viewer)):
        return monthly(gw.db, month, gw.cfg.tz_s)

    @app.get("/api/reports/monthly.csv")
    def report_csv(month: str, user=Depends(viewer)):
        text = monthly_csv(monthly(gw.db, month, gw.cfg.tz_s))
        return PlainTextResponse(text, media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="denloa-%s.csv"' % month})

    return app

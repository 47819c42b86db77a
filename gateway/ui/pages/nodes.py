"""Devices (nodes): the list with filters, and one node's page (state, charts, events, commands, actions).

- GET /nodes?zone=&kind=&state=online|offline&fault=1&offline_for=<s>: the list.
- GET /nodes/{id}: live state, failed parts and open alerts, telemetry charts (uPlot, fed by
  GET /api/nodes/{id}/telemetry?hours=), recent events, commands with their answer, and for operators
  the actions (self test, reboot, volume, lamp override) as POST forms that create commands.
- POST /nodes/{id}/command: one of those actions (gw.commands.create); the page shows its status.
- For admins: the "Add a node" form on the list and "Re-key" on a node's page, which answer with the
  node's credentials file for the technician's tool (gateway/ui/pages/provision.py).
"""
from __future__ import annotations

import math
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gateway.alerts import part_names
from gateway.errors import GatewayError
from gateway.registry import has_lamp, has_speaker
from gateway.telemetry import SERIES, compact
from gateway.ui.pages import provision
from gateway.ui.web import Ctx, Web
from protocol import commands as ops

ACTIONS = (ops.SELF_TEST, ops.REBOOT, ops.SET_VOLUME, ops.REBIRTH)
MAX_HOURS = 14 * 24
OFFLINE_FOR = (600, 3600, 86400)
WHOLE = re.compile(r"[0-9]{1,9}")  # ASCII digits only: '²'.isdigit() is True but int('²') fails


def event_names(ctx: Ctx) -> dict[str, str]:
    return {
        "boot": ctx._("started (boot)"), "lamp_fault": ctx._("lamp fault"), "lamp_ok": ctx._("lamp works again"),
        "day_burner": ctx._("lamp lit in daylight"), "motion": ctx._("motion seen"),
        "broadcast_started": ctx._("broadcast started"), "broadcast_ended": ctx._("broadcast ended"),
        "broadcast_interrupted": ctx._("broadcast interrupted"), "broadcast_failed": ctx._("broadcast failed"),
        "broadcast_missed": ctx._("broadcast not aired"), "cmd_rejected": ctx._("command refused"),
        "clock_set": ctx._("clock set"), "clock_invalid": ctx._("clock lost"), "safe_mode": ctx._("safe mode"),
        "safe_mode_ended": ctx._("safe mode ended"), "events_dropped": ctx._("events lost"),
        "program_applied": ctx._("program received"), "storage_error": ctx._("storage error"),
        "self_test": ctx._("self test result"), "task_restarted": ctx._("task restarted"),
        "time_request": ctx._("asked for the time"), "lamp_counters": ctx._("daily lamp counters"),
        "clip_ready": ctx._("audio file ready"), "clip_evicted": ctx._("audio file removed"),
        "clip_unfit": ctx._("audio file does not fit"), "clip_corrupt": ctx._("audio file damaged"),
        "clip_bad": ctx._("audio file unusable"), "clip_fetch_failed": ctx._("audio download failed"),
        "ota_progress": ctx._("firmware update downloading"), "ota_failed": ctx._("firmware update refused"),
        "ota_switched": ctx._("firmware update installed, restarting"),
        "ota_confirmed": ctx._("new firmware works"), "ota_rolled_back": ctx._("went back to the old firmware"),
    }


def op_names(ctx: Ctx) -> dict[str, str]:
    return {ops.SET_PROGRAM: ctx._("program and broadcast plan"), ops.LAMP_OVERRIDE: ctx._("lamp override"),
            ops.BROADCAST_NOW: ctx._("broadcast now"), ops.STOP_BROADCAST: ctx._("stop broadcast"),
            ops.SET_VOLUME: ctx._("set volume"), ops.TIME_SYNC: ctx._("time sync"),
            ops.REBIRTH: ctx._("report state again"), ops.REBOOT: ctx._("reboot"), ops.SELF_TEST: ctx._("self test"),
            ops.OTA: ctx._("firmware update")}


def status_names(ctx: Ctx) -> dict[str, str]:
    return {"pending": ctx._("waiting to be sent"), "sent": ctx._("sent, no answer yet"),
            "applied": ctx._("done"), "rejected": ctx._("refused"), "expired": ctx._("expired unanswered"),
            "superseded": ctx._("replaced by a newer one")}


def kind_names(ctx: Ctx) -> dict[str, str]:
    return {"lamp": ctx._("lamp"), "speaker": ctx._("loudspeaker"), "both": ctx._("lamp and loudspeaker")}


def clock_names(ctx: Ctx) -> dict[str, str]:
    return {"synced": ctx._("synchronised"), "rtc": ctx._("on its own clock (not synchronised yet)"),
            "invalid": ctx._("no valid time")}


def row_of(web: Web, ctx: Ctx, node: dict[str, Any], zones: dict[str, str]) -> dict[str, Any]:
    live = web.gw.ingest.live(node["id"])
    tele = live.get("tele") or {}
    failed = [part_names(p)[0 if ctx.lang == "vi" else 1] for p in live.get("failed") or []]
    return {"node": node, "live": live, "online": bool(live.get("online")),
            "lamp": tele.get("lamp") if has_lamp(node) else None, "amp": tele.get("amp") if has_speaker(node) else None,
            "clock": tele.get("clock") or live.get("clock"), "failed": failed, "alerts": web.gw.alerts.messages_for(node["id"]),
            "zone_names": [zones.get(z, z) for z in node["zones"]]}


def node_list(web: Web, ctx: Ctx, zone: str, kind: str, state: str, fault: bool, offline_for: int) -> list[dict[str, Any]]:
    gw = web.gw
    now = gw.clock.now()
    zones = {z["id"]: z["name"] for z in gw.registry.zones()}
    rows = []
    for node in gw.registry.nodes():
        if zone and zone not in node["zones"]:
            continue
        if kind and node["kind"] != kind and not (kind == "lamp" and has_lamp(node)) and not (
                kind == "speaker" and has_speaker(node)):
            continue
        row = row_of(web, ctx, node, zones)
        if state == "online" and not row["online"]:
            continue
        if state == "offline" and row["online"]:
            continue
        if fault and not (row["failed"] or row["alerts"]):
            continue
        if offline_for:
            since = row["live"].get("offline_since")
            if row["online"] or (since is not None and now - since < offline_for):
                continue
        rows.append(row)
    return rows


def detail(web: Web, ctx: Ctx, node_id: str, status: int = 200, **extra: Any) -> HTMLResponse:
    gw = web.gw
    node = gw.registry.node(node_id)
    zones = {z["id"]: z["name"] for z in gw.registry.zones()}
    row = row_of(web, ctx, node, zones)
    # the routine clock traffic (time_sync commands, time_request events) would bury what staff look for
    commands = [c for c in gw.commands.list(node_id, limit=100) if c["op"] != ops.TIME_SYNC][:20]
    return web.render(ctx, "nodes/detail.html", status=status, r=row, node=node,
                      events=[e for e in gw.ingest.events(node_id, 100) if e["kind"] != "time_request"][:20],
                      commands=commands,
                      overrides=gw.overrides.active(node_id) if has_lamp(node) else [],
                      has_lamp=has_lamp(node), has_speaker=has_speaker(node), ev_names=event_names(ctx),
                      op_names=op_names(ctx), st_names=status_names(ctx), kinds=kind_names(ctx),
                      clocks=clock_names(ctx), back="/nodes/%s" % node_id,
                      names={n["id"]: n["name"] for n in gw.registry.nodes()}, zones=gw.registry.zones(), **extra)


def index_page(web: Web, ctx: Ctx, zone: str = "", kind: str = "", state: str = "", fault: bool = False,
               since: int = 0, status: int = 200, **extra: Any) -> HTMLResponse:
    """The list with its filters; `extra`: the add form's typed values and errors (add_typed, add_errors)."""
    gw = web.gw
    rows = node_list(web, ctx, zone, kind if kind in ("lamp", "speaker", "both") else "",
                     state if state in ("online", "offline") else "", fault, since)
    return web.render(ctx, "nodes/index.html", status=status, rows=rows, zones=gw.registry.zones(),
                      kinds=kind_names(ctx),
                      f={"zone": zone, "kind": kind, "state": state, "fault": fault, "offline_for": since},
                      offline_choices=OFFLINE_FOR, total=gw.registry.count(), **extra)


def routes(web: Web, router: APIRouter) -> None:
    gw = web.gw
    provision.routes(web, router)  # admin: add a node, re-key one, their credentials file

    @router.get("/nodes")
    async def nodes_index(request: Request, zone: str = "", kind: str = "", state: str = "", fault: str = "",
                          offline_for: str = "") -> HTMLResponse:
        ctx = web.ctx(request, "viewer")
        since = int(offline_for) if WHOLE.fullmatch(offline_for) else 0
        return index_page(web, ctx, zone, kind, state, fault == "1", since)

    @router.get("/nodes/{node_id}")
    async def node_page(request: Request, node_id: str, done: str | None = None, cmd: str | None = None) -> HTMLResponse:
        ctx = web.ctx(request, "viewer")
        flash = None
        if done == "sent":
            flash = ctx._("Command sent; its status is in the list of commands below.")
        elif done == "override":
            flash = ctx._("The override is sent to the lamps.")
        elif done == "cancelled":
            flash = ctx._("The override is cancelled: the lamps follow their program again.")
        return detail(web, ctx, node_id, flash=flash, highlight=cmd)

    @router.post("/nodes/{node_id}/command")
    async def node_command(request: Request, node_id: str) -> Response:
        ctx, form = await web.form(request, "operator")
        op = str(form.get("op") or "")
        args: dict[str, Any] = {}
        errors: dict[str, str] = {}
        if op not in ACTIONS:
            raise GatewayError("command.op", "Không có thao tác này", "No such action", "op")
        if op == ops.SET_VOLUME:
            raw = str(form.get("vol") or "").strip()
            if not WHOLE.fullmatch(raw) or not 0 <= int(raw) <= 100:
                errors["vol"] = ctx._("Volume must be a whole number from 0 to 100")
            else:
                args["vol"] = int(raw)
        if errors:
            return detail(web, ctx, node_id, status=400, a_errors=errors, a_typed={"vol": form.get("vol")})
        try:
            cmd_id = gw.commands.create(node_id, op, args, user=ctx.user["username"] if ctx.user else None)
        except GatewayError as exc:
            return detail(web, ctx, node_id, status=exc.status, a_errors={"op": ctx.error_text(exc)}, a_typed={})
        gw.users.audit(ctx.user["username"] if ctx.user else "?", "command." + op, node_id, args)
        return web.redirect("/nodes/%s?done=sent&cmd=%s" % (node_id, cmd_id))

    @router.get("/api/nodes/{node_id}/telemetry")
    async def telemetry(request: Request, node_id: str, hours: float = 24) -> JSONResponse:
        """The node's telemetry history for the charts (viewer); the latest reading ends the series."""
        found = gw.users.session(request.cookies.get("denloa_session"))
        if found is None:
            raise GatewayError("login.required", "Vui lòng đăng nhập", "Please log in", status=401)
        gw.users.require(found[0], "viewer")
        gw.registry.node(node_id)
        hours = min(max(hours, 0.1), MAX_HOURS) if math.isfinite(hours) else 24.0  # ?hours=nan: the default
        now = gw.clock.now()
        series = gw.ingest.history.series(node_id, now - hours * 3600)
        got = gw.ingest.tele.get(node_id)  # the latest reading (kept in memory): the chart ends with it
        if got is not None and (not series["t"] or got[0] > series["t"][-1]) and got[0] >= now - hours * 3600:
            latest = compact(got[1].to_json())
            series["t"].append(got[0])
            for key in SERIES:
                series[key].append(latest.get(key))
        return JSONResponse({"node": node_id, "hours": hours, "now": now, "tz_s": gw.cfg.tz_s, "series": series},
                            headers={"Cache-Control": "no-store"})

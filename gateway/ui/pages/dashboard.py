"""The dashboard: the commune's map, live states, alerts, on air now and today's broadcasts; /live (SSE).

The map is inline SVG drawn from the registry's node positions (no tiles: the
LAN has no internet): a circle is a lamp, a square a loudspeaker (a node with
both is a square with a small circle), each coloured by its live state, with
the hamlets' outlines (a padded convex hull of their nodes) and names. The
same states are in a table beside it (the text alternative). /live sends, as
server-sent events, `nodes` (each node's state classes and words), `alerts`,
`onair` and `emergency` whenever one of them changed (checked every second);
static/dashboard.js applies them without a reload.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from gateway.alerts import part_names
from gateway.registry import has_lamp, has_speaker
from gateway.ui.web import Ctx, Web

LIVE_EVERY_S = 1.0
MAP_W = 800.0  # SVG user units
MAP_PAD = 60.0
MAP_H = 560.0  # the tallest the map gets
MAP_MIN_H = 300.0
HULL_PAD = 26.0
FAULT_KINDS = ("lamp_fault", "day_burner", "part_failed", "safe_mode", "storage_error")


# ---- states in words -------------------------------------------------------------------------
def local_when(t: float, now: float, tz_s: int) -> str:
    """A moment in the site's time as staff read it: HH:MM today, dd/mm/yyyy HH:MM on another day
    (the same-day rule of templates/nodes/_conn.html)."""
    same_day = int((t + tz_s) // 86400) == int((now + tz_s) // 86400)
    return time.strftime("%H:%M" if same_day else "%d/%m/%Y %H:%M", time.gmtime(float(t) + tz_s))


def conn_text(ctx: Ctx, live: dict[str, Any], now: float, tz_s: int) -> str:
    """The connection in words, dated as on the devices pages ("offline since 17:02" / "since 12/05/2026 17:02")."""
    if live.get("online"):
        return ctx._("online")
    if live.get("offline_since"):
        return ctx._("offline since %(time)s", time=local_when(float(live["offline_since"]), now, tz_s))
    return ctx._("offline") if live else ctx._("never connected")


def node_state(ctx: Ctx, node: dict[str, Any], live: dict[str, Any], faults: list[str], now: float = 0.0,
               tz_s: int = 0) -> dict[str, Any]:
    """A node's live state for the map and the table: CSS classes and plain words. `conn_text` is the
    connection dated like the devices list's badge (nodes/_conn.html) for a live update of that badge."""
    _ = ctx._
    online = bool(live.get("online"))
    tele = live.get("tele") or {}
    failed = [str(p) for p in (live.get("failed") or [])]
    lamp = tele.get("lamp") if isinstance(tele.get("lamp"), dict) else None
    amp = tele.get("amp") if isinstance(tele.get("amp"), dict) else None
    classes = ["node"]
    out: dict[str, Any] = {"online": online, "failed": failed, "tele": live.get("tele")}
    out["online_text"] = _("Connected") if online else _("Offline")
    out["conn_text"] = conn_text(ctx, live, now, tz_s)
    if not online:
        classes.append("offline")
    if has_lamp(node):
        if lamp is None:
            state, text = "unknown", _("Lamp: no report yet")
        else:
            lvl = int(lamp.get("lvl") or 0)
            if lvl <= 0:
                state, text = "off", _("Lamp off")
            elif lvl < 100:
                state, text = "dim", _("Lamp dimmed to %(lvl)s%%", lvl=lvl)
            else:
                state, text = "on", _("Lamp on")
        classes.append("lamp-" + state)
        out["lamp"], out["lamp_text"] = state, text
        out["level"] = lamp.get("lvl") if lamp else None
    else:
        out["lamp"], out["lamp_text"], out["level"] = None, "", None
    if has_speaker(node):
        if amp is None:
            state, text = "unknown", _("Loudspeaker: no report yet")
        elif amp.get("on") and amp.get("item"):
            state, text = "air", _("Loudspeaker on air")
        else:
            state, text = "idle", _("Loudspeaker idle")
        classes.append("spk-" + state)
        out["spk"], out["spk_text"] = state, text
        out["amp_on"], out["item"] = bool(amp and amp.get("on")), (amp or {}).get("item")
    else:
        out["spk"], out["spk_text"], out["amp_on"], out["item"] = None, "", False, None
    raw = [part_names(p)[0 if ctx.lang == "vi" else 1] for p in failed]
    problems = faults + [_("%(part)s not responding", part=p) for p in raw if not any(p in f for f in faults)]
    if problems:
        classes.append("fault")
    out["fault"] = bool(problems)
    out["fault_text"] = "; ".join(problems)
    words = [out["online_text"]] + [t for t in (out["lamp_text"], out["spk_text"]) if t] + problems
    out["title"] = "%s: %s" % (node["name"], ", ".join(words))
    out["cls"] = " ".join(classes)
    return out


def _faults_by_node(ctx: Ctx, alerts: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in alerts:
        if a["kind"] in FAULT_KINDS and a.get("node_id"):
            out.setdefault(a["node_id"], []).append(a["message_vi"] if ctx.lang == "vi" else a["message_en"])
    return out


def _alert_rows(ctx: Ctx, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": a["id"], "severity": a["severity"], "opened": a["opened"],
             "text": a["message_vi"] if ctx.lang == "vi" else a["message_en"]} for a in alerts]


def _titles(web: Web) -> dict[str, str]:
    """schedule id -> title."""
    return dict((str(s.get("id")), str(s.get("title") or s.get("id"))) for s in web.gw.plans.schedules())


def on_air(web: Web, ctx: Ctx, states: dict[str, dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """What the loudspeakers say they play now (telemetry), grouped by item."""
    airing = [(node_id, s["item"]) for node_id, s in states.items() if s.get("spk") == "air" and s.get("item")]
    if not airing:
        return []
    titles = _titles(web)
    items: dict[str, list[str]] = {}
    for node_id, item in airing:
        items.setdefault(str(item), []).append(node_id)
    out = []
    for item, nodes in sorted(items.items()):
        emergency = item.startswith("e") and item[1:].isdigit()
        if emergency:
            title = ctx._("EMERGENCY broadcast")
        else:
            title = titles.get(item.rsplit(".", 1)[0], ctx._("Broadcast %(item)s", item=item))
        out.append({"item": item, "title": title, "emergency": emergency, "nodes": sorted(nodes),
                    "names": [names.get(n, n) for n in sorted(nodes)]})
    return out


def snapshot(web: Web, ctx: Ctx) -> dict[str, Any]:
    """Everything /live sends, in the asker's language."""
    gw = web.gw
    alerts = gw.alerts.list()
    faults = _faults_by_node(ctx, alerts)
    nodes: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    for node in gw.registry.nodes():
        names[node["id"]] = node["name"]
        nodes[node["id"]] = node_state(ctx, node, gw.ingest.live(node["id"]), faults.get(node["id"], []),
                                       gw.clock.now(), gw.cfg.tz_s)
    return {"nodes": nodes, "alerts": _alert_rows(ctx, alerts), "onair": on_air(web, ctx, nodes, names),
            "emergency": active_emergencies(web, ctx)}


def active_emergencies(web: Web, ctx: Ctx) -> list[dict[str, Any]]:
    """Emergencies still on air, with their words for the banner."""
    gw = web.gw
    out = []
    for e in gw.emergencies.active(gw.clock.now()):
        progress = gw.commands.batch_progress(e["batch"])
        since = local_when(float(e["started"]), gw.clock.now(), gw.cfg.tz_s)
        out.append(dict(e, applied=progress["applied"], total=progress["total"],
                        text=ctx._("EMERGENCY broadcast on air since %(t)s", t=since),
                        count=ctx._("%(n)s of %(total)s loudspeakers confirmed", n=progress["applied"],
                                    total=progress["total"]),
                        link=ctx._("See progress and stop")))
    return out


# ---- the map ---------------------------------------------------------------------------------
def _hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    pts = sorted(set(points))
    if len(pts) <= 2:
        return pts

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def map_layout(nodes: list[dict[str, Any]], zones: list[dict[str, Any]]) -> dict[str, Any]:
    """Node positions in SVG units and each zone's padded outline and label position."""
    placed = [n for n in nodes if isinstance(n.get("lat"), (int, float)) and isinstance(n.get("lon"), (int, float))]
    if not placed:
        return {"width": MAP_W, "height": 0.0, "nodes": {}, "zones": []}
    lat0 = sum(float(n["lat"]) for n in placed) / len(placed)
    k = math.cos(math.radians(lat0))
    xs = [float(n["lon"]) * k for n in placed]
    ys = [-float(n["lat"]) for n in placed]
    x_span, y_span = max(max(xs) - min(xs), 1e-6), max(max(ys) - min(ys), 1e-6)
    scale = min((MAP_W - 2 * MAP_PAD) / x_span, (MAP_H - 2 * MAP_PAD) / y_span, (MAP_W - 2 * MAP_PAD) / 0.0005)
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    height = max(MAP_MIN_H, y_span * scale + 2 * MAP_PAD)
    pos = {}
    for n, x, y in zip(placed, xs, ys):
        pos[n["id"]] = (round(MAP_W / 2 + (x - cx) * scale, 1), round(height / 2 + (y - cy) * scale, 1))
    outlines = []
    for i, zone in enumerate(zones):
        pts = [pos[n["id"]] for n in placed if zone["id"] in n.get("zones", [])]
        if not pts:
            continue
        ring = [(px + HULL_PAD * math.cos(a * math.pi / 6), py + HULL_PAD * math.sin(a * math.pi / 6))
                for px, py in pts for a in range(12)]
        hull = _hull(ring)
        path = "M" + " L".join("%.1f,%.1f" % p for p in hull) + " Z"
        top = min(hull, key=lambda p: p[1])
        label_x = sum(p[0] for p in pts) / len(pts)
        outlines.append({"id": zone["id"], "name": zone["name"], "path": path, "n": i % 4,
                         "label_x": round(min(max(label_x, 70.0), MAP_W - 70), 1), "label_y": round(max(top[1] - 6, 16), 1)})
    return {"width": MAP_W, "height": round(height, 1), "nodes": pos, "zones": outlines}


def today_broadcasts(web: Web) -> list[dict[str, Any]]:
    """What is planned from now to the local midnight."""
    gw = web.gw
    now = gw.clock.now()
    midnight = now - (now + gw.cfg.tz_s) % 86400 + 86400
    titles = _titles(web)
    zone_names = dict((z["id"], z["name"]) for z in gw.registry.zones())
    out = []
    for o in gw.plans.upcoming(1):
        if o["start"] >= midnight:
            continue
        out.append(dict(o, title=titles.get(o["schedule"], o["schedule"]),
                        zone_names=[zone_names.get(z, z) for z in o["zones"]]))
    return out


def routes(web: Web, router: APIRouter) -> None:
    @router.get("/")
    async def dashboard(request: Request) -> HTMLResponse:
        ctx = web.ctx(request, "viewer")
        gw = web.gw
        nodes = gw.registry.nodes()
        zones = gw.registry.zones()
        snap = snapshot(web, ctx)
        zone_names = dict((z["id"], z["name"]) for z in zones)
        rows = [dict(n, state=snap["nodes"][n["id"]], zone_names=[zone_names.get(z, z) for z in n["zones"]],
                     lamp=has_lamp(n), speaker=has_speaker(n)) for n in nodes]
        return web.render(ctx, "dashboard/index.html", nodes=rows, layout=map_layout(nodes, zones), snap=snap,
                          today=today_broadcasts(web))

    @router.get("/live")
    async def live(request: Request) -> StreamingResponse:
        """Server-sent events: each kind is sent when it changed (checked every second)."""
        ctx = web.ctx(request, "viewer")

        async def frames() -> AsyncIterator[str]:
            last: dict[str, str] = {}
            while not await request.is_disconnected():
                if web.gw.users.session(request.cookies.get("denloa_session"), touch=False) is None:
                    return  # logged out or expired: the stream ends with the session (it is no activity)
                for kind, data in snapshot(web, ctx).items():
                    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                    if last.get(kind) != text:
                        last[kind] = text
                        yield "event: %s\ndata: %s\n\n" % (kind, text)
                await asyncio.sleep(LIVE_EVERY_S)

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


__all__ = ["routes", "snapshot", "node_state", "map_layout", "local_when", "conn_text"]

"""The dashboard: the commune's map, live states, alerts, on air now and today's broadcasts; /live (SSE)."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from gateway.ui.web import Web

LIVE_EVERY_S = 1.0


def snapshot(web: Web) -> dict[str, Any]:
    gw = web.gw
    nodes = {}
    for node in gw.registry.nodes():
        live = gw.ingest.live(node["id"])
        nodes[node["id"]] = {"online": bool(live.get("online")), "failed": live.get("failed") or [],
                             "tele": live.get("tele")}
    return {"nodes": nodes}


def routes(web: Web, router: APIRouter) -> None:
    @router.get("/")
    async def dashboard(request: Request) -> HTMLResponse:
        ctx = web.ctx(request, "viewer")
        nodes = [web.gw.node_status(n) for n in web.gw.registry.nodes()]
        return web.render(ctx, "dashboard/index.html", nodes=nodes)

    @router.get("/live")
    async def live(request: Request) -> StreamingResponse:
        """Server-sent events: each kind is sent when it changed (checked every second)."""
        web.ctx(request, "viewer")

        async def frames() -> AsyncIterator[str]:
            last: dict[str, str] = {}
            while not await request.is_disconnected():
                if web.gw.users.session(request.cookies.get("denloa_session")) is None:
                    return  # logged out or expired: the stream ends with the session
                for kind, data in snapshot(web).items():
                    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                    if last.get(kind) != text:
                        last[kind] = text
                        yield "event: %s\ndata: %s\n\n" % (kind, text)
                await asyncio.sleep(LIVE_EVERY_S)

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

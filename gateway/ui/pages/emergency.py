"""The emergency pages of the staff UI (a stub until built)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from gateway.ui.web import Web


def routes(web: Web, router: APIRouter) -> None:
    @router.get("/emergency")
    async def emergency_index(request: Request) -> HTMLResponse:
        ctx = web.ctx(request, "operator")
        return web.render(ctx, "emergency/index.html")

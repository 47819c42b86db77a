"""The admin pages of the staff UI (a stub until built)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from gateway.ui.web import Web


def routes(web: Web, router: APIRouter) -> None:
    @router.get("/admin")
    async def admin_index(request: Request) -> HTMLResponse:
        ctx = web.ctx(request, "admin")
        return web.render(ctx, "admin/index.html")

"""Firmware bundles and over-the-air rollouts: the staff API (docs/ota.md, gateway/firmware.py).

  GET    /api/firmware                   bundles, and how many nodes run each version (viewer)
  POST   /api/firmware                   upload a bundle zip: the body, or a multipart field "file" (admin)
  DELETE /api/firmware/{version}         (admin; refused while a rollout of it is open)
  GET    /api/rollouts                   newest first, with progress counts (viewer)
  GET    /api/rollouts/{id}              with each node's progress (viewer)
  POST   /api/rollouts                   {"version", "first_zones": [...], "nodes": [...]?} (admin)
  POST   /api/rollouts/{id}/pause|resume|cancel                                           (operator)
Every change is audited.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile as StarletteUpload

from gateway.errors import GatewayError
from gateway.firmware import MAX_BUNDLE
from gateway.service import Gateway

FORM_OVERHEAD = 64 * 1024


class NewRollout(BaseModel):
    version: str = Field(..., max_length=32)
    first_zones: list[str] = Field(..., min_length=1, description="the zone(s) updated first; the rest follow")
    nodes: list[str] | None = Field(None, description="only these nodes (default: every registered node)")


def firmware_router(gw: Gateway, viewer: Any, operator: Any, admin: Any,
                    audit: Callable[[dict[str, Any], str, str | None, dict[str, Any] | None], None]) -> APIRouter:
    router = APIRouter()

    @router.get("/api/firmware")
    async def bundles(user: dict = Depends(viewer)) -> dict[str, Any]:
        return {"bundles": gw.firmware.bundles(), "versions": gw.firmware.versions()}

    @router.post("/api/firmware", status_code=201)
    async def upload(request: Request, user: dict = Depends(admin)) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise GatewayError("firmware.length_required", "Yêu cầu tải lên thiếu Content-Length",
                               "An upload needs a Content-Length", status=411)
        if int(length) > MAX_BUNDLE + FORM_OVERHEAD:
            raise GatewayError("firmware.too_big", "Gói quá lớn", "The bundle is too large", "file", status=413)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=4) as form:
                file = form.get("file")
                if not isinstance(file, StarletteUpload):
                    raise GatewayError("firmware.no_file", "Chưa chọn tệp", "No file in the form", "file")
                data = await file.read()
        else:
            data = await request.body()
        try:
            row = gw.firmware.add(data, user["username"])
        except GatewayError as exc:
            audit(user, "firmware.refused", None, {"error": exc.code, "why": exc.en[:200]})
            raise
        audit(user, "firmware.add", row["version"], {"manifest": row["manifest_sha"], "signed": bool(row["signed"])})
        return row

    @router.delete("/api/firmware/{version}")
    async def delete(version: str, user: dict = Depends(admin)) -> dict[str, Any]:
        gw.firmware.delete(version)
        audit(user, "firmware.delete", version, None)
        return {"ok": True}

    @router.get("/api/rollouts")
    async def rollouts(user: dict = Depends(viewer)) -> list[dict[str, Any]]:
        return gw.firmware.rollouts()

    @router.get("/api/rollouts/{rid}")
    async def rollout(rid: int, user: dict = Depends(viewer)) -> dict[str, Any]:
        return gw.firmware.rollout(rid)

    @router.post("/api/rollouts", status_code=201)
    async def start(body: NewRollout, user: dict = Depends(admin)) -> dict[str, Any]:
        r = gw.firmware.start(body.version, body.first_zones, user["username"], body.nodes)
        audit(user, "rollout.start", str(r["id"]), {"version": body.version, "first_zones": body.first_zones,
                                                    "nodes": len(r["nodes"])})
        return r

    @router.post("/api/rollouts/{rid}/{action}")
    async def act(rid: int, action: str, user: dict = Depends(operator)) -> dict[str, Any]:
        fw = gw.firmware
        acts = {"pause": fw.pause, "resume": fw.resume, "cancel": fw.cancel}
        if action not in acts:
            raise GatewayError("rollout.action", "Thao tác không hợp lệ", "Unknown action: pause, resume or cancel",
                               status=404)
        r = acts[action](rid)
        audit(user, "rollout." + action, str(rid), {"version": r["version"]})
        return r

    return router

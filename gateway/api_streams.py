"""Staff routes for live streams (operator to start, push and stop; viewer to list).

    POST   /api/streams               {kind, url?, format?, zones, priority, volume, max_seconds}
    POST   /api/streams/{id}/chunk    body: the next bytes of a push stream's recording; ?final=1 on the last
    DELETE /api/streams/{id}          stop: the stream ends and its broadcast stops on the nodes
    GET    /api/streams               the live ones, with their listeners

Same session, CSRF and error rules as gateway/api.py (whose dependencies are passed in).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from gateway.service import Gateway
from gateway.streams import MAX_CHUNK


class NewStream(BaseModel):
    kind: Literal["mic", "url", "push"]
    url: str | None = Field(None, description="url kind: a stream URL (http, https, rtsp, rtmp) or a file path")
    format: Literal["auto", "s16le"] = Field("auto", description="push kind: auto (webm/opus, ogg...) or raw "
                                                                  "s16le PCM 16 kHz mono")
    zones: list[str] | Literal["all"] = "all"
    priority: Literal["routine", "priority", "emergency"] = "emergency"
    volume: int = Field(100, ge=0, le=100)
    max_seconds: int = Field(600, ge=1, le=6 * 3600)


def streams_router(gw: Gateway, viewer: Any, operator: Any,
                   audit: Callable[[dict[str, Any], str, str | None, dict[str, Any] | None], None]) -> APIRouter:
    router = APIRouter(prefix="/api/streams", tags=["streams"])

    @router.get("")
    async def live(user: dict = Depends(viewer)) -> list[dict[str, Any]]:
        return gw.streams.list()

    @router.post("", status_code=201)
    async def start(body: NewStream, user: dict = Depends(operator)) -> dict[str, Any]:
        started = await gw.streams.start(kind=body.kind, zones=body.zones, url=body.url, fmt=body.format,
                                         priority=body.priority, volume=body.volume, max_seconds=body.max_seconds,
                                         user=user["username"])
        audit(user, "stream.start", started["id"], {"kind": body.kind, "zones": started["zones"],
                                                    "batch": started.get("batch")})
        return started

    @router.post("/{stream_id}/chunk")
    async def chunk(stream_id: str, request: Request, final: bool = False,
                    user: dict = Depends(operator)) -> dict[str, Any]:
        data = b""
        async for part in request.stream():
            data += part
            if len(data) > MAX_CHUNK:
                break  # refused by the hub
        return await gw.streams.push(stream_id, data, final)

    @router.delete("/{stream_id}")
    async def stop(stream_id: str, user: dict = Depends(operator)) -> dict[str, Any]:
        stopped = await gw.streams.stop(stream_id, user["username"])
        audit(user, "stream.stop", stream_id, None)
        return stopped

    return router

"""Node-facing HTTP routes (/node/v1/...): clip files and live streams (docs/audio.md section 4).

Nodes speak plain HTTP/1.0 with `Connection: close` and Basic auth with their
broker user and password (gateway/node_files.py). Answers: 401 with
WWW-Authenticate for bad or missing credentials; one and the same 404 for a
clip or stream that is unknown or not this node's; a clip as a file (200 with
Content-Length, 206 for a Range, 416 past the end: Starlette's FileResponse);
a stream as raw 256-byte IMA-ADPCM blocks from the live edge until it ends,
the connection then closed (HTTP/1.0: the body ends with the connection).
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.types import Receive, Scope, Send

from gateway.node_files import REALM, NodeFiles
from gateway.service import Gateway
from gateway.streams import LiveStream, StreamClient, StreamHub

DROPPED_GRACE_S = 5.0  # a dropped listener's connection is abandoned this long after, if it cannot even end


def _unauthorized() -> JSONResponse:
    return JSONResponse({"error": "node.auth", "message": "Sai tên hoặc mật khẩu thiết bị",
                         "message_en": "Wrong or missing node credentials"}, status_code=401,
                        headers={"WWW-Authenticate": 'Basic realm="%s"' % REALM})


def _not_found() -> JSONResponse:
    return JSONResponse({"error": "not_found", "message": "Không có", "message_en": "Not found"}, status_code=404)


class BlockStreamResponse(Response):
    """A live stream's blocks to one listener; it detaches when the client goes, the stream ends,
    or it is dropped for being too slow."""

    media_type = "application/octet-stream"

    def __init__(self, hub: StreamHub, stream: LiveStream, client: StreamClient) -> None:
        super().__init__(status_code=200, headers={"Cache-Control": "no-store"})
        # no Content-Length (the base class sets 0): the body ends when the stream does
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.hub = hub
        self.stream = stream
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self.client

        async def pump() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for data in client.blocks():
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        async def dropped() -> None:  # its connection may be stuck (nobody reads): give up on it
            await client.dropped_event.wait()
            await asyncio.sleep(DROPPED_GRACE_S)

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(gone()), asyncio.ensure_future(dropped())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if tasks[0] in done and not tasks[0].cancelled() and tasks[0].exception() is not None:
                self.hub.log("stream %s to %s: %r" % (self.stream.id, client.node_id, tasks[0].exception()))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.hub.detach(self.stream, client)


def node_router(gw: Gateway) -> APIRouter:
    made: list[NodeFiles] = []

    def files() -> NodeFiles:  # built at the first request: the app may be made before the gateway's parts
        if not made:
            made.append(NodeFiles(db=gw.db, clock=gw.clock, data_dir=gw.cfg.data_dir))
        return made[0]

    router = APIRouter(prefix="/node/v1", include_in_schema=False)

    @router.get("/clips/{sha}")
    async def clip(sha: str, request: Request) -> Any:
        node = files().authenticate(request.headers.get("authorization"))
        if node is None:
            return _unauthorized()
        path = files().path(sha)
        if path is None or not files().allowed(node["id"], sha):
            return _not_found()
        try:
            stat = os.stat(path)
        except OSError:
            return _not_found()
        return FileResponse(path, stat_result=stat, media_type="audio/wav", headers={"Cache-Control": "no-store"})

    @router.get("/firmware/{sha}")
    async def firmware(sha: str, request: Request) -> Any:
        """A file (or the manifest) of the bundle an open rollout sent this node, by its SHA-256."""
        node = files().authenticate(request.headers.get("authorization"))
        if node is None:
            return _unauthorized()
        path = gw.firmware.path_for(node["id"], sha)
        if path is None:
            return _not_found()
        try:
            stat = os.stat(path)
        except OSError:
            return _not_found()
        return FileResponse(path, stat_result=stat, media_type="application/octet-stream",
                            headers={"Cache-Control": "no-store"})

    @router.get("/streams/{stream_id}")
    async def stream(stream_id: str, request: Request) -> Any:
        node = files().authenticate(request.headers.get("authorization"))
        if node is None:
            return _unauthorized()
        hub = gw.streams.hub
        live = hub.get(stream_id)
        if live is None or not set(node["zones"]) & set(live.zones):
            return _not_found()
        return BlockStreamResponse(hub, live, hub.attach(live, node["id"]))

    return router

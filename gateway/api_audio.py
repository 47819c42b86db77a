"""Staff API for the clip library and text-to-speech (gateway/audio/library.py).

Included by gateway/api.py with its role dependencies and audit function, so
login, roles and CSRF work exactly as for every other route:

    GET    /api/clips               viewer    the library, newest first
    GET    /api/clips/{id}          viewer    one clip's row
    GET    /api/clips/{id}/audio    viewer    the clip as 16-bit PCM WAV (browsers do not play IMA-ADPCM)
    POST   /api/clips               operator  multipart: file, title, category[, source=upload|recording]
    POST   /api/clips/tts           operator  JSON: text, voice, speed, title, category
    POST   /api/tts/preview         operator  JSON: text, voice, speed -> audio/wav, nothing stored
    DELETE /api/clips/{id}          operator  refused (409 clip.in_use) while a schedule or open command uses it

A new clip answers 201, the same content sent again 200 with "duplicate": true.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile as StarletteUpload

from gateway.audio.tts import MAX_SPEED, MIN_SPEED
from gateway.errors import GatewayError
from gateway.service import Gateway
from protocol.plan import CATEGORIES

READ_CHUNK = 1 << 20
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields around the file
UPLOAD_SCHEMA: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "WAV, MP3, OGG/Opus, M4A, 3GP, AMR, FLAC, WebM"},
        "title": {"type": "string", "description": "defaults to the file name"},
        "category": {"type": "string", "enum": list(CATEGORIES)},
        "source": {"type": "string", "enum": ["upload", "recording"], "default": "upload"}}}}}}}


class TtsRequest(BaseModel):
    text: str = Field(..., description="Vietnamese text; abbreviations, hours and numbers are read out")
    voice: Literal["north", "central", "south"] = "north"
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED, description="0.5-2.0; 1.0 = espeak-ng's 175 words a minute")


class NewTtsClip(TtsRequest):
    title: str | None = None
    category: str = "news"


def audio_router(gw: Gateway, viewer: Any, operator: Any,
                 audit: Callable[[dict[str, Any], str, str | None, dict[str, Any] | None], None]) -> APIRouter:
    router = APIRouter()  # gw.clips is looked up per request: building the routes needs no running gateway

    @router.get("/api/clips")
    async def list_clips(user: dict = Depends(viewer)) -> list[dict[str, Any]]:
        return gw.clips.list()

    @router.get("/api/clips/{clip_id}")
    async def get_clip(clip_id: str, user: dict = Depends(viewer)) -> dict[str, Any]:
        return gw.clips.require(clip_id)

    @router.get("/api/clips/{clip_id}/audio")
    async def clip_audio(clip_id: str, user: dict = Depends(viewer)) -> Response:
        return Response(await gw.clips.browser_audio(clip_id), media_type="audio/wav",
                        headers={"Content-Disposition": 'inline; filename="%s.wav"' % clip_id[:64]})

    @router.post("/api/clips", status_code=201, openapi_extra=UPLOAD_SCHEMA)
    async def upload_clip(request: Request, response: Response, user: dict = Depends(operator)) -> dict[str, Any]:
        # The form is read here, after the login and role checks and the size check (a route with File/Form
        # parameters would have the whole body spooled before any of them).
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise GatewayError("clip.length_required", "Yêu cầu tải lên thiếu Content-Length",
                               "An upload needs a Content-Length", status=411)
        if int(length) > gw.clips.max_bytes + FORM_OVERHEAD:
            raise gw.clips.too_big()
        async with request.form(max_files=1, max_fields=8) as form:
            file = form.get("file")
            if not isinstance(file, StarletteUpload):
                raise GatewayError("clip.no_file", "Chưa chọn tệp âm thanh (trường file)", "No file in the form (field file)",
                                   field="file")
            data = bytearray()
            while True:
                chunk = await file.read(READ_CHUNK)
                if not chunk:
                    break
                data += chunk
                if len(data) > gw.clips.max_bytes:
                    raise gw.clips.too_big()
            title, category, source = (form.get(k) for k in ("title", "category", "source"))
            filename = file.filename
        source = source if isinstance(source, str) and source else "upload"
        if source not in ("upload", "recording"):
            raise GatewayError("clip.source", "Nguồn phải là upload hoặc recording", "source must be upload or recording",
                               field="source")
        row = await gw.clips.add_upload(bytes(data), filename, title if isinstance(title, str) else None,
                                     category if isinstance(category, str) and category else "news",
                                     user["username"], source)
        if row["duplicate"]:
            response.status_code = 200
        else:
            audit(user, "clip.add", row["id"], {"title": row["title"], "source": row["source"],
                                                "filename": row["filename"], "duration_ms": row["duration_ms"]})
        return row

    @router.post("/api/clips/tts", status_code=201)
    async def tts_clip(body: NewTtsClip, response: Response, user: dict = Depends(operator)) -> dict[str, Any]:
        row = await gw.clips.add_tts(body.text, body.voice, body.speed, body.title, body.category, user["username"])
        if row["duplicate"]:
            response.status_code = 200
        else:
            audit(user, "clip.add", row["id"], {"title": row["title"], "source": "tts", "voice": body.voice,
                                                "duration_ms": row["duration_ms"]})
        return row

    @router.post("/api/tts/preview", response_class=Response,
                 responses={200: {"content": {"audio/wav": {}}, "description": "16-bit PCM WAV, 16 kHz mono"}})
    async def tts_preview(body: TtsRequest, user: dict = Depends(operator)) -> Response:
        return Response(await gw.clips.preview_tts(body.text, body.voice, body.speed), media_type="audio/wav")

    @router.delete("/api/clips/{clip_id}")
    async def delete_clip(clip_id: str, user: dict = Depends(operator)) -> dict[str, Any]:
        row = gw.clips.delete(clip_id)
        audit(user, "clip.delete", clip_id, {"title": row["title"]})
        return {"ok": True}

    return router

"""The emergency pages: choose zones and a source, confirm, then watch the loudspeakers confirm; Stop.

    GET  /emergency                 the form (operators): zones, source (library clip, typed text, microphone),
                                    how many times, volume
    POST /emergency                 checks the form, prepares the audio (text-to-speech, repeats), shows the
                                    confirm step ("Phát khẩn cấp tới 4 loa ở 2 thôn?"): nothing airs yet
    POST /emergency/start           airs it at once (one signed broadcast_now per loudspeaker) -> the progress
    GET  /emergency/{batch}         the progress view (polls /emergency/{batch}/status every second)
    GET  /emergency/{batch}/status  the progress fragment: loudspeakers confirmed, on air, those that did not
    POST /emergency/{batch}/stop    stop (and end its live stream when it is one)

The microphone path is the browser's: static/emergency.js asks for the microphone, starts a push stream
(POST /api/streams, priority emergency), opens the progress view, and sends MediaRecorder chunks to
/api/streams/{id}/chunk until Stop.

Repeats: a node plays a commanded clip once and ends the item at the clip's last sample (firmware/speaker.py),
so "3 times" is one clip of three readings with 2 s of silence between them, made in the library on the
confirm step (gateway/emergency.py `repeated_clip`); the start itself only signs and sends.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.emergency import MAX_REPEATS, repeated_clip
from gateway.errors import GatewayError
from gateway.registry import has_speaker
from gateway.ui.pages.dashboard import local_when
from gateway.ui.web import Ctx, Web

VOICES = ("north", "central", "south")
SOURCES = ("clip", "text", "mic")
TTS_CATEGORY = "security"


def _zones_info(web: Web) -> list[dict[str, Any]]:
    nodes = web.gw.registry.nodes()
    return [dict(z, speakers=sum(1 for n in nodes if has_speaker(n) and z["id"] in n["zones"]))
            for z in web.gw.registry.zones()]


def _speakers_in(web: Web, zones: list[str]) -> list[dict[str, Any]]:
    return [n for n in web.gw.registry.nodes_in_zones(zones) if has_speaker(n)]


def _clips(web: Web) -> list[dict[str, Any]]:
    return web.gw.clips.list()


def _stream_of(web: Web, batch: str) -> dict[str, Any] | None:
    for stream in web.gw.streams.list():
        if stream.get("batch") == batch:
            return stream
    return None


def _form_page(web: Web, ctx: Ctx, values: dict[str, Any], errors: dict[str, str] | None = None,
               status: int = 200) -> HTMLResponse:
    return web.render(ctx, "emergency/index.html", status=status, zones=_zones_info(web), clips=_clips(web),
                      values=values, errors=errors or {}, max_repeats=MAX_REPEATS, voices=VOICES)


def default_repeats(web: Web) -> int:
    """The form's preset number of readings: the admin setting emergency_repeat (1..MAX_REPEATS)."""
    try:
        return min(max(int(web.gw.settings.get("emergency_repeat")), 1), MAX_REPEATS)
    except (TypeError, ValueError):
        return 1


def _int(value: Any, lo: int, hi: int, default: int) -> int | None:
    try:
        n = int(str(value if value not in (None, "") else default).strip())
    except ValueError:
        return None
    return n if lo <= n <= hi else None


def node_rows(web: Web, ctx: Ctx, batch: str) -> list[dict[str, Any]]:
    """Each loudspeaker of the emergency: confirmed (its ack), on air (its report), or why not, in plain words."""
    gw = web.gw
    rows = []
    for cmd in gw.emergencies.commands_of(batch):
        node_id = cmd["node_id"]
        live = gw.ingest.live(node_id)
        on_air = bool(live.get("online")) and gw.ingest.item_on_air(node_id, batch)  # its latest word, so Stop counts
        status = cmd["status"]
        if status == "applied":
            why = ctx._("Confirmed on") if on_air else ctx._("Confirmed; the audio is starting")
        elif status == "rejected":
            why = ctx._("Refused the command (%(reason)s)", reason=cmd.get("reason") or "?")
        elif status == "expired":
            why = ctx._("Did not answer in time: the command expired")
        elif not live.get("online"):
            since = live.get("offline_since")
            why = (ctx._("Offline since %(t)s: waiting for it to come back",
                         t=local_when(float(since), gw.clock.now(), gw.cfg.tz_s))
                   if since else ctx._("Offline: waiting for it to come back"))
        else:
            why = ctx._("Sent, waiting for its answer")
        rows.append({"id": node_id, "name": gw.registry.name(node_id), "status": status, "on_air": bool(on_air),
                     "why": why, "ok": status == "applied"})
    return rows


def status_values(web: Web, ctx: Ctx, batch: str) -> dict[str, Any]:
    progress = web.gw.emergencies.progress(batch)["progress"]
    rows = node_rows(web, ctx, batch)
    stopped = web.gw.emergencies.stopped(batch)
    return {"batch": batch, "progress": progress, "rows": rows, "missing": [r for r in rows if not r["ok"]],
            "on_air": sum(1 for r in rows if r["on_air"]), "stopped": stopped,
            "percent": int(100 * progress["applied"] / progress["total"]) if progress["total"] else 0}


def routes(web: Web, router: APIRouter) -> None:
    @router.get("/emergency")
    async def emergency_index(request: Request) -> HTMLResponse:
        ctx = web.ctx(request, "operator")
        return _form_page(web, ctx, {"source": "clip", "repeats": default_repeats(web), "volume": 100,
                                     "voice": "north", "zones": []})

    @router.post("/emergency")
    async def emergency_prepare(request: Request) -> HTMLResponse:
        """Step 1: check the form and prepare the audio; answer with the confirm step (nothing airs)."""
        ctx, form = await web.form(request, "operator")
        gw = web.gw
        values: dict[str, Any] = {
            "zones": [str(z) for z in form.getlist("zones")], "all": bool(form.get("all")),
            "source": str(form.get("source") or ""), "clip": str(form.get("clip") or ""),
            "text": str(form.get("text") or ""), "voice": str(form.get("voice") or "north"),
            "repeats": str(form.get("repeats") or default_repeats(web)), "volume": str(form.get("volume") or "100")}
        errors: dict[str, str] = {}
        known = gw.registry.zone_ids()
        zones = sorted(known) if values["all"] else [z for z in values["zones"] if z in known]
        if not zones:
            errors["zones"] = ctx._("Choose at least one hamlet, or all of them.")
        speakers = _speakers_in(web, zones) if zones else []
        if zones and not speakers:
            errors["zones"] = ctx._("There is no loudspeaker in the chosen hamlets.")
        source = values["source"]
        if source not in SOURCES:
            errors["source"] = ctx._("Choose what to broadcast.")
        repeats = _int(values["repeats"], 1, MAX_REPEATS, default_repeats(web))
        if repeats is None:
            errors["repeats"] = ctx._("The number of times is 1 to %(n)s.", n=MAX_REPEATS)
        volume = _int(values["volume"], 0, 100, 100)
        if volume is None:
            errors["volume"] = ctx._("The volume is 0 to 100.")
        if source == "clip" and gw.clips.get(values["clip"]) is None:
            errors["clip"] = ctx._("Choose a recording from the library.")
        if source == "text":
            if not values["text"].strip():
                errors["text"] = ctx._("Type the text to read out.")
            if values["voice"] not in VOICES:
                errors["voice"] = ctx._("Choose a voice.")
        if errors:
            return _form_page(web, ctx, values, errors, 400)
        user = ctx.user["username"] if ctx.user else None
        clip: dict[str, Any] | None = None
        try:
            if source == "text":
                made = await gw.clips.add_tts(values["text"], values["voice"], 1.0, None, TTS_CATEGORY, user)
                if not made.get("duplicate"):
                    gw.users.audit(user, "clip.add", made["id"], {"title": made["title"], "source": "tts",
                                                                 "voice": values["voice"]})
                values["source"], values["clip"] = "clip", made["id"]
            if values["source"] == "clip":
                clip = await repeated_clip(gw.clips, values["clip"], repeats or 1, user)
                if repeats and repeats > 1 and not clip.get("duplicate"):
                    gw.users.audit(user, "clip.add", clip["id"], {"title": clip["title"], "source": "upload",
                                                                 "repeats": repeats})
        except GatewayError as exc:
            values["source"] = source
            field = "text" if source == "text" else "clip"
            return _form_page(web, ctx, values, {field: ctx.error_text(exc)}, exc.status)
        zone_names = [z["name"] for z in gw.registry.zones() if z["id"] in zones]
        return web.render(ctx, "emergency/confirm.html", zones=zones, zone_names=zone_names, speakers=speakers,
                          source=source, clip=clip, repeats=repeats, volume=volume, text=values["text"])

    @router.post("/emergency/start")
    async def emergency_start(request: Request) -> Response:
        """Step 2 (confirmed): air it now; the answer is the progress view."""
        ctx, form = await web.form(request, "operator")
        gw = web.gw
        user = ctx.user["username"] if ctx.user else None
        zones = [z for z in str(form.get("zones") or "").split(",") if z]
        ref = str(form.get("ref") or "")
        volume = _int(form.get("volume"), 0, 100, 100)
        try:
            if volume is None:
                raise GatewayError("volume.invalid", "Âm lượng từ 0 đến 100", "Volume must be 0 to 100", "volume")
            started = await gw.emergencies.start(zones, "clip", ref, volume, gw.emergencies.duration_for(ref), user)
        except GatewayError as exc:
            values = {"zones": zones, "source": "clip", "clip": ref, "repeats": default_repeats(web), "volume": volume or 100,
                      "voice": "north"}
            return _form_page(web, ctx, values, {exc.field or "zones": ctx.error_text(exc)}, exc.status)
        gw.users.audit(user, "emergency.start", started["batch"], {"zones": started["zones"], "source": "clip",
                                                                   "ref": ref, "volume": volume})
        return web.redirect("/emergency/%s" % started["batch"])

    @router.get("/emergency/{batch}")
    async def emergency_progress(batch: str, request: Request, stream: str | None = None) -> HTMLResponse:
        ctx = web.ctx(request, "viewer")
        values = status_values(web, ctx, batch)
        live = _stream_of(web, batch)
        return web.render(ctx, "emergency/progress.html", stream=live if live and live["id"] == stream else None,
                          any_stream=live, **values)

    @router.get("/emergency/{batch}/status")
    async def emergency_status(batch: str, request: Request) -> HTMLResponse:
        ctx = web.ctx(request, "viewer")
        return web.render(ctx, "emergency/status.html", **status_values(web, ctx, batch))

    @router.post("/emergency/{batch}/stop")
    async def emergency_stop(batch: str, request: Request) -> Response:
        ctx, _form = await web.form(request, "operator")
        gw = web.gw
        user = ctx.user["username"] if ctx.user else None
        gw.emergencies.progress(batch)  # an unknown batch: the 404 page in plain words
        stream = _stream_of(web, batch)
        if stream is not None:
            await gw.streams.stop(stream["id"], user)
            gw.users.audit(user, "stream.stop", stream["id"], {"batch": batch})
        if gw.emergencies.stopped(batch) is None:
            await gw.emergencies.stop(batch, user)
        gw.users.audit(user, "emergency.stop", batch, {})
        return web.redirect("/emergency/%s" % batch)

"""Firmware and over-the-air updates (docs/ota.md): /firmware.

- GET /firmware[?rollout=ID]: the bundles (version, signed, files, how many devices run it), the
  versions the devices report, the rollouts with their progress, and one rollout's devices (the
  open one by default) with each device's step in plain words.
- POST /firmware/upload (admin): a bundle zip (gateway/firmware.py checks signature and hashes).
- POST /firmware/rollouts (admin): start a staged rollout: a version and the zone to update first.
- POST /firmware/rollouts/{id}/pause|resume|cancel (operator).
Every change is audited; a refusal is shown in plain words above the form, nothing half done.
"""
from __future__ import annotations

import re

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from gateway.errors import GatewayError
from gateway.firmware import OPEN
from gateway.ui.web import Ctx, Web


def N_(message: str) -> str:
    """Marks a string for the catalogue; translated where it is shown."""
    return message


NODE_STEPS = {"pending": N_("waiting for its turn"), "sent": N_("command sent"), "downloading": N_("downloading"),
              "switched": N_("installed, restarting to try it"), "confirmed": N_("updated and working"),
              "rolled_back": N_("went back to the old version"), "failed": N_("refused the update"),
              "unreachable": N_("did not answer")}
STEP_BADGES = {"confirmed": "ok", "rolled_back": "bad", "failed": "bad", "unreachable": "warn", "pending": "off"}
STATES = {"running": N_("running"), "paused": N_("paused"), "halted": N_("stopped by itself: a device had a problem"),
          "done": N_("finished"), "cancelled": N_("cancelled")}
FLASH = {"uploaded": N_("The firmware was checked and stored."), "started": N_("The update has started."),
         "pause": N_("The update is paused."), "resume": N_("The update goes on."),
         "cancel": N_("The update is cancelled.")}


def _rid(text: str) -> int | None:
    """A rollout id from the address, or None (anything else: the page shows the latest)."""
    return int(text) if re.fullmatch(r"[0-9]{1,12}", text) else None  # not isdigit(): "²" is a digit


def routes(web: Web, router: APIRouter) -> None:
    fw_of = lambda: web.gw.firmware  # noqa: E731  (looked up per request)

    def page(ctx: Ctx, rollout: int | None = None, flash: str | None = None, error: str | None = None,
             status: int = 200) -> HTMLResponse:
        fw = fw_of()
        rollouts = fw.rollouts(20)
        shown = None
        if rollout is None:
            open_ones = [r for r in rollouts if r["state"] in OPEN]
            rollout = open_ones[0]["id"] if open_ones else (rollouts[0]["id"] if rollouts else None)
        if rollout is not None:
            try:
                shown = fw.rollout(rollout)
            except GatewayError:
                shown = None
        names = {n["id"]: n["name"] for n in web.gw.registry.nodes()}
        zones = web.gw.registry.zones()
        zone_names = {z["id"]: z["name"] for z in zones}
        return web.render(ctx, "firmware/index.html", status=status, bundles=fw.bundles(),
                          versions=sorted(fw.versions().items()), rollouts=rollouts, shown=shown,
                          names=names, zones=zones, zone_names=zone_names, steps=NODE_STEPS, badges=STEP_BADGES,
                          states=STATES, open_states=OPEN, flash=flash, error=error,
                          first_names=", ".join(zone_names.get(z, z) for z in shown["first_zones"]) if shown else "")

    @router.get("/firmware")
    async def firmware_index(request: Request, rollout: str = "", done: str | None = None) -> HTMLResponse:
        ctx = web.ctx(request, "viewer")
        return page(ctx, _rid(rollout), ctx._(FLASH[done]) if done in FLASH else None)

    def audit(ctx: Ctx, action: str, target: str | None, detail: dict[str, Any]) -> None:
        web.gw.users.audit(ctx.user["username"] if ctx.user else None, action, target, detail)

    @router.post("/firmware/upload")
    async def firmware_upload(request: Request) -> Response:
        ctx, form = await web.form(request, "admin")
        file = form.get("file")
        if not isinstance(file, UploadFile):
            return page(ctx, error=ctx._("Choose the firmware file (.zip) first."), status=400)
        data = await file.read()
        try:
            row = fw_of().add(data, ctx.user["username"] if ctx.user else None)
        except GatewayError as exc:
            audit(ctx, "firmware.refused", None, {"error": exc.code, "why": exc.en[:200]})
            return page(ctx, error=ctx.error_text(exc), status=exc.status)
        audit(ctx, "firmware.add", row["version"], {"manifest": row["manifest_sha"], "signed": bool(row["signed"])})
        return web.redirect("/firmware?done=uploaded")

    @router.post("/firmware/rollouts")
    async def rollout_start(request: Request) -> Response:
        ctx, form = await web.form(request, "admin")
        version, zone = str(form.get("version") or ""), str(form.get("first_zone") or "")
        try:
            r = fw_of().start(version, [zone] if zone else [], ctx.user["username"] if ctx.user else None)
        except GatewayError as exc:
            return page(ctx, error=ctx.error_text(exc), status=exc.status)
        audit(ctx, "rollout.start", str(r["id"]), {"version": version, "first_zones": [zone], "nodes": len(r["nodes"])})
        return web.redirect("/firmware?rollout=%d&done=started" % r["id"])

    @router.post("/firmware/rollouts/{rid}/{action}")
    async def rollout_action(rid: str, action: str, request: Request) -> Response:
        ctx, _form = await web.form(request, "operator")
        fw = fw_of()
        number = _rid(rid)
        if number is None:
            return page(ctx, error=ctx._("Unknown action."), status=404)
        acts = {"pause": fw.pause, "resume": fw.resume, "cancel": fw.cancel}
        if action not in acts:
            return page(ctx, number, error=ctx._("Unknown action."), status=404)
        try:
            r = acts[action](number)
        except GatewayError as exc:
            return page(ctx, number, error=ctx.error_text(exc), status=exc.status)
        audit(ctx, "rollout." + action, str(number), {"version": r["version"]})
        return web.redirect("/firmware?rollout=%d&done=%s" % (number, action))

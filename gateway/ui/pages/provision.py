"""Provisioning from the staff UI (admin only): add a node, re-key one, and download its credentials file.

- POST /nodes: the "Add a node" form of the Nodes page (id, name, kind, zones, optional lat/lon). It
  registers the node through gw.provisioning.add_node, as POST /api/nodes does (same arguments, same
  audit entry `node.add`); a refused form comes back with each message beside its field.
- GET /nodes/{id}/rekey: what re-keying does, and the button that does it (the confirm step).
  POST /nodes/{id}/rekey: gw.provisioning.reprovision, as POST /api/nodes/{id}/reprovision (audit
  `node.reprovision`): the old MQTT password and command key stop working at once.
- GET /nodes/{id}/credentials?once=TOKEN: both end there. The page says what the file is and how to
  keep it, and starts its download (a zero-delay refresh to the same address with `file=1`, plus a
  link): `<node-id>.json`, Content-Disposition: attachment, holding {"node": ..., "provisioning":
  bundle}, which `python -m hardware provision --offline-bundle FILE` takes as it is.

The secrets are kept in memory only, under a random one-time token bound to the admin who made them,
for SHOWN_ONCE_S; the first download takes them out. Nothing is written to disk or to the log; a
credentials file that was lost is replaced by re-keying the node (the lost one then stops working).
"""
from __future__ import annotations

import json
import re
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from gateway.errors import GatewayError
from gateway.ui.web import Ctx, Web

SHOWN_ONCE_S = 600  # a credentials file not downloaded within this is forgotten (re-key to get another)
KINDS = ("lamp", "speaker", "both")
NUMBER = re.compile(r"-?[0-9]{1,3}(?:[.,][0-9]{1,9})?")  # ASCII digits only; a decimal comma is accepted
FIELDS = ("id", "name", "kind", "zones", "lat", "lon")


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def credentials_file(node: dict[str, Any], bundle: dict[str, Any]) -> bytes:
    """What the technician's tool takes with --offline-bundle: the API's answer, {"node", "provisioning"}."""
    return json.dumps({"node": node, "provisioning": bundle}, ensure_ascii=False, indent=2, sort_keys=True).encode()


def routes(web: Web, router: APIRouter) -> None:
    gw = web.gw
    # token -> (admin's username, node id, expiry, the file's bytes), for the one download
    waiting: dict[str, tuple[str, str, float, bytes]] = {}

    def keep(ctx: Ctx, node_id: str, data: bytes) -> str:
        now = gw.clock.now()
        for old in [k for k, v in waiting.items() if v[2] < now]:
            del waiting[old]
        token = secrets.token_urlsafe(24)
        waiting[token] = (me(ctx), node_id, now + SHOWN_ONCE_S, data)
        return token

    def me(ctx: Ctx) -> str:
        return str(ctx.user["username"]) if ctx.user else ""

    def parse(ctx: Ctx, form: FormData) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
        """(the API's body, what was typed, errors by field): the checks a form needs before the registry's."""
        typed: dict[str, Any] = {k: _text(form, k) for k in FIELDS if k != "zones"}
        zones = [z for z in form.getlist("zones") if isinstance(z, str) and z]
        typed["zones"] = zones
        errors: dict[str, str] = {}
        body: dict[str, Any] = {"id": typed["id"], "zones": zones, "kind": typed["kind"] or "both"}
        if typed["name"]:
            body["name"] = typed["name"]
        if not typed["id"]:
            errors["id"] = ctx._("Enter the device's id, e.g. den-thon1-03.")
        if body["kind"] not in KINDS:
            errors["kind"] = ctx._("Choose what the device does.")
        if not zones:
            errors["zones"] = ctx._("Tick at least one zone.")
        coords: dict[str, float] = {}
        for key, low, high in (("lat", -90.0, 90.0), ("lon", -180.0, 180.0)):
            raw = typed[key]
            if not raw:
                continue
            value = float(raw.replace(",", ".")) if NUMBER.fullmatch(raw) else None
            if value is None or not low <= value <= high:
                errors[key] = ctx._("Enter a number from %(low)s to %(high)s, e.g. 21.02851.", low=int(low), high=int(high))
            else:
                coords[key] = value
        if len(coords) == 1 and not errors.get("lat") and not errors.get("lon"):
            errors["lon" if "lat" in coords else "lat"] = ctx._("Give both latitude and longitude, or neither.")
        elif len(coords) == 2:
            body.update(coords)
        return body, typed, errors

    def nodes_page(ctx: Ctx, status: int, typed: dict[str, Any], errors: dict[str, str]) -> HTMLResponse:
        from gateway.ui.pages.nodes import index_page

        return index_page(web, ctx, status=status, add_typed=typed, add_errors=errors)

    @router.post("/nodes")
    async def add_node(request: Request) -> Response:
        ctx, form = await web.form(request, "admin")
        body, typed, errors = parse(ctx, form)
        if errors:
            return nodes_page(ctx, 400, typed, errors)
        try:
            node, bundle = await gw.provisioning.add_node(body, gw.cfg.site, gw.cfg.broker_host, gw.cfg.broker_port,
                                                          gw.location)
        except GatewayError as exc:
            if exc.status >= 500:
                raise
            field = exc.field if exc.field in FIELDS else "form"
            return nodes_page(ctx, exc.status, typed, {field: ctx.error_text(exc)})
        gw.users.audit(me(ctx), "node.add", node["id"], {"zones": node["zones"]})
        token = keep(ctx, node["id"], credentials_file(node, bundle))
        return web.redirect("/nodes/%s/credentials?once=%s&done=added" % (node["id"], token))

    @router.get("/nodes/{node_id}/rekey")
    async def rekey_page(request: Request, node_id: str) -> HTMLResponse:
        ctx = web.ctx(request, "admin")
        return web.render(ctx, "nodes/rekey.html", node=gw.registry.node(node_id))

    @router.post("/nodes/{node_id}/rekey")
    async def rekey(request: Request, node_id: str) -> Response:
        ctx, _form = await web.form(request, "admin")
        gw.registry.node(node_id)  # unknown: the 404 page
        bundle = await gw.provisioning.reprovision(node_id, gw.cfg.site, gw.cfg.broker_host, gw.cfg.broker_port,
                                                   gw.location)
        gw.users.audit(me(ctx), "node.reprovision", node_id, {})
        token = keep(ctx, node_id, credentials_file(gw.registry.node(node_id), bundle))
        return web.redirect("/nodes/%s/credentials?once=%s&done=rekeyed" % (node_id, token))

    @router.get("/nodes/{node_id}/credentials")
    async def credentials(request: Request, node_id: str, once: str = "", file: str = "",
                          done: str = "") -> Response:
        ctx = web.ctx(request, "admin")
        node = gw.registry.node(node_id)
        kept = waiting.get(once) if once else None
        live = kept is not None and kept[0] == me(ctx) and kept[1] == node_id and kept[2] >= gw.clock.now()
        if live and file == "1":
            assert kept is not None
            del waiting[once]  # one download: the secrets leave the gateway's memory with it
            return Response(kept[3], media_type="application/json", headers={
                "Content-Disposition": 'attachment; filename="%s.json"' % node_id,
                "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
        return web.render(ctx, "nodes/credentials.html", node=node, token=once if live else None,
                          done=done if done in ("added", "rekeyed") else "", minutes=SHOWN_ONCE_S // 60)

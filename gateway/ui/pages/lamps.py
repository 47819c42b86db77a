"""Lamp programs: tonight's timeline of every program, the program form, who uses which, and overrides.

- GET /lamps: the site's sunset and sunrise, each program (default, zone, node) as a noon-to-noon
  timeline (inline SVG, with the same facts as text), which zones and lamps use which program, the
  override form and the active overrides.
- GET/POST /lamps/program?scope=&target=: the form for a program's usual night (on, off, level, steps,
  motion); saved through gw.plans.set_program. A zone or node without a program of its own starts
  from the one it inherits.
- POST /lamps/program/delete: a zone or node goes back to the program it inherits.
- POST /lamps/override, /lamps/override/cancel: gw.overrides (gateway/overrides.py).
"""
from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from gateway.errors import GatewayError
from gateway.registry import has_lamp
from gateway.ui.web import Ctx, Web
from protocol.errors import ProtocolError
from protocol.program import (DAY_MIN, MAX_OFFSET, MAX_STEPS, NOON, DayProgram, SunSource, default_program,
                              parse_time, resolve)

STEP_ROWS = 6  # step rows in the form (MAX_STEPS is the protocol's limit)
SCOPES = ("default", "zone", "node")
DEFAULT_DAY = "thuong"


# ---- reading programs -------------------------------------------------------------------------------


def program_tables(web: Web) -> dict[str, dict[str, dict[str, Any]]]:
    """{"default": {"site": row}, "zone": {id: row}, "node": {id: row}} of gw.plans.programs()."""
    by: dict[str, dict[str, dict[str, Any]]] = {"default": {}, "zone": {}, "node": {}}
    for row in web.gw.plans.programs():
        by[row["scope"]][row["target"]] = row
    return by


def main_day(program: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The day program the calendar falls back to (its last rule): the one the form edits."""
    name = program["calendar"][-1]["day"]
    return name, program["days"][name]


def inherited(web: Web, tables: dict[str, dict[str, dict[str, Any]]], scope: str, target: str) -> tuple[str, str, dict[str, Any]]:
    """(scope, target, program JSON) that (scope, target) runs when it has no program of its own."""
    default = tables["default"].get("site")
    default_json = default["program"] if default else default_program().to_json()
    if scope == "node":
        node = web.gw.registry.node(target)
        for zone in node["zones"]:
            if zone in tables["zone"]:
                return "zone", zone, tables["zone"][zone]["program"]
    return "default", "site", default_json


def night_of(now: float, tz_s: int) -> tuple[int, float]:
    """(evening's day number, minute in the noon-to-noon frame) of a Unix time at the site."""
    local = now + tz_s
    n = int(local // 86400)
    minute = (local - n * 86400) / 60.0
    if minute < NOON:
        n -= 1
        minute += DAY_MIN
    return n, minute


def clock_text(frame_minute: float) -> str:
    m = int(round(frame_minute)) % DAY_MIN
    return "%02d:%02d" % (m // 60, m % 60)


def point_text(ctx: Ctx, text: str) -> str:
    """'sunset-15' -> '15 minutes before sunset' in the page language; clock times as they are."""
    anchor, minutes = parse_time(text)
    if anchor == "clock":
        return text
    names = {"sunset": ctx._("sunset"), "sunrise": ctx._("sunrise"), "dusk": ctx._("dusk"), "dawn": ctx._("dawn")}
    if minutes == 0:
        return names[anchor]
    if minutes > 0:
        return ctx._("%(n)s min after %(event)s", n=minutes, event=names[anchor])
    return ctx._("%(n)s min before %(event)s", n=-minutes, event=names[anchor])


def timeline(ctx: Ctx, program: dict[str, Any], sun: SunSource, n: int, now_minute: float) -> dict[str, Any]:
    """Tonight of a program, in the noon-to-noon frame (minutes 720..2160 from the evening's midnight)."""
    name, day_json = main_day(program)
    day = DayProgram.from_json(name, day_json)
    evening, morning = sun(n), sun(n + 1)
    on, off, steps = day.schedule(evening, morning)
    on, off = max(NOON, min(on, NOON + DAY_MIN)), max(NOON, min(off, NOON + DAY_MIN))
    segments, texts = [], []
    level, start = day.level, on
    for at, lvl in steps:
        at = max(on, min(at, off))
        if at > start:
            segments.append((start, at, level))
        start, level = max(start, at), lvl
    if off > start:
        segments.append((start, off, level))
    if parse_time(day_json["on"])[0] == "clock":
        texts.append(ctx._("On at %(time)s at %(level)s %%", time=clock_text(on), level=day.level))
    else:
        texts.append(ctx._("On at %(time)s (%(when)s) at %(level)s %%", time=clock_text(on),
                           when=point_text(ctx, day_json["on"]), level=day.level))
    for step in sorted(day_json.get("steps", []), key=lambda s: resolve(parse_time(s["at"]), evening, morning)):
        at = resolve(parse_time(step["at"]), evening, morning)
        if parse_time(step["at"])[0] == "clock":
            texts.append(ctx._("From %(time)s: %(level)s %%", time=clock_text(at), level=step["level"]))
        else:
            texts.append(ctx._("From %(time)s (%(when)s): %(level)s %%", time=clock_text(at),
                               when=point_text(ctx, step["at"]), level=step["level"]))
    if parse_time(day_json["off"])[0] == "clock":
        texts.append(ctx._("Off at %(time)s", time=clock_text(off)))
    else:
        texts.append(ctx._("Off at %(time)s (%(when)s)", time=clock_text(off), when=point_text(ctx, day_json["off"])))
    motion = day_json.get("motion")
    if motion:
        texts.append(ctx._("Motion: at least %(level)s %% for %(hold)s s", level=motion["level"], hold=motion["hold"]))
    else:
        texts.append(ctx._("No motion rule"))
    level_now = 0
    for a, b, lvl in segments:
        if a <= now_minute < b:
            level_now = lvl
    special = list(program["calendar"][:-1])
    return {"segments": [(a - NOON, b - NOON, lvl) for a, b, lvl in segments], "texts": texts,
            "on": on - NOON, "off": off - NOON, "motion": motion, "day": name, "special": special,
            "now": now_minute - NOON, "level_now": level_now,
            "sunset": _frame(evening.sunset, 0), "sunrise": _frame(morning.sunrise, DAY_MIN)}


def _frame(minutes: float | None, base: int) -> float | None:
    return None if minutes is None else minutes + base - NOON


def overview(web: Web, ctx: Ctx) -> dict[str, Any]:
    gw = web.gw
    tables = program_tables(web)
    sun = SunSource(gw.cfg.lat, gw.cfg.lon, gw.cfg.utc_offset)
    n, now_minute = night_of(gw.clock.now(), gw.cfg.tz_s)
    zones = {z["id"]: z for z in gw.registry.zones()}
    lamps = [node for node in gw.registry.nodes() if has_lamp(node)]
    default_row = tables["default"].get("site")
    default_json = default_row["program"] if default_row else default_program().to_json()
    programs = [{"scope": "default", "target": "site", "title": ctx._("Default program (whole commune)"),
                 "row": default_row, "program": default_json}]
    for zone_id, row in sorted(tables["zone"].items()):
        name = zones[zone_id]["name"] if zone_id in zones else zone_id
        programs.append({"scope": "zone", "target": zone_id, "title": ctx._("Program of %(zone)s", zone=name),
                         "row": row, "program": row["program"]})
    for node_id, row in sorted(tables["node"].items()):
        programs.append({"scope": "node", "target": node_id,
                         "title": ctx._("Program of %(node)s", node=gw.registry.name(node_id)),
                         "row": row, "program": row["program"]})
    used: dict[tuple[str, str], list[str]] = {}
    node_rows = []
    for node in lamps:
        own = tables["node"].get(node["id"])
        source = ("node", node["id"]) if own else next(
            (("zone", z) for z in node["zones"] if z in tables["zone"]), ("default", "site"))
        used.setdefault(source, []).append(node["name"])
        live = gw.ingest.live(node["id"])
        tele = live.get("tele") or {}
        node_rows.append({"node": node, "source": source, "online": bool(live.get("online")),
                          "lamp": tele.get("lamp")})
    for p in programs:
        p["timeline"] = timeline(ctx, p["program"], sun, n, now_minute)
        p["used_by"] = used.get((p["scope"], p["target"]), [])
    zone_rows = [{"zone": z, "own": z["id"] in tables["zone"]} for z in zones.values()]
    evening, morning = sun(n), sun(n + 1)
    return {"programs": programs, "zone_rows": zone_rows, "node_rows": node_rows, "zones": list(zones.values()),
            "lamps": lamps, "overrides": gw.overrides.active(),
            "sunset": clock_text(evening.sunset) if evening.sunset is not None else None,
            "sunrise": clock_text(morning.sunrise) if morning.sunrise is not None else None,
            "night_date": (n * 86400 - gw.cfg.tz_s), "now_minute": now_minute - NOON,
            "names": {n_["id"]: n_["name"] for n_ in gw.registry.nodes()}}


# ---- the program form -------------------------------------------------------------------------------


def form_values(day: dict[str, Any]) -> dict[str, Any]:
    """A day program's JSON -> the form's fields."""
    values: dict[str, Any] = {"level": day.get("level", 100)}
    for key, anchors in (("on", ("sunset", "dusk")), ("off", ("sunrise", "dawn"))):
        anchor, minutes = parse_time(day[key])
        if anchor == "clock":
            values.update({key + "_kind": "clock", key + "_time": day[key], key + "_anchor": anchors[0],
                           key + "_offset": 0})
        else:
            values.update({key + "_kind": "sun", key + "_anchor": anchor, key + "_offset": minutes,
                           key + "_time": ""})
    for i in range(STEP_ROWS):
        steps = day.get("steps", [])
        values["step_at_%d" % i] = steps[i]["at"] if i < len(steps) else ""
        values["step_level_%d" % i] = steps[i]["level"] if i < len(steps) else ""
    motion = day.get("motion")
    values["motion_on"] = bool(motion)
    values["motion_level"] = motion["level"] if motion else 80
    values["motion_hold"] = motion["hold"] if motion else 120
    return values


def _int(ctx: Ctx, form: FormData, key: str, lo: int, hi: int, errors: dict[str, str], what: str) -> int | None:
    raw = str(form.get(key) or "").strip()
    try:
        value = int(raw)
    except ValueError:
        errors[key] = ctx._("%(what)s must be a whole number from %(lo)s to %(hi)s", what=what, lo=lo, hi=hi)
        return None
    if not lo <= value <= hi:
        errors[key] = ctx._("%(what)s must be a whole number from %(lo)s to %(hi)s", what=what, lo=lo, hi=hi)
        return None
    return value


CLOCK_WRITTEN = re.compile(r"^(\d{1,2})\s*[:hHgG.]\s*(\d{2})?$")  # 17:30, 9:15, 17h30, 17h, 9g15 as people write them


def _clock(ctx: Ctx, raw: str, key: str, errors: dict[str, str], sun_ok: bool = False) -> str | None:
    raw = raw.strip()
    written = CLOCK_WRITTEN.match(raw)
    if written:
        raw = "%02d:%02d" % (int(written.group(1)), int(written.group(2) or 0))
    try:
        anchor, _m = parse_time(raw)
    except ProtocolError:
        anchor = None
    if anchor is None or (anchor != "clock" and not sun_ok):
        errors[key] = (ctx._("Write a time as HH:MM (00:00 to 23:59) or a sun time such as sunset+15")
                       if sun_ok else ctx._("Write a time as HH:MM (00:00 to 23:59)"))
        return None
    return raw


def parse_day(ctx: Ctx, form: FormData) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """The form -> (day program JSON, errors by field, the values as typed)."""
    errors: dict[str, str] = {}
    typed: dict[str, Any] = {k: form.get(k) for k in form.keys() if k != "csrf"}
    typed["motion_on"] = form.get("motion_on") == "1"
    day: dict[str, Any] = {}
    for key, anchors in (("on", ("sunset", "dusk")), ("off", ("sunrise", "dawn"))):
        if form.get(key + "_kind") == "clock":
            t = _clock(ctx, str(form.get(key + "_time") or ""), key + "_time", errors)
            if t:
                day[key] = t
        else:
            anchor = str(form.get(key + "_anchor") or anchors[0])
            if anchor not in anchors:
                errors[key + "_anchor"] = ctx._("Choose a sun event")
            offset = _int(ctx, form, key + "_offset", -MAX_OFFSET, MAX_OFFSET, errors, ctx._("Minutes"))
            if offset is not None and anchor in anchors:
                day[key] = anchor if offset == 0 else "%s%+d" % (anchor, offset)
    level = _int(ctx, form, "level", 0, 100, errors, ctx._("Level"))
    day["level"] = level
    steps = []
    for i in range(STEP_ROWS):
        at, lvl = str(form.get("step_at_%d" % i) or "").strip(), str(form.get("step_level_%d" % i) or "").strip()
        if not at and not lvl:
            continue
        t = _clock(ctx, at, "step_at_%d" % i, errors, sun_ok=True)
        v = _int(ctx, form, "step_level_%d" % i, 0, 100, errors, ctx._("Level"))
        if t is not None and v is not None:
            steps.append({"at": t, "level": v})
    if len(steps) > MAX_STEPS:
        errors["step_at_0"] = ctx._("At most %(n)s steps", n=MAX_STEPS)
    if steps:
        day["steps"] = steps
    if form.get("motion_on") == "1":
        m_level = _int(ctx, form, "motion_level", 1, 100, errors, ctx._("Level"))
        m_hold = _int(ctx, form, "motion_hold", 1, 3600, errors, ctx._("Seconds"))
        day["motion"] = {"level": m_level, "hold": m_hold}
    if not errors:
        try:  # what only the protocol knows: off after on within the night
            DayProgram.from_json("day", day)
        except ProtocolError as exc:
            field = "off_time" if ".off " in str(exc) else "level"
            errors[field] = (ctx._("Off must come after on, within the night (noon to noon)")
                             if ".off " in str(exc) else ctx._("This program is not valid: %(why)s", why=str(exc)))
    return day, errors, typed


def target_title(web: Web, ctx: Ctx, scope: str, target: str) -> str:
    if scope == "default":
        return ctx._("Default program (whole commune)")
    if scope == "zone":
        return ctx._("Program of %(zone)s", zone=web.gw.registry.zone(target)["name"])
    return ctx._("Program of %(node)s", node=web.gw.registry.node(target)["name"])


def base_program(web: Web, ctx: Ctx, tables: dict[str, dict[str, dict[str, Any]]], scope: str, target: str,
                 copy: str) -> tuple[dict[str, Any], str | None, str]:
    """(program JSON the form starts from, where it comes from when not its own, the copy key used):
    a copy of another program when asked (copy = "scope:target"), else its own, else the one it inherits."""
    c_scope, _sep, c_target = copy.partition(":")
    if c_scope in SCOPES and c_target in tables[c_scope]:
        return tables[c_scope][c_target]["program"], target_title(web, ctx, c_scope, c_target), copy
    own = tables[scope].get(target)
    if own is not None:
        return own["program"], None, ""
    src_scope, src_target, program = inherited(web, tables, scope, target)
    return program, target_title(web, ctx, src_scope, src_target), ""


def _check_scope(scope: str, target: str) -> None:
    if scope not in SCOPES or (scope == "default" and target != "site"):
        raise GatewayError("program.target", "Không có chương trình này", "No such program", "target", status=404)


def _local_until(web: Web, ctx: Ctx, form: FormData, errors: dict[str, str]) -> int | None:
    """The override's end: a duration in hours (ahead of now) or a clock time HH:MM (the next one)."""
    now = web.gw.clock.now()
    mode = str(form.get("until_kind") or "hours")
    if mode == "time":
        t = _clock(ctx, str(form.get("until_time") or ""), "until_time", errors)
        if t is None:
            return None
        hh, mm = int(t[:2]), int(t[3:])
        local = now + web.gw.cfg.tz_s
        midnight = local - local % 86400
        end = midnight + hh * 3600 + mm * 60
        if end <= local + 30:
            end += 86400
        return int(end - web.gw.cfg.tz_s)
    raw = str(form.get("hours") or "").strip().replace(",", ".")
    try:
        hours = float(raw)
    except ValueError:
        hours = -1
    if not 0 < hours <= 72:
        errors["hours"] = ctx._("Hours must be more than 0 and at most 72")
        return None
    return int(now + hours * 3600)


def routes(web: Web, router: APIRouter) -> None:
    gw = web.gw

    def index(ctx: Ctx, status: int = 200, **extra: Any) -> HTMLResponse:
        return web.render(ctx, "lamps/index.html", status=status, **(overview(web, ctx) | extra))

    @router.get("/lamps")
    async def lamps_index(request: Request, done: str | None = None) -> HTMLResponse:
        ctx = web.ctx(request, "viewer")
        flash = {"saved": ctx._("The program is saved and sent to the lamps."),
                 "deleted": ctx._("The zone or lamp follows the program it inherits again."),
                 "override": ctx._("The override is sent to the lamps."),
                 "cancelled": ctx._("The override is cancelled: the lamps follow their program again.")}.get(done or "")
        return index(ctx, flash=flash)

    @router.get("/lamps/program")
    async def program_form(request: Request, scope: str = "default", target: str = "site",
                           copy: str = "") -> HTMLResponse:
        ctx = web.ctx(request, "operator")
        _check_scope(scope, target)
        title = target_title(web, ctx, scope, target)
        tables = program_tables(web)
        own = tables[scope].get(target)
        program, source, copied = base_program(web, ctx, tables, scope, target, copy)
        _name, day = main_day(program)
        others = [(s_, t_, target_title(web, ctx, s_, t_)) for s_ in SCOPES for t_ in sorted(tables[s_])
                  if (s_, t_) != (scope, target)]
        return web.render(ctx, "lamps/program.html", scope=scope, target=target, title=title, values=form_values(day),
                          errors={}, source=source, own=own is not None, rows=STEP_ROWS, copy=copied, others=others,
                          special=program["calendar"][:-1])

    @router.post("/lamps/program")
    async def program_save(request: Request) -> Response:
        ctx, form = await web.form(request, "operator")
        scope, target = str(form.get("scope") or ""), str(form.get("target") or "")
        _check_scope(scope, target)
        title = target_title(web, ctx, scope, target)
        day, errors, typed = parse_day(ctx, form)
        tables = program_tables(web)
        own = tables[scope].get(target)
        base, _source, copied = base_program(web, ctx, tables, scope, target, str(form.get("copy") or ""))
        name, _old = main_day(base)
        body = {"days": dict(base["days"], **{name: day}), "calendar": base["calendar"]}
        error = None
        if not errors:
            try:
                gw.plans.set_program(scope, target, body, ctx.user["username"] if ctx.user else None)
                gw.users.audit(ctx.user["username"] if ctx.user else "?", "program.set", "%s/%s" % (scope, target), {})
                return web.redirect("/lamps?done=saved")
            except GatewayError as exc:
                error = ctx.error_text(exc)
                if exc.field:
                    errors[exc.field] = error
        return web.render(ctx, "lamps/program.html", status=400, scope=scope, target=target, title=title,
                          values=typed, errors=errors, error=error or ctx._("Please correct the fields marked below."),
                          source=None, own=own is not None, rows=STEP_ROWS, special=base["calendar"][:-1], copy=copied,
                          others=[])

    @router.post("/lamps/program/delete")
    async def program_delete(request: Request) -> Response:
        ctx, form = await web.form(request, "operator")
        scope, target = str(form.get("scope") or ""), str(form.get("target") or "")
        if scope not in ("zone", "node"):
            raise GatewayError("program.default", "Không xoá được chương trình mặc định",
                               "The default program cannot be deleted", "scope")
        gw.plans.delete_program(scope, target)
        gw.users.audit(ctx.user["username"] if ctx.user else "?", "program.delete", "%s/%s" % (scope, target), {})
        return web.redirect("/lamps?done=deleted")

    @router.post("/lamps/override")
    async def override(request: Request) -> Response:
        ctx, form = await web.form(request, "operator")
        errors: dict[str, str] = {}
        choice = str(form.get("target") or "")
        scope, _sep, target = choice.partition(":")
        level = _int(ctx, form, "level", 0, 100, errors, ctx._("Level"))
        until = _local_until(web, ctx, form, errors)
        back = str(form.get("back") or "/lamps")
        if not errors and level is not None and until is not None:
            try:
                result = gw.overrides.set(scope, target, level, until, ctx.user["username"] if ctx.user else None)
                gw.users.audit(ctx.user["username"] if ctx.user else "?", "lamp.override", choice,
                               {"level": level, "until": until, "batch": result["batch"]})
                if back.startswith("/nodes/"):
                    return web.redirect(back + "?done=override")
                return web.redirect("/lamps?done=override")
            except GatewayError as exc:
                errors[exc.field or "target"] = ctx.error_text(exc)
        typed = {k: form.get(k) for k in form.keys() if k != "csrf"}
        if back.startswith("/nodes/"):
            from gateway.ui.pages.nodes import detail  # the node page shows its own form again
            return detail(web, ctx, back[len("/nodes/"):], status=400, o_errors=errors, o_typed=typed)
        return index(ctx, status=400, o_errors=errors, o_typed=typed)

    @router.post("/lamps/override/cancel")
    async def override_cancel(request: Request) -> Response:
        ctx, form = await web.form(request, "operator")
        batch = str(form.get("batch") or "")
        gw.overrides.cancel(batch, ctx.user["username"] if ctx.user else None)
        gw.users.audit(ctx.user["username"] if ctx.user else "?", "lamp.override.cancel", batch, {})
        back = str(form.get("back") or "")
        if back.startswith("/nodes/"):
            return web.redirect(back + "?done=cancelled")
        return web.redirect("/lamps?done=cancelled")


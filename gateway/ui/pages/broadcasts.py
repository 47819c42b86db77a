"""The broadcasts pages: the calendar (week, month), the schedules, approvals, and the schedule form.

    GET  /broadcasts                 viewer    calendar (?view=week|month&d=YYYY-MM-DD), schedules, pending ones
    GET  /broadcasts/new             operator  the form (a new schedule)
    GET  /broadcasts/{id}            operator  the form (edit)
    POST /broadcasts/new, /{id}      operator  save (a TTS source first becomes a clip of the library)
    POST /broadcasts/check           operator  htmx: the form -> what it would overlap, and who wins where
    POST /broadcasts/{id}/delete     operator
    POST /broadcasts/{id}/approve    admin     (and /reject): a pending schedule

The form <-> schedule mapping is gateway/ui/pages/broadcasts_form.py; schedules, occurrences,
approval and the conflict check are PlanPusher's (gateway/plan_push.py).
"""
from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from gateway.errors import GatewayError
from gateway.plan_push import RESUME_S, needs_approval
from gateway.schedules import parse_schedule
from gateway.ui.pages.broadcasts_form import (REPEATS, VOICES, WEEKDAYS, dmy, estimated_tts_seconds, form_of,
                                              parse_date, schedule_body)
from gateway.ui.web import Ctx, Web
from protocol.plan import CATEGORIES

CHECK_DAYS = 28  # the conflict check looks four weeks ahead
LIST_FIELDS = ("zones", "days")


def category_names(ctx: Ctx) -> dict[str, str]:
    return {"news": ctx._("News"), "security": ctx._("Security and order"),
            "disaster": ctx._("Disaster prevention"), "campaign": ctx._("Public campaigns"),
            "health": ctx._("Health"), "music": ctx._("Music"), "other": ctx._("Other")}


def priority_names(ctx: Ctx) -> list[str]:
    return [ctx._("Routine"), ctx._("Priority"), ctx._("Emergency")]


def weekday_names(ctx: Ctx) -> list[str]:
    return [ctx._("Mon"), ctx._("Tue"), ctx._("Wed"), ctx._("Thu"), ctx._("Fri"), ctx._("Sat"), ctx._("Sun")]


def group_conflicts(conflicts: list[dict[str, Any]], tz: timezone) -> list[dict[str, Any]]:
    """A daily schedule overlaps another one every day: one row per (other schedule, times of day, zones,
    winner), with how many times and the first and last dates."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for c in conflicts:
        hm = datetime.fromtimestamp(c["start"], tz).strftime("%H:%M")
        other_hm = datetime.fromtimestamp(c["other_start"], tz).strftime("%H:%M")
        key = (c["other"], hm, other_hm, tuple(c["zones"]), c["new_wins"], c["priority"], c["other_priority"])
        if key in groups:
            groups[key]["count"] += 1
            groups[key]["last"] = c["start"]
        else:
            groups[key] = dict(c, count=1, first=c["start"], last=c["start"], same_start=c["start"] == c["other_start"])
    return sorted(groups.values(), key=lambda g: (g["first"], g["other"]))


def repeat_text(ctx: Ctx, schedule: dict[str, Any]) -> str:
    """A schedule's repetition in plain words: "Every day at 06:30 from 03/12/2026"."""
    f = form_of(schedule)
    day = f["date"]
    names = weekday_names(ctx)
    if f["repeat"] == "once":
        return ctx._("Once, %(day)s at %(time)s", day=day, time=f["time"])
    if f["repeat"] == "daily":
        return ctx._("Every day at %(time)s from %(day)s", day=day, time=f["time"])
    if f["repeat"] in ("weekdays", "days"):
        return ctx._("%(days)s at %(time)s from %(day)s", day=day, time=f["time"],
                     days=", ".join(names[WEEKDAYS.index(d)] for d in f["days"]))
    if f["repeat"] == "range":
        until = f["until"]
        return ctx._("Every day at %(time)s from %(day)s to %(until)s", day=day, time=f["time"], until=until)
    if f["repeat"] == "monthly":
        return ctx._("Day %(n)s of every month at %(time)s from %(day)s", n=f["monthday"], day=day, time=f["time"])
    return ctx._("From %(day)s at %(time)s, rule %(rule)s", day=day, time=f["time"], rule=f["custom"])


def start_text(start: str) -> str:
    """A schedule's local start "YYYY-MM-DDTHH:MM" as staff read it: dd/mm/yyyy HH:MM."""
    day, _sep, at = str(start).partition("T")
    try:
        return "%s %s" % (dmy(date.fromisoformat(day)), at[:5])
    except ValueError:
        return str(start)


def _fields(form: FormData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in set(form.keys()):
        if key in LIST_FIELDS:
            out[key] = [str(v) for v in form.getlist(key)]
        elif key != "csrf":
            value = form.get(key)
            out[key] = value if isinstance(value, str) else ""
    for key in LIST_FIELDS:
        out.setdefault(key, [])
    return out


def routes(web: Web, router: APIRouter) -> None:
    gw = web.gw
    tz = timezone(timedelta(seconds=gw.cfg.tz_s))

    def today() -> date:
        return datetime.fromtimestamp(gw.clock.now(), tz).date()

    def utc(d: date) -> int:
        return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp())

    def local_day(t: float) -> date:
        return datetime.fromtimestamp(t, tz).date()

    def common(ctx: Ctx) -> dict[str, Any]:
        return {"categories": category_names(ctx), "priorities": priority_names(ctx),
                "weekdays": weekday_names(ctx), "zones": gw.registry.zones(),
                "zone_names": dict((z["id"], z["name"]) for z in gw.registry.zones())}

    @router.get("/broadcasts")
    async def broadcasts_index(request: Request, view: str = "week", d: str = "", saved: str = "") -> HTMLResponse:
        ctx = web.ctx(request, "viewer")
        view = "month" if view == "month" else "week"
        try:
            anchor = parse_date(d) if d else today()
        except GatewayError:
            anchor = today()
        if view == "week":
            first = anchor - timedelta(days=anchor.weekday())
            last = first + timedelta(days=7)
            prev_d, next_d = first - timedelta(days=7), first + timedelta(days=7)
        else:
            month1 = anchor.replace(day=1)
            first = month1 - timedelta(days=month1.weekday())
            month_end = (month1 + timedelta(days=32)).replace(day=1)
            last = month_end + timedelta(days=(7 - month_end.weekday()) % 7)
            prev_d, next_d = (month1 - timedelta(days=1)).replace(day=1), month_end
        days = [first + timedelta(days=i) for i in range((last - first).days)]
        by_day: dict[date, list[dict[str, Any]]] = dict((day, []) for day in days)
        for occ in gw.plans.occurrences_between(utc(first), utc(last)):
            day = local_day(occ["start"])
            if day in by_day:
                by_day[day].append(occ)
        schedules = gw.plans.schedules()
        flash = None
        if saved:
            pending = any(s["id"] == saved and s["pending"] for s in schedules)
            flash = ctx._("Saved. It waits for an administrator's approval before it airs.") if pending \
                else ctx._("Saved. The loudspeakers receive the new plan.")
        repeats = dict((s["id"], repeat_text(ctx, s)) for s in schedules)
        return web.render(ctx, "broadcasts/index.html", view=view, repeats=repeats, anchor=anchor, days=days, by_day=by_day,
                          today=today(), prev_d=prev_d, next_d=next_d, month=anchor.month,
                          schedules=schedules, pending=[s for s in schedules if s["pending"]],
                          clip_titles=dict((c["id"], c["title"]) for c in gw.clips.list()),
                          flash=flash, start_text=start_text, **common(ctx))

    def render_form(ctx: Ctx, values: dict[str, Any], new: bool, error: GatewayError | None = None,
                    status: int = 200) -> HTMLResponse:
        clips = gw.clips.list()
        return web.render(ctx, "broadcasts/form.html", status=status, v=values, new=new, clips=clips,
                          repeats=REPEATS, weekday_codes=WEEKDAYS, voices=VOICES,
                          error_field=(error.field or "form") if error else None,
                          error=ctx.error_text(error) if error else None,
                          approval=needs_approval(gw.settings.get("approval_required"), ctx.user["role"])
                          if ctx.user else False, **common(ctx))

    def blank() -> dict[str, Any]:
        now = datetime.fromtimestamp(gw.clock.now() + 3600, tz)
        return {"id": "", "title": "", "category": "news", "priority": "0", "volume": "80", "zones": [],
                "repeat": "once", "date": dmy(now.date()), "time": now.strftime("%H:00"), "until": "",
                "days": [], "monthday": str(now.day), "custom": "", "source": "tts", "clip": "", "stream": "",
                "duration_min": "15", "tts_text": "", "voice": "north", "speed": "1.0"}

    @router.get("/broadcasts/new")
    async def new_form(request: Request) -> HTMLResponse:
        ctx = web.ctx(request, "operator")
        return render_form(ctx, blank(), True)

    @router.post("/broadcasts/check")
    async def check(request: Request) -> HTMLResponse:
        """htmx: the form as it stands -> the conflict panel (nothing stored)."""
        ctx, form = await web.form(request, "operator")
        f = _fields(form)
        result, error = None, None
        try:
            body, tts = schedule_body(f, sorted(gw.registry.zone_ids()))
            if not body["id"]:
                body["id"] = "new"
            if tts is not None:  # the clip does not exist yet: judge with its estimated window
                body.update(source="line", ref=None,
                            duration_s=estimated_tts_seconds(tts["text"], tts["speed"]) + RESUME_S)
            result = gw.plans.check_schedule(body, CHECK_DAYS)
            result["groups"] = group_conflicts(result["conflicts"], tz)
        except GatewayError as exc:
            error = ctx.error_text(exc)
        return web.render(ctx, "broadcasts/conflicts.html", result=result, error=error, estimated=bool(
            result is not None and f.get("source") == "tts"), **common(ctx))

    async def save(request: Request, schedule_id: str | None) -> Response:
        ctx, form = await web.form(request, "operator")
        user = ctx.user or {}
        f = _fields(form)
        new = schedule_id is None
        if schedule_id is not None:
            gw.plans.schedule(schedule_id)  # an unknown one: a "not found" page
        f["id"] = schedule_id or "lich-" + secrets.token_hex(5)
        try:
            body, tts = schedule_body(f, sorted(gw.registry.zone_ids()))
            # the schedule's own fields checked before a TTS clip is made for it (nothing half-done)
            parse_schedule(dict(body, source="line", ref=None, duration_s=body.get("duration_s", 60)),
                           gw.registry.zone_ids(), gw.cfg.utc_offset)
            if tts is not None:
                try:
                    clip = await gw.clips.add_tts(tts["text"], tts["voice"], tts["speed"], body["title"],
                                                  body["category"], user["username"])
                except GatewayError as exc:
                    exc.field = exc.field or "tts_text"
                    raise
                if not clip.get("duplicate"):
                    gw.users.audit(user["username"], "clip.add", clip["id"],
                                   {"title": clip["title"], "source": "tts", "voice": tts["voice"]})
                body["ref"] = clip["id"]
            pending = needs_approval(gw.settings.get("approval_required"), user["role"])
            gw.plans.put_schedule(body, user["username"], new=new, pending=pending)
        except GatewayError as exc:
            if new:
                f["id"] = ""
            return render_form(ctx, f, new, exc, 400 if exc.status < 500 else exc.status)
        gw.users.audit(user["username"], "schedule.add" if new else "schedule.update", f["id"],
                       {"title": body["title"], "pending": pending})
        return web.redirect("/broadcasts?saved=" + f["id"])

    @router.post("/broadcasts/new")
    async def create(request: Request) -> Response:
        return await save(request, None)

    @router.get("/broadcasts/{schedule_id}")
    async def edit_form(request: Request, schedule_id: str) -> HTMLResponse:
        ctx = web.ctx(request, "operator")
        return render_form(ctx, dict(blank(), **form_of(gw.plans.schedule(schedule_id))), False)

    @router.post("/broadcasts/{schedule_id}")
    async def update(request: Request, schedule_id: str) -> Response:
        return await save(request, schedule_id)

    @router.post("/broadcasts/{schedule_id}/delete")
    async def delete(request: Request, schedule_id: str) -> Response:
        ctx, _form = await web.form(request, "operator")
        gw.plans.delete_schedule(schedule_id)
        gw.users.audit(ctx.user["username"] if ctx.user else "", "schedule.delete", schedule_id, {})
        return web.redirect("/broadcasts")

    @router.post("/broadcasts/{schedule_id}/approve")
    async def approve(request: Request, schedule_id: str) -> Response:
        ctx, form = await web.form(request, "admin")
        ok = form.get("answer") != "reject"
        gw.plans.approve_schedule(schedule_id, ctx.user["username"] if ctx.user else None, approve=ok)
        gw.users.audit(ctx.user["username"] if ctx.user else "", "schedule.approve" if ok else "schedule.reject",
                       schedule_id, {})
        return web.redirect("/broadcasts")


"""The monthly report pages: /reports?month=YYYY-MM (charts and tables) and /reports/print (A4, to sign).

Figures come from gateway/reports.py `monthly()` (what the nodes reported
aired, the lamps' own counters, the alerts opened); the CSV is the JSON API's
/api/reports/monthly.csv (the session cookie is enough for a GET). A bad
month is said next to the picker, never a 500.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from gateway.errors import GatewayError
from gateway.ingest import MISSED_WHY
from gateway.reports import month_bounds, month_of, monthly, shift_month
from gateway.ui.web import Ctx, Web


def N_(message: str) -> str:
    """Marks a string for the catalogue; translated where it is shown."""
    return message


CATEGORY_LABELS = {"news": N_("News"), "security": N_("Security and order"), "disaster": N_("Disaster warning"),
                   "campaign": N_("Campaigns"), "health": N_("Health"), "music": N_("Music"), "other": N_("Other"),
                   "emergency": N_("Emergency")}
PRIORITY_LABELS = {"routine": N_("Routine"), "priority": N_("High priority"), "emergency": N_("Emergency")}
PICKER_MONTHS = 36  # the month picker offers this many months back from this one
FAULT_LABELS = {
    "part_failed": N_("A part of a device not responding"), "offline": N_("Device lost connection"),
    "lamp_fault": N_("Lamp failed"), "day_burner": N_("Lamp on by day"), "clock_invalid": N_("Device without valid time"),
    "broadcast_failed": N_("Broadcast could not air"), "broadcast_missed": N_("Scheduled broadcast not aired"),
    "broadcast_not_aired": N_("Broadcast not aired (reason given)"), "cmd_rejected": N_("Command rejected (possible attack)"),
    "command_expired": N_("Command unanswered"), "event_gap": N_("Device events missing"),
    "safe_mode": N_("Device in safe mode"), "events_dropped": N_("Device dropped events"),
    "storage_error": N_("Device storage error"), "bad_messages": N_("Malformed messages"),
    "plan_truncated": N_("Broadcast plan too long"),
    "aired_after_cancel": N_("Cancelled broadcast aired (cancel too late)"),
}


def labels(ctx: Ctx, web: Web) -> dict[str, Any]:
    zones = dict((z["id"], z["name"]) for z in web.gw.registry.zones())
    return {
        "zone": lambda key: zones.get(key, key),
        "category": lambda key: ctx._(CATEGORY_LABELS[key]) if key in CATEGORY_LABELS else key,
        "priority": lambda key: ctx._(PRIORITY_LABELS[key]) if key in PRIORITY_LABELS else key,
        "fault": lambda key: ctx._(FAULT_LABELS[key]) if key in FAULT_LABELS else key,
        "why": lambda key: MISSED_WHY[key][0 if ctx.lang == "vi" else 1] if key in MISSED_WHY else key,
    }


def report_values(web: Web, ctx: Ctx, month: str | None) -> dict[str, Any]:
    """The template's values: the month's report, or the error to show beside the picker."""
    tz_s = web.gw.cfg.tz_s
    this_month = month_of(web.gw.clock.now(), tz_s)
    month = (month or "").strip() or this_month
    months = [shift_month(this_month, -i) for i in range(PICKER_MONTHS)]
    values: dict[str, Any] = {"month": month, "this_month": this_month, "report": None, "error": None,
                              "months": months}
    try:
        month_bounds(month, tz_s)
    except GatewayError as exc:
        values["error"] = ctx.error_text(exc)
        return values
    if month not in months:
        values["months"] = sorted(months + [month], reverse=True)
    year, mon = month.split("-")
    report = monthly(web.gw.db, month, tz_s)
    label = labels(ctx, web)

    def num(value: float, decimals: int = 0) -> str:
        return web.number(value, ctx.lang, decimals)

    values.update(
        report=report, month_text="%s/%s" % (mon, year), prev_month=shift_month(month, -1),
        next_month=shift_month(month, 1), label=label, charts=True,
        zone_rows=[(label["zone"](k), v["broadcasts"], num(v["broadcasts"])) for k, v in report["by_zone"].items()],
        category_rows=[(label["category"](k), v["broadcasts"], num(v["broadcasts"]))
                       for k, v in report["by_category"].items()],
        lamp_zone_rows=[(label["zone"](k), v["on_hours"], ctx._("%(h)s h", h=num(v["on_hours"], 1)))
                        for k, v in report["lamp_zones"].items()],
        fault_rows=[(label["fault"](k), n, num(n)) for k, n in report["faults"].items()])
    return values


def routes(web: Web, router: APIRouter) -> None:
    @router.get("/reports")
    async def reports_index(request: Request, month: str | None = None) -> HTMLResponse:
        ctx = web.ctx(request, "viewer")
        values = report_values(web, ctx, month)
        return web.render(ctx, "reports/index.html", status=400 if values["error"] else 200, **values)

    @router.get("/reports/print")
    async def reports_print(request: Request, month: str | None = None) -> HTMLResponse:
        ctx = web.ctx(request, "viewer")
        values = report_values(web, ctx, month)
        if values["error"]:
            return web.render(ctx, "reports/index.html", status=400, **values)
        return web.render(ctx, "reports/print.html", **values)

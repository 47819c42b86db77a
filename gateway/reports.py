"""Monthly reports from what actually happened: airings the nodes reported, lamp telemetry, alerts.

"How many broadcasts, of what, where" counts distinct broadcast items per
zone as reported played by the loudspeakers of that zone, and the minutes
they aired; lamp on-hours and energy come from the nodes' own counters.
"""
from __future__ import annotations

import calendar
import csv
import io
import json
import time
from typing import Any

from gateway.db import Database
from gateway.errors import GatewayError
from protocol.ima import RATE as AUDIO_RATE
from protocol.plan import EMERGENCY, PRIORITY_NAMES


def month_bounds(month: str, tz_s: int) -> tuple[int, int]:
    """('YYYY-MM') -> (start, end) Unix seconds of that local month."""
    try:
        year, mon = (int(p) for p in month.split("-"))
        if not 1 <= mon <= 12 or not 2000 <= year <= 2099:
            raise ValueError
    except (ValueError, AttributeError):
        raise GatewayError("month.invalid", "Tháng phải có dạng YYYY-MM", "Month must look like YYYY-MM", "month")
    start = calendar.timegm((year, mon, 1, 0, 0, 0)) - tz_s
    end = calendar.timegm((year + mon // 12, mon % 12 + 1, 1, 0, 0, 0)) - tz_s
    return start, end


def month_of(t: float, tz_s: int) -> str:
    """The local month ('YYYY-MM') of a Unix time."""
    return time.strftime("%Y-%m", time.gmtime(t + tz_s))


def shift_month(month: str, by: int) -> str:
    """'2026-01', -1 -> '2025-12' (the month must be valid)."""
    year, mon = (int(p) for p in month.split("-"))
    index = year * 12 + mon - 1 + by
    return "%04d-%02d" % (index // 12, index % 12 + 1)


def monthly(db: Database, month: str, tz_s: int) -> dict[str, Any]:
    start, end = month_bounds(month, tz_s)
    nodes = {r["id"]: {"name": r["name"], "zones": json.loads(r["zones"])}
             for r in db.all("SELECT id, name, zones FROM nodes")}
    airings = db.all("SELECT * FROM airings WHERE started >= ? AND started < ?", start, end)
    by_zone: dict[str, dict[str, Any]] = {}
    by_category: dict[str, dict[str, Any]] = {}
    by_priority: dict[str, dict[str, Any]] = {}
    items = set()
    minutes = 0.0
    missed: dict[str, int] = {}
    for a in airings:
        if a["outcome"] == "missed":  # reported by the node with its reason: not aired, counted apart
            why = a["why"] or "?"
            missed[why] = missed.get(why, 0) + 1
            continue
        # audio segments: what left the loudspeaker's DAC, to the sample; line input: the node's clock
        mins = a["samples"] / (AUDIO_RATE * 60.0) if a["samples"] is not None else a["secs"] / 60.0
        minutes += mins
        items.add(a["item_id"])
        category = a["category"]
        if a["priority"] == EMERGENCY and category == "other":
            category = "emergency"  # nodes report commanded broadcasts (emergencies) as "other"
        cat = by_category.setdefault(category, {"broadcasts": set(), "minutes": 0.0})
        cat["broadcasts"].add(a["item_id"])
        cat["minutes"] += mins
        prio = by_priority.setdefault(PRIORITY_NAMES[a["priority"]] if 0 <= a["priority"] <= 2 else "?",
                                      {"broadcasts": set(), "minutes": 0.0})
        prio["broadcasts"].add(a["item_id"])
        prio["minutes"] += mins
        for zone in nodes.get(a["node_id"], {}).get("zones", []):
            z = by_zone.setdefault(zone, {"broadcasts": set(), "speaker_minutes": 0.0})
            z["broadcasts"].add(a["item_id"])
            z["speaker_minutes"] += mins
    lamps = []
    day_lo = _day(start, tz_s)
    day_hi = _day(end - 1, tz_s)
    for r in db.all("SELECT node_id, SUM(on_s) AS on_s, SUM(COALESCE(wh_last - wh_first, 0) + ctr_wh) AS wh"
                    " FROM lamp_days"
                    " WHERE day >= ? AND day <= ? GROUP BY node_id ORDER BY node_id", day_lo, day_hi):
        lamps.append({"node": r["node_id"], "name": nodes.get(r["node_id"], {}).get("name", r["node_id"]),
                      "on_hours": round((r["on_s"] or 0) / 3600.0, 1), "energy_kwh": round((r["wh"] or 0) / 1000.0, 2)})
    lamp_zones: dict[str, dict[str, Any]] = {}
    for lamp in lamps:  # a lamp on several zones counts in each of them
        for zone in nodes.get(lamp["node"], {}).get("zones", []):
            z = lamp_zones.setdefault(zone, {"lamps": 0, "on_hours": 0.0, "energy_kwh": 0.0})
            z["lamps"] += 1
            z["on_hours"] += lamp["on_hours"]
            z["energy_kwh"] += lamp["energy_kwh"]
    faults = {}
    for r in db.all("SELECT kind, COUNT(*) FROM alerts WHERE opened >= ? AND opened < ? GROUP BY kind", start, end):
        faults[r[0]] = r[1]

    def counted(d: dict[str, dict[str, Any]], key: str = "minutes") -> dict[str, dict[str, Any]]:
        return {k: {"broadcasts": len(v["broadcasts"]), key: round(v[key], 1)} for k, v in sorted(d.items())}

    return {
        "month": month,
        "broadcasts": len(items),
        "speaker_minutes": round(minutes, 1),
        "by_zone": counted(by_zone, "speaker_minutes"),
        "by_category": counted(by_category),
        "by_priority": counted(by_priority),
        "missed": {"count": sum(missed.values()), "by_reason": dict(sorted(missed.items()))},
        "lamps": lamps,
        "lamp_zones": {k: {"lamps": v["lamps"], "on_hours": round(v["on_hours"], 1),
                           "energy_kwh": round(v["energy_kwh"], 2)} for k, v in sorted(lamp_zones.items())},
        "lamp_hours": round(sum(lamp["on_hours"] for lamp in lamps), 1),
        "energy_kwh": round(sum(lamp["energy_kwh"] for lamp in lamps), 2),
        "faults": dict(sorted(faults.items())),
        "fault_count": sum(faults.values()),
    }


def monthly_csv(report: dict[str, Any]) -> str:
    """One CSV (UTF-8 with BOM so spreadsheet programs show Vietnamese right) of the report's tables."""
    out = io.StringIO()
    out.write("\ufeff")
    w = csv.writer(out)
    w.writerow(["Báo cáo tháng / Monthly report", report["month"]])
    w.writerow(["Số bản tin / Broadcasts", report["broadcasts"]])
    w.writerow(["Phút phát (tổng loa) / Speaker minutes", report["speaker_minutes"]])
    w.writerow([])
    w.writerow(["Cụm / Zone", "Số bản tin / Broadcasts", "Phút phát / Speaker minutes"])
    for zone, v in report["by_zone"].items():
        w.writerow([zone, v["broadcasts"], v["speaker_minutes"]])
    w.writerow([])
    w.writerow(["Loại / Category", "Số bản tin / Broadcasts", "Phút / Minutes"])
    for cat, v in report["by_category"].items():
        w.writerow([cat, v["broadcasts"], v["minutes"]])
    w.writerow([])
    w.writerow(["Mức ưu tiên / Priority", "Số bản tin / Broadcasts", "Phút / Minutes"])
    for prio, v in report["by_priority"].items():
        w.writerow([prio, v["broadcasts"], v["minutes"]])
    w.writerow([])
    missed = report.get("missed", {})
    w.writerow(["Không phát được / Not aired", "Số lần / Count"])
    for why, n in missed.get("by_reason", {}).items():
        w.writerow([why, n])
    w.writerow([])
    w.writerow(["Đèn / Lamp", "Tên / Name", "Giờ sáng / On hours", "Điện năng kWh / Energy kWh"])
    for lamp in report["lamps"]:
        w.writerow([lamp["node"], lamp["name"], lamp["on_hours"], lamp["energy_kwh"]])
    w.writerow([])
    w.writerow(["Cụm / Zone", "Số đèn / Lamps", "Giờ sáng / On hours", "Điện năng kWh / Energy kWh"])
    for zone, v in report.get("lamp_zones", {}).items():
        w.writerow([zone, v["lamps"], v["on_hours"], v["energy_kwh"]])
    w.writerow([])
    w.writerow(["Sự cố / Fault", "Số lần / Count"])
    for kind, n in report["faults"].items():
        w.writerow([kind, n])
    return out.getvalue()


def _day(t: float, tz_s: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t + tz_s))

"""The broadcast form <-> a schedule (gateway/schedules.py): pure logic, no I/O, no clock.

Staff choose a repetition in plain words; `recurrence` turns it into the
schedule's `start` (its first occurrence, as gateway/recurrence.py requires)
and `rrule` (the RFC 5545 subset):

    once      one airing on the date             rrule None
    daily     every day from the date            FREQ=DAILY
    weekdays  Monday to Friday                   FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR
    days      the weekdays ticked                FREQ=WEEKLY;BYDAY=...
    range     every day from the date to "until" FREQ=DAILY;UNTIL=<until>T235959
    monthly   that day of each month             FREQ=MONTHLY;BYMONTHDAY=n
    custom    an RRULE typed (or made by the API) as is

A weekly or monthly start moves forward to the first day the rule airs.
`form_of` is the reverse, to edit a stored schedule.
"""
from __future__ import annotations

import math
import re
from datetime import date, timedelta
from typing import Any, NoReturn

from gateway.errors import GatewayError
from protocol.plan import MAX_DURATION

REPEATS = ("once", "daily", "weekdays", "days", "range", "monthly", "custom")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
SOURCES = ("clip", "upload", "recording", "tts", "line", "stream")
VOICES = ("north", "central", "south")
MAX_DURATION_MIN = MAX_DURATION // 60  # a line or stream broadcast's longest (protocol/plan.py)
FIRST_YEAR, LAST_YEAR = 2000, 2100  # the dates a schedule may have
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
_DMY = re.compile(r"([0-9]{1,2})[/.-]([0-9]{1,2})[/.-]([0-9]{4})\Z")
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})\Z")
_UNTIL = re.compile(r"FREQ=DAILY;UNTIL=([0-9]{4})([0-9]{2})([0-9]{2})T235959\Z")
_WEEKLY = re.compile(r"FREQ=WEEKLY;BYDAY=((?:MO|TU|WE|TH|FR|SA|SU)(?:,(?:MO|TU|WE|TH|FR|SA|SU))*)\Z")
_MONTHLY = re.compile(r"FREQ=MONTHLY;BYMONTHDAY=([0-9]{1,2})\Z")


def _bad(field: str, vi: str, en: str) -> NoReturn:
    raise GatewayError("form." + field, vi, en, field)


def dmy(d: date) -> str:
    return "%02d/%02d/%04d" % (d.day, d.month, d.year)


def parse_date(text: str, field: str = "date") -> date:
    """dd/mm/yyyy as staff type it (or yyyy-mm-dd, the calendar's links), in the years FIRST_YEAR..LAST_YEAR
    (a calendar at year 1 or 9999 would step past what `date` can hold)."""
    iso = _DATE.match(text.strip()) if text else None
    vn = _DMY.match(text.strip()) if text else None
    found: date | None = None
    try:
        if iso:
            found = date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
        elif vn:
            found = date(int(vn.group(3)), int(vn.group(2)), int(vn.group(1)))
    except ValueError:
        pass
    if found is not None and FIRST_YEAR <= found.year <= LAST_YEAR:
        return found
    _bad(field, "Ngày không hợp lệ (dd/mm/yyyy, năm %d đến %d)" % (FIRST_YEAR, LAST_YEAR),
         "Not a valid date (dd/mm/yyyy, years %d to %d)" % (FIRST_YEAR, LAST_YEAR))


def parse_time(text: str) -> tuple[int, int]:
    m = _TIME.match(text.strip()) if text else None
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        _bad("time", "Giờ phát không hợp lệ (24 giờ, ví dụ 06:30)", "Not a valid time (24-hour, e.g. 06:30)")
    return int(m.group(1)), int(m.group(2))


def recurrence(repeat: str, day: str, at: str, until: str = "", days: list[str] | None = None,
               monthday: str = "", custom: str = "") -> tuple[str, str | None]:
    """The form's repetition -> (start "YYYY-MM-DDTHH:MM", rrule or None)."""
    if repeat not in REPEATS:
        _bad("repeat", "Chọn cách lặp lại", "Choose how it repeats")
    first = parse_date(day)
    hour, minute = parse_time(at)
    rule: str | None = None
    if repeat == "daily":
        rule = "FREQ=DAILY"
    elif repeat in ("weekdays", "days"):
        chosen = list(WEEKDAYS[:5]) if repeat == "weekdays" else [d for d in WEEKDAYS if d in (days or [])]
        if not chosen:
            _bad("days", "Chọn ít nhất một ngày trong tuần", "Tick at least one day of the week")
        rule = "FREQ=WEEKLY;BYDAY=" + ",".join(chosen)
        while WEEKDAYS[first.weekday()] not in chosen:
            first += timedelta(days=1)
    elif repeat == "range":
        last = parse_date(until, "until")
        if last < first:
            _bad("until", "Ngày kết thúc phải sau hoặc bằng ngày bắt đầu", "The end date must not be before the start")
        rule = "FREQ=DAILY;UNTIL=%04d%02d%02dT235959" % (last.year, last.month, last.day)
    elif repeat == "monthly":
        if not re.fullmatch(r"[0-9]{1,2}", monthday.strip()) or not 1 <= int(monthday) <= 31:
            _bad("monthday", "Ngày trong tháng phải từ 1 đến 31", "Day of the month must be 1 to 31")
        n = int(monthday)
        rule = "FREQ=MONTHLY;BYMONTHDAY=%d" % n
        for _ in range(400):  # the next date with that day number (the 31st skips short months)
            if first.day == n:
                break
            first += timedelta(days=1)
    elif repeat == "custom":
        rule = custom.strip().upper() or None
        if rule and rule.startswith("RRULE:"):
            rule = rule[6:]
        if not rule:
            _bad("custom", "Nhập quy tắc lặp (RRULE)", "Type the recurrence rule (RRULE)")
    return "%04d-%02d-%02dT%02d:%02d" % (first.year, first.month, first.day, hour, minute), rule


def form_of(schedule: dict[str, Any]) -> dict[str, Any]:
    """A stored schedule -> the form's fields (the reverse of `recurrence` and `schedule_body`)."""
    day, at = schedule["start"].split("T")
    day = dmy(date.fromisoformat(day))
    rule = schedule.get("rrule")
    out: dict[str, Any] = {"id": schedule["id"], "title": schedule["title"], "category": schedule["category"],
                           "priority": str(schedule["priority"]), "volume": str(schedule["volume"]),
                           "zones": list(schedule["zones"]), "date": day, "time": at, "until": "", "days": [],
                           "monthday": "", "custom": "", "source": schedule["source"], "clip": "", "stream": "",
                           "duration_min": str(max(1, round(schedule["duration_s"] / 60))), "tts_text": "",
                           "voice": "north", "speed": "1.0"}
    if rule is None:
        out["repeat"] = "once"
    elif rule == "FREQ=DAILY":
        out["repeat"] = "daily"
    elif _UNTIL.match(rule):
        m = _UNTIL.match(rule)
        out["repeat"], out["until"] = "range", "%s/%s/%s" % tuple(reversed(m.groups()))  # type: ignore[union-attr]
    elif _WEEKLY.match(rule):
        chosen = rule.split("=")[-1].split(",")
        out["repeat"] = "weekdays" if chosen == list(WEEKDAYS[:5]) else "days"
        out["days"] = chosen
    elif _MONTHLY.match(rule):
        out["repeat"], out["monthday"] = "monthly", rule.split("=")[-1]
    else:
        out["repeat"], out["custom"] = "custom", rule
    if schedule["source"] == "clip":
        out["clip"] = schedule["ref"]
    elif schedule["source"] == "stream":
        out["stream"] = schedule["ref"]
    return out


def schedule_body(f: dict[str, Any], zone_ids: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The form's fields (strings, lists for zones/days) -> (schedule body, TTS request or None).

    With a TTS source the body's `ref` is left None: the caller makes the clip, then sets it."""
    start, rule = recurrence(f.get("repeat", ""), f.get("date", ""), f.get("time", ""), f.get("until", ""),
                             f.get("days") or [], f.get("monthday", ""), f.get("custom", ""))
    zones = list(zone_ids) if "all" in (f.get("zones") or []) else [z for z in zone_ids if z in (f.get("zones") or [])]
    if not zones:
        _bad("zones", "Chọn ít nhất một khu vực", "Choose at least one zone")
    try:
        priority, volume = int(f.get("priority", "0")), int(f.get("volume", ""))
    except ValueError:
        _bad("volume", "Âm lượng phải là số từ 0 đến 100", "Volume must be a number from 0 to 100")
    body: dict[str, Any] = {"id": f.get("id", ""), "title": f.get("title", "").strip(),
                            "category": f.get("category", ""), "priority": priority, "zones": zones,
                            "volume": volume, "start": start, "rrule": rule}
    source = f.get("source", "")
    tts = None
    if source in ("clip", "upload", "recording"):
        if not re.fullmatch(r"[0-9a-f]{64}", f.get("clip", "")):
            _bad("clip", "Chọn một tệp âm thanh (hoặc tải lên, ghi âm trước)",
                 "Choose a clip (or upload or record one first)")
        body.update(source="clip", ref=f["clip"])
    elif source == "tts":
        text = f.get("tts_text", "").strip()
        if not text:
            _bad("tts_text", "Nhập nội dung cần đọc", "Type the text to be read out")
        try:
            speed = float(f.get("speed", "1.0").replace(",", "."))
        except ValueError:
            speed = math.nan
        if not math.isfinite(speed):
            _bad("speed", "Tốc độ đọc không hợp lệ", "Not a valid reading speed")
        voice = f.get("voice", "north")
        if voice not in VOICES:
            _bad("voice", "Chọn giọng đọc", "Choose a voice")
        body.update(source="clip", ref=None)
        tts = {"text": text, "voice": voice, "speed": speed}
    elif source in ("line", "stream"):
        try:
            minutes = float(f.get("duration_min", "").replace(",", "."))
        except ValueError:
            minutes = math.nan
        if not math.isfinite(minutes) or not 0 < minutes <= MAX_DURATION_MIN:
            _bad("duration_min", "Thời lượng phải từ hơn 0 đến %d phút" % MAX_DURATION_MIN,
                 "Duration must be more than 0 and at most %d minutes" % MAX_DURATION_MIN)
        body.update(source=source, ref=f.get("stream", "").strip() if source == "stream" else None,
                    duration_s=max(1, int(round(minutes * 60))))
    else:
        _bad("source", "Chọn nguồn phát", "Choose a source")
    return body, tts


def estimated_tts_seconds(text: str, speed: float) -> int:
    """About how long espeak-ng reads `text` (175 words a minute at speed 1.0): for the conflict check
    before the clip exists."""
    words = max(1, len(text.split()))
    return max(1, int(words * 60 / (175 * max(0.5, speed))) + 1)

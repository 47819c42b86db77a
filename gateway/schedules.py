"""Step 2 of the broadcast pipeline: staff schedules -> occurrences.

Pure logic: no I/O, no clock, no database. `parse_schedule` validates what
staff enter (a JSON object) into a `Schedule`; `expand` turns the enabled
schedules into concrete `Occurrence`s over a window (the gateway's rolling
horizon); `conflicts` lists the clashes staff should see. Recurrence rules
are gateway/recurrence.py (step 1); occurrences become each node's plan in
gateway/node_plans.py (step 3).

Times: staff enter local "YYYY-MM-DDTHH:MM" in the site's fixed UTC offset
(Vietnam is UTC+7 all year, no DST), see `site_tz`. A schedule's `start` is
its first occurrence.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

from gateway import recurrence
from gateway.errors import GatewayError
from protocol.errors import ProtocolError
from protocol.messages import MAX_TIME, SOURCES, check_token
from protocol.plan import CATEGORIES, EMERGENCY, MAX_DURATION, ROUTINE, BroadcastItem

MAX_ID = 24  # "<id>.<YYYYMMDDHHMM>" must fit the protocol's 40-character item id
MAX_TITLE = 120
MAX_SCHEDULE_ZONES = 64  # a schedule may cover the whole commune; each item carries only its node's zones
MAX_EXDATES = 1000

FIELDS = ("id", "title", "category", "priority", "zones", "source", "ref", "volume", "start", "duration_s",
          "rrule", "exdates", "enabled")
_DEFAULTS = (("priority", ROUTINE), ("ref", None), ("rrule", None), ("exdates", ()), ("enabled", True))
_LOCAL = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})\Z")
_CATEGORY_VI = (("news", "tin tức"), ("security", "an ninh trật tự"), ("disaster", "phòng chống thiên tai"),
                ("campaign", "tuyên truyền"), ("health", "y tế"), ("music", "âm nhạc"), ("other", "khác"))


def _fail(code: str, vi: str, en: str, field_name: str | None = None) -> NoReturn:
    raise GatewayError(code, vi, en, field_name)


def _bad(name: str, vi: str, en: str) -> NoReturn:
    _fail("schedule." + name, vi, en, name)


def site_tz(tz_offset_hours: float) -> timezone:
    """The site's fixed-offset timezone (whole minutes, UTC-12 to UTC+14)."""
    ok = isinstance(tz_offset_hours, (int, float)) and not isinstance(tz_offset_hours, bool)
    if not ok or not -12 <= tz_offset_hours <= 14 or (tz_offset_hours * 60) % 1:
        _fail("planner.tz", "Múi giờ của xã không hợp lệ: %r" % (tz_offset_hours,),
              "Invalid site UTC offset: %r hours" % (tz_offset_hours,))
    return timezone(timedelta(minutes=int(tz_offset_hours * 60)))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- schedules -----------------------------------------------------------------------------------------


def _local(text: object, name: str) -> datetime:
    """'2026-05-01T05:30' -> naive datetime, 2000..2099 (every Unix time then fits the wire)."""
    m = _LOCAL.match(text) if isinstance(text, str) else None
    value = None
    if m:
        year, month, day, hour, minute = (int(g) for g in m.groups())
        try:
            value = datetime(year, month, day, hour, minute)
        except ValueError:
            pass
    if value is None or not 2000 <= value.year <= 2099:
        _bad(name, "%s phải là giờ địa phương dạng YYYY-MM-DDTHH:MM (năm 2000–2099), nhận được %r"
             % (name, text), "%s must be a local time YYYY-MM-DDTHH:MM (years 2000-2099), got %r" % (name, text))
    return value


@dataclass(frozen=True)
class Schedule:
    """A staff-entered broadcast schedule, validated. Build it with parse_schedule / Schedule.from_json."""

    id: str
    title: str
    category: str
    priority: int
    zones: tuple[str, ...]
    source: str
    ref: str | None
    volume: int
    start: str
    duration_s: int
    rrule: str | None
    exdates: tuple[str, ...]
    enabled: bool
    _rule: recurrence.Rule | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Any, known_zones: Iterable[str], tz_offset_hours: float) -> "Schedule":
        return parse_schedule(obj, known_zones, tz_offset_hours)

    def to_json(self) -> dict[str, Any]:
        out = dict((name, getattr(self, name)) for name in FIELDS)
        out["zones"], out["exdates"] = list(self.zones), list(self.exdates)
        return out


def _field_value(obj: dict[str, Any], name: str) -> Any:
    if name in obj:
        return obj[name]
    for key, default in _DEFAULTS:
        if key == name:
            return list(default) if isinstance(default, tuple) else default
    _bad(name, "Thiếu trường bắt buộc: %s" % name, "Missing required field: %s" % name)


def _check_zones(zones: object, known_zones: Iterable[str]) -> tuple[str, ...]:
    if not isinstance(zones, list) or not 1 <= len(zones) <= MAX_SCHEDULE_ZONES:
        _bad("zones", "Phải chọn từ 1 đến %d khu vực" % MAX_SCHEDULE_ZONES,
             "zones must list 1 to %d zones" % MAX_SCHEDULE_ZONES)
    known = set(known_zones)
    for zone in zones:
        if not isinstance(zone, str) or zone not in known:
            _bad("zones", "Khu vực không tồn tại: %r" % (zone,), "Unknown zone: %r" % (zone,))
        if zones.count(zone) > 1:
            _bad("zones", "Khu vực %s được chọn hai lần" % zone, "Zone %s is listed twice" % zone)
    return tuple(zones)


def _check_ref(source: str, ref: Any) -> str | None:
    if source == "line":
        if ref is not None:
            _bad("ref", "Nguồn line (đầu vào âm thanh) không có tham chiếu; để trống ref",
                 "Source line takes no ref; leave it null")
    elif source == "clip":
        if not isinstance(ref, str) or not re.fullmatch(r"[0-9a-f]{64}", ref):
            _bad("ref", "Clip phải được chỉ bằng mã băm SHA-256 (64 chữ số hex viết thường)",
                 "A clip is given by its SHA-256 content hash (64 lowercase hex digits)")
    else:
        try:
            check_token(ref, "stream id")
        except ProtocolError:
            _bad("ref", "Mã luồng phát không hợp lệ (1–40 ký tự chữ, số hoặc - _ . :)",
                 "Invalid stream id (1-40 letters, digits or - _ . :)")
    return ref


def parse_schedule(obj: Any, known_zones: Iterable[str], tz_offset_hours: float) -> Schedule:
    """Validate a staff-entered schedule (a JSON object) -> Schedule, or raise GatewayError."""
    tz = site_tz(tz_offset_hours)
    if not isinstance(obj, dict):
        _fail("schedule.invalid", "Lịch phát phải là một đối tượng JSON", "A schedule must be a JSON object")
    for name in obj:
        if name not in FIELDS:
            _fail("schedule.unknown_field", "Trường không được hỗ trợ: %r" % (name,), "Unknown field: %r" % (name,),
                  str(name))
    v = dict((name, _field_value(obj, name)) for name in FIELDS)
    sid = v["id"]
    try:
        check_token(sid, "schedule id", MAX_ID)
    except ProtocolError:
        _bad("id", "Mã lịch phải gồm 1–%d ký tự chữ, số hoặc - _ . :" % MAX_ID,
             "Schedule id must be 1-%d letters, digits or - _ . :" % MAX_ID)
    title = v["title"]
    if (not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE
            or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in title)):
        _bad("title", "Tiêu đề phải có 1–%d ký tự, không chứa ký tự điều khiển" % MAX_TITLE,
             "Title must be 1-%d characters without control characters" % MAX_TITLE)
    if v["category"] not in CATEGORIES:
        _bad("category", "Loại nội dung không hợp lệ: %r (chọn: %s)"
             % (v["category"], ", ".join("%s = %s" % kv for kv in _CATEGORY_VI)),
             "Unknown category %r (one of %s)" % (v["category"], ", ".join(CATEGORIES)))
    if not _is_int(v["priority"]) or not ROUTINE <= v["priority"] <= EMERGENCY:
        _bad("priority", "Mức ưu tiên phải là 0 (thông thường), 1 (ưu tiên) hoặc 2 (khẩn cấp)",
             "Priority must be 0 (routine), 1 (priority) or 2 (emergency)")
    zones = _check_zones(v["zones"], known_zones)
    if v["source"] not in SOURCES:
        _bad("source", "Nguồn phát phải là clip, stream hoặc line", "Source must be clip, stream or line")
    ref = _check_ref(v["source"], v["ref"])
    if not _is_int(v["volume"]) or not 0 <= v["volume"] <= 100:
        _bad("volume", "Âm lượng phải là số nguyên từ 0 đến 100", "Volume must be an integer from 0 to 100")
    start = _local(v["start"], "start").replace(tzinfo=tz)
    duration = v["duration_s"]
    if not _is_int(duration) or not 1 <= duration <= MAX_DURATION:
        _bad("duration_s", "Thời lượng phải từ 1 giây đến %d giờ (%d giây)" % (MAX_DURATION // 3600, MAX_DURATION),
             "Duration must be 1 s to %d h (%d s)" % (MAX_DURATION // 3600, MAX_DURATION))
    exdates = v["exdates"]
    if not isinstance(exdates, list) or len(exdates) > MAX_EXDATES:
        _bad("exdates", "Danh sách buổi hủy phải là danh sách (tối đa %d) thời điểm YYYY-MM-DDTHH:MM" % MAX_EXDATES,
             "exdates must be a list of at most %d local times YYYY-MM-DDTHH:MM" % MAX_EXDATES)
    for text in exdates:
        _local(text, "exdates")
    if not isinstance(v["enabled"], bool):
        _bad("enabled", "enabled phải là true hoặc false", "enabled must be true or false")
    rule = None
    if v["rrule"] is not None:
        rule = recurrence.parse_rule(v["rrule"])
        recurrence.check_rule(rule, start, duration, tz)
    return Schedule(sid, title, v["category"], v["priority"], zones, v["source"], ref, v["volume"], v["start"],
                    duration, v["rrule"], tuple(sorted(set(exdates))), v["enabled"], rule)


# --- occurrences ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Occurrence:
    """One concrete airing of a schedule, in Unix seconds."""

    schedule_id: str
    item_id: str  # f"{schedule_id}.{YYYYMMDDHHMM}" in local time: stable across re-planning
    start_utc: int
    end_utc: int
    priority: int
    zones: tuple[str, ...]
    source: str
    ref: str | None
    volume: int
    category: str

    def item(self, zones: Iterable[str] | None = None) -> BroadcastItem:
        """The protocol item, airing in `zones` (default: all of this occurrence's zones)."""
        return BroadcastItem(self.item_id, self.start_utc, self.end_utc, self.source, list(self.zones if zones is None else zones),
                             self.volume, self.priority, self.ref, self.category)

    def overlaps(self, other: "Occurrence") -> bool:
        return self.start_utc < other.end_utc and other.start_utc < self.end_utc


def _starts(schedule: Schedule, rule: recurrence.Rule | None, tz: timezone, after: datetime,
            before: datetime) -> list[datetime]:
    """Local starts s with after < s < before."""
    start = _local(schedule.start, "start").replace(tzinfo=tz)
    if rule is None:
        return [start] if after < start < before else []
    return recurrence.between(rule, start, tz, after, before)


def expand(schedules: Iterable[Schedule], window_start_utc: int, window_end_utc: int,
           tz_offset_hours: float) -> list[Occurrence]:
    """Every occurrence of the enabled schedules that overlaps [window_start, window_end), sorted by start."""
    tz = site_tz(tz_offset_hours)
    if not (_is_int(window_start_utc) and _is_int(window_end_utc)
            and 0 <= window_start_utc < window_end_utc <= MAX_TIME):
        _fail("planner.window", "Khoảng thời gian lập kế hoạch không hợp lệ",
              "Invalid planning window %r..%r" % (window_start_utc, window_end_utc))
    seen, out = set(), []
    for schedule in schedules:
        if schedule.id in seen:
            _fail("planner.duplicate_schedule", "Mã lịch %s bị trùng" % schedule.id,
                  "Schedule id %s is used twice" % schedule.id, "id")
        seen.add(schedule.id)
        if not schedule.enabled:
            continue
        rule = schedule._rule
        if schedule.rrule is not None and rule is None:  # built directly, not through parse_schedule
            rule = recurrence.parse_rule(schedule.rrule)
        dur = schedule.duration_s
        after = datetime.fromtimestamp(window_start_utc - dur, tz)
        before = datetime.fromtimestamp(window_end_utc, tz)
        cancelled = set(schedule.exdates)
        for when in _starts(schedule, rule, tz, after, before):
            if when.strftime("%Y-%m-%dT%H:%M") in cancelled:
                continue
            begin = int(when.timestamp())
            out.append(Occurrence(schedule.id, "%s.%s" % (schedule.id, when.strftime("%Y%m%d%H%M")), begin,
                                  begin + dur, schedule.priority, schedule.zones, schedule.source, schedule.ref,
                                  schedule.volume, schedule.category))
    out.sort(key=lambda o: (o.start_utc, o.item_id))
    return out


def conflicts(occurrences: Iterable[Occurrence]) -> list[tuple[Occurrence, Occurrence]]:
    """Pairs of occurrences that overlap in a shared zone at the same priority, earliest first.

    A higher priority simply preempts (principle 5), so it is no conflict.
    """
    ordered = sorted(occurrences, key=lambda o: (o.start_utc, o.item_id))
    found: list[tuple[Occurrence, Occurrence]] = []
    running: list[Occurrence] = []
    for occ in ordered:
        running = [r for r in running if r.end_utc > occ.start_utc]
        for other in running:
            if other.priority == occ.priority and other.item_id != occ.item_id and set(other.zones) & set(occ.zones):
                found.append((other, occ))
        running.append(occ)
    found.sort(key=lambda pair: (pair[0].start_utc, pair[0].item_id, pair[1].start_utc, pair[1].item_id))
    return found

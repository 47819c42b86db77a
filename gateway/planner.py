"""Broadcast planner: staff schedules -> occurrences -> each node's BroadcastPlan.

Pure logic: no I/O, no clock, no database. The gateway parses what staff
enter (`parse_schedule`), expands the schedules over a rolling horizon
(`expand`), cuts the part that concerns each node (`node_plan`) and pushes a
plan only when its content changed (`plan_digest`). `conflicts` lists the
clashes staff should see; `lamp_program_for` picks a node's lamp program.

Times: staff enter local "YYYY-MM-DDTHH:MM" in the site's fixed UTC offset
(Vietnam is UTC+7 all year, no DST); recurrences are RFC 5545 RRULEs in that
local time, expanded with dateutil.rrule on aware datetimes. A schedule's
`start` is its first occurrence (RFC 5545 leaves a DTSTART the rule does not
produce undefined, so it is refused). Only the part of RFC 5545 staff need
is accepted: FREQ (YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY), INTERVAL,
COUNT or UNTIL, BYMONTH, BYMONTHDAY, BYDAY, BYHOUR, BYMINUTE, BYSETPOS
(monthly/yearly), WKST.
"""
import calendar
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from dateutil import rrule as rr

from gateway.errors import GatewayError
from protocol.errors import ProtocolError
from protocol.messages import MAX_SEQ, MAX_TIME, SOURCES, check_token
from protocol.plan import (CATEGORIES, EMERGENCY, MAX_DURATION, MAX_ITEMS, MAX_ZONES, ROUTINE, BroadcastItem,
                           BroadcastPlan)
from protocol.topics import check_id

MAX_ID = 24  # "<id>.<YYYYMMDDHHMM>" must fit the protocol's 40-character item id
MAX_TITLE = 120
MAX_SCHEDULE_ZONES = 64  # a schedule may cover the whole commune; each item carries only its node's zones
MAX_EXDATES = 1000
MAX_RRULE = 200
MAX_INTERVAL = 999
MAX_COUNT = 1000  # COUNT rules are expanded from their start; longer series use UNTIL or no end
MAX_PER_DAY = 48
SEARCH_YEARS = 8  # a rule with no occurrence in this many years is refused (covers a 29 February)
OVERLAP_SAMPLE = 4000  # occurrences, or 400 days, checked for self-overlap

FIELDS = ("id", "title", "category", "priority", "zones", "source", "ref", "volume", "start", "duration_s",
          "rrule", "exdates", "enabled")
_DEFAULTS = (("priority", ROUTINE), ("ref", None), ("rrule", None), ("exdates", ()), ("enabled", True))
_LOCAL = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})\Z")
_UNTIL = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})(?:T([0-9]{2})([0-9]{2})([0-9]{2})(Z?))?\Z")
_BYDAY = re.compile(r"([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)\Z")
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_FREQS = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY")  # index = dateutil's constant
_PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "BYMONTH", "BYMONTHDAY", "BYDAY", "BYHOUR", "BYMINUTE",
          "BYSETPOS", "WKST")
_INT_LISTS = (("BYMONTH", 1, 12, False), ("BYMONTHDAY", -31, 31, True), ("BYHOUR", 0, 23, False),
              ("BYMINUTE", 0, 59, False), ("BYSETPOS", -366, 366, True))
_CATEGORY_VI = (("news", "tin tức"), ("security", "an ninh trật tự"), ("disaster", "phòng chống thiên tai"),
                ("campaign", "tuyên truyền"), ("health", "y tế"), ("music", "âm nhạc"), ("other", "khác"))


def _fail(code, vi, en, field_name=None):
    raise GatewayError(code, vi, en, field_name)


def _bad(name, vi, en):
    _fail("schedule." + name, vi, en, name)


def _bad_rule(vi, en, code="schedule.rrule"):
    _fail(code, "Lịch lặp không hợp lệ: " + vi, "Invalid recurrence rule: " + en, "rrule")


def site_tz(tz_offset_hours):
    """The site's fixed-offset timezone (whole minutes, UTC-12 to UTC+14)."""
    ok = isinstance(tz_offset_hours, (int, float)) and not isinstance(tz_offset_hours, bool)
    if not ok or not -12 <= tz_offset_hours <= 14 or (tz_offset_hours * 60) % 1:
        _fail("planner.tz", "Múi giờ của xã không hợp lệ: %r" % (tz_offset_hours,),
              "Invalid site UTC offset: %r hours" % (tz_offset_hours,))
    return timezone(timedelta(minutes=int(tz_offset_hours * 60)))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


# --- recurrence rules ---------------------------------------------------------------------------------


class _Rule:
    """An RRULE string checked and split into dateutil's keywords (by-parts as tuples, absent ones None)."""

    __slots__ = ("freq", "interval", "count", "until", "until_utc", "bymonth", "bymonthday", "byday",
                 "byhour", "byminute", "bysetpos", "wkst")

    def weekdays(self):
        return None if self.byday is None else set(wd for wd, _ in self.byday)

    def until_at(self, tz):
        if self.until is None:
            return None
        return self.until.replace(tzinfo=timezone.utc if self.until_utc else tz)


def _int_part(name, value, lo, hi):
    if not re.fullmatch(r"[+-]?[0-9]{1,4}", value) or not lo <= int(value) <= hi:
        _bad_rule("%s phải là số nguyên từ %d đến %d" % (name, lo, hi),
                  "%s must be an integer from %d to %d" % (name, lo, hi))
    return int(value)


def _parse_rule(text):
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_RRULE:
        _bad_rule("phải là chuỗi RRULE (RFC 5545) dài tối đa %d ký tự" % MAX_RRULE,
                  "must be an RFC 5545 RRULE string of at most %d characters" % MAX_RRULE)
    body = text.upper()
    if body.startswith("RRULE:"):
        body = body[6:]
    parts = {}
    for piece in body.split(";"):
        name, eq, value = piece.partition("=")
        if not eq or not value:
            _bad_rule("'%s' không có dạng TÊN=GIÁ_TRỊ" % piece, "'%s' is not NAME=VALUE" % piece)
        if name not in _PARTS:
            _bad_rule("phần %s không được hỗ trợ" % name, "part %s is not supported" % name)
        if name in parts:
            _bad_rule("phần %s xuất hiện hai lần" % name, "part %s appears twice" % name)
        parts[name] = value
    if "FREQ" not in parts:
        _bad_rule("thiếu FREQ", "FREQ is missing")
    freq = parts["FREQ"]
    if freq in ("MINUTELY", "SECONDLY"):
        _bad_rule("FREQ=%s quá dày; lặp nhiều nhất theo giờ (HOURLY)" % freq,
                  "FREQ=%s is too frequent; the finest allowed is HOURLY" % freq, "schedule.too_frequent")
    if freq not in _FREQS:
        _bad_rule("FREQ=%s không tồn tại" % freq, "FREQ=%s does not exist" % freq)
    rule = _Rule()
    rule.freq = _FREQS.index(freq)
    rule.interval = _int_part("INTERVAL", parts.get("INTERVAL", "1"), 1, MAX_INTERVAL)
    rule.count = _int_part("COUNT", parts["COUNT"], 1, MAX_COUNT) if "COUNT" in parts else None
    rule.until, rule.until_utc = None, False
    if "UNTIL" in parts:
        if rule.count is not None:
            _bad_rule("không dùng COUNT và UNTIL cùng lúc", "COUNT and UNTIL must not be used together")
        m = _UNTIL.match(parts["UNTIL"])
        try:
            if m.group(4) is None:  # a date: the whole local day is included
                rule.until = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), 23, 59, 59)
            else:
                rule.until = datetime(*(int(g) for g in m.groups()[:6]))
                rule.until_utc = m.group(7) == "Z"
        except (AttributeError, ValueError):
            _bad_rule("UNTIL phải có dạng YYYYMMDD hoặc YYYYMMDDTHHMMSS[Z]",
                      "UNTIL must be YYYYMMDD or YYYYMMDDTHHMMSS[Z]")
    for name, lo, hi, nonzero in _INT_LISTS:
        values = None
        if name in parts:
            values = tuple(sorted(set(_int_part(name, v, lo, hi) for v in parts[name].split(","))))
            if nonzero and 0 in values:
                _bad_rule("%s không được bằng 0" % name, "%s must not be 0" % name)
        setattr(rule, name.lower(), values)
    rule.byday = None
    if "BYDAY" in parts:
        days = []
        for token in parts["BYDAY"].split(","):
            m = _BYDAY.match(token)
            n = int(m.group(1)) if m and m.group(1) else None
            limit = {rr.MONTHLY: 5, rr.YEARLY: 53}.get(rule.freq, 0)
            if not m or (n is not None and not 1 <= abs(n) <= limit):
                _bad_rule("BYDAY '%s' không hợp lệ (thứ tự như 1MO, -1FR chỉ dùng với MONTHLY/YEARLY)" % token,
                          "BYDAY '%s' is invalid (ordinals such as 1MO, -1FR only with MONTHLY/YEARLY)" % token)
            days.append((_WEEKDAYS.index(m.group(2)), n))
        rule.byday = tuple(sorted(set(days), key=lambda d: (d[0], d[1] or 0)))
    wkst = parts.get("WKST", "MO")
    if wkst not in _WEEKDAYS:
        _bad_rule("WKST phải là MO..SU", "WKST must be MO..SU")
    rule.wkst = _WEEKDAYS.index(wkst)
    if rule.bysetpos is not None and rule.freq not in (rr.MONTHLY, rr.YEARLY):
        _bad_rule("BYSETPOS chỉ dùng với MONTHLY hoặc YEARLY", "BYSETPOS is only supported with MONTHLY or YEARLY")
    if rule.freq == rr.HOURLY and rule.byhour is None and rule.count is None and rule.until is None:
        _bad_rule("FREQ=HOURLY cần BYHOUR hoặc COUNT/UNTIL", "FREQ=HOURLY needs BYHOUR or COUNT/UNTIL",
                  "schedule.too_frequent")
    return rule


def _per_day(rule):
    """Upper bound of occurrences in one day."""
    minutes = len(rule.byminute) if rule.byminute else 1
    if rule.freq == rr.HOURLY:
        hours = math.ceil(24 / rule.interval)
        return minutes * (min(hours, len(rule.byhour)) if rule.byhour else hours)
    return minutes * (len(rule.byhour) if rule.byhour else 1)


def _build(rule, start, tz, dtstart=None):
    """The dateutil rule; everything dateutil would infer from DTSTART is given explicitly,
    so the same rule can be re-anchored at a later period start (see _anchor)."""
    bymonth, bymonthday, byweekday = rule.bymonth, rule.bymonthday, None
    if rule.byday is not None:
        byweekday = [rr.weekdays[wd](n) if n else rr.weekdays[wd] for wd, n in rule.byday]
    elif bymonthday is None:
        if rule.freq == rr.YEARLY:
            bymonth, bymonthday = bymonth or (start.month,), (start.day,)
        elif rule.freq == rr.MONTHLY:
            bymonthday = (start.day,)
        elif rule.freq == rr.WEEKLY:
            byweekday = [rr.weekdays[start.weekday()]]
    byhour = rule.byhour
    if byhour is None and rule.freq != rr.HOURLY:
        byhour = (start.hour,)
    return rr.rrule(rule.freq, dtstart=dtstart or start, interval=rule.interval, wkst=rule.wkst, count=rule.count,
                    until=rule.until_at(tz), bysetpos=rule.bysetpos, bymonth=bymonth, bymonthday=bymonthday,
                    byweekday=byweekday, byhour=byhour, byminute=rule.byminute or (start.minute,), bysecond=(0,))


def _anchor(rule, start, before):
    """The latest start of a recurrence period (year, month, week, day or hour of the INTERVAL
    lattice) at or before `before` and after `start`, or None. From there dateutil yields exactly
    what it would from `start`, without walking the years in between."""
    n, freq = rule.interval, rule.freq
    midnight = start.replace(hour=0, minute=0)
    if freq == rr.YEARLY:
        k = (before.year - start.year) // n
        point = midnight.replace(year=start.year + k * n, month=1, day=1) if k > 0 else None
    elif freq == rr.MONTHLY:
        k = ((before.year - start.year) * 12 + before.month - start.month) // n
        months = start.year * 12 + start.month - 1 + k * n
        point = midnight.replace(year=months // 12, month=months % 12 + 1, day=1) if k > 0 else None
    else:
        if freq == rr.HOURLY:
            origin, period = start.replace(minute=0), timedelta(hours=n)
        elif freq == rr.WEEKLY:
            origin, period = midnight - timedelta(days=(start.weekday() - rule.wkst) % 7), timedelta(days=7 * n)
        else:
            origin, period = midnight, timedelta(days=n)
        k = (before - origin) // period
        point = origin + k * period if k > 0 else None
    return point if point is not None and point <= before else None


def _day_ok(rule, d):
    if rule.bymonth and d.month not in rule.bymonth:
        return False
    last = calendar.monthrange(d.year, d.month)[1]
    if rule.bymonthday:
        if d.day not in rule.bymonthday and d.day - last - 1 not in rule.bymonthday:
            return False
    if rule.byday is None:
        return True
    if rule.freq == rr.YEARLY and not rule.bymonth:  # "20MO": the 20th Monday of the year
        index, length = d.timetuple().tm_yday, 366 if calendar.isleap(d.year) else 365
    else:  # "-1FR": the last Friday of the month
        index, length = d.day, last
    for wd, n in rule.byday:
        if wd == d.weekday() and (not n or (index - 1) // 7 + 1 == n or (length - index) // 7 + 1 == -n):
            return True
    return False


def _reachable_day(rule, start):
    """Is there, within SEARCH_YEARS, a day the rule's period lattice reaches and its day filters pass?

    A cheap pre-check: dateutil walks day by day through a rule that never matches (Feb 30, a
    weekday the INTERVAL never lands on) until the year 9999, which takes seconds.
    """
    d0 = start.date()
    n = rule.interval
    wds = rule.weekdays()
    if rule.freq == rr.WEEKLY and wds is None:
        wds = {d0.weekday()} if rule.bymonthday is None else set(range(7))
    week0 = d0 - timedelta(days=(d0.weekday() - rule.wkst) % 7)
    hours = rule.byhour if rule.byhour is not None else range(24)
    residues = set(h % n for h in hours)
    for k in range(SEARCH_YEARS * 366):
        d = d0 + timedelta(days=k)
        if rule.freq == rr.DAILY and k % n:
            continue
        if rule.freq == rr.WEEKLY and ((d - week0).days // 7 % n or d.weekday() not in wds):
            continue
        if rule.freq == rr.MONTHLY and ((d.year - d0.year) * 12 + d.month - d0.month) % n:
            continue
        if rule.freq == rr.YEARLY and (d.year - d0.year) % n:
            continue
        if rule.freq == rr.HOURLY and (start.hour - 24 * k) % n not in residues:
            continue
        if _day_ok(rule, d):
            return True
    return False


def _check_rule(rule, start, duration, tz):
    """Refuse rules that never air, air too often, or whose occurrences overlap each other."""
    if _per_day(rule) > MAX_PER_DAY:
        _bad_rule("quá %d buổi phát mỗi ngày" % MAX_PER_DAY, "more than %d occurrences a day" % MAX_PER_DAY,
                  "schedule.too_frequent")
    if rule.freq == rr.MONTHLY and rule.bysetpos and rule.bymonthday is None and rule.byday is not None:
        most = sum(1 if n else 5 for _, n in rule.byday) * len(rule.byhour or (1,)) * len(rule.byminute or (1,))
        if all(abs(p) > most for p in rule.bysetpos):
            _fail("schedule.no_occurrence", "Lịch lặp không tạo ra buổi phát nào (BYSETPOS vượt quá số ngày chọn)",
                  "The recurrence rule yields no occurrence (BYSETPOS beyond the days chosen)", "rrule")
    first = None
    if _reachable_day(rule, start):
        try:
            occurrences = iter(_build(rule, start, tz))
            first = next(occurrences, None)
        except ValueError:  # dateutil: BYHOUR unreachable with this INTERVAL
            first = None
    if first is None or first > start + timedelta(days=SEARCH_YEARS * 366):
        _fail("schedule.no_occurrence",
              "Lịch lặp không tạo ra buổi phát nào trong %d năm kể từ thời điểm bắt đầu" % SEARCH_YEARS,
              "The recurrence rule yields no occurrence within %d years of its start" % SEARCH_YEARS, "rrule")
    if first != start:
        _bad("start", "Thời điểm bắt đầu phải là buổi phát đầu tiên của lịch lặp; buổi đầu tiên sẽ là %s"
             % first.strftime("%Y-%m-%dT%H:%M"),
             "start must be the first occurrence of the rule; the first one would be %s"
             % first.strftime("%Y-%m-%dT%H:%M"))
    previous, horizon = first, start + timedelta(days=400)
    for i, when in enumerate(occurrences):
        gap = int((when - previous).total_seconds())
        if duration > gap:
            _fail("schedule.overlap",
                  "Các buổi phát của lịch này chồng lên nhau: thời lượng %d giây dài hơn khoảng cách %d giây "
                  "giữa hai buổi (%s và %s)" % (duration, gap, previous.strftime("%Y-%m-%dT%H:%M"),
                                                 when.strftime("%Y-%m-%dT%H:%M")),
                  "Occurrences of this schedule overlap: the duration (%d s) is longer than the %d s between "
                  "two of them (%s and %s)" % (duration, gap, previous.strftime("%Y-%m-%dT%H:%M"),
                                               when.strftime("%Y-%m-%dT%H:%M")), "duration_s")
        previous = when
        if i >= OVERLAP_SAMPLE or when > horizon:
            break


# --- schedules -----------------------------------------------------------------------------------------


def _local(text, name):
    """'2026-05-01T05:30' -> naive datetime, 2000..2099 (every Unix time then fits the wire)."""
    m = _LOCAL.match(text) if isinstance(text, str) else None
    try:
        value = datetime(*(int(g) for g in m.groups())) if m else None
    except ValueError:
        value = None
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
    zones: tuple
    source: str
    ref: str | None
    volume: int
    start: str
    duration_s: int
    rrule: str | None
    exdates: tuple
    enabled: bool
    _rule: _Rule | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj, known_zones, tz_offset_hours):
        return parse_schedule(obj, known_zones, tz_offset_hours)

    def to_json(self):
        out = dict((name, getattr(self, name)) for name in FIELDS)
        out["zones"], out["exdates"] = list(self.zones), list(self.exdates)
        return out


def _field_value(obj, name):
    if name in obj:
        return obj[name]
    for key, default in _DEFAULTS:
        if key == name:
            return list(default) if isinstance(default, tuple) else default
    _bad(name, "Thiếu trường bắt buộc: %s" % name, "Missing required field: %s" % name)


def _check_zones(zones, known_zones):
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


def _check_ref(source, ref):
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


def parse_schedule(obj, known_zones, tz_offset_hours):
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
        rule = _parse_rule(v["rrule"])
        _check_rule(rule, start, duration, tz)
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
    zones: tuple
    source: str
    ref: str | None
    volume: int
    category: str

    def item(self, zones=None):
        """The protocol item, airing in `zones` (default: all of this occurrence's zones)."""
        return BroadcastItem(self.item_id, self.start_utc, self.end_utc, self.source, list(self.zones if zones is None else zones),
                             self.volume, self.priority, self.ref, self.category)

    def overlaps(self, other):
        return self.start_utc < other.end_utc and other.start_utc < self.end_utc


def _starts(schedule, rule, tz, after, before):
    """Local starts s with after < s < before."""
    start = _local(schedule.start, "start").replace(tzinfo=tz)
    if rule is None:
        return [start] if after < start < before else []
    if start >= before:
        return []
    until = rule.until_at(tz)
    if until is not None and until <= after:
        return []
    anchor = _anchor(rule, start, after) if rule.count is None else None
    return _build(rule, start, tz, anchor).between(after, before)


def expand(schedules, window_start_utc, window_end_utc, tz_offset_hours):
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
            rule = _parse_rule(schedule.rrule)
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


# --- per-node plans ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodePlan:
    """A node's plan and what did not fit: `dropped` items (the latest ones) beyond MAX_ITEMS.

    When `dropped` > 0 the plan is complete only until `complete_until` (the start of the first
    dropped item): staff should be warned, and the gateway must re-plan before then.
    """

    plan: BroadcastPlan
    dropped: int = 0
    complete_until: int | None = None

    @property
    def digest(self):
        return plan_digest(self.plan)


def node_plan(occurrences, node_zones, version, now_utc):
    """The items that concern a node (its zones only) and have not ended, soonest first, at most MAX_ITEMS."""
    if not isinstance(node_zones, (list, tuple)) or len(node_zones) > MAX_ZONES:
        _fail("planner.node_zones", "Một nút chỉ thuộc tối đa %d khu vực" % MAX_ZONES,
              "A node belongs to at most %d zones" % MAX_ZONES, "zones")
    for zone in node_zones:
        try:
            check_id(zone, "zone id")
        except ProtocolError as e:
            _fail("planner.node_zones", "Mã khu vực không hợp lệ: %r" % (zone,), str(e), "zones")
    if not _is_int(version) or not 0 <= version <= MAX_SEQ:
        _fail("planner.version", "Số phiên bản kế hoạch không hợp lệ", "Invalid plan version %r" % (version,))
    mine = set(node_zones)
    chosen, ids = [], set()
    for occ in sorted(occurrences, key=lambda o: (o.start_utc, o.item_id)):
        zones = [z for z in occ.zones if z in mine]
        if not zones or occ.end_utc <= now_utc:
            continue
        if occ.item_id in ids:
            _fail("planner.duplicate_item", "Buổi phát %s bị lặp" % occ.item_id,
                  "Occurrence %s is listed twice" % occ.item_id)
        ids.add(occ.item_id)
        chosen.append(occ.item(zones))
    dropped = max(0, len(chosen) - MAX_ITEMS)
    complete_until = chosen[MAX_ITEMS].start if dropped else None
    return NodePlan(BroadcastPlan(version, chosen[:MAX_ITEMS]), dropped, complete_until)


def plan_digest(plan):
    """SHA-256 (hex) of a plan's items, not its version: equal content, equal digest."""
    if isinstance(plan, NodePlan):
        plan = plan.plan
    items = plan.to_json()["items"]
    return hashlib.sha256(json.dumps(items, separators=(",", ":"), ensure_ascii=True).encode()).hexdigest()


def conflicts(occurrences):
    """Pairs of occurrences that overlap in a shared zone at the same priority, earliest first.

    A higher priority simply preempts (principle 5), so it is no conflict.
    """
    ordered = sorted(occurrences, key=lambda o: (o.start_utc, o.item_id))
    found, running = [], []
    for occ in ordered:
        running = [r for r in running if r.end_utc > occ.start_utc]
        for other in running:
            if other.priority == occ.priority and other.item_id != occ.item_id and set(other.zones) & set(occ.zones):
                found.append((other, occ))
        running.append(occ)
    found.sort(key=lambda pair: (pair[0].start_utc, pair[0].item_id, pair[1].start_utc, pair[1].item_id))
    return found


# --- lamp programs -------------------------------------------------------------------------------------


def lamp_program_for(node_id, node_zones, node_programs, zone_programs, default):
    """A node's own program wins, else that of its first zone (in its zone order) that has one, else `default`."""
    own = node_programs.get(node_id)
    if own is not None:
        return own
    for zone in node_zones:
        program = zone_programs.get(zone)
        if program is not None:
            return program
    return default

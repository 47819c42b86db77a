"""Step 1 of the broadcast pipeline: one recurrence rule (the RFC 5545 subset staff may use).

Pure logic: no I/O, no clock, no database. `parse_rule` checks an RRULE
string and splits it into dateutil's keywords (`Rule`); `check_rule` refuses
a rule that never airs, airs more than MAX_PER_DAY times a day, or whose
occurrences overlap each other; `between` expands one rule, anchored at its
first occurrence, over a window without walking the years before it.
Next step: gateway/schedules.py (staff schedules -> occurrences).

Only the part of RFC 5545 staff need is accepted: FREQ (YEARLY, MONTHLY,
WEEKLY, DAILY, HOURLY), INTERVAL, COUNT or UNTIL, BYMONTH, BYMONTHDAY,
BYDAY, BYHOUR, BYMINUTE, BYSETPOS (monthly/yearly), WKST. Rules are in the
site's local time (a fixed UTC offset) and expanded with dateutil.rrule on
aware datetimes. A rule's start must be its first occurrence (RFC 5545
leaves a DTSTART the rule does not produce undefined).
"""
from __future__ import annotations

import calendar
import math
import re
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import NoReturn

from dateutil import rrule as rr

from gateway.errors import GatewayError

MAX_RRULE = 200
MAX_INTERVAL = 999
MAX_COUNT = 1000  # COUNT rules are expanded from their start; longer series use UNTIL or no end
MAX_PER_DAY = 48
SEARCH_YEARS = 8  # a rule with no occurrence in this many years is refused (covers a 29 February)
OVERLAP_SAMPLE = 4000  # occurrences, or 400 days, checked for self-overlap

_UNTIL = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})(?:T([0-9]{2})([0-9]{2})([0-9]{2})(Z?))?\Z")
_BYDAY = re.compile(r"([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)\Z")
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_FREQS = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY")  # index = dateutil's constant
_PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "BYMONTH", "BYMONTHDAY", "BYDAY", "BYHOUR", "BYMINUTE",
          "BYSETPOS", "WKST")
_INT_LISTS = (("BYMONTH", 1, 12, False), ("BYMONTHDAY", -31, 31, True), ("BYHOUR", 0, 23, False),
              ("BYMINUTE", 0, 59, False), ("BYSETPOS", -366, 366, True))


def _fail(code: str, vi: str, en: str, field_name: str | None = None) -> NoReturn:
    raise GatewayError(code, vi, en, field_name)


def _bad_rule(vi: str, en: str, code: str = "schedule.rrule") -> NoReturn:
    _fail(code, "Lịch lặp không hợp lệ: " + vi, "Invalid recurrence rule: " + en, "rrule")


class Rule:
    """An RRULE string checked and split into dateutil's keywords (by-parts as tuples, absent ones None)."""

    __slots__ = ("freq", "interval", "count", "until", "until_utc", "bymonth", "bymonthday", "byday",
                 "byhour", "byminute", "bysetpos", "wkst")
    freq: int
    interval: int
    count: int | None
    until: datetime | None  # naive: local time, or UTC when until_utc
    until_utc: bool
    bymonth: tuple[int, ...] | None
    bymonthday: tuple[int, ...] | None
    byday: tuple[tuple[int, int | None], ...] | None  # (weekday 0=MO, ordinal or None)
    byhour: tuple[int, ...] | None
    byminute: tuple[int, ...] | None
    bysetpos: tuple[int, ...] | None
    wkst: int

    def weekdays(self) -> set[int] | None:
        return None if self.byday is None else set(wd for wd, _ in self.byday)

    def until_at(self, tz: tzinfo) -> datetime | None:
        if self.until is None:
            return None
        return self.until.replace(tzinfo=timezone.utc if self.until_utc else tz)


def _int_part(name: str, value: str, lo: int, hi: int) -> int:
    if not re.fullmatch(r"[+-]?[0-9]{1,4}", value) or not lo <= int(value) <= hi:
        _bad_rule("%s phải là số nguyên từ %d đến %d" % (name, lo, hi),
                  "%s must be an integer from %d to %d" % (name, lo, hi))
    return int(value)


def parse_rule(text: str) -> Rule:
    """An RRULE string (with or without 'RRULE:') -> Rule, or raise GatewayError (code schedule.*)."""
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
    rule = Rule()
    rule.freq = _FREQS.index(freq)
    rule.interval = _int_part("INTERVAL", parts.get("INTERVAL", "1"), 1, MAX_INTERVAL)
    rule.count = _int_part("COUNT", parts["COUNT"], 1, MAX_COUNT) if "COUNT" in parts else None
    rule.until, rule.until_utc = None, False
    if "UNTIL" in parts:
        if rule.count is not None:
            _bad_rule("không dùng COUNT và UNTIL cùng lúc", "COUNT and UNTIL must not be used together")
        m = _UNTIL.match(parts["UNTIL"])
        try:
            if m is None:
                raise ValueError(parts["UNTIL"])
            if m.group(4) is None:  # a date: the whole local day is included
                rule.until = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), 23, 59, 59)
            else:
                year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
                rule.until = datetime(year, month, day, hour, minute, second)
                rule.until_utc = m.group(7) == "Z"
        except ValueError:
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


def _per_day(rule: Rule) -> int:
    """Upper bound of occurrences in one day."""
    minutes = len(rule.byminute) if rule.byminute else 1
    if rule.freq == rr.HOURLY:
        hours = math.ceil(24 / rule.interval)
        return minutes * (min(hours, len(rule.byhour)) if rule.byhour else hours)
    return minutes * (len(rule.byhour) if rule.byhour else 1)


def _build(rule: Rule, start: datetime, tz: tzinfo, dtstart: datetime | None = None) -> rr.rrule:
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


def _anchor(rule: Rule, start: datetime, before: datetime) -> datetime | None:
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


def _day_ok(rule: Rule, d: date) -> bool:
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


def _reachable_day(rule: Rule, start: datetime) -> bool:
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
        if rule.freq == rr.WEEKLY and ((d - week0).days // 7 % n or wds is None or d.weekday() not in wds):
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


def check_rule(rule: Rule, start: datetime, duration: int, tz: tzinfo) -> None:
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
        _fail("schedule.start", "Thời điểm bắt đầu phải là buổi phát đầu tiên của lịch lặp; buổi đầu tiên sẽ là %s"
              % first.strftime("%Y-%m-%dT%H:%M"),
              "start must be the first occurrence of the rule; the first one would be %s"
              % first.strftime("%Y-%m-%dT%H:%M"), "start")
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


def between(rule: Rule, start: datetime, tz: tzinfo, after: datetime, before: datetime) -> list[datetime]:
    """The rule's occurrences s, its first one at the aware local `start`, with after < s < before."""
    if start >= before:
        return []
    until = rule.until_at(tz)
    if until is not None and until <= after:
        return []
    anchor = _anchor(rule, start, after) if rule.count is None else None
    return _build(rule, start, tz, anchor).between(after, before)

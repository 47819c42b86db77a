"""The lamp program (TALQ-shaped) and its pure evaluation.

    {"version": 3,
     "days": {"normal": {"on": "sunset", "off": "sunrise", "level": 100,
                         "steps": [{"at": "23:00", "level": 40}, {"at": "04:30", "level": 0}],
                         "motion": {"level": 80, "hold": 120}},
              "tet": {"on": "sunset-15", "off": "sunrise+15", "level": 100}},
     "calendar": [{"day": "tet", "from": "2027-02-04", "to": "2027-02-12"},
                  {"day": "normal"}]}

Times are "HH:MM" or a sun anchor (sunset, sunrise, dusk, dawn = civil
twilight) with an optional offset in minutes ("sunset+15", "dawn-10").
Each night belongs to the date of its evening and spans noon to noon:
clock times from 12:00 fall on that date, earlier ones on the next
morning; sunset/dusk are the evening's, sunrise/dawn the next morning's.
The calendar's first matching rule, for the evening's date, picks the day
program; the last rule must match every date. Polar day/night (never in
Vietnam) are handled, not raised: no sunset means lamps stay off; no
sunrise means lamps stay on through the night frame.
"""
from protocol.errors import ProgramError
from protocol.fields import Fields, is_int
from protocol.messages import MAX_SEQ, MAX_TIME
from protocol.sun import POLAR_NIGHT, civil_from_days, days_from_civil, sun_times, weekday
from protocol.topics import check_id

MAX_DAYS = 8
MAX_RULES = 16
MAX_STEPS = 12
MAX_OFFSET = 180  # minutes either side of a sun event
ANCHORS = ("sunset", "sunrise", "dusk", "dawn")
_EVENING = ("sunset", "dusk")
NOON = 720
DAY_MIN = 1440


def parse_time(text):
    """'23:00' -> ('clock', 1380); 'sunset-15' -> ('sunset', -15)."""
    if not isinstance(text, str) or not 1 <= len(text) <= 12:
        raise ProgramError("a time must be 'HH:MM' or a sun event such as 'sunset+15', got %r" % (text,))
    if len(text) == 5 and text[2] == ":" and text[:2].isdigit() and text[3:].isdigit():
        hh, mm = int(text[:2]), int(text[3:])
        if hh > 23 or mm > 59:
            raise ProgramError("%r is not a clock time (00:00 to 23:59)" % text)
        return "clock", hh * 60 + mm
    for anchor in ANCHORS:
        if text.startswith(anchor):
            rest = text[len(anchor):]
            if not rest:
                return anchor, 0
            if rest[0] in "+-" and rest[1:].isdigit() and len(rest) <= 4:
                offset = int(rest)
                if abs(offset) > MAX_OFFSET:
                    raise ProgramError("offset in %r is over %d minutes" % (text, MAX_OFFSET))
                return anchor, offset
    raise ProgramError("a time must be 'HH:MM' or a sun event such as 'sunset+15', got %r" % (text,))


def format_time(point):
    anchor, minutes = point
    if anchor == "clock":
        return "%02d:%02d" % (minutes // 60, minutes % 60)
    if minutes == 0:
        return anchor
    return "%s%+d" % (anchor, minutes)


def _frame_clock(minutes):
    """A clock time's place in the noon-to-noon night frame, in minutes from the evening's midnight."""
    return minutes if minutes >= NOON else minutes + DAY_MIN


def _sun_event(sun, anchor):
    value = getattr(sun, anchor)
    if value is not None:
        return value
    # Polar: no event that day. Polar night keeps lamps on, polar day off.
    dark = sun.day_status == POLAR_NIGHT if anchor in ("sunset", "sunrise") else sun.twilight_status == POLAR_NIGHT
    if anchor in _EVENING:
        return NOON if dark else DAY_MIN
    return NOON if dark else 0


def resolve(point, evening_sun, morning_sun):
    """Minutes from the evening date's midnight at which `point` falls."""
    anchor, minutes = point
    if anchor == "clock":
        return _frame_clock(minutes)
    if anchor in _EVENING:
        return _sun_event(evening_sun, anchor) + minutes
    return DAY_MIN + _sun_event(morning_sun, anchor) + minutes


def _parse_date(text):
    """'2027-02-04' -> (2027, 2, 4); '12-24' (every year) -> (None, 12, 24)."""
    if not isinstance(text, str) or len(text) not in (5, 10):
        raise ProgramError("a date must be 'YYYY-MM-DD' or 'MM-DD', got %r" % (text,))
    parts = text.split("-")
    if not all(p.isdigit() for p in parts) or len(parts) != (3 if len(text) == 10 else 2):
        raise ProgramError("a date must be 'YYYY-MM-DD' or 'MM-DD', got %r" % (text,))
    nums = [int(p) for p in parts]
    year = nums[0] if len(nums) == 3 else None
    month, day = nums[-2], nums[-1]
    check_year = year if year is not None else 2000  # a leap year admits 02-29
    if not 1 <= month <= 12 or not 1 <= day <= 31 or civil_from_days(days_from_civil(check_year, month, day))[1:] != (month, day):
        raise ProgramError("%r is not a date" % text)
    return year, month, day


class DayProgram:
    def __init__(self, name, on, off, level=100, steps=(), motion=None):
        self.name = name
        self.on = on  # parsed points: (anchor, minutes)
        self.off = off
        self.level = level
        self.steps = list(steps)  # [(point, level)]
        self.motion = motion  # (level, hold seconds) or None

    @classmethod
    def from_json(cls, name, obj):
        f = Fields(obj, "days.%s" % name, ProgramError)
        on = f.checked("on", parse_time)
        off = f.checked("off", parse_time)
        level = f.int("level", 0, 100, 100)
        steps = []
        for i, raw in enumerate(f.list("steps", MAX_STEPS, [])):
            sf = Fields(raw, "days.%s.steps[%d]" % (name, i), ProgramError)
            steps.append((sf.checked("at", parse_time), sf.int("level", 0, 100)))
            sf.done()
        motion = None
        mf = f.child("motion", None)
        if mf is not None:
            motion = (mf.int("level", 1, 100), mf.int("hold", 1, 3600))
            mf.done()
        f.done()
        if on[0] == "clock" and off[0] == "clock" and _frame_clock(off[1]) <= _frame_clock(on[1]):
            f.fail("off", "must come after on (%s) within the night" % format_time(on))
        return cls(name, on, off, level, steps, motion)

    def to_json(self):
        obj = {"on": format_time(self.on), "off": format_time(self.off), "level": self.level}
        if self.steps:
            obj["steps"] = [{"at": format_time(p), "level": lvl} for p, lvl in self.steps]
        if self.motion:
            obj["motion"] = {"level": self.motion[0], "hold": self.motion[1]}
        return obj

    def schedule(self, evening_sun, morning_sun):
        """(on, off, [(minute, level)...] sorted) in minutes from the evening's midnight."""
        on = resolve(self.on, evening_sun, morning_sun)
        off = resolve(self.off, evening_sun, morning_sun)
        steps = sorted((resolve(p, evening_sun, morning_sun), lvl) for p, lvl in self.steps)
        return on, off, steps

    def level_in_night(self, minute, evening_sun, morning_sun):
        """(active, level) at `minute` from the evening's midnight."""
        on, off, steps = self.schedule(evening_sun, morning_sun)
        if not on <= minute < off:
            return False, 0
        level = self.level
        for at, lvl in steps:
            if at <= minute:
                level = lvl
        return True, level


class CalendarRule:
    def __init__(self, day, start=None, end=None, weekdays=None):
        self.day = day
        self.start = start  # (year or None, month, day)
        self.end = end
        self.weekdays = weekdays  # list of 0=Monday..6=Sunday, or None

    @classmethod
    def from_json(cls, obj, i):
        f = Fields(obj, "calendar[%d]" % i, ProgramError)
        day = f.checked("day", lambda v: check_id(v, "day program name"))
        start = f.checked("from", _parse_date, None)
        end = f.checked("to", _parse_date, None)
        weekdays = f.list("weekdays", 7, None)
        f.done()
        if (start is None) != (end is None):
            f.fail("to", "'from' and 'to' go together")
        if start is not None:
            if (start[0] is None) != (end[0] is None):
                f.fail("to", "'from' and 'to' must both have a year or both not")
            if start[0] is not None and days_from_civil(*end) < days_from_civil(*start):
                f.fail("to", "must not be before 'from'")
        if weekdays is not None:
            if not weekdays or any(not is_int(d) or not 0 <= d <= 6 for d in weekdays):
                f.fail("weekdays", "must list days 0 (Monday) to 6 (Sunday)")
        return cls(day, start, end, weekdays)

    @property
    def unconditional(self):
        return self.start is None and self.weekdays is None

    def matches(self, n):
        """Does the rule hold for the date `n` days after 1970-01-01?"""
        if self.weekdays is not None and weekday(n) not in self.weekdays:
            return False
        if self.start is None:
            return True
        y, m, d = civil_from_days(n)
        if self.start[0] is not None:
            return days_from_civil(*self.start) <= n <= days_from_civil(*self.end)
        md, lo, hi = (m, d), self.start[1:], self.end[1:]
        return lo <= md <= hi if lo <= hi else (md >= lo or md <= hi)  # annual ranges may wrap the new year

    def to_json(self):
        obj = {"day": self.day}
        for key, date in (("from", self.start), ("to", self.end)):
            if date is not None:
                obj[key] = ("%04d-%02d-%02d" % date) if date[0] is not None else ("%02d-%02d" % date[1:])
        if self.weekdays is not None:
            obj["weekdays"] = self.weekdays
        return obj


class Override:
    """A staff-set lamp level until a time; among live ones the latest set wins."""

    def __init__(self, level, until, set_at):
        self.level = level
        self.until = until
        self.set_at = set_at

    def to_json(self):
        return {"level": self.level, "until": self.until, "set_at": self.set_at}

    @classmethod
    def from_json(cls, obj):
        f = Fields(obj, "override", ProgramError)
        o = cls(f.int("level", 0, 100), f.int("until", 0, MAX_TIME), f.number("set_at", 0, MAX_TIME))
        f.done()
        return o


def live_override(overrides, now):
    best = None
    for o in overrides:
        if o.until > now and (best is None or o.set_at >= best.set_at):
            best = o
    return best


class LampDecision:
    """What the lamp should do now, and why (for telemetry and tests)."""

    def __init__(self, level, reason, day=None, active=False):
        self.level = level
        self.reason = reason  # "off", "program", "motion", "override", "photocell"
        self.day = day
        self.active = active

    def __repr__(self):
        return "LampDecision(%d, %s, %s)" % (self.level, self.reason, self.day)


class SunSource:
    """Sun times per day number for one place, caching the last few days."""

    def __init__(self, lat, lon, utc_offset_hours):
        self.lat = lat
        self.lon = lon
        self.tz = utc_offset_hours
        self._cache = {}

    def __call__(self, n):
        sun = self._cache.get(n)
        if sun is None:
            if len(self._cache) >= 4:
                self._cache.clear()
            y, m, d = civil_from_days(n)
            sun = self._cache[n] = sun_times(y, m, d, self.lat, self.lon, self.tz)
        return sun


class LampProgram:
    def __init__(self, version, days, calendar):
        self.version = version
        self.days = days  # name -> DayProgram
        self.calendar = calendar  # [CalendarRule], the last one unconditional

    @classmethod
    def from_json(cls, obj):
        f = Fields(obj, "program", ProgramError)
        version = f.int("version", 0, MAX_SEQ)
        raw_days = f.object("days")
        raw_rules = f.list("calendar", MAX_RULES)
        f.done()
        if not raw_days or len(raw_days) > MAX_DAYS:
            raise ProgramError("program.days must name 1 to %d day programs" % MAX_DAYS)
        days = {}
        for name, raw in raw_days.items():
            check_id(name, "day program name")
            days[name] = DayProgram.from_json(name, raw)
        rules = [CalendarRule.from_json(raw, i) for i, raw in enumerate(raw_rules)]
        if not rules or not rules[-1].unconditional:
            raise ProgramError("program.calendar must end with a rule without dates or weekdays (the default day)")
        for i, rule in enumerate(rules):
            if rule.day not in days:
                raise ProgramError("program.calendar[%d] names day program %r, which is not in days" % (i, rule.day))
        return cls(version, days, rules)

    def to_json(self):
        return {
            "version": self.version,
            "days": dict((name, day.to_json()) for name, day in self.days.items()),
            "calendar": [rule.to_json() for rule in self.calendar],
        }

    def day_for(self, n):
        """The day program for the night whose evening is day `n`."""
        for rule in self.calendar:
            if rule.matches(n):
                return self.days[rule.day]
        return self.days[self.calendar[-1].day]

    def decide(self, now, utc_offset_s, sun, motion_at=None, overrides=()):
        """Lamp level at Unix time `now`.

        `sun(n)` gives the sun times of local day n (see SunSource);
        `motion_at` is the Unix time of the last PIR trigger or None;
        `overrides` is a list of Override. Depends on nothing else.
        """
        o = live_override(overrides, now)
        if o is not None:
            return LampDecision(o.level, "override")
        local = now + utc_offset_s
        n = int(local // 86400)
        minute = (local - n * 86400) / 60.0
        if minute < NOON:
            n -= 1
            minute += DAY_MIN
        day = self.day_for(n)
        active, level = day.level_in_night(minute, sun(n), sun(n + 1))
        if not active:
            return LampDecision(0, "off", day.name)
        if day.motion and motion_at is not None and 0 <= now - motion_at < day.motion[1] and day.motion[0] > level:
            return LampDecision(day.motion[0], "motion", day.name, True)
        return LampDecision(level, "program", day.name, True)

    def fallback_level(self, dark):
        """Without valid time: the default day's first level when the photocell says dark."""
        return self.days[self.calendar[-1].day].level if dark else 0

    def __eq__(self, other):
        return isinstance(other, LampProgram) and self.to_json() == other.to_json()

    def __repr__(self):
        return "LampProgram(v%d, %s)" % (self.version, ", ".join(self.days))


def default_program():
    """What an unconfigured node runs: full light from sunset to sunrise."""
    return LampProgram.from_json(
        {"version": 0, "days": {"all-night": {"on": "sunset", "off": "sunrise", "level": 100}},
         "calendar": [{"day": "all-night"}]}
    )

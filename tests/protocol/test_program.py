from protocol.errors import ProgramError
from protocol.program import (LampProgram, Override, SunSource, default_program, format_time, parse_time)
from protocol.sun import sun_times
from tests.portable import raises, raises_with
from tests.protocol.samples import HANOI, MONDAY, PROGRAM, TZ

SUN = SunSource(*HANOI)
P = LampProgram.from_json(PROGRAM)


def at(day_start, hh, mm=0, ss=0):
    return day_start + hh * 3600 + mm * 60 + ss


def level(t, **kw):
    return P.decide(t, TZ, SUN, **kw).level


def _sun_minutes(y, m, d):
    s = sun_times(y, m, d, *HANOI)
    return s.sunset, s.sunrise, s.dusk, s.dawn


def test_round_trip():
    again = LampProgram.from_json(P.to_json())
    assert again == P and again.version == 3


def test_a_weeknight_dusk_part_night_dawn():
    sunset, _, _, _ = _sun_minutes(2026, 11, 23)
    _, sunrise, _, _ = _sun_minutes(2026, 11, 24)
    tue = MONDAY + 86400
    on = MONDAY + int(sunset * 60)
    off = tue + int(sunrise * 60)
    assert level(on - 30) == 0
    assert level(on + 1) == 100  # dusk: on
    assert level(at(MONDAY, 22, 59, 59)) == 100
    assert level(at(MONDAY, 23)) == 40  # part-night dim
    assert level(at(tue, 4, 29, 59)) == 40
    d = P.decide(at(tue, 4, 30), TZ, SUN)
    assert d.level == 0 and d.active and d.day == "normal"  # part-night off, still inside the active period
    assert level(off - 2) == 0
    assert P.decide(off + 1, TZ, SUN).reason == "off"
    assert level(at(tue, 12)) == 0


def test_monday_morning_belongs_to_sundays_night():
    # Sunday evening uses the weekend program (dusk..dawn, 70 %, 30 % from midnight).
    d = P.decide(at(MONDAY, 0, 30), TZ, SUN)
    assert d.day == "weekend" and d.level == 30
    d = P.decide(at(MONDAY - 86400, 21), TZ, SUN)
    assert d.day == "weekend" and d.level == 70


def test_dusk_and_dawn_are_civil_twilight():
    sat = MONDAY - 2 * 86400
    _, _, dusk, _ = _sun_minutes(2026, 11, 21)
    assert level(sat + int(dusk * 60) - 60) == 0
    assert level(sat + int(dusk * 60) + 60) == 70


def test_tet_range_wins_over_weekday_rules():
    # 2027-02-06 is a Saturday, inside the Tết range.
    d = P.decide(1801846800 + 20 * 3600, TZ, SUN)
    assert d.day == "tet" and d.level == 100


def test_annual_range_wraps_the_new_year():
    prog = dict(PROGRAM)
    prog["calendar"] = [{"day": "tet", "from": "12-30", "to": "01-02"}, {"day": "normal"}]
    p = LampProgram.from_json(prog)
    dec31 = 1798650000  # 2026-12-31 00:00 +07
    assert p.decide(dec31 + 20 * 3600, TZ, SUN).day == "tet"
    assert p.decide(dec31 + 2 * 86400 + 20 * 3600, TZ, SUN).day == "tet"  # Jan 2 evening
    assert p.decide(dec31 + 3 * 86400 + 20 * 3600, TZ, SUN).day == "normal"


def test_motion_boost_and_hold():
    t = at(MONDAY, 23, 30)  # dimmed to 40
    assert level(t, motion_at=t - 10) == 80
    assert level(t, motion_at=t - 119) == 80
    assert level(t, motion_at=t - 120) == 40  # hold over
    assert level(t, motion_at=t + 5) == 40  # a future trigger does not count
    assert level(at(MONDAY, 19), motion_at=at(MONDAY, 19)) == 100  # never lowers
    assert level(at(MONDAY, 12), motion_at=at(MONDAY, 12)) == 0  # not outside the active period
    assert P.decide(t, TZ, SUN, motion_at=t).reason == "motion"


def test_overrides_latest_wins_and_expire():
    t = at(MONDAY, 23, 30)
    a = Override(100, t + 600, t - 100)
    b = Override(10, t + 60, t - 50)
    assert level(t, overrides=[a, b]) == 10
    assert level(t + 61, overrides=[a, b]) == 100
    assert level(t + 601, overrides=[a, b]) == 40
    assert P.decide(t, TZ, SUN, overrides=[a]).reason == "override"
    assert level(at(MONDAY, 12), overrides=[Override(60, at(MONDAY, 13), 0)]) == 60  # even by day
    assert Override.from_json(a.to_json()).to_json() == a.to_json()


def test_time_strings():
    assert parse_time("23:00") == ("clock", 1380)
    assert parse_time("00:00") == ("clock", 0)
    assert parse_time("sunset") == ("sunset", 0)
    assert parse_time("sunset+15") == ("sunset", 15)
    assert parse_time("dawn-180") == ("dawn", -180)
    for text in ("sunset", "sunrise+5", "dusk-10", "04:30"):
        assert format_time(parse_time(text)) == text
    for bad in ("24:00", "12:60", "7:00", "noon", "sunset+181", "sunset+", "sunset*2", "", None, 5, "sunset+1.5"):
        raises(ProgramError, parse_time, bad)


def test_validation_errors_name_the_field():
    def broken(path, value):
        prog = {"version": 1, "days": {"d": {"on": "sunset", "off": "sunrise"}}, "calendar": [{"day": "d"}]}
        target = prog
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return prog

    cases = [
        (("days", "d", "level"), 101, "level"),
        (("days", "d", "on"), "sunset+200", "on"),
        (("days", "d", "steps"), [{"at": "23:00", "level": -1}], "steps[0].level"),
        (("days", "d", "motion"), {"level": 50}, "hold"),
        (("days", "d", "colour"), "red", "unknown field"),
        (("days", "d", "off"), "17:00", "off"),  # clock on/off pair in the wrong order
        (("calendar",), [{"day": "d", "weekdays": [1]}], "must end with"),
        (("calendar",), [{"day": "x"}], "not in days"),
        (("calendar",), [{"day": "d", "from": "2027-02-01"}, {"day": "d"}], "go together"),
        (("calendar",), [{"day": "d", "from": "2027-02-05", "to": "2027-02-01"}, {"day": "d"}], "before"),
        (("calendar",), [{"day": "d", "from": "2027-02-30", "to": "2027-03-01"}, {"day": "d"}], "not a date"),
        (("calendar",), [{"day": "d", "weekdays": [7]}, {"day": "d"}], "weekdays"),
        (("days",), {}, "1 to"),
        (("version",), -1, "version"),
    ]
    for path, value, text in cases:
        if path == ("days", "d", "off"):
            prog = broken(("days", "d", "on"), "18:00")
            prog["days"]["d"]["off"] = value
        else:
            prog = broken(path, value)
        raises_with(ProgramError, text, LampProgram.from_json, prog)


def test_polar_places_do_not_raise():
    p = default_program()
    north = SunSource(78.0, 15.0, 1)
    june = 1781910000  # 2026-06-20 00:00 +01
    december = 1797202800  # 2026-12-14 00:00 +01
    assert p.decide(june, 3600, north).level == 0  # midnight sun: lamps off
    assert p.decide(december, 3600, north).level == 100  # polar night: lamps on


def test_fallback_without_clock_uses_the_default_day():
    assert P.fallback_level(True) == 100
    assert P.fallback_level(False) == 0


def test_default_program_is_all_night():
    p = default_program()
    assert p.decide(at(MONDAY, 21), TZ, SUN).level == 100
    assert p.decide(at(MONDAY, 12), TZ, SUN).level == 0

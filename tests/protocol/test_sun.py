"""protocol.sun under pytest and MicroPython (portable: plain functions and asserts)."""
from protocol.errors import ProtocolError
from protocol.sun import (
    NORMAL,
    POLAR_DAY,
    POLAR_NIGHT,
    civil_from_days,
    days_from_civil,
    sun_times,
    weekday,
)
from tests.portable import raises, raises_with

HANOI = (21.0285, 105.8542)
CA_MAU = (9.1769, 105.1524)

# (place, date, dawn, sunrise, noon, sunset, dusk) at UTC+7, from astral 3.2
# (astral.sun with Observer(lat, lon, 0), civil depression 6), computed once.
REFERENCE = (
    (HANOI, (2024, 1, 1), "06:09:01", "06:33:37", "11:59:40", "17:25:59", "17:50:35"),
    (HANOI, (2024, 3, 20), "05:38:11", "06:00:45", "12:04:01", "18:07:28", "18:30:02"),
    (HANOI, (2024, 6, 21), "04:50:59", "05:16:15", "11:58:23", "18:40:37", "19:05:53"),
    (HANOI, (2024, 12, 21), "06:04:36", "06:29:17", "11:54:39", "17:20:13", "17:44:54"),
    (CA_MAU, (2024, 6, 21), "05:18:11", "05:41:38", "12:01:12", "18:20:52", "18:44:18"),
    (CA_MAU, (2025, 1, 15), "05:56:44", "06:19:34", "12:08:42", "17:58:03", "18:20:52"),
)
EVENTS = ("dawn", "sunrise", "noon", "sunset", "dusk")


def _minutes(clock):
    h, m, s = clock.split(":")
    return int(h) * 60 + int(m) + int(s) / 60.0


def test_sun_matches_astral_reference_values():
    for place, date, *clocks in REFERENCE:
        st = sun_times(date[0], date[1], date[2], place[0], place[1], 7)
        assert st.day_status == NORMAL and st.twilight_status == NORMAL, st
        for name, clock in zip(EVENTS, clocks):
            diff = abs(getattr(st, name) - _minutes(clock)) * 60
            assert diff <= 60, (place, date, name, clock, st, diff)


def test_sun_events_are_ordered_through_the_year():
    for place in (HANOI, CA_MAU):
        for n in range(days_from_civil(2024, 1, 1), days_from_civil(2025, 1, 1), 9):
            y, m, d = civil_from_days(n)
            st = sun_times(y, m, d, place[0], place[1], 7.0)
            assert 0 < st.dawn < st.sunrise < st.noon < st.sunset < st.dusk < 1440, st
            assert 10 * 60 < st.sunset - st.sunrise < 14 * 60, st


def test_sun_accepts_integer_coordinates_and_offsets():
    a = sun_times(2030, 7, 4, 21, 106, 7)
    b = sun_times(2030, 7, 4, 21.0, 106.0, 7.0)
    assert a.sunrise == b.sunrise and a.dusk == b.dusk


def test_sun_polar_day_and_night_do_not_raise():
    june = sun_times(2024, 6, 21, 78.0, 15.0, 2)  # Svalbard
    assert june.day_status == POLAR_DAY and june.twilight_status == POLAR_DAY
    assert june.sunrise is None and june.sunset is None
    assert june.dawn is None and june.dusk is None
    assert 0 <= june.noon < 1440
    december = sun_times(2024, 12, 21, 78.0, 15.0, 1)
    assert december.day_status == POLAR_NIGHT and december.twilight_status == POLAR_NIGHT
    assert december.sunrise is None and december.dusk is None
    south = sun_times(2024, 12, 21, -78.0, 166.7, 13)  # Antarctica in its summer
    assert south.day_status == POLAR_DAY


def test_sun_polar_night_with_civil_twilight():
    st = sun_times(2024, 12, 21, 70.0, 25.0, 1)  # the sun stays just under the horizon
    assert st.day_status == POLAR_NIGHT and st.sunrise is None and st.sunset is None
    assert st.twilight_status == NORMAL
    assert st.dawn < st.noon < st.dusk


def test_sun_white_night_without_civil_dusk():
    st = sun_times(2024, 6, 21, 64.0, 10.0, 1)  # sets, but never 6 degrees below
    assert st.day_status == NORMAL and st.sunrise < st.noon < st.sunset
    assert st.twilight_status == POLAR_DAY and st.dawn is None and st.dusk is None


def test_sun_pole_itself_is_accepted():
    assert sun_times(2024, 6, 21, 90, 0, 0).day_status == POLAR_DAY
    assert sun_times(2024, 6, 21, -90, 0, 0).day_status == POLAR_NIGHT


def test_sun_repr_shows_clock_times_and_status():
    text = repr(sun_times(2024, 6, 21, HANOI[0], HANOI[1], 7))
    assert text.startswith("SunTimes(") and "sunrise=05:1" in text and "day=normal" in text
    assert "sunrise=None" in repr(sun_times(2024, 6, 21, 78.0, 15.0, 2))


def test_sun_rejects_bad_coordinates_and_offsets():
    for args, word in (
        ((2024, 6, 21, 90.5, 105.0, 7), "lat"),
        ((2024, 6, 21, -91, 105.0, 7), "lat"),
        ((2024, 6, 21, 21.0, 180.5, 7), "lon"),
        ((2024, 6, 21, 21.0, -181, 7), "lon"),
        ((2024, 6, 21, 21.0, 105.0, 14.5), "utc_offset_hours"),
        ((2024, 6, 21, 21.0, 105.0, -15), "utc_offset_hours"),
        ((2024, 6, 21, float("nan"), 105.0, 7), "lat"),
        ((2024, 6, 21, "21.0", 105.0, 7), "lat"),
        ((2024, 6, 21, 21.0, None, 7), "lon"),
        ((2024, 6, 21, True, 105.0, 7), "lat"),
        ((2024, 6, 21, 21.0, 105.0, "+7"), "utc_offset_hours"),
    ):
        raises_with(ProtocolError, word, sun_times, *args)


def test_sun_rejects_impossible_dates():
    for args, word in (
        ((2024, 13, 1, 21.0, 105.0, 7), "2024-13-01"),
        ((2024, 0, 1, 21.0, 105.0, 7), "2024-00-01"),
        ((2023, 2, 29, 21.0, 105.0, 7), "2023-02-29"),
        ((2024, 2, 30, 21.0, 105.0, 7), "2024-02-30"),
        ((2024, 4, 31, 21.0, 105.0, 7), "2024-04-31"),
        ((2024, 1, 0, 21.0, 105.0, 7), "2024-01-00"),
        ((2024.0, 1, 1, 21.0, 105.0, 7), "year"),
        ((2024, "1", 1, 21.0, 105.0, 7), "month"),
        ((2024, 1, None, 21.0, 105.0, 7), "day"),
        ((1800, 1, 1, 21.0, 105.0, 7), "year"),
    ):
        raises_with(ProtocolError, word, sun_times, *args)
    assert isinstance(raises(ValueError, sun_times, 2024, 2, 30, 21.0, 105.0, 7), ProtocolError)
    assert sun_times(2024, 2, 29, 21.0, 105.0, 7).day_status == NORMAL


def test_sun_calendar_anchors():
    assert days_from_civil(1970, 1, 1) == 0
    assert days_from_civil(1969, 12, 31) == -1
    assert days_from_civil(2000, 1, 1) == 10957
    assert days_from_civil(2000, 3, 1) == 11017
    assert days_from_civil(2024, 2, 29) == 19782
    assert days_from_civil(2024, 3, 1) == 19783
    assert civil_from_days(0) == (1970, 1, 1)
    assert civil_from_days(11016) == (2000, 2, 29)
    assert civil_from_days(19782) == (2024, 2, 29)
    assert civil_from_days(-719468) == (0, 3, 1)


def test_sun_calendar_round_trip_across_leap_years():
    # walking day by day must visit every date once, with leap days only
    # in leap years (1900 and 2100 are not, 2000 is)
    for start, end in ((1899, 1901), (1999, 2001), (2023, 2025), (2099, 2101)):
        y, m, d = start, 1, 1
        n = days_from_civil(y, m, d)
        while y < end:
            assert civil_from_days(n) == (y, m, d), (n, y, m, d)
            assert days_from_civil(y, m, d) == n
            leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
            last = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[m - 1]
            d += 1
            if d > last:
                d, m = 1, m + 1
                if m > 12:
                    m, y = 1, y + 1
            n += 1


def test_sun_weekday_of_known_dates():
    assert weekday(0) == 3  # 1970-01-01 Thursday
    assert weekday(-1) == 2  # 1969-12-31 Wednesday
    assert weekday(days_from_civil(2000, 1, 1)) == 5  # Saturday
    assert weekday(days_from_civil(2024, 2, 29)) == 3  # Thursday
    assert weekday(days_from_civil(2025, 9, 2)) == 1  # Tuesday, Vietnam's National Day
    assert weekday(days_from_civil(2026, 2, 16)) == 0  # Monday
    assert weekday(days_from_civil(2026, 2, 22)) == 6  # Sunday

"""Sunrise, sunset, civil twilight and solar noon (NOAA solar calculator).

Times are minutes after local midnight of the asked date; polar day or night
is reported in a status, never raised. Runs on ESP32 MicroPython and CPython.
"""
import math

from protocol.errors import ProtocolError

NORMAL = "normal"
POLAR_DAY = "polar_day"
POLAR_NIGHT = "polar_night"

_RAD = math.pi / 180.0
_J2000 = 10957  # days_from_civil(2000, 1, 1)
_SUNRISE_ZENITH = 90.833  # refraction 34' plus the sun's radius 16'
_CIVIL_ZENITH = 96.0  # sun centre 6 degrees below the horizon


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (integers only)."""
    if m <= 2:  # count years from March so the leap day ends the year
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(n):
    """(year, month, day) of n days since 1970-01-01 (inverse of days_from_civil)."""
    n += 719468
    era = n // 146097
    doe = n - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def weekday(n):
    """Day of the week of n days since 1970-01-01: 0 = Monday ... 6 = Sunday."""
    return (n + 3) % 7  # 1970-01-01 was a Thursday


class SunTimes:
    """Sun events of one local date, in minutes after local midnight (or None).

    day_status / twilight_status: NORMAL, POLAR_DAY (the sun never goes below
    the horizon / below -6 degrees) or POLAR_NIGHT (never above). Polar means
    both events are None; a NORMAL event can be None only on the day a polar
    period starts or ends (or for a zone far from its longitude).
    """

    def __init__(self, dawn, sunrise, noon, sunset, dusk, day_status, twilight_status):
        self.dawn, self.sunrise, self.noon = dawn, sunrise, noon
        self.sunset, self.dusk = sunset, dusk
        self.day_status, self.twilight_status = day_status, twilight_status

    def __repr__(self):
        def hms(t):
            if t is None:
                return "None"
            s = int(t * 60 + 0.5)
            return "%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)

        return "SunTimes(dawn=%s sunrise=%s noon=%s sunset=%s dusk=%s day=%s twilight=%s)" % (
            hms(self.dawn), hms(self.sunrise), hms(self.noon), hms(self.sunset),
            hms(self.dusk), self.day_status, self.twilight_status)


def _position(n, utc):
    """Sun declination (radians) and equation of time (minutes) at `utc`
    minutes after 00:00 UTC of day n (days since 2000-01-01)."""
    # ESP32 floats are single precision (24-bit mantissa): a Julian Day ~2.46e6
    # would lose minutes, so days from J2000 stay an exact integer n, the day
    # fraction f stays small, and n*rate is taken modulo 360 as n - n*(1-rate).
    f = utc / 1440.0 - 0.5  # days since 12:00 UTC of day n
    t = (n + f) / 36525.0  # Julian centuries since J2000.0, only for slow terms
    l0 = (280.46646 + n % 360 - n * (524.23017 / 36525.0)
          + f * (36000.76983 / 36525.0) + 0.0003032 * t * t) % 360.0
    m = (357.52911 + n % 360 - n * (525.94971 / 36525.0)
         + f * (35999.05029 / 36525.0) - 0.0001537 * t * t) % 360.0
    e = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    mr = m * _RAD
    c = (math.sin(mr) * (1.914602 - t * (0.004817 + 0.000014 * t))
         + math.sin(2 * mr) * (0.019993 - 0.000101 * t) + math.sin(3 * mr) * 0.000289)
    omega = (125.04 - 1934.136 * t) * _RAD
    lam = (l0 + c - 0.00569 - 0.00478 * math.sin(omega)) * _RAD  # apparent longitude
    seconds = 21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))
    eps = (23.0 + (26.0 + seconds / 60.0) / 60.0 + 0.00256 * math.cos(omega)) * _RAD
    decl = math.asin(math.sin(eps) * math.sin(lam))
    y = math.tan(eps / 2) ** 2
    lr = l0 * _RAD
    eqt = (y * math.sin(2 * lr) - 2 * e * math.sin(mr)
           + 4 * e * y * math.sin(mr) * math.cos(2 * lr)
           - 0.5 * y * y * math.sin(4 * lr) - 1.25 * e * e * math.sin(2 * mr))
    return decl, 4.0 * eqt / _RAD


def _hour_angle(lat, decl, zenith):
    """Hour angle (degrees) when the sun is at `zenith`, or the polar status."""
    cos_h = ((math.cos(zenith * _RAD) - math.sin(lat) * math.sin(decl))
             / (math.cos(lat) * math.cos(decl)))
    if cos_h > 1.0:
        return POLAR_NIGHT
    if cos_h < -1.0:
        return POLAR_DAY
    return math.acos(cos_h) / _RAD


def _event(n, lat, lon, off, j, zenith, sign):
    """Local minutes of noon (sign 0), rise (-1) or set (+1) on solar day j;
    estimated from the sun at mean noon, then refined once at its own time."""
    mean_noon = 720.0 - 4.0 * lon + off + 1440 * j
    t = mean_noon
    for _ in range(2):
        decl, eqt = _position(n, t - off)
        h = _hour_angle(lat, decl, zenith) if sign else 0.0
        if isinstance(h, str):
            return h
        t = mean_noon - eqt + sign * 4.0 * h
    return t


def _pair(n, lat, lon, off, j, zenith):
    """(status, rise, set) for the zenith; an event on a neighbouring local
    date is replaced by the one of the neighbouring solar day, if any."""
    rise = _event(n, lat, lon, off, j, zenith, -1)
    if isinstance(rise, str):
        return rise, None, None
    if rise < 0:
        rise = _event(n, lat, lon, off, j + 1, zenith, -1)
    sets = _event(n, lat, lon, off, j, zenith, 1)
    if not isinstance(sets, str) and sets >= 1440:
        sets = _event(n, lat, lon, off, j - 1, zenith, 1)
    day = [t if not isinstance(t, str) and 0 <= t < 1440 else None for t in (rise, sets)]
    return NORMAL, day[0], day[1]


def _number(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError("%s must be a number, not %r" % (name, value))
    if not lo <= value <= hi:  # also refuses NaN
        raise ProtocolError("%s %r is outside %s..%s" % (name, value, lo, hi))
    return float(value)


def sun_times(year, month, day, lat, lon, utc_offset_hours):
    """SunTimes of the local date year-month-day at lat/lon (degrees, north
    and east positive) in a zone utc_offset_hours ahead of UTC."""
    for name, v in (("year", year), ("month", month), ("day", day)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ProtocolError("%s must be an integer, not %r" % (name, v))
    if not 1901 <= year <= 2099:  # NOAA's formulas are only claimed for these years
        raise ProtocolError("year %d is outside 1901..2099" % year)
    n = days_from_civil(year, month, day)
    if not 1 <= month <= 12 or civil_from_days(n) != (year, month, day):
        raise ProtocolError("%04d-%02d-%02d is not a calendar date" % (year, month, day))
    # the hour angle divides by cos(lat): keep clear of the poles, as astral does
    lat = min(max(_number("lat", lat, -90, 90), -89.8), 89.8) * _RAD
    lon = _number("lon", lon, -180, 180)
    off = _number("utc_offset_hours", utc_offset_hours, -14, 14) * 60.0
    n -= _J2000
    j = -int((720.0 - 4.0 * lon + off) // 1440)  # solar day whose mean noon is in this date
    noon = _event(n, lat, lon, off, j, 0.0, 0)
    if not 0 <= noon < 1440:  # mean noon near midnight: the true one is a day off
        j += 1 if noon < 0 else -1
        noon = _event(n, lat, lon, off, j, 0.0, 0)
    day_status, sunrise, sunset = _pair(n, lat, lon, off, j, _SUNRISE_ZENITH)
    twilight_status, dawn, dusk = _pair(n, lat, lon, off, j, _CIVIL_ZENITH)
    return SunTimes(dawn, sunrise, noon, sunset, dusk, day_status, twilight_status)

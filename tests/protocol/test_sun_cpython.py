"""protocol.sun against astral 3.2 (CPython only: pytest, hypothesis, astral)."""
import ast
import datetime
import math
import struct

from astral import Observer
from astral import sun as astral_sun
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol.sun
from protocol.sun import NORMAL, civil_from_days, days_from_civil, sun_times, weekday

TZ = datetime.timezone(datetime.timedelta(hours=7))
EVENTS = ("dawn", "sunrise", "sunset", "dusk")
TOLERANCE_S = 60.0


def astral_minutes(event, lat, lon, date):
    """Minutes after local (UTC+7) midnight of astral's event (depression 6 = civil)."""
    at = getattr(astral_sun, event)(Observer(lat, lon, 0), date, tzinfo=TZ)
    midnight = datetime.datetime(date.year, date.month, date.day, tzinfo=TZ)
    return (at - midnight).total_seconds() / 60.0


def differences(lat, lon, date):
    """{event: |ours - astral| in seconds} for one place and date."""
    ours = sun_times(date.year, date.month, date.day, lat, lon, 7)
    assert ours.day_status == NORMAL and ours.twilight_status == NORMAL, ours
    return {e: abs(getattr(ours, e) - astral_minutes(e, lat, lon, date)) * 60 for e in EVENTS}


@settings(max_examples=300, deadline=None)
@given(
    lat=st.floats(8.0, 24.0),
    lon=st.floats(102.0, 110.0),
    date=st.dates(datetime.date(2000, 1, 1), datetime.date(2050, 12, 31)),
)
def test_sun_within_a_minute_of_astral(lat, lon, date):
    for event, diff in differences(lat, lon, date).items():
        assert diff <= TOLERANCE_S, (lat, lon, date, event, diff)


def test_sun_worst_difference_vs_astral_on_a_grid(figure):
    worst, where, cases = 0.0, None, 0
    for year in (2000, 2001, 2012, 2024, 2025, 2037, 2049, 2050):
        start = datetime.date(year, 1, 1)
        for date in (start + datetime.timedelta(days=k) for k in range(0, 365, 7)):
            for lat in (8.0, 12.0, 16.0, 20.0, 24.0):
                for lon in (102.0, 106.0, 110.0):
                    for event, diff in differences(lat, lon, date).items():
                        cases += 1
                        if diff > worst:
                            worst, where = diff, (event, lat, lon, date.isoformat())
    figure("sun: worst difference vs astral = %.1f s over %d cases (%s)" % (worst, cases, where))
    assert worst <= TOLERANCE_S


# --- single-precision floats, as on the ESP32 ------------------------------


def _f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


class F32(float):
    """A float rounded to single precision after every operation."""

    def __new__(cls, x):
        return float.__new__(cls, _f32(float(x)))

    def __neg__(self):
        return F32(-float(self))


def _rounded(name):
    op = getattr(float, name)

    def method(a, b):
        if isinstance(b, bool) or not isinstance(b, (int, float)):
            return NotImplemented
        r = op(float(a), float(F32(b)) if isinstance(b, float) else b)
        return NotImplemented if r is NotImplemented else F32(r)

    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow"):
    setattr(F32, "__%s__" % _name, _rounded("__%s__" % _name))
    setattr(F32, "__r%s__" % _name, _rounded("__r%s__" % _name))


class _Math32:
    pi = F32(math.pi)
    sin, cos, tan, asin, acos = (
        staticmethod(lambda x, f=f: F32(f(float(x))))
        for f in (math.sin, math.cos, math.tan, math.asin, math.acos)
    )


class _Literals32(ast.NodeTransformer):
    """Every float literal and float() call in the module becomes F32(...)."""

    def visit_Constant(self, node):
        if isinstance(node.value, float):
            return ast.Call(ast.Name("F32", ast.Load()), [node], [])
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "float":
            node.func = ast.Name("F32", ast.Load())
        return node


def _single_precision_sun():
    with open(protocol.sun.__file__) as source:
        tree = ast.fix_missing_locations(_Literals32().visit(ast.parse(source.read())))
    module = {"__name__": "sun32", "F32": F32}
    exec(compile(tree, "sun32", "exec"), module)
    module["math"] = _Math32
    module["_RAD"] = F32(math.pi) / F32(180.0)
    return module["sun_times"]


def test_sun_single_precision_floats_lose_under_a_second(figure):
    sun32 = _single_precision_sun()
    worst = 0.0
    for n in range(days_from_civil(2000, 1, 1), days_from_civil(2051, 1, 1), 97):
        y, m, d = civil_from_days(n)
        for lat, lon in ((8.0, 102.0), (24.0, 110.0)):
            a, b = sun_times(y, m, d, lat, lon, 7), sun32(y, m, d, lat, lon, 7)
            for event in EVENTS + ("noon",):
                assert type(getattr(b, event)) is F32
                worst = max(worst, abs(getattr(a, event) - getattr(b, event)) * 60)
    figure("sun: worst single-precision error = %.3f s" % worst)
    assert worst < 1.0


# --- calendar ---------------------------------------------------------------

EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


@given(st.integers(datetime.date.min.toordinal(), datetime.date.max.toordinal()))
def test_sun_calendar_matches_datetime(ordinal):
    date = datetime.date.fromordinal(ordinal)
    n = ordinal - EPOCH_ORDINAL
    assert days_from_civil(date.year, date.month, date.day) == n
    assert civil_from_days(n) == (date.year, date.month, date.day)
    assert weekday(n) == date.weekday()

"""Property tests for lamp program and broadcast plan evaluation (CPython + hypothesis)."""
import json

from hypothesis import given, settings, strategies as st

from protocol.errors import ProtocolError
from protocol.plan import BroadcastPlan
from protocol.program import LampProgram, Override, SunSource
from tests.protocol.samples import CLIP

T0 = 946684800  # 2000-01-01
T1 = 2556057600  # 2050-12-31

anchors = st.sampled_from(["sunset", "sunrise", "dusk", "dawn"])
sun_time = st.tuples(anchors, st.integers(-180, 180)).map(lambda a: a[0] if a[1] == 0 else "%s%+d" % a)
clock_time = st.tuples(st.integers(0, 23), st.integers(0, 59)).map(lambda hm: "%02d:%02d" % hm)
times = st.one_of(sun_time, clock_time)
levels = st.integers(0, 100)
day_programs = st.fixed_dictionaries(
    {"on": st.one_of(sun_time, st.just("18:00")), "off": st.one_of(sun_time, st.just("05:00"))},
    optional={
        "level": levels,
        "steps": st.lists(st.fixed_dictionaries({"at": times, "level": levels}), max_size=5),
        "motion": st.fixed_dictionaries({"level": st.integers(1, 100), "hold": st.integers(1, 3600)}),
    },
)
date_rules = st.tuples(st.integers(1, 12), st.integers(1, 28), st.integers(1, 12), st.integers(1, 28)).map(
    lambda d: {"from": "%02d-%02d" % d[:2], "to": "%02d-%02d" % d[2:]})
weekday_rules = st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True).map(lambda w: {"weekdays": w})


@st.composite
def programs(draw):
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "tet"]), min_size=1, max_size=4, unique=True))
    days = {n: draw(day_programs) for n in names}
    rules = [dict(draw(st.one_of(date_rules, weekday_rules)), day=draw(st.sampled_from(names)))
             for _ in range(draw(st.integers(0, 4)))]
    rules.append({"day": draw(st.sampled_from(names))})
    return {"version": draw(st.integers(0, 1000)), "days": days, "calendar": rules}


places = st.tuples(st.floats(8, 24), st.floats(102, 110))
overrides = st.lists(st.builds(Override, levels, st.integers(T0, T1), st.integers(T0, T1)), max_size=3)


def _valid(prog_json):
    try:
        return LampProgram.from_json(prog_json)
    except ProtocolError:
        return None  # e.g. a clock on/off pair in the wrong order


@settings(max_examples=300, deadline=None)
@given(programs(), places, st.integers(T0, T1), st.one_of(st.none(), st.integers(T0, T1)), overrides)
def test_level_always_0_to_100(prog_json, place, t, motion, ovr):
    p = _valid(prog_json)
    if p is None:
        return
    d = p.decide(t, 7 * 3600, SunSource(place[0], place[1], 7), motion_at=motion, overrides=ovr)
    assert 0 <= d.level <= 100 and isinstance(d.level, int)


@settings(max_examples=150, deadline=None)
@given(programs(), places, st.lists(st.integers(T0, T1), min_size=1, max_size=8), st.integers(T0, T1))
def test_answer_does_not_depend_on_what_was_asked_before(prog_json, place, history, t):
    p = _valid(prog_json)
    if p is None:
        return
    warm = SunSource(place[0], place[1], 7)
    for h in history:
        p.decide(h, 7 * 3600, warm)
    fresh = LampProgram.from_json(prog_json)
    a = p.decide(t, 7 * 3600, warm)
    b = fresh.decide(t, 7 * 3600, SunSource(place[0], place[1], 7))
    assert (a.level, a.reason, a.day) == (b.level, b.reason, b.day)


@settings(max_examples=200, deadline=None)
@given(programs())
def test_program_round_trip(prog_json):
    p = _valid(prog_json)
    if p is None:
        return
    again = LampProgram.from_json(json.loads(json.dumps(p.to_json())))
    assert again == p


@settings(max_examples=100, deadline=None)
@given(programs(), places, st.integers(T0, T1))
def test_same_answer_after_a_reboot(prog_json, place, t):
    """A node that reboots reloads the stored JSON: the decision must not change."""
    p = _valid(prog_json)
    if p is None:
        return
    reloaded = LampProgram.from_json(json.loads(json.dumps(p.to_json())))
    sun = SunSource(place[0], place[1], 7)
    assert p.decide(t, 25200, sun).level == reloaded.decide(t, 25200, sun).level


items = st.builds(
    lambda i, s, dur, prio, zone: ["i%d" % i, s, dur, prio, "clip", CLIP, [zone], 50, "news"],
    st.integers(0, 10**6), st.integers(1000, 5000), st.integers(1, 3000), st.integers(0, 2),
    st.sampled_from(["z1", "z2"]),
)


@settings(max_examples=200)
@given(st.lists(items, max_size=20, unique_by=lambda i: i[0]), st.integers(0, 9000))
def test_plan_plays_the_highest_priority_active_item(raw, t):
    plan = BroadcastPlan.from_json({"version": 1, "items": raw})
    best = plan.active(t, ["z1"])
    live = [i for i in plan.items if i.start <= t < i.end and "z1" in i.zones]
    if not live:
        assert best is None
    else:
        assert best in live
        assert best.prio == max(i.prio for i in live)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_values)
def test_garbage_programs_give_program_errors(obj):
    for parse in (LampProgram.from_json, BroadcastPlan.from_json):
        try:
            parse(obj)
        except ProtocolError:
            pass

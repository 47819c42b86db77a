"""The broadcast pipeline (gateway/recurrence.py, schedules.py, node_plans.py): schedules -> occurrences ->
per-node plans (pure, CPython only)."""
import calendar
import time
from datetime import date, datetime, timedelta

import pytest
from dateutil.rrule import rrulestr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.node_plans import lamp_program_for, node_plan, plan_digest
from gateway.schedules import Schedule, conflicts, expand, parse_schedule
from protocol.messages import check_token
from protocol.plan import EMERGENCY, MAX_ITEMS, PRIORITY, ROUTINE, BroadcastPlan
from protocol.program import default_program

ZONES = ["thon-1", "thon-2", "thon-3", "cho"]
VN = 7
CLIP = "ab" * 32
DAY = 86400


def utc(text, offset=VN):
    """Unix seconds of a local 'YYYY-MM-DDTHH:MM' at a fixed UTC offset (hours)."""
    local = datetime.strptime(text, "%Y-%m-%dT%H:%M")
    return calendar.timegm(local.timetuple()) - int(offset * 3600)


def raw(**changes):
    obj = {"id": "tin-sang", "title": "Bản tin sáng", "category": "news", "priority": ROUTINE,
           "zones": ["thon-1", "thon-2"], "source": "clip", "ref": CLIP, "volume": 80,
           "start": "2026-01-01T05:30", "duration_s": 900, "rrule": "FREQ=DAILY;UNTIL=20261231T235959",
           "exdates": [], "enabled": True}
    obj.update(changes)
    return obj


def sched(**changes):
    return parse_schedule(raw(**changes), ZONES, VN)


def starts(occurrences):
    return [o.start_utc for o in occurrences]


# --- expansion ------------------------------------------------------------------------------------------


def test_daily_news_twice_a_day_for_a_year_in_a_7_day_window():
    morning = sched()
    evening = sched(id="tin-chieu", title="Bản tin chiều", start="2026-01-01T17:00")
    w0 = utc("2026-06-01T00:00")
    occ = expand([evening, morning], w0, w0 + 7 * DAY, VN)
    assert len(occ) == 14
    expected = []
    for d in range(1, 8):
        expected += [utc("2026-06-%02dT05:30" % d), utc("2026-06-%02dT17:00" % d)]
    assert starts(occ) == expected
    assert occ[0].start_utc == calendar.timegm((2026, 5, 31, 22, 30, 0))  # 05:30 at UTC+7 is 22:30 UTC the day before
    assert occ[1].start_utc == calendar.timegm((2026, 6, 1, 10, 0, 0))
    assert occ[0].item_id == "tin-sang.202606010530" and occ[1].item_id == "tin-chieu.202606011700"
    assert all(o.end_utc == o.start_utc + 900 for o in occ)
    assert occ[0].zones == ("thon-1", "thon-2") and occ[0].ref == CLIP and occ[0].category == "news"


def test_expansion_far_from_the_start_does_not_walk_the_years():
    old = sched(start="2000-01-01T05:30", rrule="FREQ=DAILY")
    hourly = sched(id="gio", start="2000-01-03T06:00", rrule="FREQ=HOURLY;INTERVAL=3;BYHOUR=6,9,12,15", duration_s=60)
    w0 = utc("2099-06-01T00:00")
    t = time.perf_counter()
    occ = expand([old, hourly], w0, w0 + 7 * DAY, VN)
    elapsed = time.perf_counter() - t
    assert len([o for o in occ if o.schedule_id == "tin-sang"]) == 7
    assert len([o for o in occ if o.schedule_id == "gio"]) == 28
    assert elapsed < 0.05


def test_weekly_byday():
    s = sched(start="2026-03-02T19:00", rrule="FREQ=WEEKLY;BYDAY=MO,WE,FR")  # 2 March 2026 is a Monday
    w0 = utc("2026-03-09T00:00")
    occ = expand([s], w0, w0 + 14 * DAY, VN)
    assert [o.item_id[-12:-4] for o in occ] == ["20260309", "20260311", "20260313", "20260316", "20260318",
                                               "20260320"]
    biweekly = sched(start="2026-03-03T19:00", rrule="FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH")
    occ = expand([biweekly], utc("2026-03-01T00:00"), utc("2026-04-01T00:00"), VN)
    assert [o.item_id[-8:-4] for o in occ] == ["0303", "0305", "0317", "0319", "0331"]


def test_count_and_until():
    s = sched(start="2026-03-02T19:00", rrule="FREQ=WEEKLY;BYDAY=MO,WE,FR;COUNT=12")
    occ = expand([s], utc("2026-01-01T00:00"), utc("2027-01-01T00:00"), VN)
    assert len(occ) == 12 and occ[-1].item_id == "tin-sang.202603271900"
    late = expand([s], utc("2026-03-20T00:00"), utc("2026-03-30T00:00"), VN)  # COUNT counted from the start
    assert [o.item_id[-12:] for o in late] == ["202603201900", "202603231900", "202603251900", "202603271900"]
    until = sched(rrule="FREQ=DAILY;UNTIL=20260110T053000")  # inclusive
    assert len(expand([until], utc("2025-12-01T00:00"), utc("2026-02-01T00:00"), VN)) == 10
    until_utc = sched(rrule="FREQ=DAILY;UNTIL=20260109T222959Z")  # a minute before the 10th (05:30+07 = 22:30Z)
    assert len(expand([until_utc], utc("2025-12-01T00:00"), utc("2026-02-01T00:00"), VN)) == 9
    until_date = sched(rrule="FREQ=DAILY;UNTIL=20260110")  # a date: the whole local day
    assert len(expand([until_date], utc("2025-12-01T00:00"), utc("2026-02-01T00:00"), VN)) == 10
    one_off = sched(rrule=None, start="2026-05-19T08:00")
    assert starts(expand([one_off], utc("2026-05-19T00:00"), utc("2026-05-20T00:00"), VN)) == [utc("2026-05-19T08:00")]


def test_monthly_last_friday_and_yearly():
    s = sched(start="2026-01-30T20:00", rrule="FREQ=MONTHLY;BYDAY=FR;BYSETPOS=-1")
    occ = expand([s], utc("2026-01-01T00:00"), utc("2026-07-01T00:00"), VN)
    assert [o.item_id[-12:-4] for o in occ] == ["20260130", "20260227", "20260327", "20260424", "20260529",
                                               "20260626"]
    far = expand([s], utc("2031-01-01T00:00"), utc("2031-03-01T00:00"), VN)
    assert [o.item_id[-12:-4] for o in far] == ["20310131", "20310228"]
    yearly = sched(start="2026-09-02T07:00", rrule="FREQ=YEARLY")  # Quốc khánh
    assert [o.item_id[-12:] for o in expand([yearly], utc("2030-01-01T00:00"), utc("2032-01-01T00:00"), VN)] == [
        "203009020700", "203109020700"]


def test_exdates_and_disabled():
    s = sched(exdates=["2026-06-03T05:30", "2026-06-05T05:30", "2026-06-03T05:31"])
    occ = expand([s], utc("2026-06-01T00:00"), utc("2026-06-08T00:00"), VN)
    assert [o.item_id[-12:-4] for o in occ] == ["20260601", "20260602", "20260604", "20260606", "20260607"]
    assert expand([sched(enabled=False)], utc("2026-06-01T00:00"), utc("2026-06-08T00:00"), VN) == []


def test_window_cutting_an_occurrence_is_inclusive_and_ends_are_exclusive():
    s = sched()
    t = utc("2026-06-01T05:30")
    assert starts(expand([s], t + 450, t + 600, VN)) == [t]  # window starts mid-broadcast
    assert starts(expand([s], t - 600, t + 1, VN)) == [t]  # window ends mid-broadcast
    assert expand([s], t + 900, t + 1000, VN) == []  # starts exactly at its end
    assert expand([s], t - 100, t, VN) == []  # ends exactly at its start


def test_fixed_offset_has_no_dst():
    s = sched(start="2026-03-27T05:30", rrule="FREQ=DAILY")  # Europe and the US change clocks around here
    occ = expand([s], utc("2026-03-27T00:00"), utc("2026-04-03T00:00"), VN)
    assert [b - a for a, b in zip(starts(occ), starts(occ)[1:])] == [DAY] * 6
    autumn = expand([s], utc("2026-10-20T00:00"), utc("2026-11-10T00:00"), VN)
    assert all(b - a == DAY for a, b in zip(starts(autumn), starts(autumn)[1:]))
    elsewhere = parse_schedule(raw(start="2026-03-27T05:30", rrule="FREQ=DAILY"), ZONES, -5)
    occ = expand([elsewhere], utc("2026-03-27T00:00", -5), utc("2026-03-29T00:00", -5), -5)
    assert starts(occ) == [utc("2026-03-27T05:30", -5), utc("2026-03-28T05:30", -5)]
    half = parse_schedule(raw(), ZONES, 5.5)
    assert starts(expand([half], utc("2026-02-01T00:00", 5.5), utc("2026-02-02T00:00", 5.5), 5.5)) == [
        calendar.timegm((2026, 2, 1, 0, 0, 0))]


def test_expand_refuses_duplicate_schedules_and_bad_windows():
    with pytest.raises(GatewayError) as e:
        expand([sched(), sched()], 0, DAY, VN)
    assert e.value.code == "planner.duplicate_schedule"
    for window in ((DAY, DAY), (DAY, 0), (-1, DAY), (0, 5_000_000_000)):
        with pytest.raises(GatewayError) as e:
            expand([sched()], *window, VN)
        assert e.value.code == "planner.window"


def test_schedule_round_trips_and_is_frozen():
    s = sched(exdates=["2026-06-05T05:30", "2026-06-03T05:30"], rrule="FREQ=WEEKLY;BYDAY=TH")
    again = Schedule.from_json(s.to_json(), ZONES, VN)
    assert again == s and again.to_json() == s.to_json()
    assert s.exdates == ("2026-06-03T05:30", "2026-06-05T05:30")
    with pytest.raises(AttributeError):
        s.volume = 10
    defaults = parse_schedule({k: v for k, v in raw(source="line", ref=None).items()
                               if k not in ("priority", "ref", "rrule", "exdates", "enabled")}, ZONES, VN)
    assert (defaults.priority, defaults.ref, defaults.rrule, defaults.exdates, defaults.enabled) == (
        ROUTINE, None, None, (), True)


# --- refusals -------------------------------------------------------------------------------------------

REFUSALS = [
    ({"colour": "red"}, "schedule.unknown_field", "colour"),
    ({"id": "a" * 25}, "schedule.id", "id"),
    ({"id": "tin sáng"}, "schedule.id", "id"),
    ({"title": ""}, "schedule.title", "title"),
    ({"title": "x" * 121}, "schedule.title", "title"),
    ({"title": "hai\ndòng"}, "schedule.title", "title"),
    ({"category": "ads"}, "schedule.category", "category"),
    ({"priority": 3}, "schedule.priority", "priority"),
    ({"priority": True}, "schedule.priority", "priority"),
    ({"zones": []}, "schedule.zones", "zones"),
    ({"zones": ["thon-9"]}, "schedule.zones", "zones"),
    ({"zones": ["thon-1", "thon-1"]}, "schedule.zones", "zones"),
    ({"source": "radio"}, "schedule.source", "source"),
    ({"ref": "AB" * 32}, "schedule.ref", "ref"),
    ({"ref": None}, "schedule.ref", "ref"),
    ({"source": "line"}, "schedule.ref", "ref"),
    ({"source": "stream", "ref": "mic/1"}, "schedule.ref", "ref"),
    ({"volume": 101}, "schedule.volume", "volume"),
    ({"volume": 50.0}, "schedule.volume", "volume"),
    ({"start": "2026-01-01 05:30"}, "schedule.start", "start"),
    ({"start": "2026-02-30T05:30"}, "schedule.start", "start"),
    ({"start": "2026-01-01T24:00"}, "schedule.start", "start"),
    ({"start": "1999-12-31T05:30"}, "schedule.start", "start"),
    ({"start": "2026-01-01T05:30:00"}, "schedule.start", "start"),
    ({"start": "2026-01-02T05:30", "rrule": "FREQ=WEEKLY;BYDAY=MO"}, "schedule.start", "start"),  # a Friday
    ({"duration_s": 0}, "schedule.duration_s", "duration_s"),
    ({"duration_s": 6 * 3600 + 1}, "schedule.duration_s", "duration_s"),
    ({"exdates": ["2026-06-03"]}, "schedule.exdates", "exdates"),
    ({"exdates": "2026-06-03T05:30"}, "schedule.exdates", "exdates"),
    ({"enabled": 1}, "schedule.enabled", "enabled"),
    ({"rrule": ""}, "schedule.rrule", "rrule"),
    ({"rrule": "INTERVAL=2"}, "schedule.rrule", "rrule"),
    ({"rrule": "FREQ=FORTNIGHTLY"}, "schedule.rrule", "rrule"),
    ({"rrule": "FREQ=DAILY;FREQ=DAILY"}, "schedule.rrule", "rrule"),
    ({"rrule": "FREQ=DAILY;BYYEARDAY=1"}, "schedule.rrule", "rrule"),
    ({"rrule": "FREQ=DAILY;X-NAME=1"}, "schedule.rrule", "rrule"),
    ({"rrule": "FREQ=DAILY;COUNT=0"}, "schedule.rrule", "rrule"),
    ({"rrule": "FREQ=DAILY;COUNT=5;UNTIL=20261231"}, "schedule.rrule", "rrule"),
    ({"rrule": "FREQ=DAILY;UNTIL=2026-12-31"}, "schedule.rrule", "rrule"),
    ({"rrule": "FREQ=DAILY;BYMONTH=13"}, "schedule.rrule", "rrule"),
    ({"rrule": "FREQ=WEEKLY;BYDAY=1MO"}, "schedule.rrule", "rrule"),
    ({"rrule": "FREQ=DAILY;BYSETPOS=1"}, "schedule.rrule", "rrule"),
    ({"rrule": "FREQ=SECONDLY"}, "schedule.too_frequent", "rrule"),
    ({"rrule": "FREQ=MINUTELY;COUNT=10"}, "schedule.too_frequent", "rrule"),
    ({"rrule": "FREQ=HOURLY"}, "schedule.too_frequent", "rrule"),
    ({"rrule": "FREQ=HOURLY;BYMINUTE=0,20,40;BYHOUR=5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21",
      "start": "2026-01-01T05:00", "duration_s": 60}, "schedule.too_frequent", "rrule"),
    ({"rrule": "FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23;BYMINUTE=0,20,40",
      "start": "2026-01-01T00:00", "duration_s": 60}, "schedule.too_frequent", "rrule"),
    ({"rrule": "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"}, "schedule.no_occurrence", "rrule"),
    ({"rrule": "FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=4,6,9,11"}, "schedule.no_occurrence", "rrule"),
    ({"rrule": "FREQ=DAILY;INTERVAL=7;BYDAY=MO"}, "schedule.no_occurrence", "rrule"),  # 1 Jan 2026 is a Thursday
    ({"rrule": "FREQ=MONTHLY;BYDAY=FR;BYSETPOS=6"}, "schedule.no_occurrence", "rrule"),
    ({"rrule": "FREQ=MONTHLY;BYDAY=1MO;BYMONTHDAY=8"}, "schedule.no_occurrence", "rrule"),  # the 1st Monday is <= 7
    ({"rrule": "FREQ=DAILY;UNTIL=20251231T235959"}, "schedule.no_occurrence", "rrule"),
    ({"rrule": "FREQ=HOURLY;INTERVAL=6;BYHOUR=7;COUNT=3"}, "schedule.no_occurrence", "rrule"),
    ({"rrule": "FREQ=DAILY", "duration_s": DAY // 4 + 1, "start": "2026-01-01T05:30"}, "schedule.duration_s",
     "duration_s"),
    ({"rrule": "FREQ=HOURLY;BYHOUR=5,6,7", "start": "2026-01-01T05:30", "duration_s": 3601},
     "schedule.overlap", "duration_s"),
    ({"rrule": "FREQ=HOURLY;INTERVAL=2;COUNT=5", "start": "2026-01-01T05:30", "duration_s": 7201},
     "schedule.overlap", "duration_s"),
    ({"rrule": "FREQ=WEEKLY;BYDAY=MO,TU;BYHOUR=22,2", "start": "2026-01-05T02:00", "duration_s": 5 * 3600},
     "schedule.overlap", "duration_s"),  # Monday 22:00 runs into Tuesday 02:00
]


@pytest.mark.parametrize("changes, code, field", REFUSALS)
def test_refusals_are_bilingual_and_name_the_field(changes, code, field):
    with pytest.raises(GatewayError) as e:
        sched(**changes)
    err = e.value
    assert (err.code, err.field) == (code, field), err.en
    assert err.vi and err.en and err.vi != err.en
    assert err.to_json()["message"] == err.vi


def test_missing_field_and_non_object_and_bad_offset():
    obj = raw()
    del obj["start"]
    with pytest.raises(GatewayError) as e:
        parse_schedule(obj, ZONES, VN)
    assert e.value.code == "schedule.start" and "Thiếu" in e.value.vi and "Missing" in e.value.en
    with pytest.raises(GatewayError) as e:
        parse_schedule([], ZONES, VN)
    assert e.value.code == "schedule.invalid"
    with pytest.raises(GatewayError) as e:
        parse_schedule(raw(), ZONES, 15)
    assert e.value.code == "planner.tz"


def test_impossible_rules_are_refused_quickly():
    t = time.perf_counter()
    for rule in ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "FREQ=WEEKLY;BYMONTH=4;BYMONTHDAY=31",
                 "FREQ=HOURLY;INTERVAL=7;BYHOUR=5;BYDAY=MO", "FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29",
                 "FREQ=MONTHLY;BYDAY=-1SU;BYMONTHDAY=1,2,3", "FREQ=MONTHLY;INTERVAL=2;BYMONTH=4"):
        with pytest.raises(GatewayError):
            sched(rrule=rule, start="2025-03-01T05:30")
    assert time.perf_counter() - t < 0.5  # dateutil alone walks to the year 9999: seconds each


# --- node plans -----------------------------------------------------------------------------------------


def occ_of(*schedules, w0=utc("2026-06-01T00:00"), days=2):
    return expand(list(schedules), w0, w0 + days * DAY, VN)


def test_node_plan_filters_zones_and_limits_item_zones():
    both = sched()
    market = sched(id="cho", zones=["cho"], source="line", ref=None, start="2026-01-01T06:00")
    np = node_plan(occ_of(both, market), ["thon-2", "cho"], 7, utc("2026-06-01T00:00"))
    assert np.dropped == 0 and np.complete_until is None and np.plan.version == 7
    assert [(i.id[:3], i.zones) for i in np.plan.items] == [("tin", ["thon-2"]), ("cho", ["cho"])] * 2
    assert node_plan(occ_of(both, market), ["thon-3"], 7, 0).plan.items == []
    assert [i.zones for i in node_plan(occ_of(both), ["thon-2", "thon-1"], 1, 0).plan.items][0] == ["thon-1", "thon-2"]


def test_node_plan_drops_ended_items_keeps_running_ones():
    occ = occ_of(sched(), days=3)
    t = utc("2026-06-02T05:30")
    running = node_plan(occ, ["thon-1"], 1, t + 899)
    assert [i.start for i in running.plan.items] == [t, t + DAY]
    ended = node_plan(occ, ["thon-1"], 1, t + 900)
    assert [i.start for i in ended.plan.items] == [t + DAY]


def test_node_plan_truncates_to_max_items_and_says_so():
    s = sched(rrule="FREQ=HOURLY;BYHOUR=5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20;BYMINUTE=0,30",
              start="2026-06-01T05:00", duration_s=600)
    occ = occ_of(s, days=3)
    assert len(occ) == 96
    np = node_plan(occ, ["thon-1"], 3, 0)
    assert len(np.plan.items) == MAX_ITEMS and np.dropped == 96 - MAX_ITEMS
    assert np.complete_until == occ[MAX_ITEMS].start_utc
    assert [i.id for i in np.plan.items] == [o.item_id for o in occ[:MAX_ITEMS]]
    assert BroadcastPlan.from_json(np.plan.to_json()) == np.plan


def test_node_plan_refuses_bad_input():
    with pytest.raises(GatewayError):
        node_plan([], ["Thôn 1"], 1, 0)
    with pytest.raises(GatewayError):
        node_plan([], ["z%d" % i for i in range(9)], 1, 0)
    with pytest.raises(GatewayError):
        node_plan([], ["thon-1"], -1, 0)
    occ = occ_of(sched())
    with pytest.raises(GatewayError) as e:
        node_plan(occ + occ[:1], ["thon-1"], 1, 0)
    assert e.value.code == "planner.duplicate_item"


def test_plan_digest_ignores_version_and_sees_every_change():
    base = sched()
    occ = occ_of(base)
    a = node_plan(occ, ["thon-1"], 1, 0)
    b = node_plan(occ, ["thon-1"], 2, 0)
    assert plan_digest(a.plan) == plan_digest(b.plan) == a.digest == plan_digest(b)
    assert plan_digest(node_plan(occ_of(sched()), ["thon-1"], 9, 0).plan) == plan_digest(a.plan)
    variants = [sched(volume=81), sched(priority=PRIORITY), sched(category="security"), sched(ref="cd" * 32),
                sched(duration_s=901), sched(start="2026-01-01T05:31"), sched(zones=["thon-1", "thon-3"]),
                sched(id="tin-sang-2"), sched(source="line", ref=None), sched(exdates=["2026-06-01T05:30"])]
    digests = {plan_digest(node_plan(occ_of(v), ["thon-1", "thon-3"], 1, 0).plan) for v in variants}
    digests.add(plan_digest(node_plan(occ, ["thon-1", "thon-3"], 1, 0).plan))
    assert len(digests) == len(variants) + 1
    assert plan_digest(node_plan(occ, ["thon-1"], 1, utc("2026-06-01T06:00")).plan) != plan_digest(a.plan)


# --- conflicts ------------------------------------------------------------------------------------------


def test_conflicts_same_priority_shared_zone_only():
    news = sched()
    campaign = sched(id="tuyen-truyen", category="campaign", start="2026-01-01T05:40", zones=["thon-2", "cho"])
    warning = sched(id="bao-lu", category="disaster", priority=EMERGENCY, start="2026-01-01T05:35")
    elsewhere = sched(id="cho", zones=["cho"], start="2026-01-01T05:30")
    after = sched(id="sau", start="2026-01-01T05:45")  # starts as the news ends: back to back, no clash
    found = conflicts(occ_of(news, campaign, warning, elsewhere, after, days=1))
    assert [(a.item_id, b.item_id) for a, b in found] == [
        ("cho.202606010530", "tuyen-truyen.202606010540"),
        ("tin-sang.202606010530", "tuyen-truyen.202606010540"),
        ("tuyen-truyen.202606010540", "sau.202606010545"),
    ]
    assert conflicts(occ_of(news, warning)) == []


# --- lamp programs --------------------------------------------------------------------------------------


def test_lamp_program_for():
    default = default_program()
    own, zone1, zone2 = object(), object(), object()
    zones = {"thon-1": zone1, "thon-2": zone2}
    assert lamp_program_for("n1", ["thon-2", "thon-1"], {"n1": own}, zones, default) is own
    assert lamp_program_for("n2", ["thon-3", "thon-2", "thon-1"], {"n1": own}, zones, default) is zone2
    assert lamp_program_for("n2", ["thon-3"], {"n1": own}, zones, default) is default
    assert lamp_program_for("n2", [], {}, {}, default) is default


# --- properties -----------------------------------------------------------------------------------------

WD = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
RICH = ["FREQ=MONTHLY;BYDAY=-1FR", "FREQ=MONTHLY;BYDAY=FR;BYSETPOS=-1", "FREQ=MONTHLY;BYDAY=2MO,4MO",
        "FREQ=MONTHLY;BYMONTHDAY=1,15,-1", "FREQ=YEARLY;BYMONTH=1,4,7,10;BYMONTHDAY=15", "FREQ=YEARLY;BYDAY=20MO",
        "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR", "FREQ=HOURLY;INTERVAL=5;BYHOUR=1,6,11,16,21", "FREQ=HOURLY;BYHOUR=8,20",
        "FREQ=WEEKLY;WKST=SU;BYDAY=SU,MO", "FREQ=DAILY;BYMONTH=3,4,5", "FREQ=WEEKLY;BYMONTH=6,7,8;BYDAY=SA",
        "FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=-1;BYHOUR=6,18"]


@st.composite
def schedules(draw, sid="s"):
    day = draw(st.dates(date(2025, 1, 1), date(2027, 12, 31)))
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    kind = draw(st.sampled_from(["once", "daily", "weekly", "monthly", "yearly", "hourly", "rich"]))
    duration = draw(st.integers(1, 3600))
    if kind == "rich":  # start moved to the rule's first occurrence, as the UI would
        rule = draw(st.sampled_from(RICH))
        if "HOURLY" not in rule and "BYMONTH=" not in rule:  # an INTERVAL must reach BYHOUR / BYMONTH
            rule += ";INTERVAL=%d" % draw(st.integers(1, 3))
        tentative = datetime(day.year, day.month, day.day, hour, minute)
        first = rrulestr(rule, dtstart=tentative)[0]
        day, hour, minute = first.date(), first.hour, first.minute
    elif kind == "once":
        rule = None
    elif kind == "daily":
        rule = "FREQ=DAILY;INTERVAL=%d" % draw(st.integers(1, 3))
        if draw(st.booleans()):
            hours = sorted(set(draw(st.lists(st.integers(0, 23), max_size=3))) | {hour})
            rule += ";BYHOUR=" + ",".join(map(str, hours))
    elif kind == "weekly":
        days = set(draw(st.lists(st.sampled_from(WD), max_size=4))) | {WD[day.weekday()]}
        rule = "FREQ=WEEKLY;INTERVAL=%d;BYDAY=%s" % (draw(st.integers(1, 2)), ",".join(sorted(days)))
    elif kind == "monthly":
        day = day.replace(day=min(day.day, 28))
        rule = "FREQ=MONTHLY"
    elif kind == "yearly":
        day = day.replace(day=min(day.day, 28))
        rule = "FREQ=YEARLY"
    else:
        hours = sorted(set(draw(st.lists(st.integers(0, 23), min_size=1, max_size=8))) | {hour})
        rule = "FREQ=HOURLY;BYHOUR=" + ",".join(map(str, hours))
    if rule is not None:
        end = draw(st.sampled_from(["none", "count", "until"]))
        if end == "count":
            rule += ";COUNT=%d" % draw(st.integers(1, 60))
        elif end == "until":
            rule += ";UNTIL=" + (day + timedelta(days=draw(st.integers(0, 400)))).strftime("%Y%m%dT235959")
    zones = draw(st.lists(st.sampled_from(ZONES), min_size=1, max_size=4, unique=True))
    source = draw(st.sampled_from(["clip", "stream", "line"]))
    ref = {"clip": CLIP, "stream": "mic-1", "line": None}[source]
    start = "%sT%02d:%02d" % (day.isoformat(), hour, minute)
    return raw(id=sid, start=start, rrule=rule, duration_s=duration, zones=zones, source=source, ref=ref,
               priority=draw(st.integers(0, 2)), volume=draw(st.integers(0, 100)), enabled=draw(st.booleans()))


FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(schedules(), min_size=1, max_size=5), st.integers(utc("2025-01-01T00:00"), utc("2028-06-01T00:00")),
       st.integers(1, 10 * DAY), st.lists(st.sampled_from(ZONES), max_size=4, unique=True), st.integers(0, 100))
def test_expansion_and_plans_are_well_formed(raws, w0, span, node_zones, version):
    parsed = [parse_schedule(dict(r, id="s%d" % i), ZONES, VN) for i, r in enumerate(raws)]
    occ = expand(parsed, w0, w0 + span, VN)
    assert occ == expand(list(reversed(parsed)), w0, w0 + span, VN)  # deterministic
    ids = [o.item_id for o in occ]
    assert len(set(ids)) == len(ids)
    assert starts(occ) == sorted(starts(occ))
    for o in occ:
        assert o.start_utc < w0 + span and o.end_utc > w0
        assert check_token(o.item_id) and len(o.item_id) <= 40
        assert parsed[int(o.schedule_id[1:])].enabled
    np = node_plan(occ, node_zones, version, w0)
    assert BroadcastPlan.from_json(np.plan.to_json()) == np.plan
    assert len(np.plan.items) + np.dropped == len([o for o in occ if set(o.zones) & set(node_zones)
                                                   and o.end_utc > w0])
    for schedule in parsed:
        assert Schedule.from_json(schedule.to_json(), ZONES, VN) == schedule


@FAST
@given(schedules(), st.integers(0, 3 * 365 * DAY), st.integers(1, 20 * DAY))
def test_expanding_from_afar_equals_walking_from_the_start(obj, offset, span):
    s = parse_schedule(dict(obj, enabled=True), ZONES, VN)
    w0 = utc(s.start) - DAY + offset
    walked = [o for o in expand([s], utc(s.start) - DAY, w0 + span, VN) if o.end_utc > w0]
    assert expand([s], w0, w0 + span, VN) == walked


BOUNDARY_RULES = [  # (start, rule): windows opening just after each local midnight test where expansion re-anchors
    ("2026-01-01T00:30", "FREQ=DAILY;INTERVAL=3"),
    ("2026-01-04T00:30", "FREQ=WEEKLY;INTERVAL=2;WKST=SU;BYDAY=SU,MO"),
    ("2026-01-05T00:30", "FREQ=WEEKLY;INTERVAL=3"),
    ("2026-01-01T00:30", "FREQ=MONTHLY;BYMONTHDAY=1,15,-1"),
    ("2026-01-01T00:30", "FREQ=MONTHLY;INTERVAL=2"),
    ("2026-01-30T00:30", "FREQ=MONTHLY;BYDAY=FR;BYSETPOS=-1"),
    ("2026-01-01T00:30", "FREQ=YEARLY;BYMONTH=1,3,5;BYMONTHDAY=1"),
    ("2026-01-01T00:30", "FREQ=HOURLY;INTERVAL=5;BYHOUR=0,5,10,15,20,1,6,11,16,21"),
    ("2026-03-01T00:30", "FREQ=DAILY;BYMONTH=3,5;BYDAY=MO,SU"),
]


@pytest.mark.parametrize("start, rule", BOUNDARY_RULES)
def test_reanchoring_at_period_boundaries_matches_walking(start, rule):
    s = sched(start=start, rrule=rule, duration_s=60)
    first, last = utc("2026-03-01T00:00"), utc("2026-07-01T00:00")
    walked = expand([s], utc(start) - DAY, last + DAY, VN)
    for w0 in range(first + 61, last, DAY):
        for span in (60, DAY):
            expected = [o for o in walked if o.start_utc < w0 + span and o.end_utc > w0]
            assert expand([s], w0, w0 + span, VN) == expected, (rule, w0)

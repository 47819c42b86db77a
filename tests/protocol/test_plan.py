from protocol.errors import ProgramError
from protocol.plan import EMERGENCY, PRIORITY, ROUTINE, BroadcastPlan, MAX_ITEMS
from tests.portable import raises_with
from tests.protocol.samples import item, plan

T = 1795314600
Z = ["thon-1"]


def test_round_trip():
    p = BroadcastPlan.from_json(plan([item("a", T, T + 600), item("b", T, T + 60, src="line", prio=EMERGENCY),
                                      item("c", T, T + 60, src="stream", zones=["thon-1", "thon-2"])]))
    assert BroadcastPlan.from_json(p.to_json()) == p
    assert p.version == 5 and len(p.items) == 3


def test_active_picks_highest_priority_then_newest():
    p = BroadcastPlan.from_json(plan([
        item("news", T, T + 1800, ROUTINE),
        item("warn", T + 600, T + 900, EMERGENCY, src="line"),
        item("camp", T + 300, T + 1200, PRIORITY),
        item("late", T + 100, T + 200, ROUTINE),
    ]))
    assert p.active(T - 1, Z) is None
    assert p.active(T, Z).id == "news"
    assert p.active(T + 150, Z).id == "late"  # equal priority: the newer one
    assert p.active(T + 400, Z).id == "camp"
    assert p.active(T + 600, Z).id == "warn"  # emergency preempts at once
    assert p.active(T + 899, Z).id == "warn"
    assert p.active(T + 900, Z).id == "camp"
    assert p.active(T + 1200, Z).id == "news"
    assert p.active(T + 1800, Z) is None  # end is exclusive


def test_zones_filter_and_lead():
    p = BroadcastPlan.from_json(plan([item("a", T, T + 60, zones=["thon-2"])]))
    assert p.active(T, ["thon-1"]) is None
    assert p.active(T, ["thon-1", "thon-2"]).id == "a"
    assert p.active(T - 5, ["thon-2"]) is None
    assert p.active(T - 5, ["thon-2"], lead=10).id == "a"  # amplifier warm-up


def test_wire_form_is_a_compact_array():
    p = BroadcastPlan.from_json(plan([item("a", T, T + 60, src="stream", prio=PRIORITY)]))
    assert p.to_json()["items"][0] == ["a", T, 60, 1, "stream", "live-1", ["thon-1"], 80, "news"]
    assert p.items[0].stream == "live-1" and p.items[0].clip is None and p.items[0].end == T + 60


def test_consume_releases_raw_items():
    raw = plan([item("a", T, T + 60), item("b", T, T + 60)])
    p = BroadcastPlan.from_json(raw, consume=True)
    assert raw["items"] == [None, None] and len(p.items) == 2


def test_pruned_drops_ended_items():
    p = BroadcastPlan.from_json(plan([item("a", T, T + 60), item("b", T + 100, T + 160)]))
    assert [i.id for i in p.pruned(T + 60).items] == ["b"]


def test_validation():
    raises_with(ProgramError, "dur", BroadcastPlan.from_json, plan([item("a", T, T)]))
    raises_with(ProgramError, "dur", BroadcastPlan.from_json, plan([item("a", T, T + 7 * 3600)]))
    raises_with(ProgramError, "twice", BroadcastPlan.from_json, plan([item("a", T, T + 1), item("a", T, T + 2)]))
    raises_with(ProgramError, "prio", BroadcastPlan.from_json, plan([item("a", T, T + 1, prio=3)]))
    raises_with(ProgramError, "vol", BroadcastPlan.from_json, plan([item("a", T, T + 1, vol=101)]))
    raises_with(ProgramError, "cat", BroadcastPlan.from_json, plan([item("a", T, T + 1, cat="gossip")]))
    too_many = [item("i%d" % i, T, T + 1) for i in range(MAX_ITEMS + 1)]
    raises_with(ProgramError, "at most", BroadcastPlan.from_json, plan(too_many))
    bad_hash = item("a", T, T + 1)
    bad_hash[5] = "AB" * 32
    raises_with(ProgramError, "clip", BroadcastPlan.from_json, plan([bad_hash]))
    no_ref = item("a", T, T + 1)
    no_ref[5] = None
    raises_with(ProgramError, "ref", BroadcastPlan.from_json, plan([no_ref]))
    line_ref = item("a", T, T + 1, src="line")
    line_ref[5] = "x"
    raises_with(ProgramError, "ref", BroadcastPlan.from_json, plan([line_ref]))
    extra = item("a", T, T + 1) + ["red"]
    raises_with(ProgramError, "must be a list", BroadcastPlan.from_json, plan([extra]))
    raises_with(ProgramError, "must be a list", BroadcastPlan.from_json, plan([{"id": "a"}]))
    raises_with(ProgramError, "plan.items", BroadcastPlan.from_json, {"version": 1, "items": "x"})

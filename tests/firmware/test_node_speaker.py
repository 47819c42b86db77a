"""The node's loudspeaker: plan, priorities, warm-up, commanded broadcasts (portable)."""
from protocol.plan import EMERGENCY, PRIORITY, ROUTINE
from tests.firmware.rig import MONDAY, PROGRAM, Rig, at

NEWS = at(MONDAY, 17)  # 17:00 daily news
CLIP = "ab" * 32


def _item(item_id, start, secs, prio=ROUTINE, zones=("thon-1",), src="line", vol=80, cat="news"):
    # the line input airs for the whole window: these tests are about relays, priorities and timing;
    # what a clip plays, to the sample, is test_node_audio.py's matter
    return [item_id, start, secs, prio, src, CLIP if src == "clip" else None, list(zones), vol, cat]


def _rig(t, items, **kw):
    rig = Rig(t, program=PROGRAM, plan={"version": 4, "items": items}, **kw)
    rig.boot()
    return rig


def test_plan_item_airs_with_warm_up_and_cool_down():
    rig = _rig(NEWS - 60, [_item("news-1", NEWS, 600)])
    b = rig.board
    try:
        assert not b.amp_power_state()
        rig.run(56.0)  # 16:59:56: 3 s warm-up not yet
        assert not b.amp_power_state()
        rig.run(1.0)  # 16:59:57: amplifier on, audio not routed yet
        assert b.amp_power_state() and b.audio_source_state() is None and b.zone_relays_state() == 0
        rig.run(3.0)  # 17:00
        assert b.audio_source_state() == "line" and b.zone_relays_state() == 0b01 and b.audio_volume_state() == 80
        assert [e.data["id"] for e in rig.events("broadcast_started")] == ["news-1"]
        rig.run(600.0)
        assert b.audio_source_state() is None and b.zone_relays_state() == 0
        ended = rig.events("broadcast_ended")
        assert ended[0].data["id"] == "news-1" and 599 <= ended[0].data["secs"] <= 600
        assert ended[0].data["cat"] == "news"
        assert b.amp_power_state()  # cooling down
        rig.run(10.0)
        assert not b.amp_power_state()
    finally:
        rig.close()


def test_emergency_preempts_at_once():
    rig = _rig(NEWS + 10, [_item("news-1", NEWS, 600), _item("camp", NEWS + 20, 60, prio=PRIORITY, src="line")])
    b = rig.board
    try:
        rig.run(4.0)
        assert rig.node.speaker.airing.id == "news-1"
        rig.run(10.0)
        assert rig.node.speaker.airing.id == "camp" and b.audio_source_state() == "line"
        ack = rig.send("broadcast_now", {"id": "lu-1", "dur": 120, "src": "line", "zones": ["thon-1", "thon-2"],
                                         "vol": 100, "prio": EMERGENCY})
        assert ack.applied
        # no tick needed: the command itself re-evaluates, and the amplifier is already warm
        assert rig.node.speaker.airing.id == "lu-1"
        assert b.zone_relays_state() == 0b11 and b.audio_volume_state() == 100
        interrupted = rig.events("broadcast_interrupted")
        assert interrupted[-1].data["id"] == "camp" and interrupted[-1].data["by"] == "lu-1"
        rig.run(121.0)
        assert rig.node.speaker.airing.id == "news-1"  # back to what is still scheduled
        assert rig.events("broadcast_ended")[-1].data["id"] == "lu-1"
    finally:
        rig.close()


def test_stop_broadcast_stops_the_current_item():
    rig = _rig(NEWS + 5, [_item("news-1", NEWS, 600)])
    try:
        rig.run(4.0)
        assert rig.node.speaker.airing.id == "news-1"
        assert rig.send("stop_broadcast", {}).applied
        assert rig.node.speaker.airing is None and rig.board.audio_source_state() is None
        rig.run(30.0)
        assert rig.node.speaker.airing is None  # stays stopped
    finally:
        rig.close()


def test_zones_map_to_relays_and_foreign_zones_do_not_air():
    rig = _rig(NEWS - 10, [_item("a", NEWS, 60, zones=["thon-2"]), _item("b", NEWS + 100, 60, zones=["thon-9"])])
    try:
        rig.run(15.0)
        assert rig.board.zone_relays_state() == 0b10
        rig.run(140.0)
        assert rig.node.speaker.airing is None and rig.board.zone_relays_state() == 0
    finally:
        rig.close()


def test_without_valid_time_the_plan_is_silent_but_commands_play():
    rig = _rig(NEWS + 5, [_item("news-1", NEWS, 600)], rtc_offset=None)
    try:
        rig.run(10.0)
        assert rig.node.speaker.airing is None and not rig.board.amp_power_state()
        rig.send("broadcast_now", {"id": "x", "dur": 30, "src": "line", "zones": ["thon-1"], "vol": 60})
        rig.run(4.0)  # it waits (bounded) for the time to judge its expiry
        assert rig.node.speaker.airing is None
        ms = int(rig.clock.now() * 1000)
        assert rig.send("time_sync", {"t1": rig.node.clock.request(), "t2": ms, "t3": ms}).applied
        rig.run(4.0)
        assert rig.node.speaker.airing.id == "x" and rig.board.audio_source_state() == "line"
        rig.run(30.0)
        assert rig.node.speaker.airing.id == "news-1"  # with the time known, the plan airs again
    finally:
        rig.close()


def test_safe_mode_airs_only_emergencies():
    rig = Rig(NEWS + 5, program=PROGRAM, plan={"version": 4, "items": [_item("news-1", NEWS, 600)]})
    try:
        for _ in range(3):
            rig.boot("watchdog")
            rig.board.power_cut()
        node = rig.boot("watchdog")
        assert node.safe_mode and "safe_mode" in rig.event_kinds()
        assert b'"safe":true' in node.birth()
        rig.run(10.0)
        assert node.speaker.airing is None
        rig.send("broadcast_now", {"id": "r", "dur": 30, "src": "line", "zones": ["thon-1"], "vol": 60})
        rig.run(4.0)
        assert node.speaker.airing is None
        rig.send("broadcast_now", {"id": "e", "dur": 30, "src": "line", "zones": ["thon-1"], "vol": 60,
                                   "prio": EMERGENCY})
        rig.run(4.0)
        assert node.speaker.airing.id == "e"
        rig.board.set_dark(True)
        rig.run(1.0)
        assert node.lamp.reason == "photocell"
        node2 = rig.reboot("power_on")  # a normal power-up leaves safe mode
        assert not node2.safe_mode
    finally:
        rig.close()

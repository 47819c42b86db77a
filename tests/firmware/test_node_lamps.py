"""The node's lamps, on the software board with a manual clock (portable)."""
from protocol.sun import sun_times
from tests.firmware.rig import MONDAY, Rig, at

TUESDAY = MONDAY + 86400


def _sun(y, m, d):
    return sun_times(y, m, d, 21.0285, 105.8542, 7)


SUNSET = MONDAY + int(_sun(2026, 11, 23).sunset * 60)
SUNRISE = TUESDAY + int(_sun(2026, 11, 24).sunrise * 60)


def _boot_at(t, **kw):
    rig = Rig(t, **kw)
    rig.boot()
    return rig


def test_boot_without_network_lamps_right_on_first_tick():
    cases = [
        (SUNSET + 60, 100, "dusk"),
        (at(MONDAY, 21), 100, "night"),
        (at(TUESDAY, 1), 40, "part-night dim"),
        (at(TUESDAY, 5), 0, "part-night off"),
        (SUNRISE + 60, 0, "after dawn"),
        (at(MONDAY, 14), 0, "day"),
    ]
    for t, want, what in cases:
        rig = _boot_at(t)
        try:
            assert rig.board.light() == want, (what, rig.board.light())
            assert rig.board.lamp_relay_state() == (want > 0), what
            assert rig.node.mqtt is None  # no network was touched
        finally:
            rig.close()


def test_a_whole_night_changes_at_the_programs_times():
    rig = _boot_at(at(MONDAY, 16))
    try:
        step = 5.0
        changes = []
        last = rig.board.light()
        while rig.clock.now() < at(TUESDAY, 8):
            rig.run(step, step)
            light = rig.board.light()
            if light != last and light in (0, 40, 100):
                changes.append((rig.clock.now(), light))
                last = light
        want = [(SUNSET, 100), (at(MONDAY, 23), 40), (at(TUESDAY, 4, 30), 0)]
        assert len(changes) == 3, changes
        for (t, light), (t_want, light_want) in zip(changes, want):
            assert light == light_want
            assert 0 <= t - t_want <= step + 2, (t, t_want)  # within a tick (+ the 2 s dim ramp)
        assert not rig.board.lamp_relay_state()  # off after sunrise
    finally:
        rig.close()


def test_dimming_ramps_take_time():
    rig = _boot_at(at(MONDAY, 22, 59, 59))
    try:
        rig.run(2.0)  # the 23:00 tick starts 100 -> 40 over 2 s; one second later it is half way
        assert 60 <= rig.board.light() <= 80, rig.board.light()
        rig.run(1.0)
        assert rig.board.light() == 40
    finally:
        rig.close()


def test_motion_boost_and_hold():
    rig = _boot_at(at(TUESDAY, 1))
    try:
        assert rig.board.light() == 40
        rig.board.trigger_motion()
        rig.run(3.0)
        assert rig.board.light() == 80
        rig.run(110.0)
        assert rig.board.light() == 80  # still held
        rig.run(15.0)
        assert rig.board.light() == 40  # 120 s hold over, ramped back
    finally:
        rig.close()


def test_dead_pir_gives_no_boost():
    rig = _boot_at(at(TUESDAY, 1))
    try:
        rig.board.pir_dead = True
        rig.board.trigger_motion()
        rig.run(3.0)
        assert rig.board.light() == 40
    finally:
        rig.close()


def test_burnt_lamp_is_detected_and_reported_once():
    rig = _boot_at(at(MONDAY, 21))
    try:
        rig.board.burnt = True
        rig.run(5.0)
        assert "lamp_fault" not in rig.event_kinds()  # must last fault_s (10 s)
        rig.run(10.0)
        faults = rig.events("lamp_fault")
        assert len(faults) == 1 and faults[0].data["ma"] == 0
        rig.run(60.0)
        assert len(rig.events("lamp_fault")) == 1
        rig.board.burnt = False  # replaced
        rig.run(2.0)
        assert rig.events("lamp_ok")[0].data["was"] == "lamp_fault"
    finally:
        rig.close()


def test_day_burner_is_detected():
    rig = _boot_at(at(MONDAY, 12))
    try:
        rig.board.relay_stuck = "closed"
        rig.run(15.0)
        assert len(rig.events("day_burner")) == 1
        assert rig.node.lamp.fault == "day_burner"
        assert rig.board.lamp_relay_state()  # the feedback reads the welded contact
    finally:
        rig.close()


def test_no_valid_time_lamps_follow_the_photocell():
    rig = _boot_at(at(MONDAY, 12), rtc_offset=None)
    try:
        assert rig.node.clock.state == "invalid"
        assert rig.board.light() == 0
        rig.board.set_dark(True)
        rig.run(1.0)
        assert rig.board.light() == 100
        assert rig.node.lamp.reason == "photocell"
        rig.board.set_dark(False)
        rig.run(1.0)
        assert rig.board.light() == 0
    finally:
        rig.close()


def test_energy_accumulates_and_survives_a_reboot():
    rig = _boot_at(at(MONDAY, 19))
    try:
        rig.run(3600.0, 10.0)  # one hour at 100 % of 60 W (+0.8 W driver)
        wh = rig.node.energy.value
        assert 59 < wh < 62, wh
        rig.node.energy.flush()
        rig.reboot()
        assert rig.node.energy.value == wh
    finally:
        rig.close()


def test_override_applies_then_expires():
    rig = _boot_at(at(MONDAY, 21))
    try:
        now = int(rig.clock.now())
        ack = rig.send("lamp_override", {"level": 20, "until": now + 60})
        assert ack.applied
        assert rig.node.lamp.level == 20
        rig.run(30.0)
        assert rig.board.light() == 20
        rig.reboot()  # survives a reboot until it expires
        assert rig.node.lamp.level == 20
        rig.run(40.0)
        assert rig.board.light() == 100
    finally:
        rig.close()

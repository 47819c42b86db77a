"""Weeks of uptime on a board whose ticks wrap like the ESP32's (period 2**30 ms) (portable)."""
from protocol.messages import Telemetry
from protocol.plan import EMERGENCY
from protocol.program import LampProgram, SunSource
from tests.firmware.rig import MONDAY, PROGRAM, Rig, at

DAY = 86400
WRAP = 1 << 30


def _expected(program, sun, t):
    return program.decide(int(t), 7 * 3600, sun).level


def test_fourteen_days_up_with_wrapping_ticks():
    start = at(MONDAY, 12)
    rig = Rig(start, ticks_offset=WRAP - 90 * 1000)  # the first wrap comes 90 s after boot
    rig.boot()
    program = LampProgram.from_json(PROGRAM)
    sun = SunSource(21.0285, 105.8542, 7)
    node, board = rig.node, rig.board
    step = 10.0
    t = 0.0
    last_up = -1
    wraps = 0
    last_ticks = board.ticks_ms()
    checked = wrong = 0
    first_wrong = None
    fault_day = 10
    try:
        while t < 15 * DAY:
            rig.clock.advance(step)
            t += step
            node.tick()
            ticks = board.ticks_ms()
            if ticks < last_ticks:
                wraps += 1
            last_ticks = ticks
            if int(t) % 60 == 0:  # what the link loop publishes, decoded as the gateway decodes it
                tele = Telemetry.decode(node.telemetry())
                assert tele.uptime >= last_up and abs(tele.uptime - t) <= 1, (t, tele.uptime)
                last_up = tele.uptime
            if int(t) % 600 == 0:
                now = rig.clock.now()
                want = _expected(program, sun, now)
                near = any(_expected(program, sun, now + d) != want for d in (-120, 120))
                if not near and not board.burnt:
                    checked += 1
                    got = board.light()
                    if got != want and not (want == 0 and got == 0):
                        wrong += 1
                        first_wrong = first_wrong or (t, got, want)
            if int(t) == 7 * DAY + 3600:  # a commanded broadcast across week one: its timer must still end it
                assert rig.send("broadcast_now", {"id": "e7", "dur": 120, "src": "line", "zones": ["thon-1"],
                                                  "vol": 90, "prio": EMERGENCY}).applied
            if int(t) == 7 * DAY + 3600 + 130:
                assert node.speaker.airing is None and board.audio_source_state() is None
            if int(t) == fault_day * DAY + 9 * 3600:  # 21:00 of day 10: the lamp burns out
                board.burnt = True
            while node.events.peek() is not None:  # the outbox, as the broker acks
                node.events.done(node.events.peek())
        assert wraps >= 1 and t >= 14 * DAY
        assert checked > 1000 and wrong == 0, (checked, wrong, first_wrong)
        assert node.lamp.fault == "lamp_fault"  # fault detection still works after ten days
        assert node.healthy()
    finally:
        rig.close()

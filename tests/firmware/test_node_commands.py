"""Signed commands on the node: applied once, every bad one rejected and reported (portable)."""
from protocol import commands
from tests.firmware.rig import MONDAY, PROGRAM, Rig, at
from tests.portable import raises


def _rig(t=None, **kw):
    rig = Rig(t or at(MONDAY, 21), **kw)
    rig.boot()
    return rig


def test_applied_once_even_when_retried_and_after_reboot():
    rig = _rig()
    try:
        now = int(rig.clock.now())
        topic, payload = rig.command("lamp_override", {"level": 30, "until": now + 3600})
        rig.node.handle_message(topic, payload)
        assert rig.last_ack().applied and rig.node.lamp.level == 30
        # staff clear the override with a newer command; then the gateway retries the old one
        rig.send("lamp_override", {"level": None, "until": now})
        rig.node.tick()
        assert rig.node.lamp.level == 100
        rig.node.handle_message(topic, payload)
        ack = rig.last_ack()
        assert ack.applied and ack.detail == "duplicate"  # same answer as the first time...
        assert rig.node.lamp.level == 100  # ...and no second effect
        rig.reboot()
        rig.node.handle_message(topic, payload)
        assert rig.last_ack().detail == "duplicate" and rig.node.lamp.level == 100
        assert rig.node.counter.value == 3  # 1 was the stored program's
    finally:
        rig.close()


def test_every_bad_command_is_rejected_acked_and_reported():
    rig = _rig()
    try:
        now = int(rig.clock.now())
        args = {"level": 5, "until": now + 600}
        rig.send("lamp_override", args)  # counter 1 accepted
        cases = [
            (dict(counter=2, cmd_id="c-replay"), commands.REPLAY),
            (dict(key=b"not the key at all............."), commands.BAD_SIGNATURE),
            (dict(expires=now - 1), commands.EXPIRED),
            (dict(node="den-khac"), commands.WRONG_TARGET),
        ]
        for kw, reason in cases:
            before = rig.node.lamp.level
            ack = rig.send("lamp_override", {"level": 77, "until": now + 600}, **kw)
            assert not ack.applied and ack.reason == reason, (kw, ack)
            assert rig.node.lamp.level == before
        rejected = rig.events("cmd_rejected")
        assert [e.data["reason"] for e in rejected] == [c[1] for c in cases]
        rig.node.handle_message(rig.node.topic["cmd"], b"garbage")
        assert rig.last_ack().reason == commands.MALFORMED
        rig.node.handle_message("denloa/xa-an-binh/node/den-khac/cmd", rig.command("reboot")[1])
        assert rig.last_ack().reason == commands.WRONG_TARGET
        assert rig.node.reboot_pending is None
    finally:
        rig.close()


def test_counter_is_persisted_before_the_effect():
    rig = _rig()
    try:
        rig.send("set_volume", {"vol": 40})
        assert rig.node.counter.value == 2
        rig.reboot()
        assert rig.node.counter.value == 2  # a power cut right after cannot re-open the counter
        assert rig.node.speaker.master_volume == 40
    finally:
        rig.close()


def test_set_program_is_stored_and_used_after_reboot():
    rig = _rig()
    try:
        prog = dict(PROGRAM)
        prog["version"] = 9
        prog["days"] = {"dim": {"on": "sunset", "off": "sunrise", "level": 55}}
        prog["calendar"] = [{"day": "dim"}]
        ack = rig.send("set_program", {"lamp": prog})
        assert ack.applied and rig.node.lamp.level == 55
        rig.run(3.0)
        assert rig.board.light() == 55
        rig.reboot()
        assert rig.node.program.version == 9 and rig.board.light() == 55
        assert b'"lamp":9' in rig.node.birth()
    finally:
        rig.close()


def test_time_sync_sets_an_invalid_clock_and_lamps_follow_the_program():
    rig = _rig(at(MONDAY, 21), rtc_offset=None)
    try:
        assert rig.node.clock.state == "invalid" and rig.board.light() == 0  # daylight photocell
        true_ms = int(rig.clock.now() * 1000)
        t1 = rig.node.clock.request()  # the node's own time request
        rig.clock.advance(0.2)  # 200 ms round trip, gateway answered in the middle
        ack = rig.send("time_sync", {"t1": t1, "t2": true_ms + 100, "t3": true_ms + 100})
        assert ack.applied
        assert abs(rig.board.time() - rig.clock.now()) <= 0.5  # set to the nearest second
        assert rig.node.clock.state == "synced"
        assert rig.board.light() == 100
        assert rig.events("clock_set")[0].data["rtt_ms"] == 200
    finally:
        rig.close()


def test_time_sync_fixes_a_clock_that_runs_far_ahead():
    rig = _rig(rtc_offset=86400 * 3)
    try:
        true = rig.clock.now()
        ms = int(true * 1000)
        # unsolicited, it looks expired to the node's wrong clock: refused, and the node asks itself
        ack = rig.send("time_sync", {"t1": None, "t2": ms, "t3": ms}, expires=int(true) + 60)
        assert not ack.applied and ack.reason == "expired"
        assert rig.node.time_request_due(rig.node.uptime.ms() + 61000)
        t1 = rig.node.clock.request()
        ack = rig.send("time_sync", {"t1": t1, "t2": ms, "t3": ms}, expires=int(true) + 60)
        assert ack.applied  # its own request answered: not "expired", although the node's clock said so
        assert abs(rig.board.time() - true) <= 0.5
    finally:
        rig.close()


def test_a_time_request_still_queued_is_not_asked_again():
    """A slow link must not fill the event queue with requests whose answers the node would refuse."""
    rig = _rig(rtc_offset=86400 * 3)
    try:
        now = rig.node.uptime.ms()
        assert rig.node.time_request_due(now + 61000)
        rig.node._last_time_request = now
        rig.node.emit("time_request", {"t1": rig.node.clock.request()})
        for later in (61000, 130000, 3600000):  # past the minute and the 2-minute give-up
            assert not rig.node.time_request_due(now + later)
        entry = [e for e in rig.node.events.pending if e[2] == "time_request"][0]
        while rig.node.events.pending[0] is not entry:  # the broker takes the queue in order
            rig.node.events.done(rig.node.events.peek())
        rig.node.events.done(rig.node.events.peek())
        assert not rig.node.events.queued("time_request")
        assert rig.node.time_request_due(now + 130000)  # sent, unanswered past 2 minutes: asked again
    finally:
        rig.close()


def test_override_without_valid_time_is_refused_cleanly():
    rig = _rig(rtc_offset=None)
    try:
        ack = rig.send("lamp_override", {"level": 10, "until": 2000000000})
        assert ack is None  # waits for the time to judge its expiry...
        rig.run(21.0)
        ack = rig.last_ack()  # ...then is refused, to be retried by the gateway
        assert not ack.applied and ack.reason == "clock_invalid"
        assert rig.node.overrides == []
    finally:
        rig.close()


def test_reboot_and_rebirth_and_self_test():
    rig = _rig()
    try:
        assert rig.send("self_test").applied
        result = rig.events("self_test")[0].data
        assert result["relay_ok"] and result["lamp_ma"] > 200
        assert rig.send("reboot").applied and rig.node.reboot_pending is not None
    finally:
        rig.close()


def test_rejected_verdict_is_never_applied():
    rig = _rig()
    try:
        topic, payload = rig.command("reboot", key=b"x" * 32)
        v = commands.verify(payload, topic, rig.cfg.site, rig.cfg.node, rig.cfg.key, 0, rig.clock.now())
        raises(Exception, v.accept, rig.node.counter.advance)
        assert rig.node.counter.value == 1  # unchanged
    finally:
        rig.close()


def test_a_retry_re_signed_with_a_newer_counter_has_no_second_effect():
    rig = _rig()
    try:
        assert rig.send("set_volume", {"vol": 30}, cmd_id="c-x").applied
        assert rig.send("set_volume", {"vol": 60}, cmd_id="c-y").applied
        again = rig.send("set_volume", {"vol": 30}, cmd_id="c-x")  # the gateway never saw the first ack
        assert again.applied and again.detail == "duplicate"
        assert rig.node.speaker.master_volume == 60
    finally:
        rig.close()


def test_a_rejected_command_can_be_retried_and_then_applies():
    rig = _rig(rtc_offset=None)
    try:
        until = 1795500000
        rig.send("lamp_override", {"level": 10, "until": until}, cmd_id="c-o")
        rig.run(21.0)
        first = rig.last_ack()
        assert first.reason == "clock_invalid"
        ms = int(rig.clock.now() * 1000)
        rig.send("time_sync", {"t1": rig.node.clock.request(), "t2": ms, "t3": ms})
        assert rig.send("lamp_override", {"level": 10, "until": until}, cmd_id="c-o").applied
        assert rig.node.lamp.level == 10
    finally:
        rig.close()

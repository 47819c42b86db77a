"""The node's event log: numbered, bounded, drops reported (portable)."""
from firmware.events import EventLog
from protocol.messages import Event


def _drain(log):
    out = []
    while True:
        payload = log.peek()
        if payload is None:
            return out
        out.append(Event.decode(payload))
        log.done(payload)


def test_events_are_numbered_from_zero_in_order():
    log = EventLog("ab12", capacity=8)
    for i in range(5):
        assert log.emit("motion", {"i": i}) == i
    got = _drain(log)
    assert [e.seq for e in got] == [0, 1, 2, 3, 4]
    assert all(e.boot_id == "ab12" for e in got)


def test_overflow_drops_the_oldest_and_says_how_many():
    log = EventLog("ab12", capacity=4)
    for i in range(10):
        log.emit("motion", {"i": i})
    got = _drain(log)
    assert [e.seq for e in got[:4]] == [6, 7, 8, 9]  # the newest four kept, in order
    report = got[4]
    assert report.kind == "events_dropped" and report.data == {"count": 6, "total": 6}
    assert report.seq == 10  # numbered in turn: the gateway sees the gap 0..5 and its reason


def test_done_ignores_a_payload_that_was_dropped_meanwhile():
    log = EventLog("ab12", capacity=2)
    log.emit("boot")
    first = log.peek()
    log.emit("motion")
    log.emit("motion")  # drops "boot" while it was being published
    log.done(first)  # the broker acked the dropped one: nothing else may be removed
    assert len(log) == 2

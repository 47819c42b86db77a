"""hardware/bench.py, the self-test the node runs, on a SoftBoard (portable: CPython and MicroPython).

The board's clock advances by itself when the bench sleeps (a manual SimClock
would never let a dimmer ramp move), so the 20 s of waits take no real time.
"""
import json

from hardware.bench import run
from hardware.softboard import SimClock, SoftBoard

T0 = 1_780_000_000


class _StepClock(SimClock):
    """SimClock whose sleep_ms moves time forward by ms, then yields."""

    def sleep_ms(self, ms):
        self.advance(ms / 1000)
        return SimClock.sleep_ms(self, ms)


def _bench(now=T0, motion=True, **faults):
    board = SoftBoard(_StepClock(T0), zones=4, rtc="ds3231")
    board.set_dark(True)
    for name, value in faults.items():
        setattr(board, name, value)
    if motion:
        board.trigger_motion()
    lines = []
    run(board, "denloa-v1", now=now, pir_wait_ms=2000, emit=lines.append)
    assert lines[-1] == "BENCH-END"
    results = {}
    for line in lines[:-1]:
        if line.startswith("BENCH "):
            r = json.loads(line[6:])
            results[r["part"]] = (r["ok"], r["code"])
    assert board._relay_cmd is False and board.amp_power_state() is False  # left off
    return results


def test_a_good_board_passes_every_check():
    results = _bench()
    failed = [p for p, (ok, _code) in results.items() if ok is False]
    assert failed == [], results
    for part in ("lamp_relay", "lamp_feedback", "lamp_ct", "dimmer", "tone", "rtc", "photocell", "pir"):
        assert results[part][0] is True, (part, results[part])
    assert results["zone4"] == (None, "listen")


def test_a_miswired_lamp_relay_fails_as_not_closing():
    results = _bench(miswired=["lamp_relay"])
    assert results["lamp_relay"] == (False, "not_closing")
    assert results["dimmer"] == (None, "skipped")


def test_a_welded_relay_fails_as_not_opening():
    assert _bench(relay_stuck="closed")["lamp_relay"] == (False, "not_opening")


def test_a_feedback_wire_and_a_dimmer_wire_are_told_apart_from_the_relay():
    results = _bench(miswired=["lamp_feedback", "dimmer"])
    assert results["lamp_relay"] == (True, "ok")  # the lamp current shows the relay works
    assert results["lamp_feedback"] == (False, "not_following")
    assert results["dimmer"] == (False, "no_effect")


def test_a_burnt_lamp_a_dead_clock_an_i2s_fault_and_a_quiet_pir():
    results = _bench(burnt=True, failed=["ds3231", "i2s"], motion=False)
    assert results["lamp_ct"] == (False, "no_current")
    assert results["rtc"] == (False, "ds3231_missing")
    assert results["ds3231"] == (False, "start_failed")
    assert results["tone"] == (False, "i2s_failed")
    assert results["pir"] == (False, "no_motion")

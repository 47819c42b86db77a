"""The node's player on a SoftBoard: clips and streams play through I2S, judged on the board's
ground truth (`pcm` records: what really left the DAC), with the events of docs/audio.md
section 6 (portable)."""
from firmware.node import Node
from protocol.plan import EMERGENCY, PRIORITY, ROUTINE
from tests.firmware.audio_rig import FakeMedia, drive, pcm_sha
from tests.firmware.rig import MONDAY, PROGRAM, Rig, at

NEWS = at(MONDAY, 17)
CLIP = "ab" * 32
CLIP2 = "cd" * 32
N = 3 * 16000 + 123  # not a whole number of blocks


def _rig(t, items, clips=((CLIP, N),)):
    truth = []
    rig = Rig(t, program=PROGRAM, plan={"version": 4, "items": items}, audio=True,
              truth=lambda when, what, value: truth.append((when, what, value)))
    rig.truth = truth
    rig.media = FakeMedia(rig.board.fs, rig.clock)
    for sha, samples in clips:
        rig.media.add_clip(sha, samples)
    _boot(rig)
    return rig


def _boot(rig):
    import gc

    rig.node = None  # a reboot wipes the RAM: the old node's memory is free before the new one starts
    gc.collect()
    rig.board.power_on()
    rig.node = Node(rig.board, rig.cfg)
    rig.node.speaker.media = rig.media  # the other part's wiring gives it at construction
    rig.node.boot()
    return rig.node


def _item(item_id, start, secs, ref=CLIP, prio=ROUTINE, src="clip", vol=80):
    return [item_id, start, secs, prio, src, ref, ["thon-1"], vol, "news"]


def _pcm(rig):
    return [v for _, what, v in rig.truth if what == "pcm"]


def _sync(rig):
    """A time sync at a fractional second: the RTC is set to the whole second (up to 0.5 s off),
    now_ms() keeps the exact ms."""
    true_ms = int(rig.clock.now() * 1000)
    rig.node.clock.apply_sync(None, true_ms, true_ms)


def test_a_clip_plays_completely_from_its_start_instant():
    rig = _rig(NEWS - 20.37, [_item("news-1", NEWS, N // 16000 + 300)])
    try:
        _sync(rig)
        assert abs(rig.board.time() - rig.clock.now()) > 0.3  # the RTC is whole seconds off
        drive(rig, 30)
        (rec,) = _pcm(rig)
        assert rec["samples"] == N and rec["underruns"] == 0
        assert rec["sha256"] == pcm_sha(rig.board.fs, "c-" + CLIP[:16] + ".ima", N, gain=80 * 256 // 100)
        err_ms = (rec["start"] - NEWS) * 1000
        assert -1 <= err_ms <= 5, err_ms  # the first sample at the instant (manual clock: exact to the step)
        (started,) = rig.events("broadcast_started")
        assert started.data["at"] == 0 and started.data["src"] == "clip"
        (ended,) = rig.events("broadcast_ended")
        assert ended.data["samples"] == N and ended.data["of"] == N and ended.data["complete"] is True
        assert ended.data["why"] == "end" and ended.data["start"] == NEWS
        assert rig.board.audio_source_state() is None  # done: the window is open, the clip is not replayed
        drive(rig, 60)
        assert len(_pcm(rig)) == 1 and len(rig.events("broadcast_started")) == 1
    finally:
        rig.close()


def test_volume_is_applied_while_decoding():
    rig = _rig(NEWS - 10, [_item("news-1", NEWS, 400, vol=50)])
    try:
        assert rig.send("set_volume", {"vol": 60}).applied
        drive(rig, 20)
        (rec,) = _pcm(rig)
        assert rec["sha256"] == pcm_sha(rig.board.fs, "c-" + CLIP[:16] + ".ima", N, gain=50 * 60 * 256 // 10000)
    finally:
        rig.close()


def test_an_emergency_cuts_the_clip_which_then_resumes_where_it_was_cut():
    rig = _rig(NEWS - 10, [_item("news-1", NEWS, 400, vol=100)], clips=((CLIP, N), (CLIP2, 16000)))
    fs = rig.board.fs
    try:
        drive(rig, 11.3)  # 1.3 s into the clip
        ack = rig.send("broadcast_now", {"id": "lu-1", "dur": 30, "src": "clip", "clip": CLIP2,
                                         "zones": ["thon-1"], "vol": 100, "prio": EMERGENCY})
        assert ack.applied
        drive(rig, 3)
        (cut,) = rig.events("broadcast_interrupted")
        first = _pcm(rig)[0]
        assert cut.data["id"] == "news-1" and cut.data["why"] == "by" and cut.data["by"] == "lu-1"
        assert cut.data["samples"] == first["samples"] and cut.data["complete"] is False and cut.data["of"] == N
        assert 1.3 * 16000 <= first["samples"] <= 1.6 * 16000  # the tail queued at the cut played out
        assert first["sha256"] == pcm_sha(fs, "c-" + CLIP[:16] + ".ima", N, first=0, count=first["samples"])
        emergency = _pcm(rig)[1]
        assert emergency["samples"] == 16000 and emergency["start"] >= first["end"]
        assert emergency["sha256"] == pcm_sha(fs, "c-" + CLIP2[:16] + ".ima", 16000)
        drive(rig, 10)
        resumed = _pcm(rig)[2]
        started = rig.events("broadcast_started")
        assert [e.data["id"] for e in started] == ["news-1", "lu-1", "news-1"]
        assert started[2].data["at"] == first["samples"]
        assert resumed["samples"] == N - first["samples"]
        assert resumed["sha256"] == pcm_sha(fs, "c-" + CLIP[:16] + ".ima", N, first=first["samples"])
        ends = [e.data for e in rig.events("broadcast_ended")]
        assert [(e["id"], e["why"], e["complete"]) for e in ends] == [("lu-1", "end", True), ("news-1", "end", True)]
        assert ends[1]["samples"] == N - first["samples"]
        drive(rig, 30)
        assert len(_pcm(rig)) == 3  # complete in its window: not replayed
    finally:
        rig.close()


def test_a_power_cut_is_reported_at_the_next_boot_and_the_clip_resumes_from_the_checkpoint():
    long = 40 * 16000
    rig = _rig(NEWS - 5, [_item("news-1", NEWS, 400, vol=100)], clips=((CLIP, long),))
    fs = rig.board.fs
    try:
        drive(rig, 5 + 35)
        rig.board.power_cut()
        (cut,) = _pcm(rig)
        assert 34 * 16000 <= cut["samples"] <= 35 * 16000  # only what left the DAC, not the queued tail
        assert cut["sha256"] == pcm_sha(fs, "c-" + CLIP[:16] + ".ima", long, count=cut["samples"])
        rig.clock.advance(10)
        _boot(rig)
        drive(rig, 4)  # the amplifier warms up again
        (pc,) = rig.events("broadcast_interrupted")
        assert pc.data["why"] == "power_cut" and pc.data["id"] == "news-1" and pc.data["complete"] is False
        done = pc.data["samples"]
        assert 30 * 16000 <= done <= 31 * 16000  # the checkpoint of ~30 s in
        (again,) = rig.events("broadcast_started")
        assert again.data["at"] == done
        drive(rig, 15)
        resumed = _pcm(rig)[1]
        assert resumed["samples"] == long - done
        assert resumed["sha256"] == pcm_sha(fs, "c-" + CLIP[:16] + ".ima", long, first=done)
        (ended,) = rig.events("broadcast_ended")
        assert ended.data["complete"] is True and ended.data["samples"] == long - done
        _boot(rig)  # a clean boot later reports nothing old
        assert rig.events("broadcast_interrupted") == []
    finally:
        rig.close()


def test_a_clip_missing_at_the_start_is_reported_once_and_nothing_plays():
    rig = _rig(NEWS - 5, [_item("news-1", NEWS, 60), _item("news-2", NEWS + 100, 60, ref=CLIP2)])
    try:
        rig.media.states[CLIP] = "fetching"
        rig.media.states[CLIP2] = "bad"
        drive(rig, 20)
        (missed,) = rig.events("broadcast_missed")
        assert missed.data["id"] == "news-1" and missed.data["why"] == "clip_missing"
        assert _pcm(rig) == [] and rig.events("broadcast_started") == [] and rig.board.audio_bytes == 0
        drive(rig, 100)
        missed = rig.events("broadcast_missed")
        assert [(m.data["id"], m.data["why"]) for m in missed] == [("news-1", "clip_missing"), ("news-2", "clip_bad")]
        assert _pcm(rig) == [] and rig.board.audio_bytes == 0
    finally:
        rig.close()


def test_a_clip_that_arrives_late_airs_within_its_window():
    rig = _rig(NEWS - 5, [_item("news-1", NEWS, 60)])
    try:
        rig.media.states[CLIP] = "fetching"
        drive(rig, 15)
        assert len(rig.events("broadcast_missed")) == 1 and _pcm(rig) == []
        rig.media.states[CLIP] = "ready"
        drive(rig, 10)
        (rec,) = _pcm(rig)
        assert rec["samples"] == N and len(rig.events("broadcast_missed")) == 1
    finally:
        rig.close()


def test_a_lost_stream_is_reported_and_reopened_within_the_window():
    rig = _rig(NEWS - 5, [_item("live-1", NEWS, 20, ref="s-1", src="stream", prio=PRIORITY)], clips=())
    try:
        rig.media.streams["s-1"] = [{"lose_at": NEWS + 5}, {}]
        drive(rig, 30)
        kinds = [(k, e.data.get("why")) for k, e in _events(rig, ("broadcast_started", "broadcast_interrupted",
                                                                     "broadcast_ended"))]
        assert kinds == [("broadcast_started", None), ("broadcast_interrupted", "stream_lost"),
                         ("broadcast_started", None), ("broadcast_ended", "end")], kinds
        recs = _pcm(rig)
        assert len(recs) == 2
        assert 4.5 <= recs[0]["end"] - recs[0]["start"] <= 5.5
        assert 1.0 <= recs[1]["start"] - recs[0]["end"] <= 6.5  # reconnected after the backoff
        assert recs[1]["end"] <= NEWS + 21  # not past its window
        assert rig.media.opened == ["s-1", "s-1"]
    finally:
        rig.close()


def _events(rig, kinds):
    from protocol.messages import Event

    out = []
    for entry in rig.node.events.pending:
        e = Event.decode(entry[1])
        if e.kind in kinds:
            out.append((e.kind, e))
    return out


def test_the_control_tick_keeps_its_period_while_playing():
    """Real asyncio at 1x (RealClock): the control loop and the audio task as Node.run has them.
    Generous bound: every tick period within 1000 +- 250 ms while a clip plays (the player never
    blocks the loop), and the clip plays without an underrun."""
    import asyncio

    from hardware.flashfs import DirFS
    from hardware.softboard import RealClock, SoftBoard

    rig = Rig(NEWS - 3.5, program=PROGRAM, plan={"version": 4, "items": [_item("news-1", NEWS, 400)]})
    try:
        recs = []
        clock = RealClock(NEWS - 3.5, speed=1.0)
        rig.board = SoftBoard(clock, DirFS(rig.path), seed=7, audio=True,
                              truth=lambda t, what, v: recs.append(v) if what == "pcm" else None)
        rig.clock = clock
        rig.media = FakeMedia(rig.board.fs, clock)
        rig.media.add_clip(CLIP, 16000 + 300)
        node = _boot(rig)
        ticks = []
        tick = node.tick

        def timed_tick():
            ticks.append(clock.ticks_ms())
            tick()

        node.tick = timed_tick

        async def go():
            node.running = True
            tasks = [asyncio.create_task(node._control_loop()), asyncio.create_task(node._audio_loop())]
            await asyncio.sleep(6)
            node.running = False
            await asyncio.sleep(0.2)
            for task in tasks:
                task.cancel()

        asyncio.run(go())
        periods = [b - a for a, b in zip(ticks, ticks[1:])]
        assert len(periods) >= 4 and all(750 <= p <= 1250 for p in periods), periods
        (rec,) = recs
        assert rec["samples"] == 16300 and rec["underruns"] == 0
        assert abs(rec["start"] - NEWS) < 0.1  # generous: a loaded machine
    finally:
        rig.close()


def test_an_item_whose_window_passed_without_a_clock_is_reported_missed():
    rig = _rig(NEWS - 5, [_item("news-1", NEWS, 30), _item("news-2", NEWS + 100, 400)],
               clips=((CLIP, N),))
    try:
        rig.board._rtc_valid = False  # the clock is lost (no RTC time, no sync yet)
        drive(rig, 60)
        assert _pcm(rig) == [] and rig.events("broadcast_missed") == []
        true_ms = int(rig.clock.now() * 1000)
        rig.node.clock.apply_sync(None, true_ms, true_ms)  # the time is back
        drive(rig, 2)
        (missed,) = rig.events("broadcast_missed")
        assert missed.data["id"] == "news-1" and missed.data["why"] == "no_clock"
        drive(rig, 60)  # news-2 is still to come in its window: it airs
        assert len(_pcm(rig)) == 1 and len(rig.events("broadcast_missed")) == 1
    finally:
        rig.close()


def test_a_failed_i2s_is_reported_once_and_nothing_plays():
    rig = _rig(NEWS - 5, [_item("news-1", NEWS, 60), _item("news-2", NEWS + 100, 60)])
    try:
        rig.board.failed = ["i2s"]
        drive(rig, 150)
        missed = [(m.data["id"], m.data["why"]) for m in rig.events("broadcast_missed")]
        assert missed == [("news-1", "no_audio"), ("news-2", "no_audio")], missed
        assert _pcm(rig) == [] and rig.events("broadcast_started") == []
    finally:
        rig.close()


def test_a_higher_item_cuts_a_playing_clip_at_its_exact_instant():
    # the playing clip gets nothing more in the last 250 ms: its queue runs out by the instant,
    # the higher item starts on time, the clip resumes after it where it was cut; a later item
    # of the same rank starts on time too
    rig = _rig(NEWS - 5.37, [_item("a", NEWS, 400), _item("b", NEWS + 5, 400, ref=CLIP2, prio=PRIORITY),
                             _item("c", NEWS + 30, 400, ref=CLIP2)],
               clips=((CLIP, 8 * 16000), (CLIP2, 16000)))
    try:
        _sync(rig)
        drive(rig, 25)
        recs = _pcm(rig)
        assert len(recs) == 3
        assert abs(recs[0]["start"] - NEWS) <= 0.005 and recs[0]["underruns"] == 0
        assert abs(recs[1]["start"] - (NEWS + 5)) <= 0.005
        assert recs[0]["end"] <= recs[1]["start"] and recs[0]["end"] >= NEWS + 5 - 0.06  # ~ the wake-up lead
        assert recs[0]["samples"] + recs[2]["samples"] == 8 * 16000 and recs[1]["samples"] == 16000
        started = [(e.data["id"], e.data["at"]) for e in rig.events("broadcast_started")]
        assert started == [("a", 0), ("b", 0), ("a", recs[0]["samples"])], started
        drive(rig, 15)  # c: after a is complete, on time
        assert len(_pcm(rig)) == 4 and abs(_pcm(rig)[3]["start"] - (NEWS + 30)) <= 0.005
    finally:
        rig.close()


def test_a_clip_right_after_another_starts_on_time():
    # a ends 0.32 s before b starts, after the last tick before it: the audio task's end-of-segment update
    # keeps b armed
    rig = _rig(NEWS - 5.37, [_item("a", NEWS, 4), _item("b", NEWS + 4, 400, ref=CLIP2)],
               clips=((CLIP, 58900), (CLIP2, 16000)))
    try:
        _sync(rig)
        drive(rig, 12)
        recs = _pcm(rig)
        assert len(recs) == 2 and recs[0]["samples"] == 58900
        assert abs(recs[1]["start"] - (NEWS + 4)) <= 0.005, recs[1]["start"] - NEWS
    finally:
        rig.close()


def test_stop_broadcast_ends_the_clip_and_reports_what_played():
    rig = _rig(NEWS - 5, [_item("news-1", NEWS, 400)])
    try:
        drive(rig, 6.5)
        assert rig.send("stop_broadcast", {}).applied
        drive(rig, 2)
        (cut,) = rig.events("broadcast_interrupted")
        (rec,) = _pcm(rig)
        assert cut.data["why"] == "stopped" and "by" not in cut.data and cut.data["samples"] == rec["samples"]
        assert 1.5 * 16000 <= rec["samples"] <= 1.8 * 16000 and cut.data["complete"] is False
        assert rig.board.audio_source_state() is None
        drive(rig, 30)
        assert len(_pcm(rig)) == 1  # stopped by staff: not resumed
    finally:
        rig.close()

"""Watchdog and task supervision (portable, asyncio on the manual clock)."""
import asyncio

from tests.firmware.rig import MONDAY, Rig, at


def _rig():
    rig = Rig(at(MONDAY, 21))
    rig.boot()
    rig.node.running = True
    return rig


def test_a_task_that_dies_is_restarted_and_reported():
    rig = _rig()
    try:
        calls = []

        async def flaky():
            calls.append(1)
            if len(calls) < 3:
                raise ValueError("boom %d" % len(calls))

        asyncio.run(rig.node._guard("flaky", flaky))
        assert len(calls) == 3
        restarted = rig.events("task_restarted")
        assert [e.data["task"] for e in restarted] == ["flaky", "flaky"]
        assert "boom 1" in restarted[0].data["error"]
    finally:
        rig.close()


def _run_control(rig, seconds, stale=None):
    """Run the real control loop for `seconds` of board time, one tick a second."""
    node, clock = rig.node, rig.clock

    async def drive():
        task = asyncio.create_task(node._control_loop())
        for _ in range(seconds):
            clock.advance(1.0)
            if stale is not None:
                node._beats[stale] = node._beats.get(stale, 0)  # this task stopped beating
            else:
                for name in list(node._beats):
                    node._beats[name] = node.uptime.ms()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        node.running = False
        await asyncio.sleep(0)
        task.cancel()

    asyncio.run(drive())


def test_watchdog_is_fed_while_every_task_beats():
    rig = _rig()
    try:
        rig.board.wdt_start(30000)
        rig.node._beats["inbox"] = rig.node.uptime.ms()
        _run_control(rig, 60)
        assert not rig.board.wdt_expired()
    finally:
        rig.close()


def test_a_stuck_task_starves_the_watchdog():
    rig = _rig()
    try:
        rig.board.wdt_start(30000)
        rig.node._beats["inbox"] = rig.node.uptime.ms()
        _run_control(rig, 60, stale="inbox")
        assert not rig.node.healthy()
        assert rig.board.wdt_expired()  # a real chip would reset now
        assert rig.board.light() == 100  # the lamps stayed right all along
    finally:
        rig.close()

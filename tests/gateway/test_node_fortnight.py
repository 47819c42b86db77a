"""Fifteen days of a real firmware node on a board whose ticks wrap, seen by the real gateway's ingest.

The node (firmware.node.Node, unmodified) runs on a SoftBoard whose ticks_ms
wraps at 2**30 ms like the ESP32 port's, starting 90 s before a wrap; its
telemetry, events, birth and acks go straight into the gateway's Ingest
(SQLite on disk), and the gateway's commands (the time sync after the birth)
straight back to the node. Every 10 simulated seconds the gateway sweeps for
silent nodes, as its housekeeping does. No broker and no wall clock: the run
is exact and takes about a minute, where the simulator at 3600x cannot hold
the gateway's 180 s silence window (50 ms of real time) against GC pauses.
"""
import asyncio

from firmware.config import NodeConfig
from firmware.node import Node
from hardware.flashfs import DirFS
from hardware.softboard import SimClock, SoftBoard
from protocol.program import LampProgram, SunSource
from tests.firmware.rig import PROGRAM
from tests.gateway.test_node_trust import NOV_10, SITE, Bench

DAY = 86400
WRAP = 1 << 30


def test_fifteen_days_up_telemetry_accepted_never_offline_lamps_right(tmp_path):
    bench = Bench(tmp_path, nodes=())
    gw = bench.gw
    node_id = "den-1-01"
    _, bundle = gw.registry.add_node({"id": node_id, "zones": ["thon-3"], "kind": "lamp"}, SITE, "127.0.0.1", 1883,
                                     gw.location)
    start = NOV_10 + 12 * 3600
    bench.clock.t = float(start)
    clock = SimClock(start)
    flash = tmp_path / "flash"
    flash.mkdir()
    board = SoftBoard(clock, DirFS(str(flash)), ticks_offset=WRAP - 90 * 1000, seed=5)
    board.power_on()
    cfg = NodeConfig(dict(bundle, tele_s=60))
    node = Node(board, cfg)
    node.program = LampProgram.from_json(dict(PROGRAM, version=3))  # as if pushed earlier
    node.boot()
    sun = SunSource(cfg.lat, cfg.lon, cfg.tz_hours)
    bench.sent.clear()

    def deliver():
        """Node -> gateway: birth, telemetry, events, acks; gateway -> node: due commands."""
        for cmd_id in gw.commands.due():
            asyncio.run(gw.commands.send(cmd_id))
        while bench.sent:
            topic, payload = bench.sent.pop(0)
            node.handle_message(topic, payload)
        while node.outbox:
            topic, payload = node.outbox.pop(0)
            gw.ingest.handle(topic, payload)
        while node.events.peek() is not None:
            payload = node.events.peek()
            gw.ingest.handle(node.topic["evt"], payload)
            node.events.done(payload)

    gw.ingest.handle(node.topic["state"], node.birth())
    deliver()  # the birth's time sync and the gateway's lamp program reach the node
    program = node.program
    assert program.version > 0
    t = 0
    wraps = 0
    last = board.ticks_ms()
    offline_seen = []
    wrong = checked = 0
    dropped = []
    gw.metrics.bad = dropped.append  # every message the gateway refuses (malformed, unknown...)
    try:
        while t < 15 * DAY:
            clock.advance(10.0)
            bench.clock.advance(10.0)
            t += 10
            node.tick()
            ticks = board.ticks_ms()
            wraps += ticks < last
            last = ticks
            if node.telemetry_due(node.uptime.ms()):
                node._last_tele = node.uptime.ms()
                gw.ingest.handle(node.topic["tele"], node.telemetry())
            deliver()
            gw.commands.expire()
            gw.ingest.sweep()
            row = gw.db.one("SELECT online FROM node_state WHERE node_id = ?", node_id)
            if not row["online"]:
                offline_seen.append(t)
            assert node.program is program  # nothing pushed it again or lost it
            if t % 900 == 0:
                now = clock.now()
                want = program.decide(int(now), cfg.tz_s, sun).level
                if all(program.decide(int(now + d), cfg.tz_s, sun).level == want for d in (-120, 120)):
                    checked += 1
                    wrong += board.light() != want and not (want == 0 and board.light() == 0)
        assert wraps >= 2  # 15 days: the first wrap after 90 s, the next 12.4 days later
        assert offline_seen == [], offline_seen[:5]
        assert checked > 1000 and wrong == 0, (checked, wrong)
        assert dropped == []  # every telemetry (and event, ack, birth) was accepted
        live = gw.node_status(gw.registry.node(node_id))["live"]
        assert live["online"] and live["tele"]["up"] >= 15 * DAY - 60  # telemetry accepted to the end
        tele_rows = gw.db.one("SELECT tele FROM node_state WHERE node_id = ?", node_id)
        assert tele_rows["tele"] is not None
        assert gw.db.one("SELECT COUNT(*) FROM alerts WHERE kind = 'offline'")[0] == 0
    finally:
        bench.close()

"""Gateway behaviour driven directly (no broker, no nodes): counter resync, failed parts, alert texts,
emergency and lamp counters in reports."""
import asyncio

import pytest

from gateway.app import make_gateway
from gateway.clock import ManualClock
from gateway.config import GatewayConfig
from protocol import commands as ops
from protocol.commands import verify
from protocol.messages import Ack, Event, State, Telemetry
from tests.gateway.harness import GatewayRig

NOV_10 = 1794243600  # 2026-11-10 00:00 +07
SITE = "xa-an-binh"


class Bench:
    """A gateway built from its config but not started: messages go straight into ingest."""

    def __init__(self, tmp_path, nodes=("den-3-07",)):
        self.clock = ManualClock(NOV_10 + 12 * 3600)
        self.gw = make_gateway(GatewayConfig(GatewayRig(tmp_path, broker="embedded").raw), self.clock,
                               log=lambda text: None)
        self.sent = []
        self.seq = {}

        async def publish(items):
            self.sent.extend((topic, bytes(payload)) for topic, payload in items)
            return [True] * len(items)
        self.gw.commands.publish = publish
        self.gw.registry.add_zone({"id": "thon-3", "name": "Thôn 3"})
        for n in nodes:
            self.gw.registry.add_node({"id": n, "zones": ["thon-3"]}, SITE, "127.0.0.1", 1883, self.gw.location)

    def close(self):
        self.gw.db.close()

    def handle(self, node, kind, msg):
        self.gw.ingest.handle("denloa/%s/node/%s/%s" % (SITE, node, kind), msg.encode())

    def event(self, node, kind, data, ts=None):
        seq = self.seq.get(node, 0)
        self.seq[node] = seq + 1
        self.handle(node, "evt", Event("b1", seq, kind, data, int(self.clock.now() if ts is None else ts)))

    def birth(self, node, failed=()):
        self.handle(node, "state", State(True, "b1", "1.0", caps=["lamp"], clock="synced", failed=failed))

    def send(self, cmd_id):
        return asyncio.run(self.gw.commands.send(cmd_id))

    def node_sees(self, node, last_counter):
        """What the node decides about the last command published to it."""
        topic, payload = self.sent[-1]
        key = self.gw.registry.key(node)
        return verify(payload, topic, SITE, node, key, last_counter, int(self.clock.now()))

    def alerts(self, kind=None, open_only=False):
        return [a for a in self.gw.alerts.list(open_only=open_only) if kind is None or a["kind"] == kind]


# ---- 1. a restored gateway's counter behind the node's ------------------------------------------------

def test_a_node_ahead_of_a_restored_gateways_counter_is_resynced_once_without_an_attack_alert(tmp_path):
    b = Bench(tmp_path)
    try:
        node, node_ctr = "den-3-07", 500  # the node accepted 500 commands from the gateway before its restore
        cmd = b.gw.commands.create(node, ops.LAMP_OVERRIDE, {"level": 50, "until": int(b.clock.now()) + 600})
        assert b.send(cmd)
        verdict = b.node_sees(node, node_ctr)
        assert verdict.reason == "replay"
        b.handle(node, "ack", Ack(cmd, "rejected", "replay", verdict.detail, ctr=node_ctr))
        b.event(node, "cmd_rejected", {"id": cmd, "reason": "replay", "detail": verdict.detail[:100],
                                       "ctr": node_ctr, "got": verdict.command.counter})
        row = b.gw.commands.get(cmd)
        assert row["status"] == "pending" and row["resynced"] and row["counter"] == node_ctr + 1
        assert b.gw.commands.due() == [cmd]  # housekeeping sends it again
        assert not b.alerts("cmd_rejected")  # our own desync is no attack
        assert b.send(cmd)
        assert b.node_sees(node, node_ctr).ok  # same cmd_id, counter above the node's
        # the next command continues above it
        later = b.gw.commands.create(node, ops.LAMP_OVERRIDE, {"level": 10, "until": int(b.clock.now()) + 600})
        assert b.gw.commands.get(later)["counter"] == node_ctr + 2
        b.handle(node, "ack", Ack(cmd, "applied"))
        assert b.gw.commands.get(cmd)["status"] == "applied"
        # someone replays that applied command later: that is an attack
        b.event(node, "cmd_rejected", {"id": cmd, "reason": "replay", "ctr": node_ctr + 2, "got": node_ctr + 1})
        assert [a["severity"] for a in b.alerts("cmd_rejected")] == ["critical"]
    finally:
        b.close()


def test_a_second_replay_rejection_after_a_resync_is_final(tmp_path):
    b = Bench(tmp_path)
    try:
        node = "den-3-07"
        cmd = b.gw.commands.create(node, ops.LAMP_OVERRIDE, {"level": 50, "until": int(b.clock.now()) + 600})
        b.send(cmd)
        b.handle(node, "ack", Ack(cmd, "rejected", "replay", ctr=40))
        assert b.gw.commands.get(cmd)["status"] == "pending"
        b.send(cmd)
        b.handle(node, "ack", Ack(cmd, "rejected", "replay", ctr=900))
        row = b.gw.commands.get(cmd)
        assert row["status"] == "rejected" and row["counter"] == 41
        # a replay ack without the node's counter stays final at once (older firmware)
        other = b.gw.commands.create(node, ops.LAMP_OVERRIDE, {"level": 20, "until": int(b.clock.now()) + 600})
        b.send(other)
        b.handle(node, "ack", Ack(other, "rejected", "replay"))
        assert b.gw.commands.get(other)["status"] == "rejected"
    finally:
        b.close()


@pytest.mark.parametrize("reason", ["clock_invalid", "no_memory"])
def test_a_command_refused_for_no_valid_clock_or_no_heap_is_retried(tmp_path, reason):
    """Neither is the command's fault: the node had no valid time, or no heap to parse it just now."""
    b = Bench(tmp_path)
    try:
        node = "den-3-07"
        b.birth(node)
        cmd = b.gw.commands.create(node, ops.LAMP_OVERRIDE, {"level": 50, "until": int(b.clock.now()) + 600})
        b.send(cmd)
        b.handle(node, "ack", Ack(cmd, "rejected", reason, "not now"))
        row = b.gw.commands.get(cmd)
        assert row["status"] == "sent" and row["reason"] == reason
        b.clock.advance(b.gw.cfg.command_retry_s + 1)
        assert cmd in b.gw.commands.due()
        b.handle(node, "ack", Ack(cmd, "applied"))
        assert b.gw.commands.get(cmd)["status"] == "applied"
    finally:
        b.close()


# ---- 2. parts that failed to start --------------------------------------------------------------------

def test_failed_parts_in_a_birth_open_one_alert_each_in_plain_words_and_close_when_gone(tmp_path):
    b = Bench(tmp_path)
    try:
        node = "den-3-07"
        b.birth(node, failed=["ds3231", "zone 2 relay", "flux_capacitor"])
        b.birth(node, failed=["ds3231", "zone 2 relay", "flux_capacitor"])  # a second birth: no duplicates
        alerts = {a["data"]["part"]: a for a in b.alerts("part_failed", open_only=True)}
        assert sorted(alerts) == ["ds3231", "flux_capacitor", "zone 2 relay"]
        assert alerts["ds3231"]["message_vi"].startswith("Đồng hồ DS3231 của den-3-07 không phản hồi")
        assert alerts["ds3231"]["message_en"].startswith("DS3231 clock of den-3-07 is not responding")
        assert alerts["zone 2 relay"]["message_vi"].startswith("Rơ-le vùng loa 2 của den-3-07")
        assert alerts["zone 2 relay"]["message_en"].startswith("Speaker zone relay 2 of den-3-07")
        assert alerts["flux_capacitor"]["message_en"].startswith("flux_capacitor of den-3-07")
        node_row = b.gw.registry.node(node)
        assert b.gw.node_status(node_row)["live"]["failed"] == ["ds3231", "zone 2 relay", "flux_capacitor"]
        b.birth(node, failed=["dimmer"])  # the clock came back after a restart; the dimmer did not
        open_parts = sorted(a["data"]["part"] for a in b.alerts("part_failed", open_only=True))
        assert open_parts == ["dimmer"]
        assert b.alerts("part_failed", open_only=True)[0]["message_en"].startswith("Dimmer of den-3-07")
        b.birth(node)
        assert not b.alerts("part_failed", open_only=True)
        assert b.gw.node_status(node_row)["live"]["failed"] == []
    finally:
        b.close()


# ---- 3. alert texts are ours ------------------------------------------------------------------------

def test_node_data_cannot_reshape_an_alert_text(tmp_path):
    b = Bench(tmp_path)
    try:
        node = "den-3-07"
        b.event(node, "storage_error", {"name": "HACKED", "since": "x", "error": "{name}"})
        b.event(node, "storage_error", {"error": "E" * 110})
        first, second = sorted(b.alerts("storage_error"), key=lambda a: a["id"])
        for text in (first["message_vi"], first["message_en"]):
            assert "den-3-07" in text and "HACKED" not in text and " x" not in text
            assert "({name})" in text  # the node's value, shown as it is, never as a template
        assert "12:00 10/11" in first["message_en"]
        assert "E" * 61 not in second["message_en"] and "E" * 50 in second["message_en"]
    finally:
        b.close()


# ---- 4. emergencies in the monthly report -----------------------------------------------------------

def test_emergency_airings_count_as_emergency_in_the_monthly_report(tmp_path):
    from gateway.reports import monthly
    b = Bench(tmp_path, nodes=("loa-01",))
    try:
        b.event("loa-01", "broadcast_ended", {"id": "e1", "cat": "other", "prio": 2, "secs": 120,
                                              "start": NOV_10 + 8 * 3600})
        b.event("loa-01", "broadcast_ended", {"id": "x1", "cat": "other", "prio": 0, "secs": 60,
                                              "start": NOV_10 + 9 * 3600})
        b.event("loa-01", "broadcast_ended", {"id": "d1", "cat": "disaster", "prio": 2, "secs": 60,
                                              "start": NOV_10 + 10 * 3600})
        report = monthly(b.gw.db, "2026-11", b.gw.cfg.tz_s)
        assert report["by_category"]["emergency"] == {"broadcasts": 1, "minutes": 2.0}
        assert report["by_category"]["other"] == {"broadcasts": 1, "minutes": 1.0}
        assert report["by_category"]["disaster"] == {"broadcasts": 1, "minutes": 1.0}
    finally:
        b.close()


# ---- 5. an unknown emergency batch --------------------------------------------------------------------

def test_progress_of_an_unknown_emergency_is_a_404(tmp_path):
    async def scenario():
        rig = GatewayRig(tmp_path, broker="embedded")
        rig.clock = ManualClock(NOV_10)
        await rig.start()
        try:
            r = await rig.api("GET", "/api/emergency/e999", expect=404)
            body = r.json()
            assert body["error"] == "batch.unknown" and body["message"] and body["message_en"]
        finally:
            await rig.stop()
    asyncio.run(asyncio.wait_for(scenario(), 60))


# ---- 6. lamp on-hours and energy from the nodes' own counters ------------------------------------------

def test_lamp_hours_and_energy_come_from_the_nodes_counters_across_a_5_hour_outage(tmp_path):
    from gateway.reports import monthly
    b = Bench(tmp_path, nodes=("den-3-07", "den-3-08"))
    try:
        base_on, base_wh = 100000, 2000.0  # counters from earlier months, kept across reboots

        def counters(t):  # a 60 W lamp lit 18:00 Nov 10 - 06:00 Nov 11
            lit = min(max(t - (NOV_10 + 18 * 3600), 0), 12 * 3600)
            return base_on + lit, base_wh + 60.0 * lit / 3600

        def tele(node, t):
            b.clock.t = t
            on_s, wh = counters(t)
            lvl = 100 if NOV_10 + 18 * 3600 <= t < NOV_10 + 30 * 3600 else 0
            b.handle(node, "tele", Telemetry("b1", int(t), 1000, "synced", lamp={
                "lvl": lvl, "relay": lvl > 0, "w": 60.0 if lvl else 0.0, "wh": wh, "on_s": on_s}))

        def midnight(node):
            on_s, wh = counters(NOV_10 + 86400)
            b.event(node, "lamp_counters", {"on_s": on_s, "wh": round(wh, 1)}, ts=NOV_10 + 86400 + 1)

        for node in ("den-3-07", "den-3-08"):
            for t in range(NOV_10 + 17 * 3600, NOV_10 + 19 * 3600 + 1, 300):
                tele(node, t)
        # both offline 19:00 - 00:30; on reconnect den-3-07's buffered midnight reading comes after fresh
        # telemetry (it must not count twice), den-3-08's before it (it splits the night at midnight)
        tele("den-3-07", NOV_10 + 24 * 3600 + 1800)
        midnight("den-3-07")
        midnight("den-3-08")
        midnight("den-3-08")  # a QoS 1 redelivery
        for node in ("den-3-07", "den-3-08"):
            for t in range(NOV_10 + 24 * 3600 + 1800, NOV_10 + 31 * 3600 + 1, 300):
                tele(node, t)
        report = monthly(b.gw.db, "2026-11", b.gw.cfg.tz_s)
        lamps = {l["node"]: l for l in report["lamps"]}
        for node in ("den-3-07", "den-3-08"):
            assert lamps[node]["on_hours"] == 12.0, lamps[node]
            assert lamps[node]["energy_kwh"] == 0.72, lamps[node]
        days = {r["day"]: r["on_s"] for r in b.gw.db.all(
            "SELECT day, on_s FROM lamp_days WHERE node_id = 'den-3-08'")}
        assert days == {"2026-11-10": 6 * 3600, "2026-11-11": 6 * 3600}
        # den-3-08 is reflashed: its counters start again from zero
        b.clock.advance(3600)
        b.handle("den-3-08", "tele", Telemetry("b2", int(b.clock.t), 10, "synced", lamp={
            "lvl": 100, "relay": True, "w": 60.0, "wh": 1.0, "on_s": 60}))
        assert b.gw.db.one("SELECT SUM(on_s) FROM lamp_days WHERE node_id = 'den-3-08'")[0] == 12 * 3600 + 60
        assert b.gw.db.one("SELECT on_s FROM lamp_counters WHERE node_id = 'den-3-08'")[0] == 60
    finally:
        b.close()


# ---- 7. the offline alert waits for the admin's delay; a loudspeaker's latest word says if it airs ------------

def test_the_offline_alert_opens_only_after_the_settings_minutes_and_closes_on_return(tmp_path):
    from gateway.ingest import STALE_AFTER_S
    bench = Bench(tmp_path, nodes=("den-3-07", "den-3-08"))
    gw, clock, ingest = bench.gw, bench.clock, bench.gw.ingest
    try:
        gw.settings.update({"offline_alert_min": 5}, "admin")
        bench.birth("den-3-07")
        went = clock.now()
        bench.handle("den-3-07", "state", State(False, "b1"))  # its will: offline now
        assert ingest.live("den-3-07")["online"] is False and not bench.alerts("offline")
        clock.advance(4 * 60 + 50)
        ingest.sweep()
        assert not bench.alerts("offline"), "opened before the 5 minutes"
        clock.advance(10)
        ingest.sweep()
        opened = bench.alerts("offline", open_only=True)
        assert len(opened) == 1 and opened[0]["node_id"] == "den-3-07" and opened[0]["opened"] == went
        assert "mất kết nối từ 12:00" in opened[0]["message_vi"]  # since it went, not since the sweep
        ingest.sweep()
        assert len(bench.alerts("offline")) == 1  # one alert while it stays offline
        bench.birth("den-3-07")
        assert not bench.alerts("offline", open_only=True) and len(bench.alerts("offline")) == 1

        # a short drop (back within the delay) opens nothing
        bench.handle("den-3-07", "state", State(False, "b1"))
        clock.advance(120)
        ingest.sweep()
        bench.birth("den-3-07")
        clock.advance(60)
        ingest.sweep()
        assert len(bench.alerts("offline")) == 1

        # nodes gone silent (no will): offline from their last word, the alert 5 minutes after that
        bench.birth("den-3-07")
        bench.birth("den-3-08")
        last = clock.now()
        clock.advance(STALE_AFTER_S + 10)
        ingest.sweep()
        assert ingest.live("den-3-08")["online"] is False and not bench.alerts("offline", open_only=True)
        clock.advance(5 * 60 - STALE_AFTER_S)
        ingest.sweep()
        opened = bench.alerts("offline", open_only=True)
        assert sorted(a["node_id"] for a in opened) == ["den-3-07", "den-3-08"]
        assert all(a["opened"] == last for a in opened)

        # a new delay applies from the next sweep
        gw.settings.update({"offline_alert_min": 1}, "admin")
        bench.birth("den-3-07")
        assert [a["node_id"] for a in bench.alerts("offline", open_only=True)] == ["den-3-08"]
        bench.handle("den-3-07", "state", State(False, "b1"))
        clock.advance(50)
        ingest.sweep()
        assert [a["node_id"] for a in bench.alerts("offline", open_only=True)] == ["den-3-08"]
        clock.advance(11)
        ingest.sweep()
        assert sorted(a["node_id"] for a in bench.alerts("offline", open_only=True)) == ["den-3-07", "den-3-08"]
    finally:
        bench.close()


def test_on_air_follows_the_loudspeakers_latest_word_about_the_item(tmp_path):
    bench = Bench(tmp_path, nodes=("loa-3-01",))
    ingest, clock = bench.gw.ingest, bench.clock
    try:
        bench.birth("loa-3-01")
        assert not ingest.item_on_air("loa-3-01", "e7")
        bench.event("loa-3-01", "broadcast_started", {"id": "e7"})
        assert ingest.item_on_air("loa-3-01", "e7") and not ingest.item_on_air("loa-3-01", "e8")
        clock.advance(5)
        bench.event("loa-3-01", "broadcast_interrupted", {"id": "e7", "secs": 5})  # Stop
        assert not ingest.item_on_air("loa-3-01", "e7")
        clock.advance(5)  # a reading after the events is the newer word
        bench.handle("loa-3-01", "tele", Telemetry("b1", int(clock.now()), 60, "synced",
                                                   amp={"on": True, "zones": [1], "src": "clip", "vol": 80,
                                                        "item": "e8"}))
        assert ingest.item_on_air("loa-3-01", "e8") and not ingest.item_on_air("loa-3-01", "e7")
        clock.advance(5)
        bench.handle("loa-3-01", "tele", Telemetry("b1", int(clock.now()), 65, "synced",
                                                   amp={"on": False, "zones": [], "src": None, "vol": 80, "item": None}))
        assert not ingest.item_on_air("loa-3-01", "e8")
    finally:
        bench.close()

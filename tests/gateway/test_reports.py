"""Monthly report from what nodes reported as aired, and lamp telemetry."""
import asyncio
import csv
import io

from gateway.clock import ManualClock
from protocol.messages import Event, Telemetry
from tests.gateway.harness import GatewayRig

NOV_10 = 1794243600  # 2026-11-10 00:00 +07


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 60))


def test_monthly_report_counts_what_aired_and_lamp_hours(tmp_path):
    async def scenario():
        rig = GatewayRig(tmp_path, broker="embedded")
        rig.clock = ManualClock(NOV_10)
        await rig.start()
        try:
            for z in ("thon-1", "thon-2"):
                await rig.api("POST", "/api/zones", json={"id": z, "name": z}, expect=201)
            for n, zones in (("loa-01", ["thon-1"]), ("loa-02", ["thon-1", "thon-2"])):
                await rig.api("POST", "/api/nodes", json={"id": n, "zones": zones}, expect=201)
            ingest, clock = rig.gw.ingest, rig.gw.clock
            topic = "denloa/xa-an-binh/node/%s/%s"
            seq = {"loa-01": 0, "loa-02": 0}

            def event(node, kind, data):
                ingest.handle(topic % (node, "evt"), Event("b1", seq[node], kind, data, int(clock.now())).encode())
                seq[node] += 1

            # the 05:30 news aired 15 min on both speakers; a campaign 5 min on loa-02 only, cut by an emergency
            for node in ("loa-01", "loa-02"):
                event(node, "broadcast_ended", {"id": "tin.202611100530", "cat": "news", "prio": 0, "src": "line",
                                                "secs": 900, "start": NOV_10 + 5 * 3600 + 1800})
            event("loa-02", "broadcast_interrupted", {"id": "vd.1", "cat": "campaign", "prio": 1, "secs": 300,
                                                      "start": NOV_10 + 8 * 3600, "by": "e1"})
            event("loa-02", "broadcast_ended", {"id": "e1", "cat": "other", "prio": 2, "secs": 120,
                                                "start": NOV_10 + 8 * 3600 + 300})
            # a QoS 1 redelivery of the same event changes nothing
            ingest.handle(topic % ("loa-01", "evt"), Event("b1", 0, "broadcast_ended", {
                "id": "tin.202611100530", "cat": "news", "prio": 0, "secs": 900}, NOV_10).encode())
            # lamp telemetry every 5 min from 18:00 to 06:00 next day: on 12 h, 0.5 kWh
            clock.t = NOV_10 + 18 * 3600
            for i in range(12 * 12 + 1):
                lvl = 100 if i < 12 * 12 else 0
                tele = Telemetry("b1", int(clock.now()), i * 300, "synced",
                                 lamp={"lvl": lvl, "relay": lvl > 0, "w": 40.0, "wh": 1000.0 + i * 500.0 / 144})
                ingest.handle(topic % ("loa-01", "tele"), tele.encode())
                clock.advance(300)
            await rig.login()  # twelve hours went by: a new session
            report = (await rig.api("GET", "/api/reports/monthly?month=2026-11", expect=200)).json()
            assert report["broadcasts"] == 3
            assert report["by_category"]["news"] == {"broadcasts": 1, "minutes": 30.0}  # 2 speakers x 15 min
            assert report["by_category"]["campaign"] == {"broadcasts": 1, "minutes": 5.0}
            assert report["by_priority"]["emergency"]["broadcasts"] == 1
            assert report["by_zone"]["thon-1"]["broadcasts"] == 3 and report["by_zone"]["thon-2"]["broadcasts"] == 3
            assert report["by_zone"]["thon-1"]["speaker_minutes"] == 30 + 5 + 2
            lamp = [l for l in report["lamps"] if l["node"] == "loa-01"][0]
            assert 11.9 <= lamp["on_hours"] <= 12.1 and abs(lamp["energy_kwh"] - 0.5) < 0.01
            empty = (await rig.api("GET", "/api/reports/monthly?month=2026-10", expect=200)).json()
            assert empty["broadcasts"] == 0
            r = await rig.api("GET", "/api/reports/monthly.csv?month=2026-11", expect=200)
            rows = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
            assert rows[1] == ["Số bản tin / Broadcasts", "3"]
            r = await rig.api("GET", "/api/reports/monthly?month=2026-13")
            assert r.status_code == 400 and r.json()["field"] == "month"
        finally:
            await rig.stop()
    run(scenario())


def test_a_scheduled_item_a_loudspeaker_did_not_start_is_reported_missed(tmp_path):
    async def scenario():
        rig = GatewayRig(tmp_path, broker="embedded")
        rig.clock = ManualClock(NOV_10)
        await rig.start()
        try:
            await rig.api("POST", "/api/zones", json={"id": "thon-1", "name": "Thôn 1"}, expect=201)
            for n in ("loa-01", "loa-02"):
                await rig.api("POST", "/api/nodes", json={"id": n, "zones": ["thon-1"]}, expect=201)
            await rig.api("POST", "/api/schedules", expect=201, json={
                "id": "tin", "title": "Bản tin sáng", "category": "news", "zones": ["thon-1"], "source": "line",
                "volume": 80, "start": "2026-11-10T05:30", "duration_s": 900})
            rig.gw.clock.t = NOV_10 + 5 * 3600 + 1800 + 30
            rig.gw.ingest.handle("denloa/xa-an-binh/node/loa-01/evt", Event(
                "b1", 0, "broadcast_started", {"id": "tin.202611100530", "prio": 0}, int(rig.gw.clock.t)).encode())
            assert rig.gw.plans.check_missed() == 0  # still within the grace time
            rig.gw.clock.advance(300)
            assert rig.gw.plans.check_missed() == 1  # loa-02 never started it
            assert rig.gw.plans.check_missed() == 0  # said once
            alerts = rig.gw.alerts.recent(0)
            missed = [a for a in alerts if a["kind"] == "broadcast_missed"]
            assert missed[0]["node_id"] == "loa-02" and "05:30" in missed[0]["message_vi"]
        finally:
            await rig.stop()
    run(scenario())


def test_audio_segments_count_by_their_samples_and_misses_apart(tmp_path):
    """A clip cut by an emergency and resumed is one broadcast whose minutes are the samples that played
    (both segments); a loudspeaker that could not fetch the clip says why: an alert in plain words, counted
    as not aired, never as minutes."""
    async def scenario():
        rig = GatewayRig(tmp_path, broker="embedded")
        rig.clock = ManualClock(NOV_10)
        await rig.start()
        try:
            await rig.api("POST", "/api/zones", json={"id": "thon-1", "name": "Thôn 1"}, expect=201)
            for n in ("loa-01", "loa-02"):
                await rig.api("POST", "/api/nodes", json={"id": n, "zones": ["thon-1"]}, expect=201)
            ingest = rig.gw.ingest
            t0 = NOV_10 + 17 * 3600
            clip = {"id": "tb.1", "cat": "security", "prio": 0, "src": "clip", "of": 16000 * 90}
            events = [
                ("broadcast_interrupted", dict(clip, start=t0, samples=16000 * 30, complete=False, why="by", by="e1")),
                ("broadcast_ended", {"id": "e1", "cat": "other", "prio": 2, "src": "stream", "start": t0 + 30,
                                     "samples": 16000 * 12, "why": "stream_ended"}),
                ("broadcast_ended", dict(clip, start=t0 + 43, samples=16000 * 60, complete=True, why="end")),
            ]
            for seq, (kind, data) in enumerate(events):
                ingest.handle("denloa/xa-an-binh/node/loa-01/evt", Event("b1", seq, kind, data, t0 + 120).encode())
            ingest.handle("denloa/xa-an-binh/node/loa-02/evt", Event("b2", 0, "broadcast_missed", {
                "id": "tb.1", "cat": "security", "prio": 0, "src": "clip", "why": "clip_missing"}, t0).encode())
            report = (await rig.api("GET", "/api/reports/monthly?month=2026-11", expect=200)).json()
            assert report["broadcasts"] == 2
            assert report["by_category"]["security"] == {"broadcasts": 1, "minutes": 1.5}  # 30 s + 60 s
            assert report["by_priority"]["emergency"] == {"broadcasts": 1, "minutes": 0.2}
            assert report["missed"] == {"count": 1, "by_reason": {"clip_missing": 1}}
            rows = rig.gw.db.all("SELECT outcome, samples, complete, why, by_item FROM airings ORDER BY id")
            assert [tuple(r) for r in rows] == [
                ("interrupted", 480000, 0, "by", "e1"), ("ended", 192000, None, "stream_ended", None),
                ("ended", 960000, 1, "end", None), ("missed", None, None, "clip_missing", None)]
            alert = [a for a in rig.gw.alerts.recent(0) if a["kind"] == "broadcast_not_aired"][0]
            assert alert["node_id"] == "loa-02"
            assert "loa chưa tải được tệp âm thanh kịp giờ" in alert["message_vi"] and "17:00" in alert["message_vi"]
            r = await rig.api("GET", "/api/reports/monthly.csv?month=2026-11", expect=200)
            assert ["clip_missing", "1"] in list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
        finally:
            await rig.stop()
    run(scenario())

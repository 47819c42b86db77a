"""A loudspeaker that starts an occurrence of a schedule staff deleted before its start (the cancel's plan push
reached it too late) is reported: an `aired_after_cancel` alert (gateway/plan_push.py PlanPusher.on_event).
Driven directly (no broker, no nodes), on a manual clock."""
from gateway.app import make_gateway
from gateway.clock import ManualClock
from gateway.config import GatewayConfig
from protocol.messages import Event
from tests.gateway.harness import GatewayRig

NOV_10 = 1794243600  # 2026-11-10 00:00 +07
SITE = "xa-an-binh"


def _schedule(sid, start, rrule=None):
    body = {"id": sid, "title": "Thông báo", "category": "music", "zones": ["thon-3"], "source": "line",
            "volume": 80, "start": start, "duration_s": 300}
    if rrule:
        body["rrule"] = rrule
    return body


def test_an_airing_of_a_schedule_cancelled_before_its_start_is_reported(tmp_path):
    clock = ManualClock(NOV_10 + 12 * 3600)
    gw = make_gateway(GatewayConfig(GatewayRig(tmp_path, broker="embedded").raw), clock, log=lambda text: None)
    try:
        async def publish(items):
            return [True] * len(items)
        gw.commands.publish = publish
        gw.registry.add_zone({"id": "thon-3", "name": "Thôn 3"})
        gw.registry.add_node({"id": "loa-3-01", "zones": ["thon-3"], "kind": "both"}, SITE, "127.0.0.1", 1883,
                             gw.location)
        seq = iter(range(100))

        def started(item, at):
            gw.ingest.handle("denloa/%s/node/loa-3-01/evt" % SITE, Event("b1", next(seq), "broadcast_started", {
                "src": "line", "id": item, "zones": ["thon-3"], "prio": 0, "cat": "music"}, at).encode())

        gw.plans.put_schedule(_schedule("mot-lan-12", "2026-11-10T13:00"), "admin", new=True)
        gw.plans.put_schedule(_schedule("hang-ngay", "2026-11-10T12:30", "FREQ=DAILY"), "admin", new=True)
        gw.plans.put_schedule(_schedule("van-con", "2026-11-10T14:00"), "admin", new=True)
        clock.advance(NOV_10 + 12 * 3600 + 35 * 60 - clock.now())  # 12:35: the daily one's first airing is on
        gw.plans.delete_schedule("hang-ngay")  # cancelled after its first airing
        gw.users.audit("admin", "schedule.delete", "hang-ngay", {})
        clock.advance(NOV_10 + 12 * 3600 + 55 * 60 - clock.now())
        gw.plans.delete_schedule("mot-lan-12")  # 12:55, five minutes before it airs
        gw.users.audit("admin", "schedule.delete", "mot-lan-12", {})
        started("hang-ngay.202611101230", NOV_10 + 12 * 3600 + 30 * 60)  # its report arrives late: aired before
        clock.advance(NOV_10 + 13 * 3600 - clock.now())
        started("mot-lan-12.202611101300", NOV_10 + 13 * 3600)  # the node had not got the plan without it
        started("mot-lan-12.202611101300", NOV_10 + 13 * 3600 + 5)  # a second start of it: one alert
        started("em-7", NOV_10 + 13 * 3600)  # an emergency: no schedule
        clock.advance(NOV_10 + 14 * 3600 - clock.now())
        started("van-con.202611101400", NOV_10 + 14 * 3600)  # still scheduled
        alerts = [a for a in gw.alerts.list(open_only=False) if a["kind"] == "aired_after_cancel"]
        assert len(alerts) == 1, alerts
        a = alerts[0]
        assert a["node_id"] == "loa-3-01"
        assert "mot-lan-12.202611101300" in a["message_en"] and "13:00" in a["message_en"]
        assert "cancelled at 12:55" in a["message_en"] and "hủy lúc 12:55" in a["message_vi"]
    finally:
        gw.db.close()

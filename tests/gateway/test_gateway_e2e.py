"""The gateway end to end: real Mosquitto, real firmware nodes (MicroPython hosts), the HTTP API."""
import asyncio
import json
import time

import paho.mqtt.client as paho

from tests.gateway.harness import GatewayRig, wait_until

NODES = [
    {"id": "den-01", "name": "Đèn thôn 1 số 1", "zones": ["thon-1"], "kind": "lamp"},
    {"id": "loa-01", "name": "Loa cụm 1", "zones": ["thon-1"], "kind": "both"},
    {"id": "loa-02", "name": "Loa cụm 2", "zones": ["thon-2"], "kind": "both"},
]


async def _site(rig):
    for zone in (("thon-1", "Thôn 1"), ("thon-2", "Thôn 2")):
        await rig.api("POST", "/api/zones", json={"id": zone[0], "name": zone[1]}, expect=201)
    return await rig.add_nodes(NODES)


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 180))


def test_register_program_schedule_emergency(tmp_path):
    async def scenario():
        rig = await GatewayRig(tmp_path).start()
        try:
            bundles = await _site(rig)
            host = rig.start_host(bundles)
            await rig.wait_online([n["id"] for n in NODES])

            # a lamp program for the site: acked and applied on every lamp node
            program = {"days": {"d": {"on": "sunset", "off": "sunrise", "level": 90,
                                      "steps": [{"at": "23:00", "level": 40}]}},
                       "calendar": [{"day": "d"}]}
            r = await rig.api("PUT", "/api/programs/default/site", json=program, expect=200)
            pushed = r.json()["pushed"]
            assert len(pushed) == 3  # every node first gets program + plan
            for cmd_id in pushed:
                await rig.wait_command(cmd_id)

            # a recurring broadcast: daily news 05:30 and 17:00 in thon-1
            for sid, hhmm in (("tin-sang", "05:30"), ("tin-chieu", "17:00")):
                r = await rig.api("POST", "/api/schedules", expect=201, json={
                    "id": sid, "title": "Bản tin " + hhmm, "category": "news", "priority": 0, "zones": ["thon-1"],
                    "source": "line", "ref": None, "volume": 80, "start": "2026-11-01T%s" % hhmm,
                    "duration_s": 900, "rrule": "FREQ=DAILY", "exdates": [], "enabled": True})
                for cmd_id in r.json()["pushed"]:
                    await rig.wait_command(cmd_id)
            plans = {row["node_id"]: row for row in rig.gw.db.all("SELECT * FROM node_plans")}
            assert plans["loa-01"]["plan_version"] >= 1
            sent = [c for c in (await rig.api("GET", "/api/commands?node=loa-01", expect=200)).json()
                    if c["op"] == "set_program" and c["status"] == "applied"]
            items = sent[0]["args"]["plan"]["items"]
            assert {i[0].split(".")[0] for i in items} == {"tin-sang", "tin-chieu"}
            days = rig.cfg.horizon_days
            assert 2 * days - 1 <= len(items) <= 2 * days + 1, items  # twice a day over the horizon
            # thon-2 is not in the schedules: its loudspeaker's plan stays empty
            loa2 = [c for c in (await rig.api("GET", "/api/commands?node=loa-02", expect=200)).json()
                    if c["op"] == "set_program"]
            assert all(not c["args"].get("plan", {}).get("items") for c in loa2)
            # the node itself says it runs the versions on record (rebirth: a fresh birth)
            await rig.api("POST", "/api/nodes/loa-01/commands", json={"op": "rebirth"}, expect=202)
            await wait_until(lambda: rig.gw.db.one(
                "SELECT plan_version FROM node_state WHERE node_id = 'loa-01'")[0] == plans["loa-01"]["plan_version"],
                20, "loa-01 birth with the new plan version")

            # emergency to thon-1: every loudspeaker there confirms and its amplifier is on (ground truth)
            t0 = time.monotonic()
            r = await rig.api("POST", "/api/emergency", expect=202,
                              json={"zones": ["thon-1"], "source": "line", "volume": 100, "duration_s": 60})
            batch = r.json()["batch"]

            async def confirmed():
                p = (await rig.api("GET", "/api/emergency/" + batch, expect=200)).json()["progress"]
                return p if p["applied"] == p["total"] else None
            progress = await wait_until(confirmed, 10, "emergency confirmed")
            assert progress["total"] == 1  # loa-01 only: den-01 has no loudspeaker, loa-02 is in thon-2
            await wait_until(lambda: any(v is True for _, v in host.truth("loa-01", "amp")), 5, "amp on")
            assert not any(v is True for _, v in host.truth("loa-02", "amp"))
            assert time.monotonic() - t0 < 5
            # after the amplifier's warm-up the line input is routed to thon-1's zone relay
            await wait_until(lambda: ("line" in [v for _, v in host.truth("loa-01", "source")]), 10, "audio routed")
            r = await rig.api("POST", "/api/emergency/%s/stop" % batch, expect=202)
            await wait_until(lambda: host.truth("loa-01", "source")[-1][1] is None, 10, "emergency stopped")
            assert not host.errors(), host.errors()
        finally:
            await rig.stop()
    run(scenario())


def test_bad_payloads_are_counted_and_ignored(tmp_path):
    async def scenario():
        rig = await GatewayRig(tmp_path).start()
        try:
            bundles = await _site(rig)
            b = bundles[0]
            client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="evil-" + b["node"])
            client.username_pw_set(b["broker"]["user"], b["broker"]["password"])
            client.connect("127.0.0.1", b["broker"]["port"])
            client.loop_start()
            base = "denloa/xa-an-binh/node/%s/" % b["node"]
            junk = [b"", b"{", b"[]", b'{"v":1}', b"\xff" * 10, b'{"v":1,"online":true}', b"x" * 200000,
                    b"[" * 5000, json.dumps({"v": 1, "boot": "a1", "seq": -5, "kind": "boot", "ts": None}).encode()]
            for kind in ("state", "tele", "evt", "ack"):
                for payload in junk:
                    client.publish(base + kind, payload, qos=1).wait_for_publish(5)
            # then a good event still goes through
            good = json.dumps({"v": 1, "boot": "a1", "seq": 0, "kind": "boot", "ts": None}).encode()
            client.publish(base + "evt", good, qos=1).wait_for_publish(5)
            await wait_until(lambda: rig.gw.db.one("SELECT COUNT(*) FROM events")[0] == 1, 10, "the good event")
            metrics = (await rig.api("GET", "/metrics", expect=200)).text
            bad = sum(float(line.split()[-1]) for line in metrics.splitlines()
                      if line.startswith("denloa_bad_messages_total{"))
            assert bad >= 30, metrics
            client.loop_stop()
            client.disconnect()
            assert rig.gw.link.up  # the gateway's link is still up
        finally:
            await rig.stop()
    run(scenario())


def test_api_validation_errors_are_bilingual_and_change_nothing(tmp_path):
    async def scenario():
        rig = await GatewayRig(tmp_path).start()
        try:
            await _site(rig)
            cases = [
                ("POST", "/api/zones", {"id": "Thôn 3", "name": "x"}, "id"),
                ("POST", "/api/nodes", {"id": "den-09", "zones": ["thon-9"]}, "zones"),
                ("POST", "/api/schedules", {"id": "s", "title": "x", "category": "news", "priority": 0,
                                            "zones": ["thon-1"], "source": "line", "ref": None, "volume": 80,
                                            "start": "2026-11-01T05:30", "duration_s": 90000, "rrule": None,
                                            "exdates": [], "enabled": True}, None),
                ("POST", "/api/emergency", {"zones": ["thon-7"], "source": "line"}, "zones"),
                ("PUT", "/api/programs/default/site", {"days": {}, "calendar": []}, None),
            ]
            before = [rig.gw.db.one("SELECT COUNT(*) FROM %s" % t)[0] for t in ("zones", "nodes", "schedules", "commands")]
            for method, path, body, field in cases:
                r = await rig.api(method, path, json=body)
                assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
                err = r.json()
                assert err["message"] and err["message_en"] and err["error"], err
                if field:
                    assert err.get("field") == field, err
            after = [rig.gw.db.one("SELECT COUNT(*) FROM %s" % t)[0] for t in ("zones", "nodes", "schedules", "commands")]
            assert before == after
            # no session, or no CSRF token: refused
            r = await rig.http.post("/api/zones", json={"id": "thon-5", "name": "x"}, headers={"X-CSRF-Token": "no"})
            assert r.status_code == 403
        finally:
            await rig.stop()
    run(scenario())


def test_restart_resumes_unanswered_commands_without_a_second_effect(tmp_path):
    async def scenario():
        rig = await GatewayRig(tmp_path).start()
        port = rig.cfg.broker_port
        data = rig.cfg.data_dir
        bundles = await _site(rig)
        host = rig.start_host(bundles[:1])
        await rig.wait_online(["den-01"])
        host.kill()  # the node is off: its command waits in the broker's session and our store
        r = await rig.api("POST", "/api/nodes/den-01/commands", expect=202,
                          json={"op": "lamp_override", "args": {"level": 33, "until": int(time.time()) + 86400 * 3}})
        cmd_id = r.json()["id"]
        await asyncio.sleep(0.5)
        rig.hosts = []
        await rig.stop()  # the gateway dies with the command unanswered
        rig2 = GatewayRig(tmp_path, data_dir=data, broker_port=port)
        await rig2.start()
        try:
            host.start()  # the node comes back
            rig2.hosts.append(host)
            row = await rig2.wait_command(cmd_id, timeout=30)
            assert row["status"] == "applied"
            await wait_until(lambda: any(v[0] == 33 for _, v in host.truth("den-01", "light")), 10, "light at 33 %")
            sends = rig2.gw.db.one("SELECT attempts FROM commands WHERE id = ?", cmd_id)[0]
            assert sends >= 1
            acks = [c for c in (await rig2.api("GET", "/api/commands?node=den-01", expect=200)).json()
                    if c["id"] == cmd_id]
            assert len(acks) == 1 and acks[0]["status"] == "applied"
        finally:
            await rig2.stop()
    run(scenario())


def test_plans_are_pushed_when_content_changes_not_when_items_merely_end(tmp_path):
    from gateway.clock import ManualClock

    async def scenario():
        rig = GatewayRig(tmp_path)
        rig.clock = ManualClock(1795366800)  # Monday 2026-11-23 00:00 +07
        await rig.start()
        try:
            await _site(rig)
            plans = rig.gw.plans
            for sid, day in (("tin-t2", "23"), ("tin-t3", "24")):  # one-offs, Monday and Tuesday 05:30
                body = {"id": sid, "title": "Bản tin", "category": "news", "zones": ["thon-1"], "source": "line",
                        "volume": 80, "start": "2026-11-%sT05:30" % day, "duration_s": 900}
                await rig.api("POST", "/api/schedules", json=body, expect=201)
            version = lambda: rig.gw.db.one("SELECT plan_version FROM node_plans WHERE node_id = 'loa-01'")[0]
            v1 = version()
            rig.gw.clock.advance(6 * 3600)  # 06:00: Monday's news has aired and ended; nothing new
            assert plans.refresh() == [] and version() == v1
            await rig.api("DELETE", "/api/schedules/tin-t3", expect=200)  # cancelled before it airs
            assert version() == v1 + 1
            latest = rig.gw.commands.list(node_id="loa-01", limit=1)[0]
            assert latest["op"] == "set_program" and latest["args"]["plan"]["items"] == []
        finally:
            await rig.stop()
    run(scenario())

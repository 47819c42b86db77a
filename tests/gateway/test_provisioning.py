"""A registry change and its broker reload are one unit; reserved and colliding node ids (issue 9).

Unit tests drive `Provisioning` with a real Registry on an in-memory SQLite
database and a recording reload; API tests run a real gateway (GatewayRig) on
the embedded broker, and the "node called gateway already in the database"
start on both brokers.
"""
import asyncio
import sqlite3

import paho.mqtt.client as mqtt
import pytest

from gateway.broker import BrokerError, BrokerUser, acl_text, hash_password, mosquitto_available
from gateway.clock import SystemClock
from gateway.db import Database
from gateway.errors import GatewayError
from gateway.provisioning import Provisioning
from gateway.registry import Registry
from tests.gateway.harness import GatewayRig
from tests.mosquitto import MISSING

SITE = "xa-an-binh"
LOCATION = {"lat": 21.0, "lon": 105.8, "tz": 7}
NODE = {"id": "den-1", "name": "Đèn 1", "zones": ["thon-1"], "kind": "lamp"}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


# ---- the unit, without a broker ---------------------------------------------------------


class Reloads:
    """A broker reload that records the usernames it was given and fails when told to."""

    def __init__(self):
        self.calls = []
        self.fail = 0  # how many of the next calls fail

    async def __call__(self, users):
        self.calls.append([u.username for u in users])
        if self.fail:
            self.fail -= 1
            raise BrokerError("Mosquitto did not reload within 5 s (injected)")


@pytest.fixture
def unit():
    db = Database(":memory:")
    registry = Registry(db, SystemClock(), hash_password)
    registry.add_zone({"id": "thon-1", "name": "Thôn 1"})
    reloads, lines = Reloads(), []
    prov = Provisioning(registry, reloads, BrokerUser("gateway", hash_password("gw-pass"), "gateway"), lines.append)
    prov.reloads, prov.lines = reloads, lines
    yield prov
    db.close()


def add(prov, obj=NODE):
    return prov.add_node(dict(obj), SITE, "127.0.0.1", 1883, LOCATION)


def rows(db, node_id):
    return ([dict(r) for r in db.all("SELECT * FROM nodes WHERE id = ?", node_id)],
            [dict(r) for r in db.all("SELECT * FROM node_state WHERE node_id = ?", node_id)])


def test_add_reloads_the_broker_with_the_new_node(unit):
    node, bundle = run(add(unit))
    assert node["id"] == "den-1" and bundle["broker"]["user"] == "den-1"
    assert unit.reloads.calls == [["gateway", "den-1"]]


def test_a_node_called_gateway_is_refused_before_anything_is_written(unit):
    with pytest.raises(GatewayError) as e:
        run(add(unit, dict(NODE, id="gateway")))
    assert e.value.status == 409 and e.value.field == "id" and e.value.code == "id.reserved"
    assert "gateway" in e.value.vi and "gateway" in e.value.en and e.value.vi != e.value.en
    assert rows(unit.registry.db, "gateway") == ([], []) and unit.reloads.calls == []
    with pytest.raises(GatewayError) as e:
        run(unit.reprovision("gateway", SITE, "127.0.0.1", 1883, LOCATION))
    assert e.value.code == "id.reserved"


def test_a_failed_reload_undoes_an_add(unit):
    unit.reloads.fail = 1
    with pytest.raises(GatewayError) as e:
        run(add(unit))
    assert e.value.status == 503 and e.value.code == "broker.unavailable"
    assert "den-1" in e.value.vi and "den-1" in e.value.en
    assert rows(unit.registry.db, "den-1") == ([], [])
    assert unit.reloads.calls == [["gateway", "den-1"], ["gateway"]]  # then back to the users it had
    assert any("undoing" in line for line in unit.lines)
    node, _ = run(add(unit))  # nothing left behind: the same id registers fine afterwards
    assert node["id"] == "den-1"


@pytest.mark.parametrize("op", ["reprovision", "revoke"])
def test_a_failed_reload_restores_the_previous_rows_exactly(unit, op):
    run(add(unit))
    db = unit.registry.db
    db.run("UPDATE nodes SET counter = 41 WHERE id = 'den-1'")  # a key in use, with a counter
    before = rows(db, "den-1")
    unit.reloads.fail = 1
    with pytest.raises(GatewayError) as e:
        if op == "reprovision":
            run(unit.reprovision("den-1", SITE, "127.0.0.1", 1883, LOCATION))
        else:
            run(unit.revoke("den-1"))
    assert e.value.status == 503
    assert rows(db, "den-1") == before  # same hash, key, counter, revoked flag
    assert unit.reloads.calls[-1] == ["gateway", "den-1"]  # reloaded with the node's old password


def test_a_second_failing_reload_still_leaves_the_registry_as_it_was(unit):
    unit.reloads.fail = 2
    with pytest.raises(GatewayError):
        run(add(unit))
    assert rows(unit.registry.db, "den-1") == ([], [])
    assert any("failed too" in line for line in unit.lines)


def test_broker_users_leave_out_a_node_called_gateway(unit):
    run(add(unit))
    db = unit.registry.db
    db.run("INSERT INTO nodes (id, name, zones, relays, board, kind, mqtt_hash, hmac_key, created)"
           " VALUES ('gateway', 'old', '[\"thon-1\"]', '{}', 'denloa-v1', 'lamp', ?, x'00', 0)", hash_password("x"))
    users = unit.broker_users()
    assert [(u.username, u.role) for u in users] == [("gateway", "gateway"), ("den-1", "node")]
    acl_text(SITE, users)  # a list the broker accepts
    assert any("'gateway' left out" in line for line in unit.lines)


# ---- through the API, on a real gateway --------------------------------------------------


async def _zone(rig):
    await rig.api("POST", "/api/zones", json={"id": "thon-1", "name": "Thôn 1"}, expect=201)


def _connects(port, user, password):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-" + user)
    client.username_pw_set(user, password)
    try:
        return client.connect("127.0.0.1", port, 10) == 0 and _connack(client)
    finally:
        client.disconnect()


def _connack(client):
    result = []
    client.on_connect = lambda c, u, flags, rc, props: result.append(rc)
    for _ in range(50):
        client.loop(0.1)
        if result:
            return not result[0].is_failure
    return False


def test_api_refuses_a_node_called_gateway(tmp_path):
    async def scenario():
        rig = await GatewayRig(tmp_path, broker="embedded").start()
        try:
            await _zone(rig)
            r = await rig.api("POST", "/api/nodes", json=dict(NODE, id="gateway"))
            assert 400 <= r.status_code < 500, r.text
            body = r.json()
            assert body["field"] == "id" and body["error"] == "id.reserved"
            assert body["message"] and body["message_en"] and body["message"] != body["message_en"]
            assert rig.gw.db.one("SELECT 1 FROM nodes WHERE id = 'gateway'") is None
            assert (await rig.api("GET", "/api/nodes", expect=200)).json() == []
            await rig.api("POST", "/api/nodes", json=NODE, expect=201)  # the broker is fine
            assert rig.gw.link.up
        finally:
            await rig.stop()
    run(scenario())


def test_api_a_failed_reload_changes_nothing_and_says_so(tmp_path):
    async def scenario():
        rig = await GatewayRig(tmp_path, broker="embedded").start()
        try:
            await _zone(rig)
            broker, real = rig.gw.broker, rig.gw.broker.reload
            calls = []

            async def flaky(users, **kw):
                calls.append([u.username for u in users])
                if len(calls) == 1:
                    raise BrokerError("the embedded broker did not reload (injected)")
                return await real(users, **kw)

            broker.reload = flaky
            r = await rig.api("POST", "/api/nodes", json=NODE)
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "broker.unavailable" and r.json()["message"] and r.json()["message_en"]
            assert (await rig.api("GET", "/api/nodes/den-1")).status_code == 404
            assert rig.gw.db.one("SELECT 1 FROM nodes WHERE id = 'den-1'") is None
            assert rig.gw.db.one("SELECT 1 FROM node_state WHERE node_id = 'den-1'") is None
            assert calls == [["gateway", "den-1"], ["gateway"]]
            # Re-provisioning whose reload fails: the old password still works, the new one does not.
            bundle = (await rig.api("POST", "/api/nodes", json=NODE, expect=201)).json()["provisioning"]
            old = bundle["broker"]["password"]
            port = rig.cfg.broker_port
            calls.clear()
            r = await rig.api("POST", "/api/nodes/den-1/reprovision")
            assert r.status_code == 503, r.text
            assert await asyncio.to_thread(_connects, port, "den-1", old)
            r = await rig.api("DELETE", "/api/nodes/den-1", expect=200)  # the next reload works again
            assert not await asyncio.to_thread(_connects, port, "den-1", old)
        finally:
            await rig.stop()
    run(scenario())


@pytest.mark.parametrize("kind", ["mosquitto", "embedded"])
def test_a_gateway_whose_database_holds_a_node_called_gateway_still_starts(tmp_path, kind):
    if kind == "mosquitto" and not mosquitto_available():
        pytest.fail(MISSING)

    async def scenario():
        rig = await GatewayRig(tmp_path, broker=kind).start()
        await _zone(rig)
        bundle = (await rig.api("POST", "/api/nodes", json=NODE, expect=201)).json()["provisioning"]
        data, port = rig.cfg.data_dir, rig.cfg.broker_port
        await rig.stop()
        with sqlite3.connect("%s/denloa.db" % data) as conn:  # as an older gateway could have stored it
            conn.execute("INSERT INTO nodes (id, name, zones, relays, board, kind, mqtt_hash, hmac_key, created)"
                         " VALUES ('gateway', 'old', '[\"thon-1\"]', '{}', 'denloa-v1', 'lamp', ?, x'00', 0)",
                         (hash_password("node-pass"),))
            conn.execute("INSERT INTO node_state (node_id) VALUES ('gateway')")
        rig2 = GatewayRig(tmp_path, broker=kind, data_dir=data, broker_port=port)
        await rig2.start()
        try:
            assert rig2.gw.link.up  # the gateway's own MQTT login works
            assert any("'gateway' left out" in line for line in rig2.logs)
            assert await asyncio.to_thread(_connects, port, "den-1", bundle["broker"]["password"])
            assert not await asyncio.to_thread(_connects, port, "gateway", "node-pass")
            await rig2.api("DELETE", "/api/nodes/gateway", expect=200)  # staff can clean it up
        finally:
            await rig2.stop()
    run(scenario())

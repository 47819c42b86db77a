"""Issue 13, the broker ACL matrix: every node against every other node's topics, on real
Mosquitto and on the embedded amqtt broker, with nodes provisioned the gateway's way.

The gateway's own `Provisioning` (real Registry, in-memory SQLite) registers a lamp, a
loudspeaker and a both-node; each `add_node` reloads the real broker, as in production.
What a user may do is derived from the ACL generator (`gateway.broker.allowed`, from the
same rule table as the Mosquitto acl file), checked once against the design (a node
publishes only its own state/tele/evt/ack and reads only its own cmd), and then checked
against what each broker really delivers.

Negatives are proven without sleeping: after the forbidden messages a client sends a marker
on a topic it may use and the test waits for it; all results are judged at the end of the
test, so a forbidden message that had overtaken nothing would still be seen.
The pairwise, lower-level cases (wills, persistent sessions, retained messages for a new
client, the bridge) are in tests/gateway/test_broker_acl.py.
"""
import asyncio
import queue
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from gateway.broker import BrokerUser, allowed, hash_password, make_broker, mosquitto_available
from gateway.clock import SystemClock
from gateway.db import Database
from gateway.provisioning import Provisioning
from gateway.registry import Registry
from gateway.service import GATEWAY_USER
from protocol import topics
from tests.mosquitto import MISSING, free_port

SITE = "xa-an-binh"
LOCATION = {"lat": 21.0, "lon": 105.8, "tz": 7}
KINDS = {"den-1": "lamp", "loa-1": "speaker", "tru-1": "both"}  # a lamp, a loudspeaker, both
GHOST = "den-ma"  # a node id nobody registered
GW_PASSWORD = "gw-" + uuid.uuid4().hex
TIMEOUT = 5.0


class Peer:
    """A paho MQTT 3.1.1 client; messages, CONNACK and SUBACK into queues; every wait is bounded."""

    def __init__(self, port, username=None, password=None, client_id=None, clean=True):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "t-" + uuid.uuid4().hex[:10],
                                  clean_session=clean, reconnect_on_failure=False)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.port = port
        self.seen = []  # (topic, payload) of everything received, in order
        self._messages, self._connacks, self._subacks = queue.Queue(), queue.Queue(), queue.Queue()
        self.dropped = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self._connacks.put(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subacks.put(rcs)
        self.client.on_message = lambda c, u, m: self._messages.put((m.topic, m.payload))
        self.client.on_disconnect = lambda c, u, f, rc, p: self.dropped.set()

    def connect(self):
        self.client.connect_async("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        self.rc = self._connacks.get(timeout=TIMEOUT)
        return self

    def subscribe(self, filt):
        self.client.subscribe(filt, 1)
        (rc,) = self._subacks.get(timeout=TIMEOUT)
        return not rc.is_failure

    def publish(self, topic, payload, retain=False, qos=1):
        self.client.publish(topic, payload, qos, retain).wait_for_publish(TIMEOUT)

    def expect(self, topic, payload):
        """Wait until (topic, payload) has arrived."""
        deadline = time.monotonic() + TIMEOUT
        while (topic, payload) not in self.seen:
            try:
                self.seen.append(self._messages.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError("no %r on %s within %s s; saw %r" % (payload, topic, TIMEOUT, self.seen))

    def collect(self):
        """Whatever else has arrived by now (no waiting)."""
        while True:
            try:
                self.seen.append(self._messages.get_nowait())
            except queue.Empty:
                return self.seen

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class Site:
    """A real broker of one kind, the gateway's Provisioning on it, and three provisioned nodes."""

    def __init__(self, kind, data_dir):
        self.kind = kind
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.peers = []
        self.lines = []
        self.broker = make_broker(kind, data_dir, SITE, port=free_port(), log=self.lines.append)
        self.port = self.broker.port
        self.gateway_user = BrokerUser(GATEWAY_USER, hash_password(GW_PASSWORD), "gateway")
        self.run(self._setup())

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _setup(self):
        self.db = Database(":memory:")  # used on the loop thread only, as in the gateway
        registry = Registry(self.db, SystemClock(), hash_password)
        registry.add_zone({"id": "thon-1", "name": "Thôn 1"})
        self.prov = Provisioning(registry, self.broker.reload, self.gateway_user, self.lines.append)
        await self.broker.start(self.prov.broker_users())
        self.passwords = {}
        for node_id, kind in KINDS.items():
            _, bundle = await self.prov.add_node({"id": node_id, "kind": kind, "zones": ["thon-1"]}, SITE,
                                                 "127.0.0.1", self.port, LOCATION)
            assert bundle["broker"]["user"] == node_id
            self.passwords[node_id] = bundle["broker"]["password"]

    def users(self):
        return {u.username: u for u in self.run(self._users())}

    async def _users(self):
        return self.prov.broker_users()

    def peer(self, username=None, password=None, expect_ok=True, **kw):
        p = Peer(self.port, username, password, **kw)
        self.peers.append(p)
        p.connect()
        if expect_ok:
            assert not p.rc.is_failure, "%s could not log in: %s" % (username, p.rc)
        return p

    def gateway(self):
        gw = self.peer(GATEWAY_USER, GW_PASSWORD, client_id="denloa-gw-" + SITE)
        assert gw.subscribe(topics.site_filter(SITE))
        return gw

    def node(self, node_id, password=None, **kw):
        kw.setdefault("client_id", "%s.%s" % (SITE, node_id))  # what the firmware sends
        return self.peer(node_id, self.passwords[node_id] if password is None else password, **kw)

    def close(self):
        for p in self.peers:
            try:
                p.close()
            except Exception:
                pass
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()

    async def _stop(self):
        try:
            await self.broker.stop()
        finally:
            self.db.close()


@pytest.fixture(params=["mosquitto", "embedded"])
def site(request, tmp_path):
    if request.param == "mosquitto" and not mosquitto_available():
        pytest.fail(MISSING)
    s = Site(request.param, tmp_path / request.param)
    try:
        yield s
    finally:
        s.close()


def every_topic():
    """Every topic of protocol/topics.py in this site: each kind of each node (and of an unknown one)."""
    ids = list(KINDS) + [GHOST]
    return [topics.node_topic(SITE, n, k) for n in ids for k in topics.NODE_KINDS] + [topics.gateway_state_topic(SITE)]


def test_the_acl_generator_says_what_the_design_says(site):
    """The matrix below trusts `allowed()`; first check it against the design, cell by cell."""
    users = site.users()
    assert set(users) == {GATEWAY_USER, *KINDS}
    for n in KINDS:
        for t in every_topic():
            _, owner, kind = topics.parse_topic(t)
            mine = owner == n
            assert allowed(SITE, users[n], t, "publish") == (mine and kind in ("state", "tele", "evt", "ack")), t
            assert allowed(SITE, users[n], t, "receive") == (mine and kind == "cmd"), t
            assert allowed(SITE, users[n], t, "subscribe") == (mine and kind == "cmd"), t
            assert allowed(SITE, users[GATEWAY_USER], t, "publish") and allowed(SITE, users[GATEWAY_USER], t, "receive")


def test_every_node_publishes_only_its_own_reports(site):
    """Every node publishes on every topic, at QoS 0, 1 and 2, retained where the contract retains
    (state): the gateway, reading the whole site live and then as a new subscriber (retained), gets
    exactly what the generator allows."""
    users = site.users()
    gw = site.gateway()
    nodes = {n: site.node(n) for n in KINDS}
    for n, p in nodes.items():
        assert p.subscribe(topics.node_topic(SITE, n, topics.CMD))
    for n, p in nodes.items():
        for i, t in enumerate(every_topic()):
            retain = t.endswith("/" + topics.STATE)
            p.publish(t, ("%s -> %s" % (n, t)).encode(), retain=retain, qos=i % 3)  # a refused QoS 1/2 is acked too
        p.publish(topics.node_topic(SITE, n, topics.TELE), b"marker " + n.encode())
    for n in nodes:
        gw.expect(topics.node_topic(SITE, n, topics.TELE), b"marker " + n.encode())
    for m, p in nodes.items():  # the gateway's own cmd to each node, after everything the others sent
        gw.publish(topics.node_topic(SITE, m, topics.CMD), b"gw cmd")
        p.expect(topics.node_topic(SITE, m, topics.CMD), b"gw cmd")
    expected = {("%s -> %s" % (n, t)).encode()
                for n in KINDS for t in every_topic() if allowed(SITE, users[n], t, "publish")}
    assert len(expected) == 4 * len(KINDS)  # state, tele, evt, ack of each node: nothing else
    got = {payload for t, payload in gw.collect() if b" -> " in payload}
    assert got == expected, ("the gateway got forged reports", sorted(got - expected), sorted(expected - got))
    for m, p in nodes.items():  # on its cmd topic each node got the gateway's command and nothing else
        assert set(p.collect()) == {(topics.node_topic(SITE, m, topics.CMD), b"gw cmd")}, (m, p.seen)
        assert not p.dropped.is_set()
    # a new subscriber gets the retained states: each node's own, never one another node forged
    gw.close()  # the gateway reconnects (one client id per user: the new login would take this one's place)
    late = site.gateway()
    for n in KINDS:
        state = topics.node_topic(SITE, n, topics.STATE)
        late.expect(state, ("%s -> %s" % (n, state)).encode())
    late.publish(topics.gateway_state_topic(SITE), b"late marker")
    late.expect(topics.gateway_state_topic(SITE), b"late marker")
    retained = {payload for t, payload in late.collect() if b" -> " in payload}
    assert retained == {e for e in expected if e.endswith(b"/state")}, sorted(retained)


def test_no_node_reads_another_nodes_topics_whatever_it_subscribes_to(site):
    users = site.users()
    gw = site.gateway()
    nodes = {n: site.node(n) for n in KINDS}
    for n, p in nodes.items():  # retained messages are there to leak, too
        p.publish(topics.node_topic(SITE, n, topics.STATE), b"retained state " + n.encode(), retain=True)
    gw.publish(topics.gateway_state_topic(SITE), b"retained gateway state", retain=True)
    for n, p in nodes.items():
        gw.expect(topics.node_topic(SITE, n, topics.STATE), b"retained state " + n.encode())
    for n, p in nodes.items():
        assert p.subscribe(topics.node_topic(SITE, n, topics.CMD))
        filters = [t for t in every_topic() if t != topics.node_topic(SITE, n, topics.CMD)]
        filters += [topics.nodes_filter(SITE, k) for k in topics.NODE_KINDS] + [
            topics.site_filter(SITE), "denloa/#", "#", "+/+/node/+/cmd", "$SYS/#", "denloa/+/gateway/+"]
        filters += ["$share/g/" + topics.node_topic(SITE, m, topics.CMD) for m in KINDS if m != n]  # MQTT 5 shared
        for f in filters:
            assert not allowed(SITE, users[n], f, "subscribe"), (n, f)
            granted = p.subscribe(f)
            if site.kind == "embedded":  # our topic plugin refuses the SUBACK (0x80)
                assert not granted, (n, f)
            # Mosquitto 2.0 does not check SUBSCRIBE against the acl file; it checks every delivery (below).
    for t in every_topic():
        gw.publish(t, b"gw -> " + t.encode())
    for n, p in nodes.items():
        gw.publish(topics.node_topic(SITE, n, topics.CMD), b"marker")
        p.expect(topics.node_topic(SITE, n, topics.CMD), b"marker")
    for n, p in nodes.items():
        readable = {(t, b"gw -> " + t.encode()) for t in every_topic() if allowed(SITE, users[n], t, "receive")}
        own_cmd = topics.node_topic(SITE, n, topics.CMD)
        assert readable == {(own_cmd, b"gw -> " + own_cmd.encode())}
        got = set(p.collect()) - {(own_cmd, b"marker")}
        assert got == readable, (site.kind, n, sorted(got - readable))
        assert not p.dropped.is_set()


def test_a_node_using_another_nodes_client_id_neither_knocks_it_off_nor_acts_as_it(site):
    """Both brokers bind the client id to the login (Mosquitto: use_username_as_clientid; embedded:
    _SiteBroker): the thief keeps its own rights and its own session; the victim stays connected."""
    gw = site.gateway()
    for n in KINDS:
        for m in KINDS:
            if m == n:
                continue
            victim = site.node(m, clean=False)
            assert victim.subscribe(topics.node_topic(SITE, m, topics.CMD))
            for cid in (m, "%s.%s" % (SITE, m), GATEWAY_USER, "denloa-gw-" + SITE):
                thief = site.node(n, client_id=cid, clean=False)  # its own valid login, another's id
                for kind in (topics.STATE, topics.EVT, topics.ACK):
                    thief.publish(topics.node_topic(SITE, m, kind), b"hijack")
                thief.publish(topics.node_topic(SITE, n, topics.EVT), ("thief %s as %s" % (n, cid)).encode())
                gw.expect(topics.node_topic(SITE, n, topics.EVT), ("thief %s as %s" % (n, cid)).encode())
                assert site.node(n, "wrong", client_id=cid, expect_ok=False).rc.is_failure
                thief.close()
            gw.publish(topics.node_topic(SITE, m, topics.CMD), b"still yours")
            victim.expect(topics.node_topic(SITE, m, topics.CMD), b"still yours")
            assert not victim.dropped.is_set(), "%s was knocked off by %s" % (m, n)
            assert all(payload == b"still yours" for _, payload in victim.collect())
            victim.close()
    assert b"hijack" not in [payload for _, payload in gw.collect()]
    assert not gw.dropped.is_set()


def test_logins_revocation_and_re_provisioning_through_the_gateway(site):
    gw = site.gateway()
    lamp, speaker, both = KINDS
    # anonymous, wrong password, another node's password, the gateway's name with a node's password
    for args in [(None, None), (lamp, "wrong"), (lamp, ""), (lamp, site.passwords[speaker]),
                 (GATEWAY_USER, site.passwords[lamp]), (GHOST, site.passwords[lamp])]:
        assert site.peer(*args, expect_ok=False).rc.is_failure, args
    nodes = {n: site.node(n) for n in KINDS}
    # revoke the lamp: disconnected at once, refused afterwards, the others untouched
    site.run(site.prov.revoke(lamp))
    assert nodes[lamp].dropped.wait(TIMEOUT), "the revoked node is still connected"
    assert site.node(lamp, expect_ok=False).rc.is_failure
    assert set(site.users()) == {GATEWAY_USER, speaker, both}
    # re-provision the loudspeaker: its old password stops at once, the new one works
    bundle = site.run(site.prov.reprovision(speaker, SITE, "127.0.0.1", site.port, LOCATION))
    assert nodes[speaker].dropped.wait(TIMEOUT), "the old credentials are still connected"
    assert site.node(speaker, expect_ok=False).rc.is_failure
    fresh = site.node(speaker, bundle["broker"]["password"])
    for p, n in ((fresh, speaker), (nodes[both], both)):
        p.publish(topics.node_topic(SITE, n, topics.TELE), b"alive " + n.encode())
        gw.expect(topics.node_topic(SITE, n, topics.TELE), b"alive " + n.encode())
    assert not nodes[both].dropped.is_set() and not gw.dropped.is_set()

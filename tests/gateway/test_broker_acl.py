"""The broker's security model, checked on real brokers with real MQTT clients.

Every integration test runs twice: on Mosquitto (MosquittoBroker, a child
process) and on the embedded amqtt broker (EmbeddedBroker, in a background
event loop). Where the two differ the test says so and asserts what each one
really does (e.g. Mosquitto 2.0 grants any SUBACK and filters delivery; amqtt,
with our plugin, refuses the SUBACK). Clients are paho-mqtt (MQTT 3.1.1) in
this thread; every wait has a timeout.
"""
import asyncio
import base64
import os
import queue
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.broker import (
    BrokerConfigError, BrokerError, BrokerUser, EmbeddedBroker, MosquittoBroker, acl_text, allowed, bridge_text,
    hash_password, make_broker, mosquitto_available, password_file_text, verify_password,
)
from tests.mosquitto import MISSING, Mosquitto, free_port, password_line

SITE = "xa-an-binh"
PASSWORDS = {"gw": "gw-pass-1", "n-a": "node-a-pass", "n-b": "node-b-pass", "up": "bridge-pass"}
ROLES = {"gw": "gateway", "up": "bridge"}
TIMEOUT = 5.0  # any single expected event
GRACE = 0.4  # how long "never arrives" is watched, after a later message did arrive


def topic(node, kind):
    return "denloa/%s/node/%s/%s" % (SITE, node, kind)


GATEWAY_STATE = "denloa/%s/gateway/state" % SITE
SITE_ALL = "denloa/%s/#" % SITE


def make_users(*names, passwords=PASSWORDS):
    return [BrokerUser(n, hash_password(passwords[n]), ROLES.get(n, "node")) for n in names]


def need_mosquitto():
    if not mosquitto_available():
        pytest.fail(MISSING)


# ---- a background event loop for the brokers, paho clients in the test thread -------


@pytest.fixture
def aloop():
    """run(coro) -> result, on an event loop in a thread (the embedded broker lives there)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro, timeout=20.0):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    yield run
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


class Peer:
    """A paho client with queues instead of callbacks; every wait is time-limited."""

    def __init__(self, port, username=None, password=None, *, client_id=None, will=None, clean=True):
        self.port = port
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or "t-%s-%s" % (username, uuid.uuid4().hex[:8]),
                                  clean_session=clean, reconnect_on_failure=False)  # a test sees each drop
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(*will)
        self.messages = queue.Queue()
        self.seen = []  # (topic, payload, retain) of everything received so far
        self._connacks = queue.Queue()
        self._subacks = queue.Queue()
        self.dropped = threading.Event()
        self.client.on_connect = lambda c, u, flags, rc, props: self._connacks.put(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self._subacks.put(rcs)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.dropped.set()

    def connect(self):
        self.client.connect_async("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        return self._connacks.get(timeout=TIMEOUT)

    def subscribe(self, filt, qos=1):
        self.client.subscribe(filt, qos)
        (rc,) = self._subacks.get(timeout=TIMEOUT)
        return rc

    def publish(self, topic_, payload, qos=1, retain=False, wait=True):
        info = self.client.publish(topic_, payload, qos, retain)
        if wait and qos:
            info.wait_for_publish(TIMEOUT)

    def expect(self, topic_, payload=None, timeout=TIMEOUT):
        """Wait for a message on `topic_` (with `payload`, if given); returns its payload."""
        deadline = time.monotonic() + timeout
        for t, p, r in self.seen:
            if t == topic_ and payload in (None, p):
                return p
        while True:
            try:
                t, p, r = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no message on %s within %s s; saw %r" % (topic_, timeout, self.topics()))
            self.seen.append((t, p, r))
            if t == topic_ and payload in (None, p):
                return p

    def settle(self, grace=GRACE):
        """Collect whatever else arrives within `grace` seconds."""
        deadline = time.monotonic() + grace
        while True:
            try:
                self.seen.append(self.messages.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                return self

    def topics(self):
        return [t for t, _, _ in self.seen]

    def payloads(self, topic_):
        return [p for t, p, _ in self.seen if t == topic_]

    def drop(self):
        """Cut the TCP connection without DISCONNECT, as a power cut does: the will fires."""
        sock = self.client.socket()
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        self.dropped.wait(TIMEOUT)
        self.client.loop_stop()

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


@pytest.fixture
def peer():
    """peer(port, user, password, **kw) -> a connected Peer (asserting success unless expect_ok=False)."""
    made = []

    def make(port, username=None, password=None, *, expect_ok=True, **kw):
        p = Peer(port, username, password, **kw)
        made.append(p)
        p.rc = p.connect()
        if expect_ok:
            assert not p.rc.is_failure, "%s could not connect: %s" % (username, p.rc)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request, tmp_path, aloop):
    """A started broker of each kind with gateway `gw`, nodes `n-a`, `n-b` and bridge user `up`."""
    if request.param == "mosquitto":
        need_mosquitto()
    lines = []
    b = make_broker(request.param, tmp_path / request.param, SITE, port=free_port(), log=lines.append)
    aloop(b.start(make_users("gw", "n-a", "n-b", "up")))
    b.run, b.lines = aloop, lines
    try:
        yield b
    finally:
        aloop(b.stop())


# ---- passwords -----------------------------------------------------------------------


def test_hash_password_is_what_mosquitto_passwd_writes(tmp_path):
    need_mosquitto()
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.path.exists(tool):
        pytest.fail("mosquitto_passwd is missing (it comes with the mosquitto package)")
    path = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", str(path), "alice", "s3cret và dấu"], check=True, timeout=10,
                   capture_output=True)
    written = path.read_text().strip().split(":", 1)[1]
    _, seven, iterations, salt, _ = written.split("$")
    assert seven == "7" and len(base64.b64decode(salt)) == 12
    # Same salt and count: byte for byte the same line.
    assert hash_password("s3cret và dấu", iterations=int(iterations), salt=base64.b64decode(salt)) == written
    assert verify_password("s3cret và dấu", written)
    assert not verify_password("s3cret va dau", written)


def test_hash_password_is_accepted_by_real_mosquitto(tmp_path, peer):
    need_mosquitto()
    text = password_file_text(make_users("n-a", "gw"))
    with Mosquitto(tmp_path / "m", password_file=text, allow_anonymous=False) as m:
        assert not peer(m.port, "n-a", PASSWORDS["n-a"]).rc.is_failure
        assert peer(m.port, "n-a", "wrong", expect_ok=False).rc.is_failure
        assert peer(m.port, "gw", PASSWORDS["n-a"], expect_ok=False).rc.is_failure


# HMAC pads keys with NUL ("" and "\0" are one key) and lone surrogates are not UTF-8: both refused.
NO_NUL = st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))


@settings(max_examples=60, deadline=None)
@given(st.text(NO_NUL, max_size=40), st.text(NO_NUL, min_size=1, max_size=5))
def test_verify_password_round_trip_and_refusal(password, extra):
    hashed = hash_password(password)
    assert re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", hashed)
    assert verify_password(password, hashed)
    assert not verify_password(password + extra, hashed)
    assert hash_password(password) != hashed  # a fresh salt every time


def test_verify_password_accepts_6_and_refuses_garbage():
    legacy = password_line("u", "old-pass").split(":", 1)[1]  # mosquitto 1.x format
    assert verify_password("old-pass", legacy) and not verify_password("old-pas", legacy)
    good = hash_password("p")
    for bad in ["", "p", "$7$", "$7$101$$", good.replace("$7$101$", "$7$0$"), good[:-4], good + "x",
                "$7$101$!!!!$" + good.split("$")[-1], "$5$abc$def", None, 7]:
        assert not verify_password("p", bad)
    assert not verify_password(None, good)
    with pytest.raises(BrokerConfigError):
        hash_password("p\0")  # Mosquitto would compare only "p"
    with pytest.raises(BrokerConfigError):
        hash_password("\ud800")
    assert not verify_password("\ud800", good)


def test_broker_user_refuses_what_would_break_the_files():
    h = hash_password("x")
    assert BrokerUser("den-01", h).node_id == "den-01"
    for args in [("den-01", "plaintext"), ("den-01", h, "node", "den-02"), ("Den 01", h), ("a:b", h, "gateway"),
                 ("gw\nuser evil", h, "gateway"), ("gw", h, "admin"), ("gw", h, "gateway", "gw")]:
        with pytest.raises(BrokerConfigError):
            BrokerUser(*args)
    with pytest.raises(BrokerConfigError):
        acl_text(SITE, [BrokerUser("n-a", h), BrokerUser("n-a", h)])
    with pytest.raises(BrokerConfigError):
        acl_text("Bad Site", [])
    assert "plaintext" not in repr(BrokerUser("n-a", h)) and h not in repr(BrokerUser("n-a", h))


# ---- the rules as pure Python, against an independent reference -----------------------

NODES = ("n-a", "n-b", "n-c")
KINDS = ("state", "tele", "evt", "cmd", "ack")
REPORTS = ("state", "tele", "evt", "ack")


def ref_match(filt, topic_):
    """MQTT 3.1.1 topic matching, written as a regular expression."""
    if topic_.startswith("$") and filt[:1] in ("+", "#"):
        return False
    levels = filt.split("/")
    pattern = ""
    for i, level in enumerate(levels):
        if level == "#":
            pattern = pattern[:-1] + "(/.*)?" if i else ".*"
            break
        pattern += ("[^/]*" if level == "+" else re.escape(level)) + "/"
    else:
        pattern = pattern[:-1]
    return re.fullmatch(pattern, topic_, re.S) is not None


def ref_valid_filter(f):
    levels = f.split("/")
    return bool(f) and all(("#" not in lv or (lv == "#" and i == len(levels) - 1)) and ("+" not in lv or lv == "+")
                           for i, lv in enumerate(levels))


def reference(role, node, t, action):
    """The security model, written directly from docs/design.md, one case per role."""
    levels = t.split("/")
    if action == "subscribe":
        if not ref_valid_filter(t):
            return False
        if role == "gateway":
            return len(levels) >= 2 and levels[:2] == ["denloa", SITE]
        if role == "node":
            return t == topic(node, "cmd")
        return (t == GATEWAY_STATE or (len(levels) == 5 and levels[:3] == ["denloa", SITE, "node"]
                                       and levels[3] != "#" and levels[4] in REPORTS))
    if not t or "+" in t or "#" in t:
        return False
    if role == "gateway":
        return t == "denloa/" + SITE or t.startswith("denloa/%s/" % SITE)
    if role == "node":
        own = [topic(node, k) for k in REPORTS] if action == "publish" else [topic(node, "cmd")]
        return t in own
    if action == "publish":
        return re.fullmatch(r"denloa/%s/node/[^/]*/cmd" % SITE, t) is not None
    return t == GATEWAY_STATE or re.fullmatch(r"denloa/%s/node/[^/]*/(state|tele|evt|ack)" % SITE, t) is not None


def _levels_at(i):
    return st.sampled_from([
        ["denloa", "+", "#", "$SYS", "x", ""],
        [SITE, "xa-khac", "+", "#", ""],
        ["node", "gateway", "+", "#"],
        [*NODES, "+", "#", "state", ""],
        [*KINDS, "+", "#", ""],
        ["extra", "+", "#"],
    ][i])


TOPICS = st.one_of(
    st.integers(1, 6).flatmap(lambda n: st.tuples(*[_levels_at(i) for i in range(n)]).map("/".join)),
    st.lists(st.sampled_from(["denloa", SITE, "node", "gateway", *NODES, *KINDS, "+", "#", "", "$SYS"]),
             min_size=1, max_size=7).map("/".join),
)
USERS = st.sampled_from([("gateway", "gw"), ("bridge", "up"), *[("node", n) for n in NODES]])
HASH = hash_password("x")


def user_for(role, name):
    return BrokerUser(name, HASH, role)


@settings(max_examples=1000, deadline=None)
@given(USERS, TOPICS, st.sampled_from(["publish", "subscribe", "receive"]))
def test_allowed_agrees_with_the_reference(who, t, action):
    role, name = who
    assert allowed(SITE, user_for(role, name), t, action) == reference(role, name, t, action)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(NODES), st.sampled_from(NODES), TOPICS)
def test_a_node_never_subscribes_to_a_filter_that_matches_another_nodes_cmd(node, other, filt):
    if other != node and ref_match(filt, topic(other, "cmd")):
        assert not allowed(SITE, user_for("node", node), filt, "subscribe")


@settings(max_examples=500, deadline=None)
@given(USERS, TOPICS, st.data())
def test_a_granted_subscription_only_matches_readable_topics(who, filt, data):
    user = user_for(*who)
    if not allowed(SITE, user, filt, "subscribe"):
        return
    # Turn the filter into a concrete topic it matches and check that topic is readable.
    levels = []
    for level in filt.split("/"):
        if level == "+":
            levels.append(data.draw(st.sampled_from(["n-a", "n-z", "", "cmd", "gateway"])))
        elif level == "#":
            levels.extend(data.draw(st.lists(st.sampled_from(["node", "n-b", "cmd", "state", ""]), max_size=3)))
        else:
            levels.append(level)
    concrete = "/".join(levels)
    if concrete and ref_match(filt, concrete):
        assert allowed(SITE, user, concrete, "receive"), concrete


def parse_acl(text):
    """Mosquitto's acl_file grammar (src/security_default.c): user blocks of `topic access filter`."""
    rules, user = {}, None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        word, rest = line.split(" ", 1)
        if word == "user":
            user = rest.strip()
            rules.setdefault(user, [])
        else:
            assert word == "topic" and user is not None, line  # no pattern, nothing anonymous
            access, filt = rest.split(" ", 1)
            rules[user].append((access, filt.strip()))
    return rules


@settings(max_examples=500, deadline=None)
@given(USERS, TOPICS)
def test_the_acl_file_says_what_allowed_says(who, t):
    users = [user_for("gateway", "gw"), user_for("bridge", "up")] + [user_for("node", n) for n in NODES]
    rules = parse_acl(acl_text(SITE, users))
    assert set(rules) == {u.username for u in users}
    if not t or "+" in t or "#" in t:
        return  # Mosquitto refuses such a PUBLISH before any ACL check
    user = user_for(*who)
    for action, bit in (("publish", "write"), ("receive", "read")):
        by_file = any(bit in access and not (t.startswith("$") and not f.startswith("$")) and ref_match(f, t)
                      for access, f in rules[user.username])
        assert by_file == allowed(SITE, user, t, action), (user.username, t, action)


# ---- both brokers: logins -------------------------------------------------------------


def test_anonymous_and_wrong_logins_are_refused(broker, peer):
    port = broker.port
    assert peer(port, expect_ok=False).rc.is_failure  # anonymous
    assert peer(port, "n-a", "wrong", expect_ok=False).rc.is_failure
    assert peer(port, "n-a", PASSWORDS["n-b"], expect_ok=False).rc.is_failure
    assert peer(port, "nobody", PASSWORDS["n-a"], expect_ok=False).rc.is_failure
    assert peer(port, "n-a", "", expect_ok=False).rc.is_failure
    assert not peer(port, "n-a", PASSWORDS["n-a"]).rc.is_failure


# ---- both brokers: what a node may publish ---------------------------------------------


def test_node_publishes_its_own_reports_and_the_gateway_reads_them(broker, peer):
    gw = peer(broker.port, "gw", PASSWORDS["gw"])
    assert not gw.subscribe(SITE_ALL).is_failure
    a = peer(broker.port, "n-a", PASSWORDS["n-a"])
    for kind in REPORTS:
        a.publish(topic("n-a", kind), b"from a " + kind.encode(), qos=0 if kind == "tele" else 1,
                  retain=kind == "state")
    for kind in REPORTS:
        assert gw.expect(topic("n-a", kind)) == b"from a " + kind.encode()


def test_node_cannot_publish_for_another_node_or_the_gateway(broker, peer):
    gw = peer(broker.port, "gw", PASSWORDS["gw"])
    gw.subscribe(SITE_ALL)
    b = peer(broker.port, "n-b", PASSWORDS["n-b"])
    assert not b.subscribe(topic("n-b", "cmd")).is_failure
    a = peer(broker.port, "n-a", PASSWORDS["n-a"])
    forged = [topic("n-b", k) for k in KINDS] + [topic("n-a", "cmd"), GATEWAY_STATE, "denloa/xa-khac/node/n-a/state"]
    for t in forged:
        a.publish(t, b"forged")  # QoS 1: both brokers still PUBACK, so a node does not resend it forever
    a.publish(topic("n-a", "tele"), b"sentinel", qos=0)
    gw.expect(topic("n-a", "tele"), b"sentinel")  # A's later message arrived...
    gw.settle()
    b.settle(0)
    assert b"forged" not in [p for _, p, _ in gw.seen]  # ...and none of the forged ones, ever
    assert b.seen == []
    assert not a.dropped.is_set()  # both brokers drop the message silently, not the client


# ---- both brokers: what a node may read ------------------------------------------------


def test_node_receives_only_its_own_cmd(broker, peer):
    gw = peer(broker.port, "gw", PASSWORDS["gw"])
    b = peer(broker.port, "n-b", PASSWORDS["n-b"])
    b.subscribe(topic("n-b", "cmd"))
    b.publish(topic("n-b", "state"), b"b online", retain=True)
    gw.publish(GATEWAY_STATE, b"gw online", retain=True)
    a = peer(broker.port, "n-a", PASSWORDS["n-a"])
    assert not a.subscribe(topic("n-a", "cmd")).is_failure
    greedy = [topic("n-b", "cmd"), "denloa/%s/node/+/cmd" % SITE, SITE_ALL, "#"]
    granted = [not a.subscribe(f).is_failure for f in greedy]
    if broker.kind == "embedded":
        assert granted == [False] * len(greedy)  # SUBACK 0x80 from our topic plugin
    else:
        # Mosquitto 2.0's acl_file does not check SUBSCRIBE at all; it checks every delivery.
        assert granted == [True] * len(greedy)
    gw.publish(topic("n-b", "cmd"), b"for b")
    gw.publish(topic("n-a", "cmd"), b"for a")
    a.expect(topic("n-a", "cmd"), b"for a")
    a.settle()
    assert set(a.topics()) == {topic("n-a", "cmd")}  # no retained state, no B cmd, no gateway state
    assert b.expect(topic("n-b", "cmd")) == b"for b"


def test_a_new_client_gets_no_retained_message_it_may_not_read(broker, peer):
    # amqtt 0.12.1 alone sends a connecting client the retained messages matching any
    # client's subscriptions (here the gateway's denloa/<site>/#); the embedded broker must not.
    gw = peer(broker.port, "gw", PASSWORDS["gw"])
    gw.subscribe(SITE_ALL)
    b = peer(broker.port, "n-b", PASSWORDS["n-b"])
    b.publish(topic("n-b", "state"), b"b online", retain=True)
    gw.publish(GATEWAY_STATE, b"gw online", retain=True)
    gw.expect(topic("n-b", "state"))
    for clean in (True, False):
        a = peer(broker.port, "n-a", PASSWORDS["n-a"], clean=clean, client_id="site.n-a")
        a.subscribe(topic("n-a", "cmd"))
        assert a.settle().seen == []
        a.close()
    late = peer(broker.port, "gw", PASSWORDS["gw"])  # the gateway itself does get them
    late.subscribe(SITE_ALL)
    assert late.expect(topic("n-b", "state")) == b"b online" and late.expect(GATEWAY_STATE) == b"gw online"


def test_the_gateway_commands_every_node(broker, peer):
    gw = peer(broker.port, "gw", PASSWORDS["gw"])
    nodes = {n: peer(broker.port, n, PASSWORDS[n]) for n in ("n-a", "n-b")}
    for n, p in nodes.items():
        p.subscribe(topic(n, "cmd"))
    for n in nodes:
        gw.publish(topic(n, "cmd"), ("cmd for " + n).encode())
    for n, p in nodes.items():
        assert p.expect(topic(n, "cmd")) == ("cmd for " + n).encode()


def test_persistent_session_taken_over_by_another_user_keeps_nothing(broker, peer):
    gw = peer(broker.port, "gw", PASSWORDS["gw"])
    cid = "%s.n-a" % SITE
    a = peer(broker.port, "n-a", PASSWORDS["n-a"], client_id=cid, clean=False)
    a.subscribe(topic("n-a", "cmd"))
    a.close()
    gw.publish(topic("n-a", "cmd"), b"queued 1")
    a = peer(broker.port, "n-a", PASSWORDS["n-a"], client_id=cid, clean=False)
    assert a.expect(topic("n-a", "cmd")) == b"queued 1"  # control: the session does queue for A
    a.close()
    gw.publish(topic("n-a", "cmd"), b"queued 2")
    b = peer(broker.port, "n-b", PASSWORDS["n-b"], client_id=cid, clean=False)
    gw.publish(topic("n-a", "cmd"), b"live 3")
    gw.publish(GATEWAY_STATE, b"sentinel")
    assert b.settle().seen == []
    b.close()
    # Both brokers bind the client id to the login: B got a session of its own, A's is untouched.
    a = peer(broker.port, "n-a", PASSWORDS["n-a"], client_id=cid, clean=False)
    assert a.expect(topic("n-a", "cmd"), b"queued 2") == b"queued 2"
    assert a.expect(topic("n-a", "cmd"), b"live 3") == b"live 3"


# ---- both brokers: the client id belongs to the login -------------------------------


def test_a_node_cannot_take_over_another_nodes_client_id(broker, peer):
    """Node A, logged in with its own password but B's client id, neither knocks B off nor gets B's session."""
    gw = peer(broker.port, "gw", PASSWORDS["gw"], client_id="denloa-gw-" + SITE, clean=False)
    b_id = "%s.n-b" % SITE  # the client id the firmware uses: <site>.<node> (firmware/node.py make_client)
    b = peer(broker.port, "n-b", PASSWORDS["n-b"], client_id=b_id, clean=False)
    assert not b.subscribe(topic("n-b", "cmd")).is_failure
    # A with B's client id: the login is A's own and valid.
    a = peer(broker.port, "n-a", PASSWORDS["n-a"], client_id=b_id, clean=False)
    assert not a.subscribe(topic("n-a", "cmd")).is_failure  # A still works, as itself
    # Wrong password with B's client id: refused, and touches nothing.
    assert peer(broker.port, "n-a", "wrong", client_id=b_id, clean=False, expect_ok=False).rc.is_failure
    assert peer(broker.port, "n-b", "wrong", client_id=b_id, clean=True, expect_ok=False).rc.is_failure
    gw.publish(topic("n-b", "cmd"), b"live for b")
    gw.publish(topic("n-a", "cmd"), b"live for a")
    assert a.expect(topic("n-a", "cmd")) == b"live for a"
    assert not b.dropped.is_set(), "B was knocked off the broker"
    assert b.expect(topic("n-b", "cmd")) == b"live for b"
    # B away: a QoS 1 cmd is queued in B's persistent session; A tries B's client id again.
    b.close()
    gw.publish(topic("n-b", "cmd"), b"queued for b")
    a.close()
    a2 = peer(broker.port, "n-a", PASSWORDS["n-a"], client_id=b_id, clean=False)
    gw.publish(topic("n-a", "cmd"), b"sentinel for a")
    a2.expect(topic("n-a", "cmd"), b"sentinel for a")  # A's own session, with its own subscription
    a2.settle()
    assert b"queued for b" not in [p for _, p, _ in a2.seen] and topic("n-b", "cmd") not in a2.topics()
    a2.close()
    # B comes back without subscribing again: its session kept the subscription and the queued cmd.
    b2 = peer(broker.port, "n-b", PASSWORDS["n-b"], client_id=b_id, clean=False)
    assert b2.expect(topic("n-b", "cmd"), b"queued for b") == b"queued for b"
    gw.publish(topic("n-b", "cmd"), b"live again")
    assert b2.expect(topic("n-b", "cmd"), b"live again") == b"live again"
    assert not gw.dropped.is_set()


# ---- both brokers: wills --------------------------------------------------------------


def test_a_will_is_delivered_only_on_the_nodes_own_topic(broker, peer):
    gw = peer(broker.port, "gw", PASSWORDS["gw"])
    gw.subscribe(SITE_ALL)
    forger = peer(broker.port, "n-a", PASSWORDS["n-a"], expect_ok=False,
                  will=(topic("n-b", "state"), b"forged offline", 1, True))
    if broker.kind == "embedded":
        assert forger.rc.is_failure  # amqtt would send any will unchecked: we refuse the login
    else:
        assert not forger.rc.is_failure  # Mosquitto accepts it and checks the will when it fires
        forger.drop()
    honest = peer(broker.port, "n-a", PASSWORDS["n-a"], will=(topic("n-a", "state"), b"a offline", 1, True))
    honest.drop()
    assert gw.expect(topic("n-a", "state")) == b"a offline"  # the control: wills do fire
    gw.settle()
    assert gw.payloads(topic("n-b", "state")) == []


# ---- both brokers: revocation ---------------------------------------------------------


def test_reload_without_a_node_disconnects_and_refuses_it(broker, peer):
    gw = peer(broker.port, "gw", PASSWORDS["gw"])
    gw.subscribe(SITE_ALL)
    a = peer(broker.port, "n-a", PASSWORDS["n-a"], will=(topic("n-a", "state"), b"a offline", 1, True))
    a.subscribe(topic("n-a", "cmd"))
    b = peer(broker.port, "n-b", PASSWORDS["n-b"])
    t0 = time.monotonic()
    broker.run(broker.reload(make_users("gw", "n-b", "up")))
    assert a.dropped.wait(TIMEOUT), "the revoked node is still connected"
    assert time.monotonic() - t0 < 3.0
    assert peer(broker.port, "n-a", PASSWORDS["n-a"], expect_ok=False).rc.is_failure
    b.publish(topic("n-b", "tele"), b"b still here", qos=0)
    assert gw.expect(topic("n-b", "tele")) == b"b still here"
    gw.publish(topic("n-a", "cmd"), b"to the revoked")
    gw.settle()
    assert not b.dropped.is_set() and not gw.dropped.is_set()
    assert gw.payloads(topic("n-a", "state")) == []  # a revoked user may write nowhere, not even its will


def test_reload_with_a_new_password_drops_the_old_one(broker, peer):
    b = peer(broker.port, "n-b", PASSWORDS["n-b"])
    new = dict(PASSWORDS, **{"n-b": "rotated-pass"})
    broker.run(broker.reload(make_users("gw", "n-a", "n-b", passwords=new)))
    assert b.dropped.wait(TIMEOUT)
    assert peer(broker.port, "n-b", PASSWORDS["n-b"], expect_ok=False).rc.is_failure
    assert not peer(broker.port, "n-b", "rotated-pass").rc.is_failure


def test_reload_can_add_a_node(broker, peer):
    assert peer(broker.port, "n-c", "node-c-pass", expect_ok=False).rc.is_failure
    broker.run(broker.reload(make_users("gw", "n-a", "n-b") + [BrokerUser("n-c", hash_password("node-c-pass"))]))
    c = peer(broker.port, "n-c", "node-c-pass")
    gw = peer(broker.port, "gw", PASSWORDS["gw"])
    gw.subscribe(SITE_ALL)
    c.publish("denloa/%s/node/n-c/evt" % SITE, b"hello")
    assert gw.expect("denloa/%s/node/n-c/evt" % SITE) == b"hello"


# ---- both brokers: start and stop -----------------------------------------------------


def test_a_taken_port_is_a_clear_error(broker, tmp_path):
    other = make_broker(broker.kind, tmp_path / "second", SITE, port=broker.port)
    with pytest.raises(BrokerError, match=str(broker.port)):
        broker.run(other.start(make_users("gw")))
    assert not other.running and broker.running


def test_files_are_private_and_hold_no_password(broker):
    if broker.kind != "mosquitto":
        assert not any(os.scandir(broker.data_dir))  # nothing written: it keeps everything in memory
        return
    for path in (broker.conf_path, broker.passwd_path, broker.acl_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    text = open(broker.passwd_path).read()
    assert not any(pw in text for pw in PASSWORDS.values())
    conf = open(broker.conf_path).read()
    assert "allow_anonymous false" in conf and "listener %d 127.0.0.1" % broker.port in conf


def test_make_broker_chooses_and_refuses(tmp_path):
    assert isinstance(make_broker("embedded", tmp_path, SITE), EmbeddedBroker)
    assert isinstance(make_broker("auto", tmp_path, SITE, exe="/nonexistent/mosquitto"), EmbeddedBroker)
    if mosquitto_available():
        assert isinstance(make_broker("auto", tmp_path, SITE), MosquittoBroker)
    with pytest.raises(BrokerConfigError, match="Mosquitto"):
        make_broker("embedded", tmp_path, SITE, bridge={"host": "province.example"})
    with pytest.raises(BrokerConfigError):
        make_broker("rabbit", tmp_path, SITE)


# ---- bridge ---------------------------------------------------------------------------


def test_bridge_text_shape_and_refusals():
    assert bridge_text(SITE, None) == "" and bridge_text(SITE, {}) == ""
    plain = bridge_text(SITE, {"host": "10.0.0.5", "port": 1883, "username": "", "password": "", "tls_ca": "",
                               "remote_prefix": ""})  # unset settings as a config file gives them
    assert "address 10.0.0.5:1883" in plain and "remote_" not in plain.replace("remote_clientid", "")
    assert "bridge_cafile" not in plain and "topic denloa/%s/node/+/cmd in 1\n" % SITE in plain
    text = bridge_text(SITE, {"host": "mqtt.province.example", "username": "up-xa", "password": "pw",
                              "tls_ca": "/etc/denloa/ca.pem", "remote_prefix": "province/"})
    assert "address mqtt.province.example:8883" in text and "bridge_cafile /etc/denloa/ca.pem" in text
    directions = re.findall(r"^topic (\S+) (out|in|both) 1 \"\" province/$", text, re.M)
    assert sorted(directions) == sorted(
        [("denloa/%s/node/+/%s" % (SITE, k), "out") for k in REPORTS]
        + [(GATEWAY_STATE, "out"), ("denloa/%s/node/+/cmd" % SITE, "in")])
    for bad in [{"host": "a b"}, {"host": "h", "remote_prefix": "province"}, {"host": "h", "remote_prefix": "p/#/"},
                {"host": "h", "password": "has space", "username": "u"}, {"host": "h", "passwd": "x"},
                {"host": "h", "port": 0}, {"host": "h", "password": "p"}, "h"]:
        with pytest.raises(BrokerConfigError):
            bridge_text(SITE, bad)


def test_bridge_sends_reports_up_and_brings_commands_down(tmp_path, aloop, peer):
    need_mosquitto()
    province = Mosquitto(tmp_path / "province", passwords={"up-xa": "up-pass", "watch": "watch-pass"},
                         allow_anonymous=False)
    province.start()
    site = MosquittoBroker(tmp_path / "site", SITE, port=free_port(), log=lambda line: None, bridge={
        "host": "127.0.0.1", "port": province.port, "username": "up-xa", "password": "up-pass",
        "remote_prefix": "province/"})
    try:
        aloop(site.start(make_users("gw", "n-a", "n-b")))
        up = "province/denloa/%s" % SITE
        watch = peer(province.port, "watch", "watch-pass")
        watch.subscribe("province/#")
        watch.subscribe("$SYS/broker/connection/#")
        assert watch.expect("$SYS/broker/connection/denloa-%s-gateway/state" % SITE, b"1", timeout=15) == b"1"
        gw = peer(site.port, "gw", PASSWORDS["gw"])
        gw.subscribe(SITE_ALL)
        a = peer(site.port, "n-a", PASSWORDS["n-a"])
        a.subscribe(topic("n-a", "cmd"))
        # out: a node's reports and the gateway state appear upstream under the prefix
        a.publish(topic("n-a", "state"), b"a online", retain=True)
        a.publish(topic("n-a", "evt"), b"lamp fault")
        gw.publish(GATEWAY_STATE, b"gw online", retain=True)
        assert watch.expect(up + "/node/n-a/state", timeout=10) == b"a online"
        assert watch.expect(up + "/node/n-a/evt", timeout=10) == b"lamp fault"
        assert watch.expect(up + "/gateway/state", timeout=10) == b"gw online"
        # in: a command published upstream reaches the node (repeat until the bridge has subscribed)
        deadline = time.monotonic() + 10
        while True:
            watch.publish(up + "/node/n-a/cmd", b"signed cmd from province")
            try:
                a.expect(topic("n-a", "cmd"), b"signed cmd from province", timeout=0.5)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "an upstream cmd never reached the node"
        # never in: a forged report upstream; never out: the gateway's own commands
        watch.publish(up + "/node/n-b/state", b"forged from province")
        gw.publish(topic("n-a", "cmd"), b"local cmd")
        a.expect(topic("n-a", "cmd"), b"local cmd")
        watch.publish(up + "/node/n-b/cmd", b"sentinel")
        gw.expect(topic("n-b", "cmd"), b"sentinel", timeout=10)
        gw.settle()
        watch.settle()
        assert gw.payloads(topic("n-b", "state")) == []
        assert b"local cmd" not in watch.payloads(up + "/node/n-a/cmd")
    finally:
        aloop(site.stop())
        province.stop()

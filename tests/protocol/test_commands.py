from protocol import commands, topics
from protocol.auth import equal_digests, hmac_sha256, to_hex
from protocol.commands import Command, verify
from protocol.errors import MessageError, ProtocolError
from protocol.plan import EMERGENCY
from tests.portable import raises, raises_with
from tests.protocol.samples import CLIP, KEY, NODE, PROGRAM, SITE, item, plan

NOW = 1795314810

# RFC 4231 test case 2 (HMAC-SHA256, key "Jefe").
RFC4231_2 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def cmd(op="lamp_override", args=None, counter=10, expires=NOW + 60, cmd_id="c-1", node=NODE, site=SITE):
    if args is None:
        args = {"level": 50, "until": NOW + 3600}
    return Command(site, node, cmd_id, counter, expires, op, args, issued=NOW)


def test_hmac_known_answers():
    assert to_hex(hmac_sha256(b"Jefe", b"what do ya want for nothing?")) == RFC4231_2
    # RFC 4231 case 6: a 131-byte key is hashed first
    mac = hmac_sha256(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First")
    assert to_hex(mac) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_equal_digests():
    assert equal_digests(b"abc", b"abc")
    assert not equal_digests(b"abc", b"abd")
    assert not equal_digests(b"abc", b"ab")
    assert equal_digests(b"", b"")


def test_sign_and_verify_ok_then_accept_persists_first():
    topic, payload = cmd().sign(KEY)
    assert topic == "denloa/%s/node/%s/cmd" % (SITE, NODE)
    v = verify(payload, topic, SITE, NODE, KEY, 9, NOW)
    assert v.ok and v.cmd_id == "c-1"
    order = []
    got = v.accept(lambda ctr: order.append(("persist", ctr)))
    order.append(("apply", got.op))
    assert order == [("persist", 10), ("apply", "lamp_override")]
    assert got.args == {"level": 50, "until": NOW + 3600}


def test_rejected_verdict_cannot_be_applied():
    topic, payload = cmd(counter=5).sign(KEY)
    v = verify(payload, topic, SITE, NODE, KEY, 9, NOW)
    assert v.reason == commands.REPLAY
    persisted = []
    raises(ProtocolError, v.accept, persisted.append)
    assert persisted == []


def test_every_rejection_reason():
    topic, payload = cmd().sign(KEY)
    body, sig = payload[:-65], payload[-64:]
    other_topic = topics.node_topic(SITE, "den-khac", topics.CMD)

    def reason(p=payload, t=topic, key=KEY, last=9, now=NOW, node=NODE):
        return verify(p, t, SITE, node, key, last, now).reason

    assert reason() == commands.OK
    assert reason(key=b"x" * 32) == commands.BAD_SIGNATURE
    assert reason(p=body.replace(b'"level":50', b'"level":90') + b"\n" + sig) == commands.BAD_SIGNATURE
    assert reason(p=payload[:-1] + (b"0" if payload[-1:] != b"0" else b"1")) == commands.BAD_SIGNATURE
    assert reason(last=10) == commands.REPLAY
    assert reason(last=11) == commands.REPLAY
    assert reason(now=NOW + 61) == commands.EXPIRED
    assert reason(now=None) == commands.OK  # no valid clock: expiry cannot be judged, counter still holds
    assert reason(t=other_topic) == commands.WRONG_TARGET
    assert reason(node="den-khac") == commands.WRONG_TARGET
    assert reason(p=body) == commands.MALFORMED
    assert reason(p=b"") == commands.MALFORMED
    assert reason(p=body + b"\n" + b"z" * 64) == commands.MALFORMED
    assert reason(p=body + b"\n" + sig.upper()) == commands.MALFORMED  # one spelling per signature
    assert reason(p="text") == commands.MALFORMED


def test_a_view_of_a_received_buffer_verifies_like_bytes():
    from tests.protocol.samples import PROGRAM, item, plan

    big = cmd("set_program", {"lamp": PROGRAM, "plan": plan([item("b-%d" % i, NOW, NOW + 60) for i in range(8)])})
    topic, payload = big.sign(KEY)
    assert len(payload) > commands.LAZY_ABOVE  # parsed item by item
    v = verify(memoryview(bytearray(b"xx" + payload))[2:], topic, SITE, NODE, KEY, 9, NOW)
    assert v.ok and len(v.command.args["plan"].items) == 8
    assert v.command == Command.decode(payload[:-65])  # the same as parsing it whole


def test_oversized_payload_is_malformed():
    topic = topics.node_topic(SITE, NODE, topics.CMD)
    v = verify(b"x" * (commands.MAX_CMD + 1), topic, SITE, NODE, KEY, 0, NOW)
    assert v.reason == commands.MALFORMED and "over" in v.detail


def test_signed_for_another_node_is_wrong_target_even_with_its_key():
    # A command correctly signed for node A, replayed onto node B's topic.
    topic_a, payload_a = cmd(node="den-a").sign(KEY)
    topic_b = topics.node_topic(SITE, "den-b", topics.CMD)
    v = verify(payload_a, topic_b, SITE, "den-b", KEY, 0, NOW)
    assert v.reason == commands.BAD_SIGNATURE  # the topic is inside the MAC
    v = verify(payload_a, topic_a, SITE, "den-b", KEY, 0, NOW)
    assert v.reason == commands.WRONG_TARGET


def test_authenticated_but_malformed_body_is_malformed():
    body = b'{"v":1,"site":"%s","to":"%s","id":"c-9","ctr":3,"exp":1,"op":"explode","args":{}}' % (
        SITE.encode(), NODE.encode())
    topic = topics.node_topic(SITE, NODE, topics.CMD)
    payload = body + b"\n" + to_hex(commands.signature(KEY, topic, body)).encode()
    v = verify(payload, topic, SITE, NODE, KEY, 0, NOW)
    assert v.reason == commands.MALFORMED and "command.op" in v.detail and v.cmd_id == "c-9"


def test_replay_keeps_the_command_for_a_duplicate_ack():
    topic, payload = cmd().sign(KEY)
    v = verify(payload, topic, SITE, NODE, KEY, 10, NOW)
    assert v.reason == commands.REPLAY and v.command.cmd_id == "c-1"


def test_bad_signature_names_the_command_but_hands_nothing_out():
    topic, payload = cmd(cmd_id="c-77").sign(KEY)
    v = verify(payload, topic, SITE, NODE, b"wrong", 0, NOW)
    assert v.reason == commands.BAD_SIGNATURE and v.cmd_id == "c-77" and v.command is None


def test_all_ops_round_trip():
    cases = [
        ("set_program", {"lamp": PROGRAM, "plan": plan([item("b-1", NOW, NOW + 600)])}),
        ("set_program", {"lamp": PROGRAM}),
        ("lamp_override", {"level": None, "until": NOW}),
        ("broadcast_now", {"id": "e-1", "dur": 300, "src": "line", "zones": ["thon-1", "thon-2"], "vol": 100,
                           "prio": EMERGENCY}),
        ("broadcast_now", {"id": "e-2", "dur": 60, "src": "clip", "clip": CLIP, "zones": ["thon-1"], "vol": 70}),
        ("stop_broadcast", {}),
        ("stop_broadcast", {"id": "e-1"}),
        ("set_volume", {"vol": 55}),
        ("time_sync", {"t1": None, "t2": NOW * 1000 + 500, "t3": NOW * 1000 + 510}),
        ("time_sync", {"t1": 123456, "t2": NOW * 1000, "t3": NOW * 1000 + 1}),
        ("rebirth", {}),
        ("reboot", {}),
        ("self_test", {}),
    ]
    for op, args in cases:
        c = Command.decode(cmd(op, args).encode())  # raw JSON args in, validated
        again = Command.decode(c.encode())
        assert again == c, op
        topic, payload = c.sign(KEY)
        assert verify(payload, topic, SITE, NODE, KEY, 0, NOW).ok, op


def test_invalid_args_are_refused_with_the_field_named():
    bad = [
        ("lamp_override", {"level": 101, "until": NOW}, "level"),
        ("lamp_override", {"level": 50}, "until"),
        ("broadcast_now", {"id": "e", "dur": 0, "src": "line", "zones": ["z"], "vol": 1}, "dur"),
        ("broadcast_now", {"id": "e", "dur": 5, "src": "clip", "zones": ["z"], "vol": 1}, "clip"),
        ("broadcast_now", {"id": "e", "dur": 5, "src": "line", "zones": [], "vol": 1}, "zones"),
        ("broadcast_now", {"id": "e", "dur": 5, "src": "line", "zones": ["Z/1"], "vol": 1}, "zones"),
        ("set_volume", {"vol": -1}, "vol"),
        ("set_volume", {"vol": 5, "x": 1}, "unknown field"),
        ("set_program", {}, "lamp program"),
        ("set_program", {"lamp": {"version": 1}}, "lamp"),
        ("reboot", {"now": True}, "unknown field"),
    ]
    for op, args, text in bad:
        raises_with(MessageError, text, Command.decode, cmd(op, args).encode())


def test_sign_refuses_an_invalid_command():
    raises(MessageError, cmd("set_volume", {"vol": 500}).sign, KEY)
    raises(ProtocolError, cmd(node="Bad/Node").sign, KEY)

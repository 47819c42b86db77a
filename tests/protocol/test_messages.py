from protocol.errors import MessageError, ProtocolError
from protocol.messages import Ack, Event, State, Telemetry, MAX_EVT
from tests.portable import raises, raises_with

BIRTH = State(True, "a1b2c3d4", "0.1.0", 3, 7, ["lamp", "dim", "pir", "amp", "zones:2"], 1795314810, False, "rtc")
TELE = Telemetry(
    "a1b2c3d4", 1795314810.25, 3600, "synced",
    lamp={"lvl": 40, "relay": True, "w": 31.5, "wh": 1234.5},
    amp={"on": True, "zones": [1, 2], "src": "clip", "vol": 80, "item": "b-0530"},
    rssi=-67, heap=41000,
)
EVENT = Event("a1b2c3d4", 42, "lamp_fault", {"level": 100, "ma": 3}, 1795314810)
ACK_OK = Ack("c-000123", "applied", ts=1795314811)
ACK_NO = Ack("c-000124", "rejected", "replay", "counter 5 is not above 9")


def test_round_trips():
    for msg in (BIRTH, State(False), State(False, "a1"), TELE, Telemetry("ff", None, 0, "invalid"),
                EVENT, Event("0", 0, "boot"), ACK_OK, ACK_NO):
        again = type(msg).decode(msg.encode())
        assert again == msg, (again, msg)


def test_every_message_has_schema_version():
    for msg in (BIRTH, TELE, EVENT, ACK_OK):
        assert b'"v":1' in msg.encode()


def test_newer_schema_is_refused_with_a_clear_error():
    raises_with(MessageError, "newer", Event.decode,
                b'{"v":2,"boot":"a1","seq":1,"kind":"boot","ts":null}')


def test_birth_decode_values():
    s = State.decode(BIRTH.encode())
    assert s.online and s.boot_id == "a1b2c3d4" and s.lamp_version == 3 and s.plan_version == 7
    assert s.clock == "rtc" and "amp" in s.caps


def test_will_is_small_and_offline():
    will = State(False, "a1b2c3d4").encode()
    assert len(will) < 64
    assert not State.decode(will).online


def test_event_validation():
    raises_with(MessageError, "event.seq", Event.decode, b'{"v":1,"boot":"a1","seq":-1,"kind":"boot","ts":null}')
    raises_with(MessageError, "event.kind", Event.decode, b'{"v":1,"boot":"a1","seq":1,"kind":"fire","ts":null}')
    raises_with(MessageError, "boot", Event.decode, b'{"v":1,"boot":"XYZ","seq":1,"kind":"boot","ts":null}')
    raises_with(MessageError, "unknown field", Event.decode,
                b'{"v":1,"boot":"a1","seq":1,"kind":"boot","ts":null,"extra":1}')
    raises_with(MessageError, "event.data", Event.decode,
                b'{"v":1,"boot":"a1","seq":1,"kind":"boot","ts":null,"data":{"x":{"deep":1}}}')
    raises_with(MessageError, "missing", Event.decode, b'{"v":1,"boot":"a1","kind":"boot","ts":null}')


def test_bool_is_not_a_number():
    raises(MessageError, Event.decode, b'{"v":1,"boot":"a1","seq":true,"kind":"boot","ts":null}')


def test_telemetry_ranges():
    raises_with(MessageError, "lamp.lvl", Telemetry.decode,
                b'{"v":1,"boot":"a1","ts":1,"up":1,"clock":"ok","lamp":{"lvl":101,"relay":true,"w":0,"wh":0}}'.replace(b'"ok"', b'"rtc"'))
    raises_with(MessageError, "rssi", Telemetry.decode, b'{"v":1,"boot":"a1","ts":1,"up":1,"clock":"rtc","rssi":5}')
    raises_with(MessageError, "clock", Telemetry.decode, b'{"v":1,"boot":"a1","ts":1,"up":1,"clock":"maybe"}')
    raises(MessageError, Telemetry.decode, b'{"v":1,"boot":"a1","ts":1e999,"up":1,"clock":"rtc"}')


def test_ack_rejected_needs_reason():
    raises_with(MessageError, "reason", Ack.decode, b'{"v":1,"cmd":"c1","result":"rejected"}')
    assert Ack.decode(b'{"v":1,"cmd":null,"result":"rejected","reason":"malformed"}').cmd_id is None


def test_bad_payloads_give_the_named_error():
    samples = [
        b"", b"{", b"[]", b"null", b"42", b'"text"', b"\xff\xfe", b"{}", b'{"v":"1"}', b'{"v":1}',
        b'{"v":0,"boot":"a1","seq":1,"kind":"boot"}', b"[" * 900, b"{\"a\"}", bytearray(b"{}"), None, 12, [],
    ]
    for cls in (State, Telemetry, Event, Ack):
        for payload in samples:
            raises(MessageError, cls.decode, payload)


def test_oversized_payload_rejected_before_parsing():
    big = b'{"v":1,"boot":"a1","seq":1,"kind":"boot","ts":null,"data":{"x":"' + b"a" * MAX_EVT + b'"}}'
    raises_with(MessageError, "over the", Event.decode, big)


def test_message_error_is_a_protocol_error():
    assert issubclass(MessageError, ProtocolError)
    assert issubclass(ProtocolError, ValueError)

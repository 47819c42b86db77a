"""Property tests for the message codecs (CPython + hypothesis)."""
import json

from hypothesis import given, settings, strategies as st

from protocol.commands import Command
from protocol.errors import ProtocolError
from protocol.messages import EVENT_KINDS, Ack, Event, State, Telemetry
from tests.protocol.samples import NODE, SITE

hexid = st.text("0123456789abcdef", min_size=1, max_size=16)
token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:", min_size=1, max_size=40)
unix = st.integers(0, 4102444800)
small_text = st.text(max_size=40)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**31), 2**31), small_text,
                   st.floats(allow_nan=False, allow_infinity=False, width=32))

states = st.one_of(
    st.builds(State, st.just(True), hexid, st.text(min_size=1, max_size=32), st.integers(0, 2**31 - 1),
              st.integers(0, 2**31 - 1), st.lists(st.text(min_size=1, max_size=24), max_size=8),
              st.one_of(st.none(), unix), st.booleans(), st.sampled_from(["synced", "rtc", "invalid"])),
    st.builds(State, st.just(False), st.one_of(st.none(), hexid)),
)
lamps = st.fixed_dictionaries({"lvl": st.integers(0, 100), "relay": st.booleans(),
                               "w": st.floats(0, 100000), "wh": st.floats(0, 1e9)})
amps = st.fixed_dictionaries({"on": st.booleans(), "zones": st.lists(st.integers(1, 16), max_size=4),
                              "src": st.sampled_from([None, "clip", "stream", "line"]),
                              "vol": st.integers(0, 100), "item": st.one_of(st.none(), token)})
teles = st.builds(Telemetry, hexid, st.one_of(st.none(), unix), st.integers(0, 2**31 - 1),
                  st.sampled_from(["synced", "rtc", "invalid"]), st.one_of(st.none(), lamps),
                  st.one_of(st.none(), amps), st.one_of(st.none(), st.integers(-127, 0)),
                  st.one_of(st.none(), st.integers(0, 2**20)))
events = st.builds(Event, hexid, st.integers(0, 2**31 - 1), st.sampled_from(EVENT_KINDS),
                   st.dictionaries(st.text(min_size=1, max_size=32), scalar, max_size=6),
                   st.one_of(st.none(), unix))
acks = st.one_of(
    st.builds(Ack, token, st.just("applied"), st.none(), st.none(), st.one_of(st.none(), unix)),
    st.builds(Ack, st.one_of(st.none(), token), st.just("rejected"), st.text(min_size=1, max_size=32),
              st.one_of(st.none(), st.text(max_size=200)), st.one_of(st.none(), unix)),
)
any_message = st.one_of(states, teles, events, acks)
DECODERS = (State.decode, Telemetry.decode, Event.decode, Ack.decode, Command.decode)


@given(any_message)
def test_every_message_round_trips(msg):
    assert type(msg).decode(msg.encode()) == msg


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_give_only_protocol_errors(data):
    for decode in DECODERS:
        try:
            decode(data)
        except ProtocolError:
            pass


def _mutations(obj):
    """Valid JSON of the right shape with one field changed, removed or added."""
    evil = [None, True, -1, 2**64, 1e309, "", "x" * 300, [], {}, [[[]]], {"a": {"b": 1}}, "∞"]
    return st.one_of(
        st.tuples(st.sampled_from(sorted(obj)), st.sampled_from(evil)).map(lambda kv: {**obj, kv[0]: kv[1]}),
        st.sampled_from(sorted(obj)).map(lambda k: {kk: vv for kk, vv in obj.items() if kk != k}),
        st.tuples(st.text(max_size=8), st.sampled_from(evil)).map(lambda kv: {**obj, kv[0]: kv[1]}),
    )


@settings(max_examples=200)
@given(st.data())
def test_mutated_valid_messages_are_accepted_or_refused_cleanly(data):
    msg = data.draw(any_message)
    mutated = data.draw(_mutations(msg.to_json()))
    payload = json.dumps(mutated).encode()
    try:
        again = type(msg).decode(payload)
    except ProtocolError:
        return
    # Accepted: then it must survive a round trip itself.
    assert type(msg).decode(again.encode()) == again


@settings(max_examples=100)
@given(st.data())
def test_mutated_commands_refused_cleanly(data):
    cmd = Command(SITE, NODE, "c-1", 5, 1795314870, "lamp_override", {"level": 40, "until": 1795318410})
    mutated = data.draw(_mutations(cmd.to_json()))
    try:
        Command.decode(json.dumps(mutated).encode())
    except ProtocolError:
        pass


def test_deep_nesting_is_refused_not_crashing():
    for decode in DECODERS:
        for payload in (b"[" * 100000, b'{"a":' * 50000, b'{"v":1,"data":' + b"[" * 20 + b"]" * 20 + b"}"):
            try:
                decode(payload)
            except ProtocolError:
                pass

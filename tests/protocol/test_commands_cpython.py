"""Signing and verification properties (CPython + hypothesis)."""
import hashlib
import hmac

from hypothesis import given, settings, strategies as st

from protocol import commands
from protocol.auth import equal_digests, hmac_sha256
from protocol.commands import Command, verify
from tests.protocol.samples import NODE, SITE

NOW = 1795314810


@settings(max_examples=300)
@given(st.binary(max_size=200), st.binary(max_size=2000))
def test_hmac_equals_cpython_hmac(key, msg):
    assert hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_equal_digests_agrees_with_compare_digest(a, b):
    assert equal_digests(a, b) == hmac.compare_digest(a, b)


commands_st = st.builds(
    Command, st.just(SITE), st.just(NODE), st.text("abc0123456789-", min_size=1, max_size=40),
    st.integers(1, 2**40), st.integers(NOW, NOW + 86400), st.just("set_volume"),
    st.fixed_dictionaries({"vol": st.integers(0, 100)}), st.one_of(st.none(), st.integers(NOW - 60, NOW)),
)


@settings(max_examples=200)
@given(commands_st, st.binary(min_size=16, max_size=64), st.integers(0, 2**41))
def test_verdict_reason_matches_the_fault(cmd, key, last):
    topic, payload = cmd.sign(key)
    v = verify(payload, topic, SITE, NODE, key, last, NOW)
    if cmd.counter <= last:
        assert v.reason == commands.REPLAY
    else:
        assert v.ok and v.command == cmd


@settings(max_examples=200)
@given(commands_st, st.binary(min_size=16, max_size=64), st.data())
def test_any_change_to_the_bytes_is_caught(cmd, key, data):
    topic, payload = cmd.sign(key)
    i = data.draw(st.integers(0, len(payload) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = payload[:i] + bytes([payload[i] ^ flip]) + payload[i + 1:]
    v = verify(tampered, topic, SITE, NODE, key, 0, NOW)
    assert v.reason in (commands.BAD_SIGNATURE, commands.MALFORMED)
    assert v.command is None


@settings(max_examples=100)
@given(commands_st, st.binary(min_size=16, max_size=64), st.binary(min_size=16, max_size=64))
def test_another_key_never_verifies(cmd, key, other):
    if key == other:
        return
    topic, payload = cmd.sign(key)
    assert verify(payload, topic, SITE, NODE, other, 0, NOW).reason == commands.BAD_SIGNATURE


@given(commands_st, st.integers(1, 10**6))
def test_expired_after_expiry(cmd, late):
    topic, payload = cmd.sign(b"k" * 32)
    v = verify(payload, topic, SITE, NODE, b"k" * 32, 0, cmd.expires + late)
    assert v.reason == commands.EXPIRED and v.command == cmd

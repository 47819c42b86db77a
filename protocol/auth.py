"""HMAC-SHA256 on `hashlib.sha256` alone (MicroPython has no `hmac` module).

RFC 2104 with a 64-byte block; equal to CPython's hmac.new(key, msg, sha256).
"""
import binascii
import hashlib

BLOCK = 64
DIGEST = 32


def _xor_pad(key, byte):
    return bytes([k ^ byte for k in key])


def hmac_sha256(key, msg):
    """HMAC-SHA256 of `msg` under `key`, 32 raw bytes.

    `msg` is bytes, or a tuple of byte strings/memoryviews hashed as if
    joined (so a node never copies a large payload to sign it).
    """
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (BLOCK - len(key))
    inner = hashlib.sha256(_xor_pad(key, 0x36))
    for part in msg if isinstance(msg, tuple) else (msg,):
        inner.update(part)
    outer = hashlib.sha256(_xor_pad(key, 0x5C))
    outer.update(inner.digest())
    return outer.digest()


def equal_digests(a, b):
    """Compare two byte strings in time that depends only on their lengths."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def to_hex(data):
    return binascii.hexlify(data).decode()


def from_hex(text):
    """Hex text -> bytes; ValueError on anything else."""
    return binascii.unhexlify(text)

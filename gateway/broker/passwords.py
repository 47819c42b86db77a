"""Passwords in Mosquitto's own password-file format, so one file serves both brokers.

`hash_password()` writes exactly what `mosquitto_passwd` writes for Mosquitto 2.0:
`$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>` with a 12-byte salt;
`verify_password()` checks that format and the older `$6$` (salted SHA-512) in
constant time, treating any malformed hash as a mismatch; `new_password()` makes
the random passwords given to nodes and the gateway. Only hashes are ever stored.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets

from gateway.broker.errors import BrokerConfigError

PBKDF2_SALT_LEN = 12  # what mosquitto_passwd uses
MAX_ITERATIONS = 1_000_000  # refuse absurd counts in a file rather than hang on them

_B64 = r"[A-Za-z0-9+/]+={0,2}"
_HASH7 = re.compile(r"\$7\$(\d{1,7})\$(%s)\$(%s)\Z" % (_B64, _B64))
_HASH6 = re.compile(r"\$6\$(%s)\$(%s)\Z" % (_B64, _B64))


def hash_password(password: str, *, iterations: int = 101, salt: bytes | None = None) -> str:
    """A Mosquitto 2.0 password-file hash, as mosquitto_passwd writes it.

    `$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt)>`,
    with a random 12-byte salt unless one is given.
    """
    if not isinstance(password, str):
        raise BrokerConfigError("password must be text")
    if "\0" in password:
        raise BrokerConfigError("a password must not contain NUL: Mosquitto stops reading it there")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise BrokerConfigError("iterations must be 1..%d, got %r" % (MAX_ITERATIONS, iterations))
    try:
        secret = password.encode()
    except UnicodeEncodeError:
        raise BrokerConfigError("a password must be valid Unicode text (no lone surrogates)") from None
    salt = os.urandom(PBKDF2_SALT_LEN) if salt is None else bytes(salt)
    if not salt:
        raise BrokerConfigError("salt must not be empty")
    digest = hashlib.pbkdf2_hmac("sha512", secret, salt, iterations)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def verify_password(password: str, hashed: str) -> bool:
    """True if `password` matches a `$7$` (PBKDF2-SHA512) or `$6$` (salted SHA-512) hash.

    Constant-time compare; a malformed hash is simply False.
    """
    if isinstance(password, (bytes, bytearray)):
        secret = bytes(password)
    elif isinstance(password, str):
        try:
            secret = password.encode()
        except UnicodeEncodeError:
            return False
    else:
        return False
    if not isinstance(hashed, str):
        return False
    try:
        m = _HASH7.match(hashed)
        if m:
            iterations = int(m.group(1))
            if not 1 <= iterations <= MAX_ITERATIONS:
                return False
            salt, want = base64.b64decode(m.group(2), validate=True), base64.b64decode(m.group(3), validate=True)
            got = hashlib.pbkdf2_hmac("sha512", secret, salt, iterations)
            return hmac.compare_digest(got, want)
        m = _HASH6.match(hashed)
        if m:
            salt, want = base64.b64decode(m.group(1), validate=True), base64.b64decode(m.group(2), validate=True)
            return hmac.compare_digest(hashlib.sha512(secret + salt).digest(), want)
    except ValueError:  # bad base64
        return False
    return False


def new_password(nbytes: int = 18) -> str:
    """A fresh random password for a node or the gateway (URL-safe, no spaces)."""
    return secrets.token_urlsafe(nbytes)


def _is_hash(text: object) -> bool:
    return isinstance(text, str) and bool(_HASH7.match(text) or _HASH6.match(text))

"""Strict reading of decoded JSON objects.

A `Fields` reader takes the values of one JSON object, checking type, range
and size, and at the end (`done()`) rejects any key nobody asked for. Every
failure raises the error class it was given (MessageError or ProgramError)
with the field's path in the message.
"""
import json

from protocol.errors import MessageError, NoMemory

_INF = float("inf")
MAX_DEPTH = 12  # nesting our messages need is 5; deeper is an attack on the parser's stack
_MISSING = object()


def decode_json(payload, limit, what, error=MessageError):
    """bytes/str -> dict, or `error` saying why not. Size is checked first.

    A memoryview is parsed in place on MicroPython (no copy of a large
    command); deep nesting is refused before parsing for text and bytes,
    and the parser's own MemoryError/RecursionError is caught for views.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview, str)):
        raise error("%s: payload must be bytes or text" % what)
    if len(payload) > limit:
        raise error("%s: payload of %d bytes is over the %d byte limit" % (what, len(payload), limit))
    if not isinstance(payload, memoryview) and _too_deep(payload):
        raise error("%s: payload nests deeper than %d levels" % (what, MAX_DEPTH))
    try:
        try:
            obj = json.loads(payload)
        except TypeError:  # CPython's json takes no memoryview or bytearray
            obj = json.loads(bytes(payload))
    except (ValueError, TypeError, RuntimeError, IndexError, KeyError):
        # UnicodeError is a ValueError: invalid UTF-8 lands here too
        raise error("%s: payload is not valid JSON" % what)
    except MemoryError:  # the heap now, or nesting too deep for it: whoever authenticated it may say which
        raise NoMemory("%s: no memory to parse the payload now" % what)
    if not isinstance(obj, dict):
        raise error("%s: payload must be a JSON object" % what)
    return obj


def _string_end(buf, i, limit):
    """Index just after the JSON string that starts at buf[i] ('"'); ValueError if unclosed."""
    i += 1
    while i < limit:
        ch = buf[i]
        if ch == 92:  # backslash: skip the escaped byte
            i += 2
        elif ch == 34:
            return i + 1
        else:
            i += 1
    raise ValueError("string does not close")


def _too_deep(text):
    """True when brackets outside strings nest deeper than MAX_DEPTH."""
    if isinstance(text, str):
        text = text.encode()
    if text.count(b"[") + text.count(b"{") <= MAX_DEPTH:
        return False  # cannot be too deep: skip the byte loop
    depth = i = 0
    limit = len(text)
    while i < limit:
        ch = text[i]
        if ch == 34:
            try:
                i = _string_end(text, i, limit)
            except ValueError:
                return False  # not JSON at all: the parser will say so
            continue
        if ch == 91 or ch == 123:  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch == 93 or ch == 125:  # ] }
            depth -= 1
        i += 1
    return False


def find_bytes(buf, pattern, limit):
    """Index of `pattern` in buf[:limit], or -1; also for a memoryview (which has no find)."""
    if hasattr(buf, "find"):
        return buf.find(pattern, 0, limit)
    first = pattern[0]
    n = len(pattern)
    for i in range(limit - n + 1):
        if buf[i] == first and bytes(buf[i:i + n]) == pattern:
            return i
    return -1


def array_spans(buf, start, limit):
    """Byte spans [(s, e), ...] of the elements of the JSON array at buf[start] ('[').

    Lets a node parse a large array one element at a time instead of all at
    once. Returns (spans, index after the closing ']'); raises ValueError if
    the array does not close before `limit`.
    """
    if buf[start] != 91:
        raise ValueError("not an array")
    spans = []
    depth = 0
    elem = None
    i = start
    while i < limit:
        ch = buf[i]
        if depth == 1 and elem is None and ch not in (32, 9, 10, 13, 44, 93):
            elem = i  # an element starts at its first significant byte
        if ch == 34:
            i = _string_end(buf, i, limit)
            continue
        if ch == 91 or ch == 123:
            depth += 1
        elif ch == 93 or ch == 125:
            depth -= 1
            if depth == 0:
                if elem is not None:
                    spans.append((elem, i))
                return spans, i + 1
        elif ch == 44 and depth == 1:  # ','
            spans.append((elem, i))
            elem = None
        i += 1
    raise ValueError("array does not close")


def encode_json(obj):
    """Compact JSON bytes (the node's memory and the radio both pay per byte)."""
    return json.dumps(obj, separators=(",", ":")).encode()


def type_name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value == value and -_INF < value < _INF


class Fields:
    """Reads the keys of one JSON object; see module doc."""

    def __init__(self, obj, where, error=MessageError):
        self.error = error
        self.where = where
        if not isinstance(obj, dict):
            self.fail(None, "must be an object, got %s" % type_name(obj))
        self.obj = obj
        self.seen = []

    def fail(self, key, text):
        path = self.where if key is None else "%s.%s" % (self.where, key)
        raise self.error("%s %s" % (path, text))

    def _get(self, key, default):
        self.seen.append(key)
        value = self.obj.get(key, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                self.fail(key, "is missing")
            return default, True
        return value, False

    def int(self, key, lo, hi, default=_MISSING):
        value, absent = self._get(key, default)
        if absent:
            return value
        if not is_int(value) or not lo <= value <= hi:
            self.fail(key, "must be a whole number from %d to %d, got %s" % (lo, hi, _show(value)))
        return value

    def number(self, key, lo, hi, default=_MISSING):
        value, absent = self._get(key, default)
        if absent:
            return value
        if not is_number(value) or not lo <= value <= hi:
            self.fail(key, "must be a number from %s to %s, got %s" % (lo, hi, _show(value)))
        return value

    def bool(self, key, default=_MISSING):
        value, absent = self._get(key, default)
        if absent:
            return value
        if not isinstance(value, bool):
            self.fail(key, "must be true or false, got %s" % _show(value))
        return value

    def text(self, key, max_len, default=_MISSING, min_len=0):
        value, absent = self._get(key, default)
        if absent:
            return value
        if not isinstance(value, str):
            self.fail(key, "must be text, got %s" % type_name(value))
        if not min_len <= len(value) <= max_len:
            self.fail(key, "must be %d to %d characters long, got %d" % (min_len, max_len, len(value)))
        return value

    def choice(self, key, choices, default=_MISSING):
        value, absent = self._get(key, default)
        if absent:
            return value
        if value not in choices or not isinstance(value, str):
            self.fail(key, "must be one of %s, got %s" % (", ".join(choices), _show(value)))
        return value

    def checked(self, key, check, default=_MISSING):
        """A value passed through `check(value)`; its ProtocolError becomes ours."""
        value, absent = self._get(key, default)
        if absent:
            return value
        try:
            return check(value)
        except NoMemory:
            raise
        except ValueError as exc:  # ProtocolError and its kin
            self.fail(key, "is invalid: %s" % exc)

    def list(self, key, max_items, default=_MISSING):
        value, absent = self._get(key, default)
        if absent:
            return value
        if not isinstance(value, list):
            self.fail(key, "must be a list, got %s" % type_name(value))
        if len(value) > max_items:
            self.fail(key, "has %d items; at most %d are allowed" % (len(value), max_items))
        return value

    def object(self, key, default=_MISSING):
        value, absent = self._get(key, default)
        if absent:
            return value
        if not isinstance(value, dict):
            self.fail(key, "must be an object, got %s" % type_name(value))
        return value

    def child(self, key, default=_MISSING):
        """A nested reader for an object-valued key (None if absent with default None)."""
        value = self.object(key, default)
        if value is None:
            return None
        return Fields(value, "%s.%s" % (self.where, key), self.error)

    def done(self):
        for key in self.obj:
            if key not in self.seen:
                self.fail(None, "has an unknown field %s" % _show(key))


def _show(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

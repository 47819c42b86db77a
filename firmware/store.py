"""Files on the node's flash that survive power cuts.

`Store` keeps named blobs in the storage directory the HAL gives as `fs`:
any object with open/rename/remove/listdir/stat that raises OSError like `os`
(`hardware.hal.Hal.fs`; `hardware.flashfs.DirFS` on a real filesystem).
Each file is a 12-byte header (magic, data length, CRC-32 of the data)
followed by the data.

Crash safety of save(name), one step at a time:
  1. write the whole file to "name.tmp" and close it;
  2. if "name" is a valid copy, rename it to "name.bak" (a corrupt one is
     never renamed over a good backup);
  3. rename "name.tmp" to "name".
Renames are atomic, so at every instant "name" holds the old or the new
version, or it is missing and "name.bak" holds the old one. load() takes
"name" if its header and CRC check, else "name.bak", and removes a stray
"name.tmp" (a save that never returned). delete() removes the backup first
so that an older version cannot come back.

`PersistentCounter` (durable before the caller acts) and `BatchedValue`
(kept in RAM, written rarely to spare the flash) sit on top.
"""
import binascii
import json
import struct

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

MAGIC = b"dls1"
HEADER = "<4sII"  # magic, data length, CRC-32 of the data
HEADER_SIZE = const(12)
BAK = ".bak"
TMP = ".tmp"
_CHUNK = const(256)  # read size when only checking a copy
_ENOENT = const(2)
_ENOSPC = const(28)
_JSON_ERRORS = (ValueError, TypeError, RuntimeError, IndexError, KeyError)


class StoreError(Exception):
    """The flash could not keep a value; the message says what to do."""


class NoMemory(StoreError):
    """Nothing was written because the heap could not hold the value's bytes now (not the flash's
    fault: a node answers "no_memory", not "storage")."""


def _crc(data, crc=0):
    return binascii.crc32(data, crc) & 0xFFFFFFFF


def _errno(exc):
    return exc.args[0] if exc.args else None


def write_all(f, buf):
    """Write all of buf to a flash file; OSError(ENOSPC) when the file stops taking bytes (full flash)."""
    view = memoryview(buf)
    while len(view):
        n = f.write(view)
        if not n:  # no progress on a flash file means no room
            raise OSError(_ENOSPC)
        view = view[n:]


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Store:
    """Named byte blobs on flash: after a power cut, the old or the new version."""

    def __init__(self, fs, log=None):
        self._fs = fs
        self._log = log

    def save(self, name, data):
        """Store `data` (bytes) as `name`; StoreError (old version kept) if the flash fails."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("store: data for %r must be bytes" % name)
        self._save(name, len(data), _crc(data), lambda f: write_all(f, data))

    def _save(self, name, length, crc, write):
        _check_name(name)
        fs = self._fs
        tmp = name + TMP
        try:
            with fs.open(tmp, "wb") as f:
                write_all(f, struct.pack(HEADER, MAGIC, length, crc))
                write(f)
                f.flush()
            if self._read(name, False):
                fs.rename(name, name + BAK)
            fs.rename(tmp, name)
        except OSError as exc:
            self._discard(tmp)
            raise _error("cannot save", name, exc)
        except MemoryError:  # found by tests/fuzz: a fragmented heap; the old version (or its backup) is kept
            self._discard(tmp)
            raise NoMemory("store: no memory to save %r now; the old version is kept" % name)

    def load(self, name):
        """The last saved bytes of `name` (or the backup copy), or None if there is none."""
        _check_name(name)
        self._discard(name + TMP)
        data = self._read(name, True)
        if data is None:
            data = self._read(name + BAK, True)
            if data is not None:
                self._note("%r: using the backup copy" % name)
        return data

    def garbled(self, name):
        """True if the newest copy of `name` is there but unreadable: the flash failing, not a save
        cut by a power cut (that leaves no newest copy, and load() rightly takes the backup)."""
        try:
            self._fs.stat(name)
        except OSError:
            return False
        return self._read(name, False) is None

    def save_json(self, name, obj):
        """Store `obj` as compact JSON, made and written in small pieces (found by tests/fuzz: the
        command log's 1.5 KB in one string, and its growth by doubling, were the first allocation
        to fail on a long-lived fragmented heap; pieces need no large free block)."""
        try:
            length = crc = 0
            for piece in _json_pieces(obj):
                piece = piece.encode()
                length += len(piece)
                crc = _crc(piece, crc)
        except MemoryError:  # found by tests/fuzz: escaped the command path on a fragmented heap; nothing written
            raise NoMemory("store: no memory to encode %r now; the old version is kept" % name)
        self._save(name, length, crc, lambda f: _write_pieces(f, obj))

    def load_json(self, name):
        """The stored JSON value, or None if missing or undecodable (logged)."""
        data = self.load(name)
        if data is None:
            return None
        try:
            return json.loads(data.decode())
        except _JSON_ERRORS:
            self._note("%r: not valid JSON, ignored" % name)
            return None

    def delete(self, name):
        _check_name(name)
        for fname in (name + BAK, name, name + TMP):  # backup first: an older copy must not reappear
            try:
                self._fs.remove(fname)
            except OSError as exc:
                if _errno(exc) != _ENOENT:
                    raise _error("cannot delete", name, exc)

    def exists(self, name):
        """True if a copy of `name` is on flash, even an unreadable one."""
        for fname in (name, name + BAK):
            try:
                self._fs.stat(fname)
                return True
            except OSError:
                pass
        return False

    def _read(self, fname, want_data):
        """The data of a valid copy (True if not want_data), or None; logs why a copy is bad."""
        fs = self._fs
        try:
            size = fs.stat(fname)
        except OSError:
            return None  # missing
        try:
            with fs.open(fname, "rb") as f:
                head = f.read(HEADER_SIZE)
                if len(head) != HEADER_SIZE:
                    return self._bad(fname, "truncated header (%d bytes)" % len(head))
                magic, length, crc = struct.unpack(HEADER, head)
                if magic != MAGIC:
                    return self._bad(fname, "not a store file")
                if size != HEADER_SIZE + length:
                    return self._bad(fname, "torn: %d of %d bytes" % (size, HEADER_SIZE + length))
                if want_data:
                    data = f.read(length)
                    ok = len(data) == length and _crc(data) == crc
                else:
                    data, left, got = True, length, 0
                    while left:
                        chunk = f.read(min(left, _CHUNK))
                        if not chunk:
                            break
                        got = _crc(chunk, got)
                        left -= len(chunk)
                    ok = left == 0 and got == crc
        except OSError as exc:
            return self._bad(fname, "unreadable (%s)" % exc)
        return data if ok else self._bad(fname, "bad checksum")

    def _bad(self, fname, why):
        self._note("%r is corrupt: %s" % (fname, why))
        return None

    def _discard(self, fname):
        try:
            self._fs.remove(fname)
        except OSError:
            pass

    def _note(self, text):
        if self._log:
            self._log("store: " + text)


def _json_pieces(obj):
    """Compact JSON text of `obj` (dicts with text keys, lists, scalars) in small pieces: none is
    larger than one scalar with its separator."""
    if isinstance(obj, dict):
        sep = "{"
        for k in obj:
            yield sep + json.dumps(k if isinstance(k, str) else str(k)) + ":"
            yield from _json_pieces(obj[k])
            sep = ","
        yield "}" if sep == "," else "{}"
    elif isinstance(obj, (list, tuple)):
        sep = "["
        for v in obj:
            if sep == ",":
                yield sep
            else:
                yield "["
                sep = ","
            yield from _json_pieces(v)
        yield "]" if sep == "," else "[]"
    else:
        yield json.dumps(obj)


def _write_pieces(f, obj):
    """The pieces of `obj`, gathered in a small buffer, written to `f`."""
    buf = bytearray(_CHUNK)
    n = 0
    for piece in _json_pieces(obj):
        piece = piece.encode()
        if n + len(piece) > _CHUNK:
            write_all(f, memoryview(buf)[:n])
            n = 0
        if len(piece) > _CHUNK:
            write_all(f, piece)
        else:
            buf[n:n + len(piece)] = piece
            n += len(piece)
    if n:
        write_all(f, memoryview(buf)[:n])


def _check_name(name):
    if not isinstance(name, str) or not name or name.endswith(BAK) or name.endswith(TMP):
        raise ValueError("store: bad name %r (empty, or ends in %s/%s)" % (name, BAK, TMP))


def _error(action, name, exc):
    if _errno(exc) == _ENOSPC:
        return StoreError("%s %r: the flash is full; delete cached audio clips or old files" % (action, name))
    return StoreError("%s %r: flash error (%s); if it repeats the flash may be worn: reflash the node"
                      % (action, name, exc))


class PersistentCounter:
    """A value that only goes up and is on flash before anyone acts on it (the command counter).

    `lost` is True when a stored copy existed but none could be read, so
    the value restarted at 0: the node should report it.
    """

    def __init__(self, store, name):
        self._store = store
        self._name = name
        value = store.load_json(name)
        self.lost = False
        if not _is_int(value) or value < 0:
            self.lost = value is not None or store.exists(name)
            if self.lost:
                store._note("counter %r unreadable, restarting at 0" % name)
            value = 0
        self.value = value

    def advance(self, new_value):
        """Persist `new_value` (> value), then update .value; StoreError if refused or not stored."""
        if not _is_int(new_value) or new_value <= self.value:
            raise StoreError("counter %r: %r is not above %d; it only goes up" % (self._name, new_value, self.value))
        self._store.save_json(self._name, new_value)
        self.value = new_value


class BatchedValue:
    """A value that changes often (energy in Wh), written to flash rarely.

    Written when it has changed and `min_interval_s` passed since the last
    write (or since the first update after boot), at once when it moved by
    `min_delta`, and on flush(). A reboot loses at most the unwritten part.
    A failed write raises StoreError once, then is retried after the interval.
    """

    def __init__(self, store, name, min_interval_s=600, min_delta=10.0):
        self._store = store
        self._name = name
        self._interval = min_interval_s
        self._delta = min_delta
        value = store.load_json(name)
        if not _is_number(value):
            if value is not None:
                store._note("%r is not a number, restarting at 0" % name)
            value = 0
        self.value = value
        self._saved = value
        self._since = None  # clock of the last write attempt
        self._failing = False
        self.writes = 0

    def update(self, value, now_s):
        self.value = value
        if self._since is None:
            self._since = now_s
        if value == self._saved:
            return
        elapsed = now_s - self._since
        if elapsed < 0:  # the clock wrapped or restarted: write rather than stall
            elapsed = self._interval
        if elapsed >= self._interval or (not self._failing and abs(value - self._saved) >= self._delta):
            self._since = now_s
            self._write()

    def flush(self):
        if self.value != self._saved:
            self._write()

    def _write(self):
        value = self.value
        self._failing = True
        self._store.save_json(self._name, value)
        self._failing = False
        self._saved = value
        self.writes += 1

"""The node's clip cache: audio clips fetched ahead of their slot, verified, kept on flash.

Files in the HAL's storage directory (`hal.fs`):
  c-<first 16 hex of the clip's SHA-256>.ima   complete, verified: may air
  c-<first 16 hex>.part                        the download in flight (at most one)

The fetch task (`run()`) asks `wants()` for the clips the node needs: (start,
end, sha) of every plan item with a clip and of commanded clip broadcasts
(start 0: at once). It fetches the missing ones earliest start first, as
soon as they are named (the horizon is the whole plan), hashing with SHA-256
while the bytes arrive. A hash mismatch deletes the part and fetches again
(MAX_CORRUPT times, then the clip is "bad"); a broken connection keeps the
part and resumes it with `Range: bytes=N-` (after a reboot the part is
re-hashed from flash first). Network failures retry with backoff, forever.

Flash budget (`budget` bytes, cfg.clip_kb): before a clip is downloaded its
size must fit beside the verified clips; clips that no want names (no plan
item whose window is still open, no commanded broadcast) are evicted, least
recently wanted first. A clip still wanted is never evicted. A clip that cannot
fit even then is reported once (event "clip_unfit") and stays "missing"; it is
tried again when the wants change or the clock moves items out. A full flash
(ENOSPC) deletes the part and is handled the same way: nothing crashes and no
other file is touched.

Memory: while a download runs, one BUF-byte buffer and one HEAD_MAX-byte header
buffer (released after it); always, an index of the verified files (16-char
name and size each) and at most MAX_TROUBLE entries of clips with a problem.
"""
import binascii
import hashlib

from firmware.http import HEAD_MAX, HttpError, Watch, guarded
from firmware.store import write_all
from protocol.ima import BLOCK_BYTES, BLOCK_SAMPLES, FormatError, parse_header

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

BUF = const(512)
PREFIX = "c-"
DONE = ".ima"
PART = ".part"
READY, FETCHING, MISSING, BAD = "ready", "fetching", "missing", "bad"
MAX_CORRUPT = const(3)  # hash mismatches (or corrupt reads) before a clip is "bad"
MAX_TROUBLE = const(16)
STALL_MS = const(10000)  # a download with no byte for this long is dropped (and resumed later)
BACKOFF_MIN_MS = const(1000)
BACKOFF_MAX_MS = const(60000)
IDLE_MS = const(1000)  # the fetch task's pace when it has nothing to do (need() is seen within it)
RESCAN = const(10)  # idle rounds between two scans of the wants when nothing changed
RECHECK_MS = const(60000)  # an unfit clip is tried again this often (items end, room appears)
HEAD_READ = const(128)  # bytes read to find the WAV data chunk (ffmpeg's header is 60 bytes)
_ENOENT = const(2)
_ENOSPC = const(28)
# trouble kinds
_NET, _CORRUPT, _UNFIT = 0, 1, 2


def key(sha):
    return sha[:16]


def file_name(sha, ext=DONE):
    return PREFIX + sha[:16] + ext


def _errno(exc):
    return exc.args[0] if exc.args else None


class _Unfit(Exception):
    pass


class ClipSource:
    """A verified clip read from flash in whole 256-byte IMA blocks (the player's source)."""

    lost = False

    def __init__(self, cache, sha, f, data_offset, data_len, samples):
        self._cache, self.sha = cache, sha
        self._f = f
        self._offset, self._len = data_offset, data_len
        self.samples = samples
        self.pos = 0  # bytes into the data chunk
        self.bad = False
        self.ended = data_len == 0

    def readinto(self, buf):
        """Whole blocks into buf; their byte count (0 at the end)."""
        if self._f is None or self.ended:
            return 0
        mv = memoryview(buf)
        room = (len(mv) // BLOCK_BYTES) * BLOCK_BYTES
        want = min(room, self._len - self.pos)
        if want <= 0:
            self.ended = True
            return 0
        try:
            n = self._f.readinto(mv[:want])
        except OSError:
            n = -1
        if n != want:
            self._corrupt()
            return 0
        self.pos += n
        if n % BLOCK_BYTES:  # the file's last block is short: pad it (samples says where audio ends)
            pad = BLOCK_BYTES - n % BLOCK_BYTES
            for i in range(n, n + pad):
                mv[i] = 0
            n += pad
        if self.pos >= self._len:
            self.ended = True
        return n

    def seek(self, sample_offset):
        """Position at the block holding `sample_offset`."""
        block = max(0, sample_offset) // BLOCK_SAMPLES
        self.pos = min(block * BLOCK_BYTES, self._len)
        self.ended = self.pos >= self._len
        if self._f is not None:
            try:
                self._f.seek(self._offset + self.pos)
            except OSError:
                self._corrupt()

    def _corrupt(self):
        self.bad = self.ended = True
        self.close()
        self._cache.bad(self.sha)

    def close(self):
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass


class ClipCache:
    def __init__(self, hal, fs, budget, client, wants, emit=None, now=None):
        self.hal, self.fs = hal, fs
        self.budget = budget
        self.client = client  # firmware.http.Client: where clips come from
        self.wants = wants  # () -> iterable of (start, end or None, sha); None: unknown now (evict nothing)
        self.emit = emit or (lambda kind, data=None: None)
        self.now = now or (lambda: None)  # wall clock (Unix s) or None: items that ended are not wanted
        self.stream = None  # the live stream receiving now (Media sets it): no download meanwhile
        self._watch = None  # the download in flight's Watch (pause() aborts through it)
        self._buf = self._head = None  # made for a download, released after it (idle: no buffers)
        self._index = None  # sha16 -> [size, last wanted start]: the verified clips on flash (read at first use)
        self._trouble = {}  # sha16 -> [kind, count, retry at (ticks), reported]
        self._partial = None  # [sha, hasher, bytes hashed] of the .part: resumes without re-reading it
        self._dirty = True
        self.fetching = None  # the sha being downloaded now
        self.fetched = 0  # clips downloaded and verified since boot
        self._audit = None  # verified clips to re-hash once after boot, when idle

    # ---- what is on flash --------------------------------------------------
    @property
    def _files(self):
        if self._index is None:  # at first use, not at boot: a node that never airs a clip pays nothing
            index = {}
            for name in self.fs.listdir():
                if name.startswith(PREFIX) and name.endswith(DONE) and len(name) == 2 + 16 + 4:
                    try:
                        index[name[2:18]] = [self.fs.stat(name), 0]
                    except OSError:
                        pass
            self._index = index
            self._audit = list(index)
        return self._index

    def used(self):
        total = 0
        for entry in self._files.values():
            total += entry[0]
        return total

    def _remove(self, name):
        try:
            self.fs.remove(name)
        except OSError as exc:
            if _errno(exc) != _ENOENT:
                self.emit("storage_error", {"file": name, "error": str(exc)[:100]})

    def _drop(self, sha16):
        self._files.pop(sha16, None)
        self._remove(PREFIX + sha16 + DONE)

    # ---- the player's side -------------------------------------------------
    def has(self, sha):
        return key(sha) in self._files

    def state(self, sha):
        k = key(sha)
        if k in self._files:
            return READY
        t = self._trouble.get(k)
        if t is not None and t[0] == _CORRUPT and t[1] >= MAX_CORRUPT:
            return BAD
        if t is not None and t[0] == _UNFIT:
            return MISSING
        for _start, _end, want in self._live_wants():
            if want == sha:
                return FETCHING
        return MISSING

    def info(self, sha):
        """(samples, data offset, data length) of a ready clip, or None (missing or corrupt)."""
        f = self._open_file(sha)
        if f is None:
            return None
        try:
            return f[1:]
        finally:
            f[0].close()

    def _open_file(self, sha):
        if not self.has(sha):
            return None
        name = file_name(sha)
        try:
            f = self.fs.open(name, "rb")
        except OSError:
            self.bad(sha)
            return None
        try:
            head = f.read(HEAD_READ)
            offset, length, samples = parse_header(head)
            head = None
            size = self._files[key(sha)][0]
            if offset + length > size:
                raise FormatError("data chunk longer than the file")
            f.seek(offset)
        except (OSError, FormatError, ValueError):
            f.close()
            self.bad(sha)
            return None
        return f, samples, offset, length

    def open(self, sha):
        """A ClipSource at the first block of a ready clip, or None (then the clip is refetched
        if its header is corrupt)."""
        opened = self._open_file(sha)
        if opened is None:
            return None
        f, samples, offset, length = opened
        return ClipSource(self, sha, f, offset, length, samples)

    def bad(self, sha):
        """A read found the clip corrupt: delete it and fetch it again (counts as a bad copy)."""
        k = key(sha)
        self._drop(k)
        self._count_corrupt(k)
        self.emit("clip_corrupt", {"clip": k, "where": "flash"})
        self._dirty = True

    def hold(self):
        """True while a live stream receives: it has the link and the heap."""
        s = self.stream
        if s is not None and (s._closed or s._done is not None):
            self.stream = s = None  # over: its ring goes back to the heap, downloads go on
        return s is not None

    def pause(self):
        """Drop the download in flight now (its part stays, resumed by Range); with hold() true
        no other starts. A live stream calls it: the link and the heap are the stream's."""
        if self._watch is not None and not self._watch.abort:
            self._watch.abort = "paused for a live stream"

    def need(self, *_ignored):
        """The wants changed (plan applied, boot, a commanded clip): look again at once."""
        self._dirty = True
        for k in list(self._trouble):  # an unfit clip may fit now; a bad one is not retried
            t = self._trouble[k]
            if t[0] != _CORRUPT or t[1] < MAX_CORRUPT:
                t[2] = self.hal.ticks_ms()

    # ---- wants -------------------------------------------------------------
    def _live_wants(self):
        now = self.now()
        wants = self.wants()
        if wants is None:
            return
        for start, end, sha in wants:
            if sha and (end is None or now is None or end > now):
                yield start, end, sha

    def _next(self):
        """The wanted clip to fetch now (earliest start), or None."""
        best = None
        best_start = None
        ticks = self.hal.ticks_ms()
        for start, _end, sha in self._live_wants():
            k = key(sha)
            entry = self._files.get(k)
            if entry is not None:
                if start and start > entry[1]:
                    entry[1] = start  # eviction takes the least recently wanted first
                continue
            t = self._trouble.get(k)
            if t is not None:
                if t[0] == _CORRUPT and t[1] >= MAX_CORRUPT:
                    continue
                if self.hal.ticks_diff(ticks, t[2]) < 0:
                    continue
            if best is None or start < best_start:
                best, best_start = sha, start
        if self._trouble and self.wants() is not None:  # forget the troubles of clips no longer wanted
            wanted = self._wanted_keys()
            for k in list(self._trouble):
                if k not in wanted:
                    del self._trouble[k]
        return best

    def _wanted_keys(self):
        """{sha16: True} of the clips wanted now; None when the node cannot say (see wants)."""
        if self.wants() is None:
            return None
        keys = {}
        for _start, _end, sha in self._live_wants():
            keys[key(sha)] = True
        return keys

    def _make_room(self, total, have, keep):
        """Make a clip of `total` bytes (`have` of them on flash already) fit the budget and the
        flash, evicting unwanted clips (least recently wanted first) only if that is enough.
        None when it fits; else why not: "budget", "flash_full" or "wants_unknown"."""
        need_budget = total - (self.budget - self.used())
        free_bytes = getattr(self.fs, "free_bytes", None)
        free = free_bytes() if free_bytes is not None else None
        need_flash = 0 if free is None else (total - have) - free
        if need_budget <= 0 and need_flash <= 0:
            return None
        wanted = self._wanted_keys()
        if wanted is None:  # the node cannot say what it needs right now: evict nothing
            return "wants_unknown"
        wanted[key(keep)] = True
        gain = 0
        for k, entry in self._files.items():
            if k not in wanted:
                gain += entry[0]
        if gain < need_budget:
            return "budget"
        if gain < need_flash:
            return "flash_full"
        while need_budget > 0 or need_flash > 0:
            victim = None
            for k, entry in self._files.items():
                if k not in wanted and (victim is None or entry[1] < self._files[victim][1]):
                    victim = k
            size = self._files[victim][0]
            self.emit("clip_evicted", {"clip": victim, "size": size})
            self._drop(victim)
            need_budget -= size
            need_flash -= size
        return None

    # ---- trouble -------------------------------------------------------------
    def _trouble_for(self, k, kind):
        t = self._trouble.get(k)
        if t is None or t[0] != kind:
            if t is None and len(self._trouble) >= MAX_TROUBLE:
                wanted = self._wanted_keys() or {}
                for old in list(self._trouble):
                    if old not in wanted:
                        del self._trouble[old]
                if len(self._trouble) >= MAX_TROUBLE:
                    self._trouble.pop(next(iter(self._trouble)))
            t = self._trouble[k] = [kind, 0, self.hal.ticks_ms(), False]
        return t

    def _later(self, t, ms):
        t[2] = self.hal.ticks_add(self.hal.ticks_ms(), ms)

    def _count_net(self, k):
        t = self._trouble_for(k, _NET)
        t[1] += 1
        self._later(t, min(BACKOFF_MAX_MS, BACKOFF_MIN_MS << min(t[1] - 1, 6)))

    def _count_corrupt(self, k):
        t = self._trouble_for(k, _CORRUPT)
        t[1] += 1
        self._later(t, BACKOFF_MIN_MS << (t[1] - 1))
        if t[1] >= MAX_CORRUPT and not t[3]:
            t[3] = True
            self.emit("clip_bad", {"clip": k, "tries": t[1]})

    def _unfit(self, k, size, why):
        t = self._trouble_for(k, _UNFIT)
        self._later(t, RECHECK_MS)
        if not t[3]:
            t[3] = True
            self.emit("clip_unfit", {"clip": k, "size": size, "budget": self.budget, "used": self.used(), "why": why})

    # ---- the fetch task ------------------------------------------------------
    async def run(self):
        """Fetch what is wanted, forever (the node runs it under its supervisor)."""
        hal = self.hal
        idle = 0
        while True:
            # the wants are scanned when they changed, when a retry is due, and every RESCAN idle
            # rounds (windows close as the clock runs); not every second on every node
            if self.hold():
                await hal.sleep_ms(IDLE_MS)
                continue
            if self._dirty or idle >= RESCAN or self._retry_due():
                self._dirty = False
                idle = 0
                sha = self._next()
            else:
                sha = None
            if sha is None and self._files and self._audit:
                await self.audit(self._audit.pop())
                continue
            if sha is None:
                idle += 1
                await hal.sleep_ms(IDLE_MS)
                continue
            await self.fetch(sha)
            await hal.sleep_ms(0)

    def _retry_due(self):
        ticks = self.hal.ticks_ms()
        for t in self._trouble.values():
            if (t[0] != _CORRUPT or t[1] < MAX_CORRUPT) and self.hal.ticks_diff(ticks, t[2]) >= 0:
                return True
        return False

    async def audit(self, k):
        """Re-hash a verified clip on flash (named by its first 16 hex digits); delete it if the
        flash changed it (it is fetched again if wanted). True when it is intact."""
        if k not in self._files:
            return True
        h = hashlib.sha256()
        buf = bytearray(BUF)
        got = 0
        try:
            with self.fs.open(PREFIX + k + DONE, "rb") as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    h.update(memoryview(buf)[:n])
                    got += n
                    await self.hal.sleep_ms(0)  # a file of minutes must not hold the loop
        except OSError:
            got = -1
        buf = None
        if k not in self._files:  # evicted meanwhile
            return True
        if got == self._files[k][0] and binascii.hexlify(h.digest()).decode()[:16] == k:
            return True
        self._drop(k)
        self.emit("clip_corrupt", {"clip": k, "where": "audit"})
        self._dirty = True
        return False

    async def fetch(self, sha):
        """One attempt at downloading `sha`; True when it is now verified on flash."""
        k = key(sha)
        self.fetching = sha
        self._watch = watch = Watch(self.hal)
        try:
            self._buf, self._head = bytearray(BUF), bytearray(HEAD_MAX)
            ok = await guarded(self.hal, watch, self._download(sha, watch), STALL_MS)
        except HttpError as exc:
            if watch.abort:  # paused: not the clip's fault nor the network's; resumed later by Range
                self._dirty = True
                return False
            self._net_failed(sha, exc)
            return False
        except _Unfit:
            return False
        except OSError as exc:  # the flash: full, or failing
            self._flash_failed(sha, exc)
            return False
        except MemoryError:  # no 1 KB piece of heap now: try again later
            self._count_net(k)
            return False
        finally:
            self.fetching = self._watch = None
            self._buf = self._head = None
        if ok:
            self._trouble.pop(k, None)
            self.fetched += 1
        return ok

    def _net_failed(self, sha, exc):
        k = key(sha)
        self._count_net(k)
        t = self._trouble[k]
        if t[1] in (1, 5) or t[1] % 20 == 0:  # not a flood of events while the gateway is away
            self.emit("clip_fetch_failed", {"clip": k, "status": getattr(exc, "status", None),
                                            "error": str(exc)[:100], "n": t[1]})

    def _flash_failed(self, sha, exc):
        k = key(sha)
        self._partial = None
        self._remove(file_name(sha, PART))
        if _errno(exc) == _ENOSPC:
            self._unfit(k, None, "flash_full")
        else:
            self.emit("storage_error", {"file": file_name(sha, PART), "error": str(exc)[:100]})
            self._count_net(k)

    def _clear_parts(self, keep):
        for name in self.fs.listdir():
            if name.startswith(PREFIX) and name.endswith(PART) and name != keep:
                self._remove(name)

    def _resume_point(self, sha, part):
        """(hasher, bytes) of the part on flash, re-hashed from flash unless we just wrote it."""
        p = self._partial
        if p is not None and p[0] == sha:
            try:
                if self.fs.stat(part) == p[2]:
                    return p[1], p[2]
            except OSError:
                pass
        self._partial = None
        h = hashlib.sha256()
        try:
            size = self.fs.stat(part)
        except OSError:
            return h, 0
        have = 0
        buf = memoryview(self._buf)
        with self.fs.open(part, "rb") as f:
            while have < size:
                n = f.readinto(buf[:min(len(buf), size - have)])
                if not n:
                    break
                h.update(buf[:n])
                have += n
        if have != size:  # unreadable part: start again
            self._remove(part)
            return hashlib.sha256(), 0
        return h, have

    async def _download(self, sha, watch):
        fs = self.fs
        k = key(sha)
        part = file_name(sha, PART)
        self._clear_parts(part)
        h, have = self._resume_point(sha, part)
        resp = await self.client.get("/node/v1/clips/" + sha, self._head, watch, have)
        f = None
        try:
            if resp.status == 416 and have:  # the part is longer than the clip: start again
                self._partial = None
                self._remove(part)
                raise HttpError("range past the end: part dropped", 416)
            if resp.status == 200 and have:  # the server ignored the range: start again
                h, have = hashlib.sha256(), 0
                self._partial = None
                self._remove(part)
            elif resp.status == 206 and resp.start != have:
                raise HttpError("asked for bytes from %d, got from %d" % (have, resp.start), 206)
            elif resp.status not in (200, 206):
                raise HttpError("HTTP %d" % resp.status, resp.status)
            total = resp.total
            if total is None:
                raise HttpError("no Content-Length", resp.status)
            why = self._make_room(total, have, sha)
            if why == "wants_unknown":
                raise HttpError("the node's plan is being reloaded: later")
            if why is not None:
                self._partial = None
                self._remove(part)
                self._unfit(k, total, why)
                raise _Unfit()
            t = self._trouble.get(k)
            if t is not None and t[0] == _UNFIT:
                del self._trouble[k]  # it fits now
            buf = memoryview(self._buf)
            f = fs.open(part, "ab" if have else "wb")
            self._partial = p = [sha, h, have]
            while have < total:
                n = await resp.readinto(buf)
                if not n:
                    raise HttpError("body ended after %d of %d bytes" % (have, total))
                write_all(f, buf[:n])
                h.update(buf[:n])
                have += n
                p[2] = have
            f.close()
            f = None
            self._partial = None
            digest = binascii.hexlify(h.digest()).decode()
            if digest != sha:
                self._remove(part)
                self._count_corrupt(k)
                self.emit("clip_corrupt", {"clip": k, "where": "download"})
                return False
            fs.rename(part, file_name(sha))
            self._files[k] = [total, 0]
            self.emit("clip_ready", {"clip": k, "size": total})
            return True
        finally:
            resp.close()
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass

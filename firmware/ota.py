"""Over-the-air update on the node: download a bundle into the other slot, verify, switch, confirm.

docs/ota.md has the whole picture; the bootstrap is firmware/boot.py. What runs here:

- `start(cmd)`: an authenticated `ota` command (version, SHA-256 of the manifest, path) becomes
  the job, stored in the node's storage ("ota-job", atomic, naming the cmd_id: a stored effect
  of the command log, so a power cut cannot apply it twice nor lose it once acked).
- `run()`, a task of the node: fetches `<path><manifest sha>` into /app/<other>/manifest.new and
  checks its SHA-256 equals the signed one, then its format, version and minimum MicroPython;
  then each file from `<path><file sha>` into `<file>.part` (hashing while it arrives, resumed
  with Range after a break or a reboot), renamed to its path once its hash and size match.
  The slot's entry file (main.py) is removed first and written last, so the slot is bootable
  only when every file in it was verified. Then /boot.json names the new slot in "trial" (one
  atomic rename) and the node reboots.
- `tick()`: a trial version that booted, connected to MQTT and ran its control loop healthily
  for CONFIRM_MS confirms itself (/boot.json "ok", event ota_confirmed); one not confirmed within
  boot.TRIAL_MS marks itself failed and resets (the bootstrap then boots the previous slot).
  After a rollback the previous version reports it (ota_rolled_back) until it is healthy.

Memory: one BUF buffer and one HTTP header buffer while a file downloads; the manifest is never
held whole: it is read from flash in 128-byte pieces, one file entry parsed at a time
(`manifest_entries`), once to check it all, once to install, once to list what to keep.
"""
import binascii
import hashlib
import json
import sys

from firmware import boot
from firmware.http import HEAD_MAX, Client, HttpError, Watch, guarded
from firmware.store import NoMemory, StoreError, write_all
from firmware.version import VERSION

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

JOB = "ota-job"
BUF = const(512)
MAX_MANIFEST = const(16384)
MAX_FILES = const(200)
CONFIRM_MS = const(60000)  # a trial version confirms itself after this long up, connected and healthy
STALL_MS = const(15000)
BACKOFF_MIN_MS = const(2000)
BACKOFF_MAX_MS = const(60000)
IDLE_MS = const(1000)
MAX_CORRUPT = const(3)  # a file whose hash does not match this often (fetched again) is refused
MAX_MISSING = const(5)  # HTTP 401/403/404 this often: the gateway will not serve it
PART = ".part"
NEW = "manifest.new"
MANIFEST = "manifest.json"
_ENOSPC = const(28)


class Refused(Exception):
    """The bundle cannot be installed (bad hash, bad manifest, too old a MicroPython...)."""


class _Corrupt(Exception):
    pass


def _hex(h):
    return binascii.hexlify(h.digest()).decode()


def version_tuple(text):
    """ "1.24.0" -> (1, 24, 0); ValueError on anything else."""
    parts = str(text).split(".")
    if not 1 <= len(parts) <= 4:
        raise ValueError(text)
    return tuple(int(p) for p in parts)


def _check_path(path):
    if not isinstance(path, str) or not 0 < len(path) <= 80 or path[0] == "/" or "\\" in path:
        raise Refused("manifest: bad path %r" % (path,))
    for part in path.split("/"):
        if part in ("", ".", "..") or part.endswith(PART):
            raise Refused("manifest: bad path %r" % path)
    if path in (MANIFEST, NEW):
        raise Refused("manifest: bad path %r" % path)


_LB, _RB, _LS, _RS, _QUOTE, _BSL = const(0x7B), const(0x7D), const(0x5B), const(0x5D), const(0x22), const(0x5C)
_SPACE = b" \t\r\n"
MAX_ENVELOPE = const(1024)  # the manifest outside its file list
MAX_ENTRY = const(512)  # one file entry


def manifest_entries(f, envelope, marks=None):
    """The file entries of a manifest read from flash in small pieces: yields each entry's dict,
    parsed on its own (never the whole manifest at once: the node's heap holds a plan too).
    When the generator ends, `envelope` (a list) holds the rest: the manifest with "files": [].
    `marks` (a list) gets the offset just after the file list's "[" (where entry_at starts)."""
    env = bytearray()
    pos = 0
    cur = None
    depth = 0
    in_str = esc = False
    in_files = False
    while True:
        chunk = f.read(128)
        if not chunk:
            break
        for b in chunk:
            pos += 1
            if cur is not None:
                cur.append(b)
            elif not in_files or depth != 2 or b == _RS:  # between entries: their commas are left out
                env.append(b)
            if in_str:
                if esc:
                    esc = False
                elif b == _BSL:
                    esc = True
                elif b == _QUOTE:
                    in_str = False
                continue
            if b == _QUOTE:
                in_str = True
            elif b == _LB or b == _LS:
                depth += 1
                if b == _LS and depth == 2 and not in_files:
                    key = bytes(env[-40:-1]).rstrip(_SPACE)
                    if key.endswith(b":") and key[:-1].rstrip(_SPACE).endswith(b'"files"'):
                        in_files = True
                        if marks is not None:
                            marks.append(pos)
                elif b == _LB and in_files and depth == 3 and cur is None:
                    cur = bytearray(b"{")
            elif b == _RB or b == _RS:
                depth -= 1
                if cur is not None and depth == 2:
                    entry, cur = cur, None
                    try:
                        entry = json.loads(entry)
                    except ValueError:
                        raise Refused("manifest: a file entry is not JSON")
                    yield entry
                elif in_files and depth == 1:
                    in_files = False
            if len(env) > MAX_ENVELOPE or (cur is not None and len(cur) > MAX_ENTRY):
                raise Refused("manifest: too large a part")
    try:
        envelope.append(json.loads(env))
    except ValueError:
        raise Refused("manifest is not JSON")


def entry_at(f, offset):
    """(entry dict, offset after it) of the file entry that follows `offset` in a manifest checked
    by manifest_entries (just after the file list's "[" or after the previous entry), or (None,
    offset) at the list's end. Only the small entry is read into RAM: nothing is held between two."""
    seek = getattr(f, "seek", None)
    if seek is not None:
        seek(offset)
    else:  # a file without seek (a test's wrapper): read up to it
        left = offset
        while left:
            skipped = len(f.read(min(left, 128)))
            if not skipped:
                raise Refused("manifest: cut short")
            left -= skipped
    cur = None
    depth = 0
    in_str = esc = False
    while True:
        chunk = f.read(64)
        if not chunk:
            raise Refused("manifest: cut short")
        for b in chunk:
            offset += 1
            if cur is None:  # between entries: commas and spaces, until "{" or the list's "]"
                if b == _RS:
                    return None, offset
                if b == _LB:
                    cur = bytearray(b"{")
                    depth = 1
                continue
            cur.append(b)
            if in_str:
                if esc:
                    esc = False
                elif b == _BSL:
                    esc = True
                elif b == _QUOTE:
                    in_str = False
            elif b == _QUOTE:
                in_str = True
            elif b == _LB or b == _LS:
                depth += 1
            elif b == _RB or b == _RS:
                depth -= 1
                if not depth:
                    try:
                        return json.loads(cur), offset
                    except ValueError:
                        raise Refused("manifest: a file entry is not JSON")
            if len(cur) > MAX_ENTRY:
                raise Refused("manifest: too large a part")


def check_entry(f):
    """(path, sha, size) of one manifest file entry; Refused if unusable."""
    if not isinstance(f, dict):
        raise Refused("manifest: bad file entry")
    path, sha, size = f.get("path"), f.get("sha256"), f.get("size")
    _check_path(path)
    if not isinstance(sha, str) or len(sha) != 64 or not isinstance(size, int) or size < 0:
        raise Refused("manifest: bad hash or size for %r" % path)
    return path, sha, size


def check_envelope(m, version, mpy_version):
    if not isinstance(m, dict) or m.get("format") != 1:
        raise Refused("manifest: format %r is not 1" % (m.get("format") if isinstance(m, dict) else m,))
    if m.get("version") != version:
        raise Refused("manifest is version %r, the command said %r" % (m.get("version"), version))
    try:
        need = version_tuple(m.get("min_micropython", "0"))
    except ValueError:
        raise Refused("manifest: bad min_micropython")
    if tuple(mpy_version[:len(need)]) < need:
        raise Refused("needs MicroPython %s, this node has %s" % (
            m.get("min_micropython"), ".".join(str(x) for x in mpy_version)))
    if m.get("boot", boot.ENTRY) != boot.ENTRY:
        raise Refused("manifest: boot must be %s" % boot.ENTRY)
    if not isinstance(m.get("files"), list):
        raise Refused("manifest: no files")


class Ota:
    def __init__(self, node, fs):
        self.node = node
        self.hal = node.hal
        self.fs = fs  # boot.RootFS (or a test's wrapper): the node's filesystem from its root
        self.job = None  # {"v", "m", "p", "cmd"}
        self.slot = "a"  # the slot running now
        self.trial = False  # booted as a trial: not confirmed yet
        self.rolled_back = None  # the boot state after a rollback, until it is confirmed
        self.switched = False
        self.failures = 0
        self._missing = 0
        self._corrupt = {}
        self._client = None
        self._buf = self._head = None
        self.done_files = 0
        self.last_error = None  # why the last attempt did not finish (tests, self-test)

    # ---- boot and health ---------------------------------------------------
    def boot(self):
        """At the node's boot: the slot state, a rollback to report, a job to resume."""
        node = self.node
        try:
            st = boot.load(self.fs)
        except OSError:
            st = {"active": "a", "state": "ok"}
        self.slot = st["active"]
        self.trial = st["state"] == "booting"
        if st["state"] == "rolled_back":
            self.rolled_back = st
            node.emit("ota_rolled_back", {"version": st.get("failed"), "running": VERSION,
                                          "why": (st.get("why") or "")[:100]})
        job = node.store.load_json(JOB)
        if isinstance(job, dict) and isinstance(job.get("v"), str):
            if job["v"] == VERSION or (self.rolled_back is not None and job["v"] == st.get("failed")):
                self._drop_job()  # it is what runs now (switched), or it failed: not again
            else:
                self.job = job

    def names(self, cmd_id):
        """True if the stored job was made by `cmd_id` (the command log's boot check)."""
        return self.job is not None and self.job.get("cmd") == cmd_id

    def tick(self):
        """From the control step: confirm a healthy trial (or a rollback's report); time a trial out."""
        if not (self.trial or self.rolled_back is not None):
            return
        node = self.node
        up = node.uptime.ms()
        mqtt = node.mqtt
        if up >= CONFIRM_MS and mqtt is not None and mqtt.is_up() and node.healthy():
            try:
                boot.confirm(self.fs)
            except OSError as exc:
                node.emit("storage_error", {"file": boot.BOOT, "error": str(exc)[:100]})
                return
            if self.trial:
                node.emit("ota_confirmed", {"version": VERSION, "slot": self.slot})
            self.trial = False
            self.rolled_back = None
        elif self.trial and up >= boot.TRIAL_MS:
            self.trial = False
            try:
                boot.fail_trial(self.fs, "not confirmed within %d min" % (boot.TRIAL_MS // 60000))
            except OSError:
                pass  # the bootstrap rolls back a "booting" slot after any reset anyway
            node.reboot_pending = up

    # ---- the command -------------------------------------------------------
    def start(self, cmd):
        """An authenticated ota command: None (the job is stored), or (reason, detail)."""
        args = cmd.args
        if args["version"] == VERSION and not self.trial:
            self.node.emit("ota_confirmed", {"version": VERSION, "slot": self.slot, "already": True})
            return None
        if self.trial:
            return "busy", "version %s is on trial; try again once it is confirmed" % VERSION
        job = {"v": args["version"], "m": args["manifest"], "p": args["path"], "cmd": cmd.cmd_id}
        try:
            self.node.store.save_json(JOB, job)
        except StoreError as exc:  # the heap (NoMemory) or the flash
            why = "no_memory" if isinstance(exc, NoMemory) else "storage"
            return why, "could not store the update job: " + str(exc)
        self.job = job
        self.switched = False
        self.failures = self._missing = 0
        self._corrupt = {}
        return None

    def _drop_job(self):
        self.job = None
        try:
            self.node.store.delete(JOB)
        except StoreError:
            pass

    def _fail(self, why):
        job = self.job
        self._drop_job()
        self.node.emit("ota_failed", {"version": job["v"] if job else None, "reason": why[:100]})

    # ---- the task ----------------------------------------------------------
    def client(self):
        if self._client is None:
            cfg = self.node.cfg
            self._client = Client.for_config(cfg, getattr(self.hal, "open_connection", None))  # HTTPS per files.tls
        return self._client

    async def run(self):
        node, hal = self.node, self.hal
        wait = BACKOFF_MIN_MS
        while node.running:
            if self.job is None or self.switched:
                await hal.sleep_ms(IDLE_MS)
                continue
            if await self.attempt():
                wait = BACKOFF_MIN_MS
                continue
            await hal.sleep_ms(wait)
            wait = min(wait * 2, BACKOFF_MAX_MS)

    async def attempt(self):
        """One try at the whole job; True when it switched or ended (failed), False to retry later."""
        job = self.job
        try:
            self._buf, self._head = bytearray(BUF), bytearray(HEAD_MAX)
            await self._update(job)
        except Refused as exc:
            self._fail(str(exc))
            return True
        except HttpError as exc:
            self.failures += 1
            self.last_error = str(exc)
            if exc.status in (401, 403, 404, 410):
                self._missing += 1
                if self._missing >= MAX_MISSING:
                    self._fail("the gateway does not serve it (HTTP %d)" % exc.status)
                    return True
            if self.failures in (1, 5) or self.failures % 20 == 0:
                self.node.emit("ota_progress", {"version": job["v"], "error": str(exc)[:80], "n": self.failures})
            return False
        except _Corrupt as exc:
            return False  # fetched again at the next attempt (counted in _corrupt)
        except OSError as exc:  # the flash
            self.last_error = repr(exc)
            if exc.args and exc.args[0] == _ENOSPC:
                self._fail("the flash is full")
                return True
            self.failures += 1
            self.node.emit("storage_error", {"file": "ota", "error": str(exc)[:100]})
            if self.failures >= 10:
                self._fail("flash error: %s" % exc)
                return True
            return False
        except MemoryError:
            self.failures += 1
            self.last_error = "no memory"
            return False
        finally:
            self._buf = self._head = None
        return True

    async def _update(self, job):
        fs = self.fs
        slot = boot.other(self.slot)
        base = boot.slot_dir(slot) + "/"
        self._mkdirs(base + "x")
        _remove(fs, base + boot.ENTRY)  # not bootable while it holds a mix of files
        prefix = job["p"]
        if not self._verified(base + NEW, job["m"], None):
            await self._fetch(prefix + job["m"], base + NEW, job["m"], MAX_MANIFEST, "manifest")
        mpy = getattr(self.hal, "micropython_version", None) or sys.implementation.version[:3]
        # pass 1: every entry checked, the entry file found; nothing kept but counts
        count = total = 0
        entry = None
        env = []
        marks = []
        with fs.open(base + NEW, "rb") as f:
            for e in manifest_entries(f, env, marks):
                path, sha, size = check_entry(e)
                count += 1
                total += size
                if path == boot.ENTRY:
                    entry = (path, sha, size)
        e = None
        check_envelope(env[0], job["v"], mpy)
        env = None
        if entry is None:
            raise Refused("manifest: no %s" % boot.ENTRY)
        if not 0 < count <= MAX_FILES:
            raise Refused("manifest: %d files" % count)
        self.node.emit("ota_progress", {"version": job["v"], "files": 0, "of": count, "bytes": total})
        quarter = (count + 3) // 4
        # pass 2: each file (the entry last), verified where it is or fetched; between two only the
        # offset of the next entry is kept (no open manifest, no parser, while a file downloads)
        done = 0
        at = marks[0]
        marks = None
        while True:
            with fs.open(base + NEW, "rb") as f:
                e, at = entry_at(f, at)
            if e is None:
                break
            path, sha, size = check_entry(e)
            e = None
            if path != boot.ENTRY:
                await self._install(prefix, base, path, sha, size)
                done += 1
                self.done_files = done
                if done % quarter == 0:
                    self.node.emit("ota_progress", {"version": job["v"], "files": done, "of": count})
            path = sha = None
        await self._install(prefix, base, entry[0], entry[1], entry[2])
        self.done_files = count
        self._buf = self._head = None  # the downloads are over: their buffers go
        fs.rename(base + NEW, base + MANIFEST)
        # files of an older bundle left in the slot: every manifest file is there, so any beyond
        # count + 1 (the manifest) is one; only then is each file looked up in the manifest
        if self._count(base, "") > count + 1:
            self._sweep(base, "")
        if self.job is not job:  # a newer command replaced the job meanwhile: it starts over, not this one
            raise _Corrupt("job replaced")
        # the switch: one atomic rename of /boot.json
        boot.save(fs, {"active": slot, "previous": self.slot, "state": "trial", "version": job["v"],
                       "from": VERSION})
        self.switched = True
        self._drop_job()
        self.node.emit("ota_switched", {"version": job["v"], "from": VERSION, "slot": slot})
        await self._reboot_soon()

    async def _install(self, prefix, base, path, sha, size):
        target = base + path
        if not self._verified(target, sha, size):
            self._mkdirs(target)
            await self._fetch(prefix + sha, target, sha, size, path)

    async def _reboot_soon(self):
        """Let the events out (ota_switched, at most 10 s), then reboot into the trial slot."""
        node, hal = self.node, self.hal
        for _ in range(50):
            if node.events.peek() is None or node.mqtt is None or not node.mqtt.is_up():
                break
            await hal.sleep_ms(200)
        node.reboot_pending = node.uptime.ms()

    def _verified(self, name, sha, size):
        """The file is there with this size and hash (it may be an older bundle's: check)."""
        fs = self.fs
        try:
            have = fs.stat(name)
        except OSError:
            return False
        if size is not None and have != size:
            return False
        h = hashlib.sha256()
        buf = self._buf
        with fs.open(name, "rb") as f:
            while True:
                chunk = f.read(len(buf))
                if not chunk:
                    break
                h.update(chunk)
        return _hex(h) == sha

    async def _fetch(self, url, target, sha, size, what):
        """Download `url` to `target` through `target.part`; hash and size checked before the rename."""
        watch = Watch(self.hal)
        await guarded(self.hal, watch, self._download(url, target, sha, size, what, watch), STALL_MS)

    async def _download(self, url, target, sha, size, what, watch):
        fs = self.fs
        part = target + PART
        h, have = self._resume(part)
        resp = await self.client().get(url, self._head, watch, have)
        f = None
        try:
            if resp.status == 416 and have:
                _remove(fs, part)
                raise HttpError("range past the end: part dropped", 416)
            if resp.status == 200 and have:  # no range support: from the start
                h, have = hashlib.sha256(), 0
            elif resp.status == 206 and resp.start != have:
                raise HttpError("asked for bytes from %d, got from %d" % (have, resp.start), 206)
            elif resp.status not in (200, 206):
                raise HttpError("HTTP %d for %s" % (resp.status, what), resp.status)
            total = resp.total
            if total is None:
                raise HttpError("no Content-Length", resp.status)
            limit = size if what != "manifest" else None
            if (limit is not None and total != limit) or (limit is None and total > size):
                _remove(fs, part)
                raise Refused("%s: the gateway has %d bytes, the manifest says %s" % (what, total, size))
            buf = memoryview(self._buf)
            f = fs.open(part, "ab" if have else "wb")
            while have < total:
                n = await resp.readinto(buf)
                if not n:
                    raise HttpError("body ended after %d of %d bytes" % (have, total))
                write_all(f, buf[:n])
                h.update(buf[:n])
                have += n
            f.close()
            f = None
            if _hex(h) != sha:
                _remove(fs, part)
                n = self._corrupt.get(what, 0) + 1
                self._corrupt[what] = n
                self.node.emit("ota_progress", {"version": self.job["v"], "corrupt": what[:60], "n": n})
                if n >= MAX_CORRUPT:
                    raise Refused("%s hash mismatch" % what)
                raise _Corrupt(what)
            fs.rename(part, target)
        finally:
            resp.close()
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass

    def _resume(self, part):
        """(hasher, bytes) of a part already on flash (re-hashed from flash)."""
        fs = self.fs
        h = hashlib.sha256()
        try:
            size = fs.stat(part)
        except OSError:
            return h, 0
        have = 0
        buf = self._buf
        with fs.open(part, "rb") as f:
            while have < size:
                chunk = f.read(min(len(buf), size - have))
                if not chunk:
                    break
                h.update(chunk)
                have += len(chunk)
        if have != size:
            _remove(fs, part)
            return hashlib.sha256(), 0
        return h, have

    def _mkdirs(self, name):
        """The directories above file `name`."""
        fs = self.fs
        at = name.find("/")
        while at > 0:
            sub = name[:at]
            if not fs.isdir(sub):
                fs.mkdir(sub)
            at = name.find("/", at + 1)

    def _count(self, base, rel):
        """Files in the slot (below `rel`)."""
        fs = self.fs
        n = 0
        names = getattr(fs, "ilistdir", fs.listdir)  # one at a time where the filesystem can
        for name in names(base + rel if rel else base[:-1]):
            n += self._count(base, rel + name + "/") if fs.isdir(base + rel + name) else 1
        return n

    def _listed(self, base, path):
        if path == MANIFEST:
            return True
        with self.fs.open(base + MANIFEST, "rb") as f:
            for e in manifest_entries(f, []):
                if e.get("path") == path:
                    return True
        return False

    def _sweep(self, base, rel):
        """Remove what the bundle does not hold (an older bundle's files, stray parts) from the slot;
        the manifest is read again for each file (no list of names in RAM)."""
        fs = self.fs
        for name in fs.listdir(base + rel if rel else base[:-1]):
            path = rel + name
            if fs.isdir(base + path):
                self._sweep(base, path + "/")
            elif not self._listed(base, path):
                _remove(fs, base + path)


def _remove(fs, name):
    try:
        fs.remove(name)
    except OSError:
        pass

"""The command log on flash: the counter and the applied cmd_ids, in one atomic file.

    {"kid": key fingerprint, "ctr": last accepted counter,
     "ids": [[cmd_id, expires, result, reason], ...],   (oldest first)
     "pend": [cmd_id, expires] or null}

One file so that a power cut can never leave the counter advanced without
the cmd_id that advanced it (or the reverse): a retry of an applied command
is always recognised and answered "applied" (duplicate), never "replay".

- The counter belongs to the key it guards: `kid` is a fingerprint of the
  command key. A re-provisioned node (new key) starts a new counter at 0.
- An applied cmd_id is remembered until its command expires (the gateway
  never retries an expired command), at most CAPACITY at once; when full,
  expired ids go first, then the oldest. Without a valid clock nothing can
  be judged expired and the oldest goes.

A RAM-only effect (broadcast now, stop, time sync, ...): `record()` (counter
and cmd_id in one write), then the effect. A power cut in between loses an
effect that the cut would have ended anyway, never makes a second one.

A stored effect (program, override, volume), whose file names the cmd_id
that made it: `begin()` (counter and the pending cmd_id), the effect's own
write, `finish()`. At boot a pending cmd_id is resolved by looking at the
effect files (`resolve(found)`): present, it was applied; absent, it was
not, and a retry is judged afresh. Every power cut lands in one of these.
"""
import hashlib

from firmware.store import StoreError

NAME = "cmdlog"
CAPACITY = 24
SKIPPED = "skipped"
CTR_SKIP = 1000000  # skipped after a garbled log: more than the gateway signs for one node between two
# commands that reach it, even over years offline


def key_id(key):
    return "".join("%02x" % b for b in hashlib.sha256(key).digest()[:4])


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class CommandLog:
    def __init__(self, store, key):
        self._store = store
        self.kid = key_id(key)
        self.ctr = 0
        self.ids = []
        self.pending = None  # [cmd_id, expires] of a stored effect begun and not finished
        self.lost = False  # a log existed but none could be read: old commands could be replayed
        # (SKIPPED: the newest copy was garbled and the backup used: the counter moved past them)
        self.rekeyed = False  # the stored counter guarded another key: a new counter starts
        obj = store.load_json(NAME)
        if obj is None:
            if store.exists(NAME):
                self.lost = True
            else:
                obj = self._legacy()
        if isinstance(obj, dict):
            ctr, ids = obj.get("ctr"), obj.get("ids")
            if obj.get("kid") != self.kid:
                self.rekeyed = True
            elif _is_int(ctr) and ctr >= 0 and isinstance(ids, list):
                self.ctr = ctr
                self.ids = [e for e in ids if isinstance(e, list) and len(e) == 4]
                pend = obj.get("pend")
                self.pending = pend if isinstance(pend, list) and len(pend) == 2 else None
                if store.garbled(NAME):
                    self._skip()
            else:
                self.lost = True

    def _skip(self):
        """The newest copy of the log was there but unreadable (the flash failing, not a power cut:
        a save is atomic) and the store fell back to the backup, one save older. The save lost may
        have recorded a RAM-only command (broadcast now, reboot...) that, captured, could then be
        replayed: the counter moves past anything the gateway signed before, so every older command
        is refused as a replay; the gateway, told the node's counter in that answer, re-signs its own
        above it (gateway/commands.py). Reported at boot."""
        self.ctr += CTR_SKIP
        self.lost = SKIPPED
        try:
            self._save(self.ctr, self.ids, self.pending)
        except StoreError:
            pass  # in RAM for this boot; skipped again at the next

    def _legacy(self):
        """The files of firmware before this log: "counter" and "acks.json" (same key assumed)."""
        store = self._store
        ctr = store.load_json("counter")
        acks = store.load_json("acks.json")
        if not _is_int(ctr):
            if store.exists("counter"):
                self.lost = True
            return None
        ids = [[a[0], 0, a[1], a[2]] for a in (acks if isinstance(acks, list) else [])
               if isinstance(a, list) and len(a) == 3]
        return {"kid": self.kid, "ctr": ctr, "ids": ids}

    @property
    def value(self):
        return self.ctr

    def find(self, cmd_id):
        """[cmd_id, expires, result, reason] of an applied command, or None."""
        for entry in self.ids:
            if entry[0] == cmd_id:
                return entry
        return None

    def record(self, counter, cmd_id, expires, now, result="applied", reason=None):
        """Durably note `counter` (if higher) and `cmd_id`; StoreError if the flash refuses."""
        ids = [e for e in self.ids if e[0] != cmd_id]
        if cmd_id is not None:
            ids.append([cmd_id, expires, result, reason])
        ids = _trim(ids, now)
        self._save(max(counter, self.ctr), ids, None)

    def begin(self, counter, cmd_id, expires):
        """Before a stored effect: the counter and the pending cmd_id, durably."""
        self._save(max(counter, self.ctr), self.ids, [cmd_id, expires])

    def finish(self, now):
        """After the stored effect was written: the pending cmd_id is applied."""
        cmd_id, expires = self.pending
        self.record(self.ctr, cmd_id, expires, now)

    def cancel(self):
        """The stored effect could not be written: nothing was applied."""
        if self.pending is not None:
            self._save(self.ctr, self.ids, None)

    def resolve(self, found, now):
        """At boot, for a pending cmd_id: `found` says whether its effect reached the flash."""
        if self.pending is None:
            return
        try:
            self.finish(now) if found else self.cancel()
        except StoreError:
            pass  # still pending: resolved again at the next boot or command

    def advance(self, counter):
        """Only the counter (a command that was refused after it was authenticated)."""
        if counter > self.ctr:
            self._save(counter, self.ids, self.pending)

    def _save(self, ctr, ids, pending):
        self._store.save_json(NAME, {"kid": self.kid, "ctr": ctr, "ids": ids, "pend": pending})
        self.ctr, self.ids, self.pending = ctr, ids, pending


def _trim(ids, now):
    if len(ids) <= CAPACITY:
        return ids
    if now is not None:
        live = [e for e in ids if not (_is_int(e[1]) and e[1] and e[1] < now)]
        if len(live) < len(ids):
            ids = live
    return ids[-CAPACITY:]

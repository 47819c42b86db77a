"""The broadcast plan: concrete occurrences a node must air.

The gateway expands staff schedules into items with absolute start/end
(Unix seconds) and sends each node the items of its zones. The node plays
the highest-priority active item: routine < priority < emergency; between
equals, the one that started last (a newer call wins, as overrides do).

On the wire an item is a JSON array, not an object: a 64-item plan parsed
on the node then costs a third less heap (an ESP32 has ~100 KB in all):

    [id, start, dur, prio, src, ref, zones, vol, cat]
    ["tin-0530", 1795386600, 900, 0, "clip", "<sha256 hex>", ["thon-1"], 80, "news"]

`ref` is the clip's content hash for src "clip", the stream id for
"stream", null for "line".
"""
import json

from protocol import topics
from protocol.errors import NoMemory, ProgramError
from protocol.fields import Fields, is_int
from protocol.messages import MAX_SEQ, MAX_TIME, SOURCES, check_token

ROUTINE = 0  # thông thường
PRIORITY = 1  # ưu tiên
EMERGENCY = 2  # khẩn cấp
PRIORITY_NAMES = ("routine", "priority", "emergency")

CATEGORIES = ("news", "security", "disaster", "campaign", "health", "music", "other")
ITEM_FIELDS = ("id", "start", "dur", "prio", "src", "ref", "zones", "vol", "cat")
MAX_ITEMS = 64
MAX_ZONES = 8
MAX_DURATION = 6 * 3600  # one item airs at most 6 h; longer programmes are several items


def _check_hash(value):
    if not isinstance(value, str) or len(value) != 64:
        raise ProgramError("clip must be a SHA-256 content hash (64 hex digits)")
    for ch in value:
        if not ("0" <= ch <= "9" or "a" <= ch <= "f"):
            raise ProgramError("clip hash must be lowercase hex digits")
    return value


def _check_zones(value):
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ZONES:
        raise ProgramError("zones must be a list of 1 to %d zone ids" % MAX_ZONES)
    for zone in value:
        topics.check_id(zone, "zone id")
    return value


def _canonical(value, names):
    """The constant string equal to `value`: fifty items then share one copy, not fifty."""
    return names[names.index(value)]


def read_airing(f):
    """What a broadcast_now airs and where: source, zones, volume, priority."""
    src = _canonical(f.choice("src", SOURCES), SOURCES)
    zones = f.checked("zones", _check_zones)
    out = {
        "src": src,
        "clip": f.checked("clip", _check_hash, None),
        "stream": f.checked("stream", check_token, None),
        "zones": zones,
        "vol": f.int("vol", 0, 100),
        "prio": f.int("prio", ROUTINE, EMERGENCY, ROUTINE),
    }
    if (src == "clip") != (out["clip"] is not None):
        f.fail("clip", "is required for source clip and only for it")
    if (src == "stream") != (out["stream"] is not None):
        f.fail("stream", "is required for source stream and only for it")
    return out


class BroadcastItem:
    """One occurrence. `ref` is the clip hash (src "clip"), the stream id ("stream") or None.

    Kept in five attributes, for the node's heap (a 64-item plan is its largest object, and it
    holds two while one replaces the other): id, start, end, `_k` (prio, source, category and
    volume packed in one small int) and `_z` ((zones, ref), one tuple shared by the items that
    air the same thing in the same zones when built by from_json). The rest are read through
    __getattr__ (read-only)."""

    def __init__(self, item_id, start, end, src, zones, vol, prio=ROUTINE, ref=None, cat="other", shared=None):
        if src not in SOURCES or cat not in CATEGORIES or not is_int(vol) or not 0 <= vol <= 127 \
                or prio not in (ROUTINE, PRIORITY, EMERGENCY):
            raise ProgramError("item %s: bad source, category, volume or priority" % (item_id,))
        self.id = item_id
        self.start = start
        self.end = end
        self._k = prio | SOURCES.index(src) << 2 | CATEGORIES.index(cat) << 4 | vol << 7
        z = (zones, ref)
        self._z = z if shared is None else shared.setdefault(z, z)

    def __getattr__(self, name):  # src, prio, cat, vol, zones, ref, clip, stream (one function: less code)
        if name[0] == "_":  # not built yet (a copy, an unpickling): no recursion on _k
            raise AttributeError(name)
        k = self._k
        if name == "src":
            return SOURCES[k >> 2 & 3]
        if name == "prio":
            return k & 3
        if name == "cat":
            return CATEGORIES[k >> 4 & 7]
        if name == "vol":
            return k >> 7
        if name == "zones":
            return self._z[0]
        if name == "ref":
            return self._z[1]
        if name == "clip":  # SOURCES: clip, stream, line
            return self._z[1] if k >> 2 & 3 == 0 else None
        if name == "stream":
            return self._z[1] if k >> 2 & 3 == 1 else None
        raise AttributeError(name)

    @classmethod
    def from_json(cls, arr, where="item", strings=None):
        if not isinstance(arr, list) or len(arr) != len(ITEM_FIELDS):
            raise ProgramError("%s must be a list [%s]" % (where, ", ".join(ITEM_FIELDS)))
        f = Fields(dict(zip(ITEM_FIELDS, arr)), where, ProgramError)
        item_id = f.checked("id", check_token)
        start = f.int("start", 0, MAX_TIME)
        dur = f.int("dur", 1, MAX_DURATION)
        prio = f.int("prio", ROUTINE, EMERGENCY)
        src = _canonical(f.choice("src", SOURCES), SOURCES)
        ref = f.checked("ref", _check_hash if src == "clip" else check_token, None)
        if (ref is None) != (src == "line"):
            f.fail("ref", "must be the clip hash or stream id (and null for line)")
        zones = f.checked("zones", _check_zones)
        if strings is not None:  # plans repeat clips and zone sets: keep one copy of each
            zones = tuple(zones)
            zones = strings.setdefault(zones, zones)
            ref = strings.setdefault(ref, ref)
        vol = f.int("vol", 0, 100)
        cat = _canonical(f.choice("cat", CATEGORIES), CATEGORIES)
        return cls(item_id, start, start + dur, src, zones, vol, prio, ref, cat, strings)

    def to_json(self):
        return [self.id, self.start, self.end - self.start, self.prio, self.src, self.ref, list(self.zones),
                self.vol, self.cat]

    def airs_in(self, zones):
        for z in self.zones:
            if z in zones:
                return True
        return False

    def __eq__(self, other):
        return isinstance(other, BroadcastItem) and self.to_json() == other.to_json()

    def __repr__(self):
        return "BroadcastItem(%s %s %d-%d)" % (self.id, PRIORITY_NAMES[self.prio], self.start, self.end)


class ItemTexts:
    """The JSON byte slices of a plan's items, as spans into one received buffer."""

    def __init__(self, buf, spans):
        self.buf = buf
        self.spans = spans

    def __len__(self):
        return len(self.spans)

    def __getitem__(self, i):
        s, e = self.spans[i]
        return memoryview(self.buf)[s:e]  # made when needed: 64 views at once cost 2 KB

    def __setitem__(self, i, value):
        self.spans[i] = None

    def __iter__(self):
        for i in range(len(self.spans)):
            yield self[i]


def _load_item(text, i):
    try:
        return json.loads(text)
    except TypeError:  # CPython's json takes no memoryview
        try:
            return json.loads(bytes(text))
        except ValueError:
            pass
    except (ValueError, RuntimeError):
        pass
    except MemoryError:
        raise NoMemory("plan.items[%d]: no memory to parse it now" % i)
    raise ProgramError("plan.items[%d] is not valid JSON" % i)


def _outranks(a, b):
    if a.prio != b.prio:
        return a.prio > b.prio
    if a.start != b.start:
        return a.start > b.start
    return a.id > b.id


class BroadcastPlan:
    def __init__(self, version, items=()):
        self.version = version
        self.items = items if isinstance(items, list) else list(items)

    @classmethod
    def from_json(cls, obj, consume=False, item_texts=None):
        """Validate and build.

        With `consume`, each raw item is released once built (pass only a
        dict you own). With `item_texts` (a list of the items' JSON bytes, or
        of spans into a buffer, see ItemTexts; the dict's own "items" being
        empty), items are parsed one at a time: the node never holds a whole
        parsed plan and its objects together.
        """
        f = Fields(obj, "plan", ProgramError)
        version = f.int("version", 0, MAX_SEQ)
        raw = f.list("items", MAX_ITEMS)
        f.done()
        if item_texts is not None:
            if raw or len(item_texts) > MAX_ITEMS:
                raise ProgramError("plan.items has more than %d items" % MAX_ITEMS)
            raw, consume = item_texts, True
        items = [None] * len(raw)  # sized once: no list regrowth on a full heap
        strings = {}
        for i, entry in enumerate(raw):
            if item_texts is not None:
                entry = _load_item(entry, i)
            item = BroadcastItem.from_json(entry, "plan.items[%d]" % i, strings)
            if consume:
                raw[i] = None
            for j in range(i):
                if items[j].id == item.id:
                    raise ProgramError("plan.items[%d].id %r is used twice" % (i, item.id))
            items[i] = item
        return cls(version, items)

    def to_json(self):
        return {"version": self.version, "items": [item.to_json() for item in self.items]}

    def active(self, now, zones, lead=0):
        """The item to air at `now` in any of `zones` (or None).

        With `lead` > 0, items starting within `lead` seconds count as active:
        the node uses it to warm the amplifier up before the audio starts.
        """
        if not is_int(now) and not isinstance(now, float):
            raise ProgramError("time must be a number")
        best = None
        for item in self.items:
            if item.start - lead <= now < item.end and item.airs_in(zones):
                if best is None or _outranks(item, best):
                    best = item
        return best

    def pruned(self, now):
        """A copy without the items that have ended (keeps the node's memory bounded)."""
        return BroadcastPlan(self.version, [i for i in self.items if i.end > now])

    def __eq__(self, other):
        return isinstance(other, BroadcastPlan) and self.to_json() == other.to_json()

    def __repr__(self):
        return "BroadcastPlan(v%d, %d items)" % (self.version, len(self.items))

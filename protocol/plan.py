"""The broadcast plan: concrete occurrences a node must air.

The gateway expands staff schedules into items with absolute start/end
(Unix seconds) and sends each node the items of its zones. The node plays
the highest-priority active item: routine < priority < emergency; between
equals, the one that started last (a newer call wins, as overrides do).
"""
from protocol import topics
from protocol.errors import ProgramError
from protocol.fields import Fields, is_int
from protocol.messages import MAX_SEQ, MAX_TIME, SOURCES, check_token

ROUTINE = 0  # thông thường
PRIORITY = 1  # ưu tiên
EMERGENCY = 2  # khẩn cấp
PRIORITY_NAMES = ("routine", "priority", "emergency")

CATEGORIES = ("news", "security", "disaster", "campaign", "health", "music", "other")
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


def read_airing(f):
    """What to air and where: source, zones, volume, priority (shared with broadcast_now)."""
    src = f.choice("src", SOURCES)
    out = {
        "src": src,
        "clip": f.checked("clip", _check_hash, None),
        "stream": f.checked("stream", check_token, None),
        "zones": f.checked("zones", _check_zones),
        "vol": f.int("vol", 0, 100),
        "prio": f.int("prio", ROUTINE, EMERGENCY, ROUTINE),
    }
    if (src == "clip") != (out["clip"] is not None):
        f.fail("clip", "is required for source clip and only for it")
    if (src == "stream") != (out["stream"] is not None):
        f.fail("stream", "is required for source stream and only for it")
    return out


def airing_to_json(a):
    obj = {"src": a["src"], "zones": a["zones"], "vol": a["vol"], "prio": a["prio"]}
    if a.get("clip") is not None:
        obj["clip"] = a["clip"]
    if a.get("stream") is not None:
        obj["stream"] = a["stream"]
    return obj


class BroadcastItem:
    def __init__(self, item_id, start, end, src, zones, vol, prio=ROUTINE, clip=None, stream=None, cat="other"):
        self.id = item_id
        self.start = start
        self.end = end
        self.src = src
        self.zones = zones
        self.vol = vol
        self.prio = prio
        self.clip = clip
        self.stream = stream
        self.cat = cat

    @classmethod
    def from_json(cls, obj, where="item"):
        f = Fields(obj, where, ProgramError)
        item_id = f.checked("id", check_token)
        start = f.int("start", 0, MAX_TIME)
        end = f.int("end", 0, MAX_TIME)
        a = read_airing(f)
        cat = f.choice("cat", CATEGORIES, "other")
        f.done()
        if end <= start:
            f.fail("end", "must be after start")
        if end - start > MAX_DURATION:
            f.fail("end", "is more than %d hours after start" % (MAX_DURATION // 3600))
        return cls(item_id, start, end, a["src"], a["zones"], a["vol"], a["prio"], a["clip"], a["stream"], cat)

    def to_json(self):
        obj = {"id": self.id, "start": self.start, "end": self.end, "cat": self.cat}
        obj.update(airing_to_json(self.__dict__))
        return obj

    def airs_in(self, zones):
        for z in self.zones:
            if z in zones:
                return True
        return False

    def __eq__(self, other):
        return isinstance(other, BroadcastItem) and self.to_json() == other.to_json()

    def __repr__(self):
        return "BroadcastItem(%s %s %d-%d)" % (self.id, PRIORITY_NAMES[self.prio], self.start, self.end)


def _outranks(a, b):
    if a.prio != b.prio:
        return a.prio > b.prio
    if a.start != b.start:
        return a.start > b.start
    return a.id > b.id


class BroadcastPlan:
    def __init__(self, version, items=()):
        self.version = version
        self.items = list(items)

    @classmethod
    def from_json(cls, obj):
        f = Fields(obj, "plan", ProgramError)
        version = f.int("version", 0, MAX_SEQ)
        raw = f.list("items", MAX_ITEMS)
        f.done()
        items = []
        seen = []
        for i, entry in enumerate(raw):
            item = BroadcastItem.from_json(entry, "plan.items[%d]" % i)
            if item.id in seen:
                raise ProgramError("plan.items[%d].id %r is used twice" % (i, item.id))
            seen.append(item.id)
            items.append(item)
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

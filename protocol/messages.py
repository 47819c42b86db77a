"""Node -> gateway messages: state (birth / will), telemetry, event, ack.

Each is a small value type with `encode()` -> compact JSON bytes and a
`decode(payload)` class method that validates every field and raises
MessageError (and nothing else) on bad input. Commands (gateway -> node)
live in protocol.commands.
"""
from protocol.errors import MessageError
from protocol.fields import Fields, decode_json, encode_json

SCHEMA = 1  # the "v" field of every message; a newer one is refused, not guessed at

MAX_STATE = 1024
MAX_TELE = 1024
MAX_EVT = 1024
MAX_ACK = 512

MAX_TIME = 4102444800  # 2100-01-01, upper bound for any Unix time on the wire
# A node's wall clock is valid only within these (node clock and ESP32 RTC alike), Unix seconds inclusive.
VALID_TIME_MIN = 1767225600  # 2026-01-01: this firmware was built later; an RTC that lost power restarts at 2000
VALID_TIME_MAX = 4070908800  # 2099-01-01: the sun calculator and the DS3231 end with 2099; stop before that year
MAX_SEQ = 2**31 - 1

# Clock states a node reports.
CLOCK_SYNCED = "synced"  # set from the gateway or NTP recently
CLOCK_RTC = "rtc"  # running on its RTC since boot, not synced yet
CLOCK_INVALID = "invalid"  # no trustworthy time: lamps follow the photocell
CLOCK_STATES = (CLOCK_SYNCED, CLOCK_RTC, CLOCK_INVALID)

SOURCES = ("clip", "stream", "line")

EVENT_KINDS = (
    "boot",
    "lamp_fault",
    "lamp_ok",
    "day_burner",
    "motion",
    "broadcast_started",
    "broadcast_ended",
    "broadcast_interrupted",
    "broadcast_failed",
    "broadcast_missed",
    "cmd_rejected",
    "clock_set",
    "clock_invalid",
    "safe_mode",
    "events_dropped",
    "program_applied",
    "storage_error",
    "self_test",
    "task_restarted",
    "time_request",
    "safe_mode_ended",
    "lamp_counters",
    "clip_ready",  # the node's clip cache (firmware/clips.py): a clip downloaded and verified
    "clip_evicted",  # removed from flash to make room (no item needs it)
    "clip_unfit",  # cannot fit the clip budget or the flash (reported once)
    "clip_corrupt",  # a hash mismatch or a corrupt read: deleted, fetched again
    "clip_bad",  # corrupt MAX_CORRUPT times: not fetched again this boot
    "clip_fetch_failed",  # a download failed (network, HTTP status); retried with backoff
    # over-the-air update (firmware/ota.py, docs/ota.md)
    "ota_progress",  # downloading: files and bytes done of the bundle's
    "ota_failed",  # the update was refused or gave up (reason): the running version stays
    "ota_switched",  # verified and switched to the new slot in trial; rebooting into it
    "ota_confirmed",  # the new version booted, connected and ran its control loop: kept
    "ota_rolled_back",  # the trial version did not confirm itself: the previous one runs again
)

APPLIED = "applied"
REJECTED = "rejected"


def check_boot_id(value):
    """Boot ids are 1-16 lowercase hex digits, chosen at random on each boot."""
    if not isinstance(value, str) or not 1 <= len(value) <= 16:
        raise MessageError("boot id must be 1 to 16 hex digits")
    for ch in value:
        if not ("0" <= ch <= "9" or "a" <= ch <= "f"):
            raise MessageError("boot id must be lowercase hex digits, got %r" % value)
    return value


def check_token(value, what="id", max_len=40):
    """cmd_id / broadcast item id: 1-40 chars of letters, digits, '-', '_', '.', ':'."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise MessageError("%s must be 1 to %d characters" % (what, max_len))
    for ch in value:
        if not ("a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9" or ch in "-_.:"):
            raise MessageError("%s %r may contain only letters, digits and - _ . :" % (what, value))
    return value


def _open(payload, limit, what):
    obj = decode_json(payload, limit, what)
    f = Fields(obj, what)
    version = f.int("v", 1, 1000)
    if version > SCHEMA:
        raise MessageError("%s: schema version %d is newer than this software understands (%d)" % (what, version, SCHEMA))
    return f


def _scalar_data(f, key, max_keys=16):
    """Free-form details: an object of at most 16 keys of short scalars or short lists."""
    data = f.object(key, {})
    if len(data) > max_keys:
        f.fail(key, "has %d keys; at most %d are allowed" % (len(data), max_keys))
    for k, v in data.items():
        if len(k) > 32:
            f.fail(key, "key %r is too long" % k[:40])
        values = v if isinstance(v, list) else [v]
        if len(values) > 16:
            f.fail(key + "." + k, "has too many items")
        for item in values:
            if isinstance(item, (dict, list)):
                f.fail(key + "." + k, "must be a scalar or a list of scalars")
            if isinstance(item, str) and len(item) > 120:
                f.fail(key + "." + k, "is longer than 120 characters")
            if isinstance(item, float) and not (item == item and abs(item) < 1e300):
                f.fail(key + "." + k, "is not a finite number")
    return data


def _optional(obj, pairs):
    """Add the (key, value) pairs whose value is not None; return obj."""
    for key, value in pairs:
        if value is not None:
            obj[key] = value
    return obj


class _Message:
    """encode / equality / repr shared by every message type (each has to_json and decode)."""

    def encode(self):
        return encode_json(self.to_json())

    def __eq__(self, other):
        return type(other) is type(self) and self.to_json() == other.to_json()

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.to_json())


class State(_Message):
    """Birth (online=True) on every connect, retained; the will says online=False."""

    def __init__(self, online, boot_id=None, firmware=None, lamp_version=0, plan_version=0,
                 caps=(), ts=None, safe_mode=False, clock=None, failed=()):
        self.online = bool(online)
        self.failed = list(failed)  # HAL parts that failed to start (e.g. "ds3231"); the node goes on without them
        self.boot_id = boot_id
        self.firmware = firmware
        self.lamp_version = lamp_version
        self.plan_version = plan_version
        self.caps = list(caps)
        self.ts = ts
        self.safe_mode = safe_mode
        self.clock = clock

    def to_json(self):
        obj = {"v": SCHEMA, "online": self.online}
        if self.boot_id is not None:
            obj["boot"] = self.boot_id
        if self.online:
            obj["fw"] = self.firmware
            obj["lamp"] = self.lamp_version
            obj["plan"] = self.plan_version
            obj["caps"] = self.caps
            obj["safe"] = self.safe_mode
            obj["clock"] = self.clock
            if self.failed:
                obj["failed"] = self.failed
        if self.ts is not None:
            obj["ts"] = self.ts
        return obj

    @classmethod
    def decode(cls, payload):
        f = _open(payload, MAX_STATE, "state")
        online = f.bool("online")
        boot = f.checked("boot", check_boot_id, None)
        ts = f.number("ts", 0, MAX_TIME, None)
        if not online:
            f.done()
            return cls(False, boot, ts=ts)
        fw = f.text("fw", 32, min_len=1)
        lamp = f.int("lamp", 0, MAX_SEQ)
        plan = f.int("plan", 0, MAX_SEQ)
        caps = f.list("caps", 32)
        for cap in caps:
            if not isinstance(cap, str) or not 1 <= len(cap) <= 24:
                f.fail("caps", "must be a list of short names")
        safe = f.bool("safe", False)
        clock = f.choice("clock", CLOCK_STATES, CLOCK_INVALID)
        failed = f.list("failed", 16, [])
        for part in failed:
            if not isinstance(part, str) or not 1 <= len(part) <= 24:
                f.fail("failed", "must be a list of short part names")
        f.done()
        if boot is None:
            f.fail("boot", "is missing")
        return cls(True, boot, fw, lamp, plan, caps, ts, safe, clock, failed)



class Telemetry(_Message):
    """Periodic readings. `lamp` and `amp` are dicts, absent on nodes without them.

    lamp: {"lvl": 0-100 driven level, "relay": bool, "w": watts, "wh": energy,
           "on_s": seconds lit} (wh and on_s are the node's own counters, kept across reboots)
    amp:  {"on": bool, "zones": [relay numbers], "src": clip|stream|line|None,
           "vol": 0-100, "item": broadcast item id or None}
    """

    def __init__(self, boot_id, ts, uptime, clock, lamp=None, amp=None, rssi=None, heap=None):
        self.boot_id = boot_id
        self.ts = ts
        self.uptime = uptime
        self.clock = clock
        self.lamp = lamp
        self.amp = amp
        self.rssi = rssi
        self.heap = heap

    def to_json(self):
        obj = {"v": SCHEMA, "boot": self.boot_id, "ts": self.ts, "up": self.uptime, "clock": self.clock}
        return _optional(obj, (("lamp", self.lamp), ("amp", self.amp), ("rssi", self.rssi), ("heap", self.heap)))

    @classmethod
    def decode(cls, payload):
        f = _open(payload, MAX_TELE, "telemetry")
        boot = f.checked("boot", check_boot_id)
        ts = f.number("ts", 0, MAX_TIME, None)
        up = f.int("up", 0, MAX_SEQ)
        clock = f.choice("clock", CLOCK_STATES)
        lamp = amp = None
        lf = f.child("lamp", None)
        if lf is not None:
            lamp = {
                "lvl": lf.int("lvl", 0, 100),
                "relay": lf.bool("relay"),
                "w": lf.number("w", 0, 100000),
                "wh": lf.number("wh", 0, 1e12),
            }
            on_s = lf.int("on_s", 0, 2**53, None)
            if on_s is not None:
                lamp["on_s"] = on_s
            lf.done()
        af = f.child("amp", None)
        if af is not None:
            zones = af.list("zones", 16)
            for z in zones:
                if not isinstance(z, int) or isinstance(z, bool) or not 1 <= z <= 16:
                    af.fail("zones", "must list zone relay numbers 1-16")
            amp = {
                "on": af.bool("on"),
                "zones": zones,
                "src": af.choice("src", SOURCES, None),
                "vol": af.int("vol", 0, 100),
                "item": af.checked("item", check_token, None),
            }
            af.done()
        rssi = f.int("rssi", -127, 0, None)
        heap = f.int("heap", 0, 2**31, None)
        f.done()
        return cls(boot, ts, up, clock, lamp, amp, rssi, heap)



class Event(_Message):
    """Something that happened, numbered by (boot_id, seq) so gaps show."""

    def __init__(self, boot_id, seq, kind, data=None, ts=None):
        self.boot_id = boot_id
        self.seq = seq
        self.kind = kind
        self.data = data or {}
        self.ts = ts

    def to_json(self):
        obj = {"v": SCHEMA, "boot": self.boot_id, "seq": self.seq, "kind": self.kind, "ts": self.ts}
        if self.data:
            obj["data"] = self.data
        return obj

    @classmethod
    def decode(cls, payload):
        f = _open(payload, MAX_EVT, "event")
        boot = f.checked("boot", check_boot_id)
        seq = f.int("seq", 0, MAX_SEQ)
        kind = f.choice("kind", EVENT_KINDS)
        ts = f.number("ts", 0, MAX_TIME, None)
        data = _scalar_data(f, "data")
        f.done()
        return cls(boot, seq, kind, data, ts)



class Ack(_Message):
    """The node's answer to one command: applied, or rejected with a reason."""

    def __init__(self, cmd_id, result, reason=None, detail=None, ts=None, ctr=None):
        self.ctr = ctr  # on a replay rejection: the node's last accepted counter (the gateway continues above it)
        self.cmd_id = cmd_id
        self.result = result
        self.reason = reason
        self.detail = detail
        self.ts = ts

    @property
    def applied(self):
        return self.result == APPLIED

    def to_json(self):
        obj = {"v": SCHEMA, "cmd": self.cmd_id, "result": self.result}
        return _optional(obj, (("reason", self.reason), ("detail", self.detail), ("ts", self.ts), ("ctr", self.ctr)))

    @classmethod
    def decode(cls, payload):
        f = _open(payload, MAX_ACK, "ack")
        cmd_id = f.checked("cmd", check_token, None)
        result = f.choice("result", (APPLIED, REJECTED))
        reason = f.text("reason", 32, None, min_len=1)
        detail = f.text("detail", 200, None)
        ts = f.number("ts", 0, MAX_TIME, None)
        ctr = f.int("ctr", 0, 2**53, None)
        f.done()
        if result == REJECTED and reason is None:
            f.fail("reason", "is required when a command is rejected")
        return cls(cmd_id, result, reason, detail, ts, ctr)


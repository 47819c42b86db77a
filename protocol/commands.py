"""Gateway -> node commands: the body, its signature, and its verification.

On the wire a command is the JSON body, a newline, and 64 hex digits of
HMAC-SHA256(node key, b"denloa-cmd-1\\n" + topic + b"\\n" + body): the MAC
covers the exact bytes and the topic. The body names the site and node,
a `cmd_id` (at most one effect per id), a per-node counter that must rise,
and an expiry.

The node calls `verify(...)`; only an OK verdict hands out the command, and
only through `verdict.accept(persist)`, which stores the counter first.
"""
from protocol import auth, topics
from protocol.errors import MessageError, NoMemory, ProgramError, ProtocolError
from protocol.fields import Fields, array_spans, decode_json, encode_json, find_bytes
from protocol.messages import MAX_SEQ, MAX_TIME, SCHEMA, check_token
from protocol.plan import MAX_DURATION, BroadcastPlan, ItemTexts, read_airing
from protocol.program import LampProgram

MAX_CMD = 16384  # body + signature; a full program and a 64-item plan fit
SIG_LEN = 64
_DOMAIN = b"denloa-cmd-1\n"

SET_PROGRAM = "set_program"
LAMP_OVERRIDE = "lamp_override"
BROADCAST_NOW = "broadcast_now"
STOP_BROADCAST = "stop_broadcast"
SET_VOLUME = "set_volume"
TIME_SYNC = "time_sync"
REBIRTH = "rebirth"
REBOOT = "reboot"
SELF_TEST = "self_test"
OTA = "ota"
OPS = (SET_PROGRAM, LAMP_OVERRIDE, BROADCAST_NOW, STOP_BROADCAST, SET_VOLUME, TIME_SYNC, REBIRTH, REBOOT, SELF_TEST,
       OTA)
OTA_PATH = "/node/v1/firmware/"  # where a node fetches a bundle's manifest and files, by their SHA-256

# Verification results.
OK = "ok"
BAD_SIGNATURE = "bad_signature"
REPLAY = "replay"
EXPIRED = "expired"
WRONG_TARGET = "wrong_target"
MALFORMED = "malformed"
NO_MEMORY = "no_memory"  # authentic, but the node's heap could not parse it now: not the command's fault


def _args_set_program(f, item_texts=None):
    lamp = f.checked("lamp", LampProgram.from_json, None)
    # args come from a fresh json.loads: the plan may consume them
    plan = f.checked("plan", lambda obj: BroadcastPlan.from_json(obj, True, item_texts), None)
    if lamp is None and plan is None:
        f.fail(None, "must carry a lamp program, a broadcast plan, or both")
    return {"lamp": lamp, "plan": plan}


def _args_lamp_override(f):
    # level None clears every override
    return {"level": f.int("level", 0, 100, None), "until": f.int("until", 0, MAX_TIME)}


def _args_broadcast_now(f):
    args = {"id": f.checked("id", check_token), "dur": f.int("dur", 1, MAX_DURATION)}
    args.update(read_airing(f))
    return args


def _args_stop_broadcast(f):
    return {"id": f.checked("id", check_token, None)}  # None stops every commanded broadcast


def _args_set_volume(f):
    return {"vol": f.int("vol", 0, 100)}


def _args_time_sync(f):
    # NTP-style, all integers (the ESP32's single-precision floats cannot hold a Unix time):
    # t1 the node's monotonic ms from its time_request (echoed; None when unsolicited),
    # t2 gateway receive and t3 gateway send, in Unix milliseconds.
    return {
        "t1": f.int("t1", 0, 2**31, None),
        "t2": f.int("t2", 0, MAX_TIME * 1000),
        "t3": f.int("t3", 0, MAX_TIME * 1000),
    }


def _check_version(text):
    """A bundle version: semver-like, digits, dots, letters, '-' and '+' (it names files and events)."""
    if not text or len(text) > 32:
        raise MessageError("version must be 1..32 characters")
    for ch in text:
        if not ("0" <= ch <= "9" or "a" <= ch <= "z" or "A" <= ch <= "Z" or ch in ".-+"):
            raise MessageError("version %r: only letters, digits, '.', '-', '+'" % text)
    return text


def check_sha256(text):
    if not isinstance(text, str) or len(text) != 64:
        raise MessageError("must be 64 lowercase hex digits (SHA-256)")
    for ch in text:
        if ch not in "0123456789abcdef":
            raise MessageError("must be 64 lowercase hex digits (SHA-256)")
    return text


def _args_ota(f):
    # Over-the-air update (docs/ota.md): the bundle's version, the SHA-256 of its exact manifest.json
    # bytes (the node trusts it because this command is signed with its own key) and the HTTP path
    # prefix the manifest and files are fetched from by their SHA-256 (the gateway's node routes).
    return {
        "version": f.checked("version", _check_version),
        "manifest": f.checked("manifest", check_sha256),
        "path": f.text("path", 64, OTA_PATH, 1),
    }


def _args_none(f):
    return {}


_READERS = {
    SET_PROGRAM: _args_set_program,
    LAMP_OVERRIDE: _args_lamp_override,
    BROADCAST_NOW: _args_broadcast_now,
    STOP_BROADCAST: _args_stop_broadcast,
    SET_VOLUME: _args_set_volume,
    TIME_SYNC: _args_time_sync,
    REBIRTH: _args_none,
    REBOOT: _args_none,
    SELF_TEST: _args_none,
    OTA: _args_ota,
}


def _args_to_json(args):
    out = {}
    for key, value in args.items():
        if value is None:
            continue
        if hasattr(value, "to_json"):
            value = value.to_json()
        out[key] = value
    return out


def check_args(op, args, item_texts=None):
    """Validate and normalise the arguments of `op` (a JSON-shaped dict)."""
    if op not in _READERS:
        raise MessageError("command.op must be one of %s, got %r" % (", ".join(OPS), op))
    f = Fields(args, "command.args")
    value = _READERS[op](f, item_texts) if op == SET_PROGRAM else _READERS[op](f)
    f.done()
    return value


LAZY_ABOVE = 1024  # bodies larger than this have their plan items parsed one by one
_ITEMS_KEY = b'"items":['


def _split_plan_items(whole, length):
    """For a large body: (envelope bytes without the plan's items, item byte slices), or None.

    The envelope (everything but the items: a few hundred bytes) is parsed
    as usual and the items one by one, so a node's peak heap is the plan's
    objects, not those plus a parse of all of it, and no large block is
    needed. Only compact JSON (as encode_json writes) is split; anything
    else is parsed whole, which is correct, just heavier.
    """
    at = find_bytes(whole, _ITEMS_KEY, length)
    if at < 0:
        return None
    start = at + len(_ITEMS_KEY) - 1
    try:
        spans, end = array_spans(whole, start, length)
    except ValueError:
        return None
    view = memoryview(whole)
    envelope = bytes(view[:start + 1]) + bytes(view[end - 1:length])
    return envelope, ItemTexts(whole, spans)


class Command:
    def __init__(self, site, node, cmd_id, counter, expires, op, args=None, issued=None):
        self.site = site
        self.node = node
        self.cmd_id = cmd_id
        self.counter = counter
        self.expires = expires
        self.op = op
        self.args = args if args is not None else {}
        self.issued = issued

    @property
    def topic(self):
        return topics.node_topic(self.site, self.node, topics.CMD)

    def to_json(self):
        obj = {
            "v": SCHEMA,
            "site": self.site,
            "to": self.node,
            "id": self.cmd_id,
            "ctr": self.counter,
            "exp": self.expires,
            "op": self.op,
            "args": _args_to_json(self.args),
        }
        if self.issued is not None:
            obj["ts"] = self.issued
        return obj

    def encode(self):
        return encode_json(self.to_json())

    def sign(self, key, check=True):
        """(topic, payload bytes) ready to publish; validates the command first. `check=False` only for
        a command whose op and args were validated in one signed just before (a fan-out)."""
        body = self.encode()
        if check:
            Command.decode(body)  # never sign what a node would call malformed
        topic = self.topic
        return topic, body + b"\n" + auth.to_hex(signature(key, topic, body)).encode()

    @classmethod
    def decode(cls, body, whole=None):
        """Validate a command body. `whole`: the received bytes that `body` views,
        given by verify() so that a large plan can be parsed item by item."""
        item_texts = None
        if whole is not None and len(body) > LAZY_ABOVE:
            split = _split_plan_items(whole, len(body))
            if split is not None:
                body, item_texts = split
        f = Fields(decode_json(body, MAX_CMD, "command"), "command")
        body = None
        version = f.int("v", 1, 1000)
        if version > SCHEMA:
            raise MessageError("command: schema version %d is newer than this software understands" % version)
        site = f.checked("site", topics.check_id)
        node = f.checked("to", topics.check_id)
        cmd_id = f.checked("id", check_token)
        counter = f.int("ctr", 1, 2**53)
        expires = f.int("exp", 0, MAX_TIME)
        issued = f.number("ts", 0, MAX_TIME, None)
        op = f.choice("op", OPS)
        if item_texts is not None and op != SET_PROGRAM:
            raise MessageError("command: only set_program carries plan items")
        args = check_args(op, f.object("args", {}), item_texts)
        f.done()
        return cls(site, node, cmd_id, counter, expires, op, args, issued)

    def __eq__(self, other):
        return isinstance(other, Command) and self.to_json() == other.to_json()

    def __repr__(self):
        return "Command(%s %s -> %s/%s #%d)" % (self.op, self.cmd_id, self.site, self.node, self.counter)


def signature(key, topic, body):
    if isinstance(topic, str):
        topic = topic.encode()
    return auth.hmac_sha256(key, (_DOMAIN, topic, b"\n", body))


class Verdict:
    """Outcome of verify(): `reason` is OK or why the command does nothing."""

    def __init__(self, reason, detail, cmd_id=None, command=None, body=None):
        self.reason = reason
        self.detail = detail
        self.cmd_id = cmd_id
        self._command = command
        self.body = body  # the authenticated body bytes (a view), kept by a node that stores the command

    @property
    def ok(self):
        return self.reason == OK

    @property
    def command(self):
        """The authenticated command (also for REPLAY/EXPIRED, to re-ack a duplicate); None otherwise."""
        return self._command

    def accept(self, persist_counter):
        """Persist the counter, then hand out the command to apply."""
        if self.reason != OK:
            raise ProtocolError("command %s was rejected (%s): it must not be applied" % (self.cmd_id, self.reason))
        persist_counter(self._command.counter)
        return self._command

    def __repr__(self):
        return "Verdict(%s, %r, %s)" % (self.reason, self.detail, self.cmd_id)


def _peek_id(body):
    """cmd_id of an unauthenticated body, only to name it in the rejection."""
    try:
        obj = decode_json(body, MAX_CMD, "command")
        return check_token(obj.get("id"))
    except ProtocolError:
        return None


def verify(payload, topic, site, node, key, last_counter, now):
    """Check a received command for this node.

    `now` is the node's Unix time, or None when its clock is not valid (the
    expiry cannot be judged then; the counter still stops replays).
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        return Verdict(MALFORMED, "payload is not bytes")
    if len(payload) > MAX_CMD:
        return Verdict(MALFORMED, "payload is over %d bytes" % MAX_CMD)
    cut = len(payload) - SIG_LEN - 1
    if cut < 0 or payload[cut] != 10:  # b"\n"
        return Verdict(MALFORMED, "payload has no signature line")
    body = memoryview(payload)[:cut]  # a view: a 16 KB command is never copied on the node
    sig_text = bytes(payload[cut + 1:])
    try:
        sig = auth.from_hex(sig_text)
    except ValueError:
        return Verdict(MALFORMED, "signature is not hex")
    if auth.to_hex(sig).encode() != sig_text:
        return Verdict(MALFORMED, "signature must be lowercase hex")  # one spelling per signature
    if isinstance(topic, (bytes, bytearray)):
        try:
            topic = bytes(topic).decode()
        except UnicodeError:  # found by tests/fuzz: a topic that is not UTF-8 escaped verify()
            return Verdict(WRONG_TARGET, "topic is not UTF-8", _peek_id(body))
    if topic != topics.node_topic(site, node, topics.CMD):
        return Verdict(WRONG_TARGET, "sent on %s, not this node's command topic" % topic, _peek_id(body))
    if not auth.equal_digests(signature(key, topic, body), sig):
        return Verdict(BAD_SIGNATURE, "signature does not match this node's key", _peek_id(body))
    try:
        cmd = Command.decode(body, payload)
    except NoMemory as exc:
        return Verdict(NO_MEMORY, str(exc), _peek_id(body))
    except MemoryError:
        return Verdict(NO_MEMORY, "no memory to build the command now", _peek_id(body))
    except (MessageError, ProgramError) as exc:
        return Verdict(MALFORMED, str(exc), _peek_id(body))
    if cmd.site != site or cmd.node != node:
        return Verdict(WRONG_TARGET, "addressed to %s/%s" % (cmd.site, cmd.node), cmd.cmd_id)
    if cmd.counter <= last_counter:
        return Verdict(REPLAY, "counter %d is not above %d" % (cmd.counter, last_counter), cmd.cmd_id, cmd)
    # time_sync is exempt: a node whose clock runs wrong must still accept the fix (the counter stops replays)
    if now is not None and now > cmd.expires and cmd.op != TIME_SYNC:
        return Verdict(EXPIRED, "expired %d s ago" % int(now - cmd.expires), cmd.cmd_id, cmd)
    return Verdict(OK, "", cmd.cmd_id, cmd, body)

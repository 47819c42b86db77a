"""The node command-path fuzzer's CPython side: hypothesis cases, one MicroPython node process.

A case is drawn as a spec (hypothesis) and made into (topic, payload) only when it is sent, with
the node's counter of that moment, so a valid command is really valid when it arrives:

- "valid": a correctly signed command of a valid op and args, counter above the node's: it may act
  (and must be applied);
- "invalid": a valid command broken so that it must never act: bytes changed after signing (bit
  flips, truncation, insertions, deletions, overwrites), or re-signed with a wrong target, site,
  topic or key, a replayed counter, an expiry in the past, a required field of the wrong type, huge
  numbers, deep nesting, unicode ids, an unknown field or op, a missing field, an oversized body;
  raw garbage; wrong topics;
- "oracle": a re-signed command with a value swapped anywhere for arbitrary JSON: CPython's
  protocol.commands.verify() with the node's counter and time decides whether it may act.

The node process (tests/fuzz/node_host.py under `micropython`, 64 KB budget) answers each case;
`check()` turns the answers into failures: a crash (an exception or MemoryError escaping
handle_message), an actuation by a case that may not act, a valid command not applied.

To replay a failing run exactly (the heap's history is what fails): NODE_FUZZ_RECORD=/tmp/rec keeps
each node process's stdin as /tmp/rec-N.bin; `micropython -X heapsize=1M tests/fuzz/node_host.py 64K
--trace-heap < /tmp/rec-0.bin` answers the same, with the free heap after each case.
"""
import json
import os
import subprocess
import time

from hypothesis import strategies as st

from protocol import commands
from protocol.commands import Command
from protocol.messages import MAX_TIME
from protocol.topics import node_topic
from tests.protocol.samples import KEY, MONDAY, NODE, PROGRAM, SITE, item, plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.environ.get("MICROPYTHON", os.path.join(ROOT, ".venv", "bin", "micropython"))
HOST = os.path.join(ROOT, "tests", "fuzz", "node_host.py")
START = MONDAY + 21 * 3600  # the node's clock (tests.firmware.rig.at(MONDAY, 21)); it never moves
TOPIC = node_topic(SITE, NODE, "cmd")
OTHER_NODE = "den-thon2-01"
OTHER_SITE = "xa-binh-an"
TRACE = os.path.join(ROOT, "build", "fuzz", "node-tracebacks.txt")  # the node host appends a crash's traceback here
MAX_PAYLOAD = 20 * 1024  # the node host's receive room (node_host.MAX_PAYLOAD); a command is at most 16 KB
REQUIRED = ("v", "site", "to", "id", "ctr", "exp", "op")
ZONES = ("thon-1", "thon-2")


# ---- hypothesis: specs ---------------------------------------------------------------------------
def json_values(max_leaves=12):
    scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**70, max_value=2**70)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                        | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=max_leaves)


tokens = st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True)
zone_sets = st.lists(st.sampled_from(ZONES), min_size=1, max_size=2, unique=True)
hashes = st.binary(min_size=32, max_size=32).map(bytes.hex)


@st.composite
def valid_ops(draw):
    """(op, args) of a command the node must apply; times relative to START (filled in later)."""
    op = draw(st.sampled_from(("lamp_override", "set_volume", "broadcast_now", "stop_broadcast", "rebirth",
                               "self_test", "reboot", "set_program")))
    if op == "lamp_override":
        return op, {"level": draw(st.none() | st.integers(0, 100)), "until": START + draw(st.integers(1, 86400))}
    if op == "set_volume":
        return op, {"vol": draw(st.integers(0, 100))}
    if op == "broadcast_now":
        src = draw(st.sampled_from(("line", "clip", "stream")))
        args = {"id": draw(tokens), "dur": draw(st.integers(1, 3600)), "src": src, "zones": draw(zone_sets),
                "vol": draw(st.integers(0, 100)), "prio": draw(st.integers(0, 2))}
        if src == "clip":
            args["clip"] = draw(hashes)
        if src == "stream":
            args["stream"] = draw(tokens)
        return op, args
    if op == "stop_broadcast":
        return op, {"id": draw(st.none() | tokens)}
    if op == "set_program":
        args = {}
        which = draw(st.sampled_from(("lamp", "plan", "both")))
        if which in ("lamp", "both"):
            args["lamp"] = dict(PROGRAM, version=draw(st.integers(1, 10**6)))
        if which in ("plan", "both"):
            n = draw(st.integers(0, 60))
            args["plan"] = plan([item("i-%d" % i, START + 600 + i * 700, START + 1200 + i * 700,
                                      zones=list(draw(zone_sets)), src=draw(st.sampled_from(("clip", "line"))))
                                 for i in range(n)], version=draw(st.integers(1, 10**6)))
        return op, args
    return op, {}


WRONG_TYPE = {  # required field -> values of a type it can never take (null means missing: all required)
    "int": st.none() | st.booleans() | st.text(max_size=12) | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    "str": st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(st.text(max_size=3), max_size=3) | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
}
FIELD_TYPE = {"v": "int", "ctr": "int", "exp": "int", "site": "str", "to": "str", "id": "str", "op": "str"}
not_ascii_id = st.text(min_size=1, max_size=40).filter(lambda s: not all("a" <= c <= "z" or "0" <= c <= "9" or c == "-" for c in s))

MUTATIONS = st.one_of(
    st.tuples(st.just("bitflip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 64)),
    st.tuples(st.just("overwrite"), st.integers(0, 10**6), st.binary(min_size=1, max_size=32)),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6), st.integers(1, 200)),
    st.tuples(st.just("upper_sig")),
)
SEMANTIC = st.one_of(
    st.tuples(st.just("wrong_node")),
    st.tuples(st.just("wrong_site")),
    st.tuples(st.just("wrong_topic"), st.sampled_from((node_topic(SITE, OTHER_NODE, "cmd"), node_topic(SITE, NODE, "ack"),
                                                       "denloa/%s/node/%s/cmd/x" % (SITE, NODE), "", "#"))),
    st.tuples(st.just("wrong_key"), st.binary(min_size=1, max_size=64).filter(lambda k: k != KEY)),
    st.tuples(st.just("replay"), st.integers(0, 10**9)),
    st.tuples(st.just("expired"), st.integers(1, 10**9)),
    st.tuples(st.just("huge"), st.sampled_from(("ctr", "exp", "v")), st.integers(1, 2**80)),
    st.tuples(st.just("type_swap"), st.sampled_from(REQUIRED)).flatmap(
        lambda t: st.tuples(st.just(t[0]), st.just(t[1]), WRONG_TYPE[FIELD_TYPE[t[1]]])),
    st.tuples(st.just("args_not_object"), json_values().filter(lambda v: v is not None and not isinstance(v, dict))),
    st.tuples(st.just("unknown_key"), st.text(max_size=12).filter(lambda k: k not in REQUIRED + ("args", "ts")),
              json_values(4)),
    st.tuples(st.just("unknown_op"), st.text(max_size=20).filter(lambda s: s not in commands.OPS)),
    st.tuples(st.just("missing"), st.sampled_from(REQUIRED)),
    st.tuples(st.just("deep"), st.sampled_from(REQUIRED + ("args",)), st.integers(2, 400), st.sampled_from("[{")),
    st.tuples(st.just("unicode_id"), st.sampled_from(("site", "to", "id")), not_ascii_id),
    st.tuples(st.just("oversized"), st.integers(commands.MAX_CMD - 200, MAX_PAYLOAD - 200)),
)
garbage = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=2000)),
    st.tuples(st.just("bytes_sig"), st.binary(max_size=600), st.binary(min_size=32, max_size=32)),
    st.tuples(st.just("json_signed"), json_values(20)),
    st.tuples(st.just("text"), st.text(max_size=300)),
    st.tuples(st.just("topic"), st.one_of(st.text(max_size=80), st.binary(max_size=80))),
)
cases = st.one_of(
    st.tuples(st.just("valid"), valid_ops(), st.integers(1, 1000)),
    st.tuples(st.just("mutate"), valid_ops() | st.tuples(st.just("time_sync"), st.just({"t1": None, "t2": 0, "t3": 0})),
              MUTATIONS),
    st.tuples(st.just("semantic"), valid_ops(), SEMANTIC),
    st.tuples(st.just("free"), valid_ops(), st.lists(st.text(max_size=6), min_size=1, max_size=3), json_values()),
    st.tuples(st.just("garbage"), garbage),
)


# ---- specs -> bytes --------------------------------------------------------------------------------
def _resign(obj, topic=TOPIC, key=KEY):
    body = json.dumps(obj, separators=(",", ":")).encode()
    return body + b"\n" + commands.auth.to_hex(commands.signature(key, topic, body)).encode()


def _base(op, args, counter, cmd_id=None):
    if op == "lamp_override" and args.get("until") is not None:
        args = dict(args)
    cmd = Command(SITE, NODE, cmd_id or "f-%d" % counter, counter, START + 300, op, args, issued=START)
    topic, payload = cmd.sign(KEY)
    return cmd, topic, payload


def _mutate_bytes(payload, m):
    kind, n = m[0], len(payload)
    if kind == "upper_sig":
        return payload[:-64] + payload[-64:].upper()
    pos = m[1] % (n + 1)
    if kind == "bitflip":
        pos = m[1] % n
        return payload[:pos] + bytes([payload[pos] ^ (1 << m[2])]) + payload[pos + 1:]
    if kind == "truncate":
        return payload[:m[1] % n]
    if kind == "insert":
        return payload[:pos] + m[2] + payload[pos:]
    if kind == "delete":
        return payload[:pos] + payload[pos + m[2]:]
    if kind == "overwrite":
        return payload[:pos] + m[2] + payload[pos + len(m[2]):]
    return payload[:pos] + payload[pos:pos + m[2]] + payload[pos:]  # duplicate


def _nest(depth, bracket):
    return json.loads(bracket * depth + ("]" if bracket == "[" else "}") * depth) if bracket == "[" \
        else _nested_dict(depth)


def _nested_dict(depth):
    obj = {}
    for _ in range(depth):
        obj = {"a": obj}
    return obj


def _semantic(obj, m, counter):
    """(topic, payload) of a correctly re-signed command that breaks one rule of the contract."""
    kind, topic, key = m[0], TOPIC, KEY
    if kind == "wrong_node":
        obj["to"] = OTHER_NODE
    elif kind == "wrong_site":
        obj["site"] = OTHER_SITE
    elif kind == "wrong_topic":
        topic = m[1]
    elif kind == "wrong_key":
        key = m[1]
    elif kind == "replay":
        obj["ctr"] = 1 + m[1] % counter  # 1..counter: not above the node's
    elif kind == "expired":
        obj["exp"] = max(0, START - m[1])
    elif kind == "huge":
        obj[m[1]] = {"ctr": 2**53, "exp": MAX_TIME, "v": 1}[m[1]] + m[2]
    elif kind == "type_swap":
        obj[m[1]] = m[2]
    elif kind == "args_not_object":
        obj["args"] = m[1]
    elif kind == "unknown_key":
        obj[m[1]] = m[2]
    elif kind == "unknown_op":
        obj["op"] = m[1]
    elif kind == "missing":
        del obj[m[1]]
    elif kind == "deep":
        obj[m[1]] = _nest(m[2], m[3])
    elif kind == "unicode_id":
        obj[m[1]] = m[2]
    elif kind == "oversized":
        obj["pad"] = "x" * m[1]
    return topic, _resign(obj, topic, key)


def _free(obj, path, value):
    """Swap the value at a path (keys chosen among what is there, by position) for arbitrary JSON."""
    node = obj
    for i, step in enumerate(path):
        if isinstance(node, dict) and node:
            keys = sorted(node)
            k = keys[hash(step) % len(keys)] if step else keys[0]
        elif isinstance(node, list) and node:
            k = len(step) % len(node)
        else:
            break
        if i == len(path) - 1 or not isinstance(node[k], (dict, list)) or not node[k]:
            node[k] = value
            return obj
        node = node[k]
    return obj


def materialize(spec, counter):
    """(topic, payload, label) for the node whose last accepted counter is `counter`."""
    kind = spec[0]
    if kind == "valid":
        (op, args), gap = spec[1], spec[2]
        _, topic, payload = _base(op, args, counter + gap)
        return topic, payload, "valid"
    if kind == "mutate":
        (op, args), m = spec[1], spec[2]
        _, topic, payload = _base(op, args, counter + 1)
        out = _mutate_bytes(payload, m)
        if out == payload:  # a no-op mutation (e.g. a deletion at the end): flip the last bit instead
            out = payload[:-1] + bytes([payload[-1] ^ 1])
        return topic, out, "invalid"
    if kind == "semantic":
        (op, args), m = spec[1], spec[2]
        cmd, _, _ = _base(op, args, counter + 1)
        return _semantic(cmd.to_json(), m, counter) + ("invalid",)
    if kind == "free":
        (op, args), path, value = spec[1], spec[2], spec[3]
        cmd, _, _ = _base(op, args, counter + 1)
        return TOPIC, _resign(_free(cmd.to_json(), path, value)), "oracle"
    g = spec[1]
    if g[0] == "bytes":
        return TOPIC, g[1], "invalid"
    if g[0] == "bytes_sig":
        return TOPIC, g[1] + b"\n" + g[2].hex().encode(), "invalid"
    if g[0] == "json_signed":
        return TOPIC, _resign(g[1]), "oracle"
    if g[0] == "text":
        return TOPIC, g[1].encode(), "invalid"
    _, topic, payload = _base("rebirth", {}, counter + 1)  # a good command on a wrong topic
    return g[1], payload, "invalid" if g[1] not in (TOPIC, TOPIC.encode()) else "valid"


def may_act(topic, payload, label, counter):
    if label != "oracle":
        return label == "valid"
    v = commands.verify(payload, topic, SITE, NODE, KEY, counter, START)
    return v.ok


# ---- the node process ----------------------------------------------------------------------------
class NodeProcess:
    """One MicroPython node; cases go in batches through its stdin, answers come one line each."""

    def __init__(self, budget="64K", heap="1M"):
        self.budget, self.heap = budget, heap
        self.proc = None
        self.counter = 0
        self.free = None
        self.restarts = -1
        self.record = None

    def start(self):
        self.restarts += 1
        where = os.environ.get("NODE_FUZZ_RECORD")  # a file prefix: each process's stdin is kept, to replay
        if where:  # (micropython node_host.py 64K < PREFIX-N.bin)
            if self.record is not None:
                self.record.close()
            self.record = open("%s-%d.bin" % (where, self.restarts), "wb")
        os.makedirs(os.path.dirname(TRACE), exist_ok=True)
        self.proc = subprocess.Popen([MICROPYTHON, "-X", "heapsize=" + self.heap, HOST, self.budget, "--trace=" + TRACE],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=ROOT)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("ready"):
            raise RuntimeError("node host did not start: %r %s" % (line, self.proc.stdout.read(4000)))
        _, free, counter = line.split()
        self.free, self.counter = int(free), int(counter)
        return self

    def run(self, batch):
        """[(topic, payload)] -> [(status, counter, ack, detail)]; a dead process is a crash of its case."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        frames = []
        for topic, payload in batch:
            t = topic.encode() if isinstance(topic, str) else topic
            frames.append(b"C %d %d %s\n" % (len(t), len(payload), b"s" if isinstance(topic, str) else b"b"))
            frames.append(t)
            frames.append(payload)
        out = []
        if self.record is not None:
            self.record.write(b"".join(frames))
            self.record.flush()
        try:
            self.proc.stdin.write(b"".join(frames))
            self.proc.stdin.flush()
            for _ in batch:
                line = self.proc.stdout.readline().decode()
                if not line:
                    raise EOFError
                status, counter, ack, detail = line.rstrip("\n").split(" ", 3)
                self.counter = int(counter)
                out.append((status, int(counter), ack, detail))
        except (EOFError, BrokenPipeError, ValueError) as exc:
            if out and out[-1][0] in ("c", "m"):  # the host ended after reporting a crash: a fresh one next time
                self.proc.wait(10)
                self.proc = None
                return out
            rest = self.proc.stdout.read().decode(errors="replace")[-2000:] if self.proc.stdout else ""
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            out.append(("c", self.counter, "-", "node process died (%r): %s" % (exc, rest)))
        return out

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.write(b"Q\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        self.proc = None


class Tally:
    """Counts per target, and the failures (each saved with its case)."""

    def __init__(self, target, save_dir=None):
        self.target = target
        self.cases = self.crashes = self.actuations = self.http_5xx = self.other = 0
        self.failures = []
        self.seconds = 0.0
        self.save_dir = save_dir or os.path.join(ROOT, "build", "fuzz", "failures")

    def fail(self, what, case):
        if what == "crash":
            self.crashes += 1
        elif what == "actuation":
            self.actuations += 1
        elif what == "5xx":
            self.http_5xx += 1
        else:
            self.other += 1
        self.failures.append((what, case))
        os.makedirs(self.save_dir, exist_ok=True)
        path = os.path.join(self.save_dir, "%s-%d-%d.json" % (self.target, os.getpid(), len(self.failures)))
        with open(path, "w") as f:
            json.dump({"target": self.target, "what": what, "case": case}, f, indent=1, default=repr)
        return path

    def row(self):
        rate = self.cases / self.seconds if self.seconds else 0.0
        return (self.target, self.cases, self.crashes, self.actuations, self.http_5xx, self.other, rate)


def run_node_batch(proc, specs, tally):
    """Send one batch of specs; check every answer. Returns the failures of this batch."""
    t0 = time.perf_counter()
    made, sent = [], []
    failures = []
    # each case is made with the counter the node will have when it arrives: a batch is made one case
    # at a time only while no valid case precedes; after a valid one the counter is the one it carries
    if proc.proc is None or proc.proc.poll() is not None:
        proc.start()  # before the cases are made: a fresh node has a fresh counter
    counter = proc.counter
    for spec in specs:
        topic, payload, label = materialize(spec, counter)
        if len(payload) > MAX_PAYLOAD:
            payload = payload[:MAX_PAYLOAD]
            label = "invalid"
        if label == "invalid" and may_act(topic, payload, "oracle", counter):
            label = "oracle"  # the generator's mistake, not the node's (e.g. an id in capitals is a valid token)
        allowed = may_act(topic, payload, label, counter)
        if allowed:
            counter = _counter_of(payload, counter)
        made.append((topic, payload, label, allowed))
        sent.append((topic, payload))
    answers = proc.run(sent)
    for (topic, payload, label, allowed), answer in zip(made, answers):
        tally.cases += 1
        status, _, ack, detail = answer
        case = {"topic": topic if isinstance(topic, str) else topic.hex(), "payload_hex": payload.hex(),
                "payload_text": payload[:600].decode("utf-8", "replace"), "label": label, "answer": answer}
        if status in ("c", "m"):
            failures.append((tally.fail("crash", case), case))
        elif status == "a" and not allowed:
            failures.append((tally.fail("actuation", case), case))
        elif label == "valid" and ack != "applied" and ack != "-":
            failures.append((tally.fail("valid command refused", case), case))
    tally.seconds += time.perf_counter() - t0
    return failures


def _counter_of(payload, default):
    try:
        body = payload[:payload.rindex(b"\n")]
        return json.loads(body)["ctr"]
    except (ValueError, KeyError, TypeError):
        return default

"""The gateway's fuzzers: ingest (node payloads), the HTTP API (every route), the audio upload."""
import asyncio
import io
import json
import math
import os
import re
import subprocess
import time
import urllib.parse
import wave

import httpx
from hypothesis import strategies as st

from gateway.app import make_gateway
from gateway.clock import ManualClock
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from protocol import messages
from protocol.errors import ProtocolError
from protocol.messages import Ack, Event, State, Telemetry
from tests.fuzz.node_fuzz import MUTATIONS, _mutate_bytes, json_values
from tests.gateway.harness import GatewayRig

NOV_10 = 1794243600  # 2026-11-10 00:00 +07
SITE = "xa-an-binh"
NODES = ("den-3-07", "den-3-08")


# ---- ingest ------------------------------------------------------------------------------------------
class IngestBench:
    """A gateway built from its config, not started: node payloads go straight into Ingest.handle."""

    def __init__(self, tmp_path):
        self.clock = ManualClock(NOV_10 + 12 * 3600)
        self.logs = []
        self.gw = make_gateway(GatewayConfig(GatewayRig(tmp_path, broker="embedded").raw), self.clock,
                               log=self.logs.append)

        async def publish(items):
            return [True] * len(items)
        self.gw.commands.publish = publish
        self.gw.registry.add_zone({"id": "thon-3", "name": "Thôn 3"})
        for n in NODES:
            self.gw.registry.add_node({"id": n, "zones": ["thon-3"]}, SITE, "127.0.0.1", 1883, self.gw.location)
        self.tables = [r[0] for r in self.gw.db.all("SELECT name FROM sqlite_master WHERE type='table'")]

    def close(self):
        self.gw.db.close()

    def rows(self):
        return sum(self.gw.db.one("SELECT COUNT(*) FROM %s" % t)[0] for t in self.tables)

    def bad(self, reason=None):
        total = 0.0
        for metric in self.gw.metrics.bad_messages.collect():
            for s in metric.samples:
                if s.name.endswith("_total") and (reason is None or s.labels.get("reason") == reason):
                    total += s.value
        return total


NOW = NOV_10 + 12 * 3600
boot_ids = st.from_regex(r"[0-9a-f]{8}", fullmatch=True)
small = st.integers(0, 1000)


@st.composite
def node_messages(draw):
    """(kind, a valid message of that kind) as a node would send it."""
    kind = draw(st.sampled_from(("state", "tele", "evt", "ack")))
    ts = draw(st.none() | st.integers(NOW - 86400, NOW + 60))
    if kind == "state":
        if draw(st.booleans()):
            return kind, State(False, draw(st.none() | boot_ids))
        return kind, State(True, draw(boot_ids), "1.0", draw(small), draw(small),
                           draw(st.lists(st.sampled_from(("lamp", "dim", "amp", "zones:2", "photocell")), max_size=4)),
                           ts, draw(st.booleans()), draw(st.sampled_from(messages.CLOCK_STATES)),
                           draw(st.lists(st.sampled_from(("rtc", "amp", "ina219")), max_size=3)))
    if kind == "tele":
        lamp = draw(st.none() | st.fixed_dictionaries({"lvl": st.integers(0, 100), "relay": st.booleans(),
                                                         "w": st.integers(0, 200), "wh": st.integers(0, 10**6)}))
        return kind, Telemetry(draw(boot_ids), ts, draw(small), draw(st.sampled_from(messages.CLOCK_STATES)),
                               lamp=lamp, rssi=draw(st.none() | st.integers(-127, 0)),
                               heap=draw(st.none() | st.integers(0, 2**20)))
    if kind == "evt":
        ev = draw(st.sampled_from(messages.EVENT_KINDS))
        data = draw(st.dictionaries(st.sampled_from(("id", "reason", "detail", "ctr", "t1", "cause", "item", "file",
                                                      "error", "step", "on_s", "wh")),
                                    st.none() | st.integers(0, 10**6) | st.text(max_size=12) | st.booleans(),
                                    max_size=4))
        return kind, Event(draw(boot_ids), draw(small), ev, data, ts)
    result = draw(st.sampled_from((messages.APPLIED, messages.REJECTED)))
    return kind, Ack(draw(st.from_regex(r"c-[0-9]{1,4}", fullmatch=True)), result,
                     "malformed" if result == messages.REJECTED else None, None, ts)


DECODERS = {"state": State.decode, "tele": Telemetry.decode, "evt": Event.decode, "ack": Ack.decode}
ingest_cases = st.one_of(
    st.tuples(st.just("valid"), node_messages(), st.sampled_from(NODES)),
    st.tuples(st.just("mutate"), node_messages(), st.sampled_from(NODES), MUTATIONS),
    st.tuples(st.just("swap"), node_messages(), st.sampled_from(NODES), st.text(max_size=8), json_values()),
    st.tuples(st.just("garbage"), st.sampled_from(("state", "tele", "evt", "ack")), st.sampled_from(NODES),
              st.binary(max_size=400) | json_values(20).map(lambda v: json.dumps(v).encode())),
    st.tuples(st.just("topic"), st.text(max_size=80), st.binary(max_size=100)),
)


def make_ingest_case(spec):
    """(topic, payload, valid): valid when CPython's protocol.messages decoder takes the payload."""
    if spec[0] == "topic":
        return spec[1], spec[2], None
    if spec[0] == "garbage":
        kind, node, payload = spec[1], spec[2], spec[3]
    else:
        (kind, msg), node = spec[1], spec[2]
        payload = msg.encode()
        if spec[0] == "mutate":
            payload = _mutate_bytes(payload, spec[3]) if payload else payload
        elif spec[0] == "swap":
            obj = msg.to_json()
            keys = sorted(obj)
            obj[keys[hash(spec[3]) % len(keys)] if spec[3] else spec[3] or "x"] = spec[4]
            payload = json.dumps(obj).encode()
    try:
        DECODERS[kind](payload)
        valid = True
    except ProtocolError:
        valid = False
    return "denloa/%s/node/%s/%s" % (SITE, node, kind), payload, valid


def run_ingest_case(bench, spec, tally):
    topic, payload, valid = make_ingest_case(spec)
    case = {"topic": topic, "payload_hex": payload.hex(), "payload_text": payload[:400].decode("utf-8", "replace"),
            "valid": valid}
    rows, bad, internal, logs = bench.rows(), bench.bad(), bench.bad("internal"), len(bench.logs)
    tally.cases += 1
    try:
        bench.gw.ingest.handle(topic, payload)
    except Exception as exc:  # handle() promises never to raise
        return tally.fail("crash", dict(case, error=repr(exc)))
    errors = [t for t in bench.logs[logs:] if t.startswith("error handling")]
    if bench.bad("internal") != internal or errors:  # an exception caught by handle()'s last resort
        return tally.fail("crash", dict(case, error=errors))
    if valid is False:
        if bench.rows() != rows:
            return tally.fail("row from an invalid payload", case)
        if bench.bad() != bad + 1:
            return tally.fail("invalid payload not counted", case)
    return None


# ---- HTTP API ----------------------------------------------------------------------------------------
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+")
SKIP = {("POST", "/api/logout")}  # would end the fuzzer's own session (it logs in again anyway)


def api_routes(app):
    """(method, path template) of every API route of the app."""
    out = []
    for r in app.routes:
        path = getattr(r, "path", "")
        for m in sorted(getattr(r, "methods", None) or ()):
            if m in ("HEAD", "OPTIONS") or (m, path) in SKIP:
                continue
            out.append((m, path))
    return sorted(set(out))


path_values = st.one_of(st.sampled_from(("den-3-07", "thon-3", "1", "0", "-1", "admin", "x" * 300, "%00", "..",
                                         "9" * 40, "ab" * 32, "null", "true")),
                        st.text(max_size=30).filter(lambda s: "/" not in s and "?" not in s and "#" not in s))
api_bodies = st.one_of(json_values(30), st.dictionaries(
    st.sampled_from(("id", "name", "zones", "level", "until", "title", "text", "role", "username", "password",
                     "start", "end", "days", "clip", "items", "vol", "node", "program", "enabled", "value", "minutes",
                     "category", "voice", "speed", "at", "src", "reason")),
    json_values(8), max_size=8))
api_cases = st.tuples(st.integers(0, 10**6), st.lists(path_values, min_size=4, max_size=4),
                      st.one_of(st.tuples(st.just("json"), api_bodies),
                                st.tuples(st.just("raw"), st.binary(max_size=300)),
                                st.tuples(st.just("none"), st.none())),
                      st.dictionaries(st.sampled_from(("limit", "since", "node", "day", "month", "from", "to", "kind",
                                                       "q", "page", "open")), st.text(max_size=12), max_size=3))


def fill_path(template, values):
    it = iter(values)
    return re.sub(r"\{[^}]+\}", lambda m: urllib.parse.quote(next(it, "x"), safe="") or "x", template)


async def run_api_case(rig, routes, spec, tally, counts):
    idx, values, (how, body), query = spec
    method, template = routes[idx % len(routes)]
    path = fill_path(template, values)
    kw = {"params": query}
    if how == "json":
        kw["content"] = json.dumps(body, allow_nan=False).encode() if _finite(body) else b"{}"
        kw["headers"] = {"Content-Type": "application/json"}
    elif how == "raw":
        kw["content"] = body
        kw["headers"] = {"Content-Type": "application/json"}
    tally.cases += 1
    counts[(method, template)] = counts.get((method, template), 0) + 1
    case = {"method": method, "path": path, "query": query, "body": repr(body)[:2000]}
    try:
        r = await rig.http.request(method, path, **kw)
    except Exception as exc:  # the ASGI app raised out of the transport: a 500 in production
        return tally.fail("5xx", dict(case, error=repr(exc)))
    text = r.text[:5000] if "audio" not in r.headers.get("content-type", "") else ""
    if r.status_code >= 500:
        return tally.fail("5xx", dict(case, status=r.status_code, answer=text[:1000]))
    if TRACEBACK.search(text):
        return tally.fail("traceback in a body", dict(case, status=r.status_code, answer=text[:1000]))
    if r.status_code == 401:  # something logged us out (e.g. a password change): log in again
        await rig.login()
    return None


def _finite(v):
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, list):
        return all(_finite(x) for x in v)
    if isinstance(v, dict):
        return all(_finite(x) for x in v.values())
    return True


# ---- audio upload ------------------------------------------------------------------------------------
def make_samples(directory):
    """Small real clips: a 0.3 s tone as WAV, MP3, OGG (ffmpeg), name -> bytes."""
    os.makedirs(directory, exist_ok=True)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"".join(int(8000 * math.sin(i / 8.0)).to_bytes(2, "little", signed=True)
                               for i in range(4800)))
    samples = {"wav": buf.getvalue()}
    src = os.path.join(directory, "tone.wav")
    with open(src, "wb") as f:
        f.write(samples["wav"])
    for ext, opts in (("mp3", ["-c:a", "libmp3lame", "-b:a", "32k"]), ("ogg", ["-c:a", "libvorbis"])):
        out = os.path.join(directory, "tone." + ext)
        subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", src, *opts, out],
                       check=True, timeout=60)
        with open(out, "rb") as f:
            samples[ext] = f.read()
    return samples


audio_cases = st.tuples(
    st.sampled_from(("wav", "mp3", "ogg")),
    st.one_of(st.tuples(st.just("keep")), st.tuples(st.just("header"), MUTATIONS), MUTATIONS,
              st.tuples(st.just("zero"), st.integers(0, 5000)), st.tuples(st.just("random"), st.binary(max_size=3000)),
              st.tuples(st.just("truncate"), st.integers(0, 200))),
    st.sampled_from(("a.wav", "a.mp3", "a.ogg", "a.m4a", "a.txt", "", "clip", "x.WAV", "../../etc/passwd.wav",
                     "tệp âm thanh.mp3")),
)


def make_audio(samples, spec):
    fmt, m, filename = spec
    data = samples[fmt]
    if m[0] == "keep":
        pass
    elif m[0] == "header":  # a mutation inside the first 64 bytes (the container header)
        inner = m[1]
        inner = (inner[0], inner[1] % 64) + tuple(inner[2:]) if len(inner) > 1 else inner
        data = _mutate_bytes(data, inner) if inner[0] != "upper_sig" else data
    elif m[0] == "zero":
        data = bytes(m[1])
    elif m[0] == "random":
        data = m[1]
    elif m[0] == "truncate" and len(m) == 2 and isinstance(m[1], int) and m[1] <= 200:
        data = data[:m[1]]
    else:
        data = _mutate_bytes(data, m) if m[0] != "upper_sig" else data
    return data, filename


def library_files(lib):
    return sorted(os.listdir(lib.dir)) + sorted("tmp/" + n for n in os.listdir(lib.tmp))


async def run_audio_case(lib, samples, spec, tally, rig=None):
    data, filename = make_audio(samples, spec)
    case = {"format": spec[0], "mutation": repr(spec[1])[:300], "filename": filename, "size": len(data)}
    tally.cases += 1
    before = set(os.listdir(lib.dir))
    if rig is None:
        try:
            row = await lib.add_upload(data, filename or None, None, "news", "fuzz", "upload")
        except GatewayError as exc:
            if not (exc.vi and exc.en) or exc.status >= 500:
                return tally.fail("5xx", dict(case, error=repr(exc)))
            row = None
        except Exception as exc:
            return tally.fail("crash", dict(case, error=repr(exc)))
    else:
        r = await rig.http.post("/api/clips", data={"title": "fuzz", "category": "news"},
                                files={"file": (filename or "blob", data, "application/octet-stream")})
        if r.status_code >= 500:
            return tally.fail("5xx", dict(case, status=r.status_code, answer=r.text[:500]))
        body = r.json()
        if r.status_code >= 400:
            if not (body.get("message") and body.get("message_en")):
                return tally.fail("refusal not bilingual", dict(case, answer=body))
            row = None
        else:
            row = body
    after = set(os.listdir(lib.dir))
    leftovers = os.listdir(lib.tmp)
    new = sorted(after - before - {"tmp"})
    if leftovers:
        return tally.fail("half-written file", dict(case, files=leftovers))
    if row is None and new:
        return tally.fail("file left by a refusal", dict(case, files=new))
    if row is not None:
        if lib.path(row["id"]) is None or lib.get(row["id"]) is None:
            return tally.fail("accepted clip without its file or row", dict(case, row=row))
        if not row.get("duplicate"):
            lib.delete(row["id"])  # keep the library small, and the next identical case a fresh add
    return None

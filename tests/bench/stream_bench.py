"""Live stream latency, gateway side (CPython): from a loud sound entering ffmpeg to its first block
at a listening node's socket.

A real gateway (real Mosquitto, its app served by uvicorn) runs a push stream of raw s16le 16 kHz PCM:
the "microphone" stand-in writes 20 ms chunks in real time, silence and then, at a known instant T0,
a loud 1 kHz tone. A node listens over HTTP/1.0 in a thread, decodes each block with protocol/ima.py
and notes when the first sample with |x| >= 4096 arrived. Latency = that instant - T0. Repeated;
p50 and max printed beside the target as one JSON line (tests/bench/report.py files it):

    python tests/bench/stream_bench.py | python tests/bench/report.py stream

Two ways in: "pipe" (the chunks written straight to the stream's ffmpeg, as a microphone's
capture would be) and "api" (the same chunks, 100 ms each, through POST /api/streams/{id}/chunk,
as a browser recording would come; its chunk length adds to the latency).

Budget (docs/audio.md, "Serving and streaming"): glass-to-horn <= 2 s = capture + gateway (this,
target <= 0.5 s) + LAN + the node's pre-buffer (~1 s) + I2S.
"""
import asyncio
import json
import math
import os
import pathlib
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from protocol import ima  # noqa: E402
from tests.gateway.harness import GatewayRig, wait_until  # noqa: E402
from tests.gateway.test_node_files import auth_header, serve_http, zones_and_nodes  # noqa: E402

REPEATS = int(os.environ.get("DENLOA_BENCH_STREAM_REPEATS", "7"))
LISTENERS = int(os.environ.get("DENLOA_BENCH_STREAM_LISTENERS", "200"))
FANOUT_S = 10.0  # seconds of stream with LISTENERS listeners
SILENCE_S = 1.5
TONE_S = 0.5
LOUD = 4096
TARGET_S = 0.5


def pcm(seconds, loud, start_sample=0):
    n = int(ima.RATE * seconds)
    if not loud:
        return bytes(2 * n)
    return b"".join(struct.pack("<h", int(16000 * math.sin(2 * math.pi * 1000 * (start_sample + i) / ima.RATE)))
                    for i in range(n))


class Ear(threading.Thread):
    """A node listening: notes when the first loud sample arrived (time.monotonic)."""

    def __init__(self, port, stream_id, user, password):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(("GET /node/v1/streams/%s HTTP/1.0\r\nConnection: close\r\n%s\r\n"
                           % (stream_id, auth_header(user, password))).encode())
        self.loud_at = None
        self.status = None

    def run(self):
        buf = b""
        head = True
        try:
            while self.loud_at is None:
                data = self.sock.recv(65536)
                now = time.monotonic()
                if not data:
                    return
                buf += data
                if head:
                    if b"\r\n\r\n" not in buf:
                        continue
                    line, _, buf = buf.partition(b"\r\n\r\n")
                    self.status = int(line.split()[1])
                    head = False
                while len(buf) >= ima.BLOCK_BYTES:
                    block, buf = buf[:ima.BLOCK_BYTES], buf[ima.BLOCK_BYTES:]
                    if any(abs(s) >= LOUD for s in ima.decode_block(block)):
                        self.loud_at = now
                        return
        finally:
            self.sock.close()


async def one_run(rig, port, password, via):
    hub = rig.gw.streams.hub
    r = await rig.api("POST", "/api/streams", expect=201, json={
        "kind": "push", "format": "s16le", "zones": ["thon-1"], "max_seconds": 30})
    sid = r.json()["id"]
    ear = Ear(port, sid, "loa-1", password)
    ear.start()
    await wait_until(lambda: len(hub.get(sid).clients) == 1, 10, "listener")
    chunk_s = 0.02 if via == "pipe" else 0.1
    start = time.monotonic()
    t0 = None
    sent = 0.0
    while sent < SILENCE_S + TONE_S:
        loud = sent >= SILENCE_S - 1e-9
        data = pcm(chunk_s, loud, int(round((sent - SILENCE_S) * ima.RATE)) if loud else 0)
        # real time: this chunk's audio ends at start + sent + chunk_s; it is "captured" then
        delay = start + sent + chunk_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if loud and t0 is None:
            t0 = time.monotonic() - chunk_s  # the onset: the first sample of this chunk
        if via == "pipe":
            await hub.push(sid, data)
        else:
            await rig.api("POST", "/api/streams/%s/chunk" % sid, expect=200, content=data)
        sent += chunk_s
    await asyncio.to_thread(ear.join, 10)
    await rig.api("DELETE", "/api/streams/" + sid, expect=200)
    if ear.loud_at is None:
        raise AssertionError("the loud block never reached the node")
    return ear.loud_at - t0


LISTEN_SCRIPT = r"""
import json, selectors, socket, sys, time
sys.path.insert(0, sys.argv[1])
from protocol import ima
port, sid, auth, n = int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
sel = selectors.DefaultSelector()
state = []
cache = {}
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("GET /node/v1/streams/%s HTTP/1.0\r\nConnection: close\r\n%s\r\n\r\n" % (sid, auth)).encode())
    s.setblocking(False)
    st = {"buf": b"", "head": True, "loud": None, "bytes": 0}
    state.append(st)
    sel.register(s, selectors.EVENT_READ, st)
print("connected", flush=True)
open_ = n
while open_:
    for key, _ in sel.select(30):
        st = key.data
        data = key.fileobj.recv(65536)
        now = time.monotonic()
        if not data:
            sel.unregister(key.fileobj); key.fileobj.close(); open_ -= 1; continue
        st["buf"] += data
        if st["head"]:
            if b"\r\n\r\n" not in st["buf"]:
                continue
            st["buf"] = st["buf"].partition(b"\r\n\r\n")[2]; st["head"] = False
        while len(st["buf"]) >= 256:
            block, st["buf"] = st["buf"][:256], st["buf"][256:]
            st["bytes"] += 256
            if st["loud"] is None:
                loud = cache.get(block)  # every listener gets the same blocks: decode each once
                if loud is None:
                    loud = cache[block] = any(abs(x) >= 4096 for x in ima.decode_block(block))
                if loud:
                    st["loud"] = now
print(json.dumps([[st["loud"], st["bytes"]] for st in state]), flush=True)
"""


async def fanout_run(rig, port, password, n):
    """n listeners (another process) on one stream of FANOUT_S s, its onset at SILENCE_S: each one's
    latency, the blocks they got, and this process's CPU (the gateway's loop and uvicorn) meanwhile."""
    hub = rig.gw.streams.hub
    r = await rig.api("POST", "/api/streams", expect=201, json={
        "kind": "push", "format": "s16le", "zones": ["thon-1"], "max_seconds": 60})
    sid = r.json()["id"]
    stream = hub.get(sid)
    auth = auth_header("loa-1", password).strip()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", LISTEN_SCRIPT, ROOT, str(port), sid, auth, str(n),
                                                stdout=asyncio.subprocess.PIPE)
    await proc.stdout.readline()
    try:
        await wait_until(lambda: len(hub.get(sid).clients) == n, 60, "%d listeners" % n)
    except Exception:
        print("\n".join(rig.logs[-5:]), stream.why, len(stream.clients), file=sys.stderr)
        raise
    cpu0, start = time.process_time(), time.monotonic()
    t0, sent, chunk_s = None, 0.0, 0.02
    while sent < FANOUT_S:
        loud = sent >= SILENCE_S - 1e-9
        data = pcm(chunk_s, loud, int(round((sent - SILENCE_S) * ima.RATE)) if loud else 0)
        delay = start + sent + chunk_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if loud and t0 is None:
            t0 = time.monotonic() - chunk_s
        await hub.push(sid, data)
        sent += chunk_s
    await hub.push(sid, b"", final=True)
    await wait_until(lambda: hub.get(sid) is None, 20, "stream end")
    cpu = (time.process_time() - cpu0) / (time.monotonic() - start)
    dropped = hub.streams.get(sid).dropped if hub.get(sid) else None
    out = json.loads((await asyncio.wait_for(proc.stdout.readline(), 30)).decode())
    await proc.wait()
    lat = sorted(loud - t0 for loud, _ in out if loud is not None)
    got = [b for _, b in out]
    return lat, got, cpu, dropped


async def main():
    with tempfile.TemporaryDirectory() as d:
        rig = await GatewayRig(pathlib.Path(d)).start()
        stop_http = await serve_http(rig)
        try:
            pw = await zones_and_nodes(rig, [("loa-1", ["thon-1"])])
            figures = {}
            for via in ("pipe", "api"):
                lat = [await one_run(rig, rig.cfg.http_port, pw["loa-1"], via) for _ in range(REPEATS)]
                p50, worst = statistics.median(lat), max(lat)
                print("stream latency via %s: %s s" % (via, " ".join("%.3f" % x for x in lat)))
                target = TARGET_S + (0.1 if via == "api" else 0)
                figures["latency_%s_p50_s" % via] = {"value": round(p50, 3), "target": "<= %.1f s" % target,
                                                     "holds": p50 <= target}
                figures["latency_%s_max_s" % via] = {"value": round(worst, 3), "target": "<= %.1f s" % target,
                                                     "holds": worst <= target}
            figures["repeats"] = REPEATS
            lat, got, cpu, _ = await fanout_run(rig, rig.cfg.http_port, pw["loa-1"], LISTENERS)
            blocks = int(FANOUT_S * ima.RATE) // ima.BLOCK_SAMPLES
            print("fan-out to %d listeners: latency p50 %.3f s max %.3f s; %d got every block; gateway CPU %.0f %%"
                  % (LISTENERS, statistics.median(lat), max(lat), sum(1 for g in got if g >= blocks * 256), cpu * 100))
            figures["fanout_listeners"] = LISTENERS
            figures["fanout_latency_p50_s"] = {"value": round(statistics.median(lat), 3), "target": "<= 0.5 s",
                                               "holds": statistics.median(lat) <= TARGET_S}
            figures["fanout_latency_max_s"] = {"value": round(max(lat), 3), "target": "<= 0.5 s",
                                               "holds": max(lat) <= TARGET_S}
            figures["fanout_complete_listeners"] = {"value": sum(1 for g in got if g >= blocks * 256),
                                                    "target": "== %d" % LISTENERS,
                                                    "holds": sum(1 for g in got if g >= blocks * 256) == LISTENERS}
            figures["fanout_gateway_cpu_pct"] = round(cpu * 100, 1)
            figures["glass_to_horn_target"] = "<= 2 s (gateway part above + node pre-buffer ~1 s + LAN + I2S)"
        finally:
            await stop_http()
            await rig.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())

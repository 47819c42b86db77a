"""Clip serving to nodes (GET /node/v1/clips/<sha256>, docs/audio.md section 4) on a running gateway.

A real gateway on real Mosquitto with its HTTP API served by uvicorn on a port; nodes are plain
HTTP/1.0 socket clients (as the firmware is) with their provisioning credentials. Clips are files
made with protocol/ima.py at the path contract `<data_dir>/clips/<sha256>.wav`.
"""
import asyncio
import base64
import datetime
import hashlib
import math
import os
import socket

import uvicorn

from gateway.api import create_app
from gateway.node_files import parse_basic
from protocol import ima
from tests.gateway.harness import GatewayRig, wait_until


def run(coro, timeout=60):
    asyncio.run(asyncio.wait_for(coro, timeout))


# ---- helpers shared with test_streams.py ------------------------------------------
async def serve_http(rig, sndbuf=None):
    """The gateway's app served by uvicorn on rig.cfg.http_port, as `python -m gateway` does; returns a stopper.
    `sndbuf`: the listening socket's SO_SNDBUF (inherited by every connection; off: the kernel's autotuning)."""
    server = uvicorn.Server(uvicorn.Config(create_app(rig.gw), host="127.0.0.1", port=rig.cfg.http_port,
                                           log_level="warning", lifespan="off"))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(("127.0.0.1", rig.cfg.http_port))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_until(lambda: server.started, 10, "uvicorn up", step=0.02)

    async def stop():
        server.should_exit = True
        await asyncio.wait_for(task, 10)
    return stop


def auth_header(user, password):
    return "Authorization: Basic %s\r\n" % base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def raw_request(port, path, user=None, password=None, extra="", limit=None, timeout=20):
    """A node's request: HTTP/1.0, Connection: close, read until the server closes (or `limit` body bytes,
    then cut). Blocking: call it through asyncio.to_thread. Returns (status, {header: value}, body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        req = "GET %s HTTP/1.0\r\nHost: gateway\r\nConnection: close\r\n" % path
        if user is not None:
            req += auth_header(user, password)
        sock.sendall((req + extra + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            got = sock.recv(4096)
            if not got:
                break
            data += got
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        while limit is None or len(body) < limit:
            got = sock.recv(65536)
            if not got:
                break
            body += got
        if limit is not None:
            body = body[:limit]
        return status, headers, body
    finally:
        sock.close()


def tone_clip(freq, seconds, amp=12000):
    n = int(ima.RATE * seconds)
    samples = [int(amp * math.sin(2 * math.pi * freq * i / ima.RATE)) for i in range(n)]
    return ima.wav(ima.encode(samples), n)


def store_clip(data_dir, data, db=None):
    """A node-format clip at the library's path contract; with `db`, its row too (a schedule names only
    clips of the library): the library's own pipeline would re-encode these exact test files."""
    sha = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(data_dir, "clips"), exist_ok=True)
    with open(os.path.join(data_dir, "clips", sha + ".wav"), "wb") as f:
        f.write(data)
    if db is not None:
        off, size, n = ima.parse_header(data)
        pcm = hashlib.sha256(ima.pcm_bytes(ima.decode(data[off:off + size])[:n])).hexdigest()
        db.run("INSERT OR IGNORE INTO clips (id, title, category, duration_ms, samples, size, source, created_at,"
               " pcm_sha256) VALUES (?, 'test', 'news', ?, ?, ?, 'upload', 0, ?)",
               sha, n * 1000 // ima.RATE, n, len(data), pcm)
    return sha


async def zones_and_nodes(rig, specs):
    """Zones thon-1..3 and the nodes `specs` [(id, [zones])] (loudspeakers); returns {id: password}."""
    for z in ("thon-1", "thon-2", "thon-3"):
        await rig.api("POST", "/api/zones", json={"id": z, "name": z}, expect=201)
    bundles = await rig.add_nodes([{"id": n, "zones": zs, "kind": "speaker"} for n, zs in specs])
    return {b["node"]: b["broker"]["password"] for b in bundles}


# ---- tests ----------------------------------------------------------------------------
def test_parse_basic():
    assert parse_basic("Basic " + base64.b64encode(b"loa-1:p:w").decode()) == ("loa-1", "p:w")
    assert parse_basic("basic " + base64.b64encode(b"a:").decode()) == ("a", "")
    for bad in (None, "", "Bearer x", "Basic", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                "Basic " + base64.b64encode(b":pw").decode()):
        assert parse_basic(bad) is None, bad


def test_clip_serving(tmp_path):
    async def scenario():
        rig = await GatewayRig(tmp_path).start()
        stop_http = await serve_http(rig)
        port = rig.cfg.http_port
        data_dir = rig.cfg.data_dir
        try:
            pw = await zones_and_nodes(rig, [("loa-1", ["thon-1"]), ("loa-2", ["thon-2"])])
            planned = tone_clip(440, 3.0)  # in loa-1's plan (a schedule)
            urgent = tone_clip(880, 1.0)  # a broadcast_now to thon-2 (loa-2)
            stray = tone_clip(660, 0.5)  # a clip file nobody was told about
            sha_plan, sha_now, sha_stray = (store_clip(data_dir, c, rig.gw.db) for c in (planned, urgent, stray))
            local = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=7))) + datetime.timedelta(hours=2)
            await rig.api("POST", "/api/schedules", expect=201, json={
                "id": "tin-sang", "title": "Bản tin", "category": "news", "priority": 0, "zones": ["thon-1"],
                "source": "clip", "ref": sha_plan, "volume": 80, "start": local.strftime("%Y-%m-%dT%H:%M"),
                "duration_s": 600})
            await rig.api("POST", "/api/emergency", expect=202, json={
                "zones": ["thon-2"], "source": "clip", "ref": sha_now, "duration_s": 60})

            async def get(path, user="loa-1", password=None, **kw):
                return await asyncio.to_thread(raw_request, port, path, user,
                                               pw.get(user, "x") if password is None else password, **kw)

            # full file, HTTP/1.0, the server closes the connection after Content-Length bytes
            status, headers, body = await get("/node/v1/clips/" + sha_plan)
            assert status == 200 and body == planned
            assert int(headers["content-length"]) == len(planned) and headers.get("accept-ranges") == "bytes"
            assert hashlib.sha256(body).hexdigest() == sha_plan

            # a cut at an arbitrary byte, then resume with Range: bytes=N-
            cut = 12345
            status, _, first = await get("/node/v1/clips/" + sha_plan, limit=cut)
            assert status == 200 and len(first) == cut
            status, headers, rest = await get("/node/v1/clips/" + sha_plan, extra="Range: bytes=%d-\r\n" % cut)
            assert status == 206, headers
            assert headers["content-range"] == "bytes %d-%d/%d" % (cut, len(planned) - 1, len(planned))
            assert int(headers["content-length"]) == len(planned) - cut
            assert hashlib.sha256(first + rest).hexdigest() == sha_plan
            # bytes=N-M, and the last byte alone
            status, headers, part = await get("/node/v1/clips/" + sha_plan, extra="Range: bytes=100-355\r\n")
            assert status == 206 and part == planned[100:356]
            assert headers["content-range"] == "bytes 100-355/%d" % len(planned)
            status, _, part = await get("/node/v1/clips/" + sha_plan, extra="Range: bytes=%d-\r\n" % (len(planned) - 1))
            assert status == 206 and part == planned[-1:]
            # past the end
            status, headers, _ = await get("/node/v1/clips/" + sha_plan, extra="Range: bytes=%d-\r\n" % len(planned))
            assert status == 416 and headers["content-range"] == "bytes */%d" % len(planned)

            # credentials: wrong password, unknown user, none at all -> 401 with a challenge
            for user, password in (("loa-1", "wrong"), ("loa-1", pw["loa-2"]), ("nobody", "x"), (None, None)):
                status, headers, body = await get("/node/v1/clips/" + sha_plan, user=user, password=password)
                assert status == 401 and headers["www-authenticate"].startswith("Basic"), (user, status)
                assert sha_plan.encode() not in body

            # not this node's, unknown, stray, malformed: all the same 404
            not_found = []
            for user, sha in (("loa-2", sha_plan), ("loa-1", sha_now), ("loa-1", "0" * 64), ("loa-1", sha_stray),
                              ("loa-1", "denloa.db"), ("loa-1", sha_plan.upper())):
                status, _, body = await get("/node/v1/clips/" + sha, user=user)
                assert status == 404, (user, sha, status)
                not_found.append(body)
            assert len(set(not_found)) == 1
            status, _, _ = await get("/node/v1/clips/../denloa.db")
            assert status == 404
            # the broadcast_now's clip goes to its node
            status, _, body = await get("/node/v1/clips/" + sha_now, user="loa-2")
            assert status == 200 and body == urgent

            # a re-provisioned node's old password stops working at once
            await rig.api("POST", "/api/nodes/loa-1/reprovision", expect=200)
            status, _, _ = await get("/node/v1/clips/" + sha_plan)
            assert status == 401
        finally:
            await stop_http()
            await rig.stop()
    run(scenario())

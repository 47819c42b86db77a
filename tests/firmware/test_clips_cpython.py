"""The clip cache and stream receiver over real sockets, against a real HTTP/1.0 server
(http.server in a thread; not the gateway's route): Range resume, Basic auth, streams."""
import asyncio
import base64
import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from firmware.clips import ClipCache, file_name
from firmware.http import Client
from firmware.stream import StreamReceiver, make_ring
from protocol.ima import BLOCK_BYTES
from tests.firmware.rig import remove_dir, temp_dir
from tests.firmware.test_clips import clip
from hardware.flashfs import DirFS

AUTH = "Basic " + base64.b64encode(b"n1:pw").decode()


class RealHal:
    def __init__(self, path):
        self._fs = DirFS(path)

    @property
    def fs(self):
        return self._fs

    def ticks_ms(self):
        return int(time.monotonic() * 1000)

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, t, d):
        return t + d

    def sleep_ms(self, ms):
        return asyncio.sleep(ms / 1000)


class Server:
    """Serves `files` (path -> bytes) with Range; `streams` (id -> bytes) paced; `cut_next`
    closes the next clip response after that many body bytes; `hang` streams stop and wait."""

    def __init__(self):
        self.files, self.streams = {}, {}
        self.cut_next = None
        self.hang = False
        self.seen = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.seen.append((self.path, dict(self.headers)))
                if self.headers.get("Authorization") != AUTH:
                    self._empty(401)
                    return
                if self.path.startswith("/node/v1/streams/"):
                    data = outer.streams.get(self.path[17:])
                    if data is None:
                        self._empty(404)
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.end_headers()
                    for i in range(0, len(data), 1024):  # ~ 8 KB/s in 126 ms steps, as live audio comes
                        self.wfile.write(data[i:i + 1024])
                        self.wfile.flush()
                        time.sleep(0.02)
                    if outer.hang:
                        time.sleep(3)
                    return
                data = outer.files.get(self.path)
                if data is None:
                    self._empty(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng[6:-1])
                    if start >= len(data):
                        self._empty(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if outer.cut_next is not None:
                    body, outer.cut_next = body[:outer.cut_next], None
                self.wfile.write(body)

            def _empty(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_cut_resume_and_verify_over_real_sockets():
    server, path = Server(), temp_dir()
    try:
        body, sha = clip(200, 41)  # 51 KB
        server.files["/node/v1/clips/" + sha] = body
        events = []
        hal = RealHal(path)
        client = Client("127.0.0.1", server.port, "n1", "pw")
        cache = ClipCache(hal, hal.fs, 1 << 20, client, lambda: iter([(100, None, sha)]),
                          lambda k, d=None: events.append((k, d)))
        server.cut_next = 20000
        assert asyncio.run(cache.fetch(sha)) is False
        with open(path + "/" + file_name(sha, ".part"), "rb") as f:
            assert f.read() == body[:20000]
        cache = ClipCache(hal, hal.fs, 1 << 20, client, lambda: iter([(100, None, sha)]),
                          lambda k, d=None: events.append((k, d)))  # as after a reboot
        assert asyncio.run(cache.fetch(sha)) is True
        assert server.seen[1][1]["Range"] == "bytes=20000-"
        with open(path + "/" + file_name(sha), "rb") as f:
            assert f.read() == body
        src = cache.open(sha)
        buf = bytearray(8 * BLOCK_BYTES)
        got = bytearray()
        while True:
            n = src.readinto(buf)
            if not n:
                break
            got += buf[:n]
        src.close()
        assert bytes(got) == body[60:] and src.ended and not src.bad
        bad = Client("127.0.0.1", server.port, "n1", "wrong")
        cache = ClipCache(hal, hal.fs, 1 << 20, bad, lambda: iter([(100, None, "ee" * 32)]),
                          lambda k, d=None: events.append((k, d)))
        assert asyncio.run(cache.fetch("ee" * 32)) is False
        assert events[-1][0] == "clip_fetch_failed" and events[-1][1]["status"] == 401
    finally:
        server.close()
        remove_dir(path)


def test_stream_over_real_sockets_ends_and_is_lost_on_silence():
    server, path = Server(), temp_dir()
    try:
        data = clip(60, 42)[0][60:]
        server.streams["live-1"] = data
        hal = RealHal(path)
        client = Client("127.0.0.1", server.port, "n1", "pw")

        async def receive(stall_ms):
            rx = StreamReceiver(hal, client, "live-1", make_ring(), bytearray(384), stall_ms=stall_ms)
            got = bytearray()
            buf = bytearray(4 * BLOCK_BYTES)
            t0 = time.monotonic()
            while not (rx.ended or rx.lost) and time.monotonic() - t0 < 20:
                got += buf[:rx.readinto(buf)]
                await asyncio.sleep(0.01)
            rx.close()
            return rx, bytes(got)

        rx, got = asyncio.run(receive(2000))
        assert rx.ended and not rx.lost and got == data
        server.hang = True
        t0 = time.monotonic()
        rx, got = asyncio.run(receive(500))
        assert rx.lost and "timeout" in rx.error and got == data
        assert time.monotonic() - t0 < 10  # generous: the silence is noticed, not waited out
    finally:
        server.close()
        remove_dir(path)

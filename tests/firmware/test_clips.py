"""The node's clip cache, stream receiver and HTTP client against an in-memory HTTP server
(portable: CPython and MicroPython). See tests/firmware/http_fake.py for the server."""
import asyncio
import binascii
import hashlib

from firmware.clips import BAD, FETCHING, MISSING, READY, ClipCache, file_name
from firmware.config import ConfigError, NodeConfig
from firmware.http import Client, HttpError, Watch, get, guarded
from firmware.store import Store
from firmware.stream import PREBUFFER, RING, StreamReceiver, make_ring
from protocol.ima import BLOCK_BYTES, BLOCK_SAMPLES, wav
from protocol.messages import EVENT_KINDS
from tests.firmware.flaky_fs import FullFS
from tests.firmware.http_fake import FakeServer, VirtualHal
from tests.firmware.rig import config, remove_dir, temp_dir
from tests.portable import raises, raises_with


def pattern(n_blocks, seed=1):
    """n_blocks of a byte pattern (never decoded here)."""
    data = bytearray(n_blocks * BLOCK_BYTES)
    x = seed * 2654435761 & 0xFFFFFFFF
    for i in range(len(data)):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        data[i] = x >> 16 & 0xFF
    return data


def clip(n_blocks, seed=1):
    """A clip file of n_blocks and its id."""
    body = wav(bytes(pattern(n_blocks, seed)))
    return body, binascii.hexlify(hashlib.sha256(body).digest()).decode()


class Setup:
    def __init__(self, budget=64 * 1024, fs=None, path=None, server=None, **server_opts):
        self.path = path or temp_dir()
        self.hal = VirtualHal(self.path, fs(self.path) if fs else None)
        self.server = server or FakeServer(**server_opts)
        self.events = []
        self.want = []  # [(start, end, sha)]
        self.clock = None
        self.client = Client("gw", 8080, "n1", "pw", self.server.open)
        self.cache = ClipCache(self.hal, self.hal.fs, budget, self.client, lambda: iter(self.want),
                               self.emit, lambda: self.clock)

    def emit(self, kind, data=None):
        assert kind in EVENT_KINDS, kind
        self.events.append((kind, data))

    def kinds(self):
        return [k for k, _ in self.events]

    def add(self, n_blocks, seed, start=100, end=None, want=True):
        body, sha = clip(n_blocks, seed)
        self.server.files["/node/v1/clips/" + sha] = body
        if want:
            self.want.append((start, end, sha))
        return body, sha

    def file(self, sha, ext=".ima"):
        try:
            with open(self.path + "/" + file_name(sha, ext), "rb") as f:
                return f.read()
        except OSError:
            return None

    def reboot(self, budget=64 * 1024):
        """A new cache over the same flash (and server and wants): what a reboot leaves."""
        self.hal = VirtualHal(self.path)
        self.cache = ClipCache(self.hal, self.hal.fs, budget, self.client, lambda: iter(self.want),
                               self.emit, lambda: self.clock)

    def close(self):
        remove_dir(self.path)


def run(coro):
    return asyncio.run(coro)


async def stop(task):
    """Cancel and let it finish (MicroPython's asyncio.run leaves a pending task in its queue)."""
    task.cancel()
    for _ in range(10):
        await asyncio.sleep(0)
    assert task.done()


def read_all(source, size=4 * BLOCK_BYTES):
    out = bytearray()
    buf = bytearray(size)
    for _ in range(10000):
        n = source.readinto(buf)
        if not n:
            break
        assert n % BLOCK_BYTES == 0
        out += buf[:n]
    return bytes(out)


def test_download_verify_and_read_back_in_blocks():
    s = Setup(delay=1)
    try:
        body, sha = s.add(20, 1)
        assert s.cache.state(sha) == FETCHING
        assert run(s.cache.fetch(sha)) is True
        assert s.file(sha) == body and s.file(sha, ".part") is None
        assert s.cache.state(sha) == READY and s.cache.has(sha)
        path, headers = s.server.requests[0]
        assert path == "/node/v1/clips/" + sha
        assert headers["authorization"] == "Basic bjE6cHc=" and "range" not in headers  # n1:pw
        assert headers["connection"] == "close"
        assert s.server.all_closed()
        assert ("clip_ready", {"clip": sha[:16], "size": len(body)}) in s.events
        src = s.cache.open(sha)
        assert src.samples == 20 * BLOCK_SAMPLES and not src.ended and not src.lost
        data = read_all(src)
        assert data == body[-20 * BLOCK_BYTES:] and src.ended and not src.bad
        src.seek(7 * BLOCK_SAMPLES + 3)  # the block holding that sample
        assert not src.ended and read_all(src, BLOCK_BYTES) == body[-13 * BLOCK_BYTES:]
        assert src.readinto(bytearray(100)) == 0  # room for less than a block: nothing
        src.close()
        assert s.cache.info(sha) == (20 * BLOCK_SAMPLES, 60, 20 * BLOCK_BYTES)
    finally:
        s.close()


def test_a_corrupted_byte_is_detected_and_the_clip_fetched_again():
    s = Setup()
    try:
        body, sha = s.add(10, 2)
        s.server.faults = [{"corrupt": 1000}]
        assert run(s.cache.fetch(sha)) is False
        assert s.file(sha) is None and s.file(sha, ".part") is None  # nothing unverified stays
        assert s.cache.state(sha) == FETCHING
        assert ("clip_corrupt", {"clip": sha[:16], "where": "download"}) in s.events
        assert run(s.cache.fetch(sha)) is True
        assert s.file(sha) == body
    finally:
        s.close()


def test_a_clip_corrupt_every_time_becomes_bad_and_is_not_fetched_again():
    s = Setup()
    try:
        _, sha = s.add(4, 3)
        s.server.faults = [{"corrupt": 300}, {"corrupt": 400}, {"corrupt": 500}]
        for _ in range(3):
            assert run(s.cache.fetch(sha)) is False
        assert s.cache.state(sha) == BAD
        assert s.kinds().count("clip_bad") == 1 and s.kinds().count("clip_corrupt") == 3
        s.hal.t += 10 ** 7
        assert s.cache._next() is None  # the fetch task leaves it alone
    finally:
        s.close()


def test_a_cut_download_resumes_with_range():
    s = Setup()
    try:
        body, sha = s.add(16, 4)
        s.server.faults = [{"cut": 1500}]
        assert run(s.cache.fetch(sha)) is False
        part = s.file(sha, ".part")
        assert part == body[:len(part)] and len(part) == 1500
        assert s.cache.state(sha) == FETCHING and "clip_fetch_failed" in s.kinds()
        assert run(s.cache.fetch(sha)) is True
        assert s.server.requests[1][1]["range"] == "bytes=1500-"
        assert s.file(sha) == body and s.file(sha, ".part") is None
        assert s.server.all_closed()
    finally:
        s.close()


def test_after_a_reboot_the_part_is_rehashed_and_resumed():
    s = Setup()
    try:
        body, sha = s.add(16, 5)
        s.server.faults = [{"cut": 2100}]
        assert run(s.cache.fetch(sha)) is False
        s.reboot()
        assert s.cache.state(sha) == FETCHING
        assert run(s.cache.fetch(sha)) is True
        assert s.server.requests[1][1]["range"] == "bytes=2100-"
        assert s.file(sha) == body
    finally:
        s.close()


def test_a_part_damaged_on_flash_fails_the_hash_and_starts_over():
    s = Setup()
    try:
        body, sha = s.add(16, 6)
        s.server.faults = [{"cut": 2000}]
        assert run(s.cache.fetch(sha)) is False
        with open(s.path + "/" + file_name(sha, ".part"), "r+b") as f:
            f.seek(700)
            f.write(b"\x00\x01")
        s.reboot()
        assert run(s.cache.fetch(sha)) is False  # resumed, then the hash disagreed
        assert s.file(sha, ".part") is None and s.file(sha) is None
        assert run(s.cache.fetch(sha)) is True
        assert "range" not in s.server.requests[2][1]
        assert s.file(sha) == body
    finally:
        s.close()


def test_a_server_that_ignores_range_is_read_from_the_start():
    s = Setup()
    try:
        body, sha = s.add(8, 7)
        s.server.faults = [{"cut": 900}, {"ignore_range": True}]
        assert run(s.cache.fetch(sha)) is False
        assert run(s.cache.fetch(sha)) is True
        assert s.file(sha) == body
    finally:
        s.close()


def test_a_stalled_download_times_out_on_the_hal_clock_and_resumes():
    s = Setup()
    try:
        body, sha = s.add(8, 8)
        s.server.faults = [{"hang": 1000}]
        t0 = s.hal.t
        assert run(s.cache.fetch(sha)) is False
        assert s.hal.t - t0 >= 10000  # STALL_MS of the HAL's clock, not of the host's
        assert s.server.all_closed()
        failed = [d for k, d in s.events if k == "clip_fetch_failed"]
        assert "timeout" in failed[0]["error"], failed
        assert len(s.file(sha, ".part")) == 1000
        assert run(s.cache.fetch(sha)) is True and s.file(sha) == body
    finally:
        s.close()


def test_http_errors_are_retried_with_backoff():
    s = Setup()
    try:
        _, sha = s.add(4, 9)
        s.server.faults = [{"status": 404}, {"status": 500}]
        assert run(s.cache.fetch(sha)) is False
        failed = [d for k, d in s.events if k == "clip_fetch_failed"]
        assert failed[0]["status"] == 404
        assert s.cache._next() is None  # backing off
        s.hal.t += 1000
        assert s.cache._next() == sha
        assert run(s.cache.fetch(sha)) is False
        assert s.cache._next() is None
        s.hal.t += 1999
        assert s.cache._next() is None  # the second wait is longer
        s.hal.t += 1
        assert s.cache._next() == sha
        assert run(s.cache.fetch(sha)) is True
        s.server.refuse = True
        _, other = s.add(4, 10)
        assert run(s.cache.fetch(other)) is False  # connection refused: a network failure, no crash
        assert s.cache.state(other) == FETCHING
    finally:
        s.close()


def test_wrong_credentials_are_refused():
    s = Setup(password="other")
    try:
        _, sha = s.add(4, 11)
        assert run(s.cache.fetch(sha)) is False
        failed = [d for k, d in s.events if k == "clip_fetch_failed"]
        assert failed[0]["status"] == 401
    finally:
        s.close()


def test_the_fetch_task_takes_clips_in_start_order_commanded_first():
    s = Setup()
    try:
        _, late = s.add(4, 12, start=5000)
        _, early = s.add(4, 13, start=3000)
        _, now = s.add(4, 14, start=0)  # a commanded clip: at once
        _, gone = s.add(4, 15, start=1000, end=1500)  # its window closed: not wanted
        s.clock = 2000

        async def main():
            task = asyncio.create_task(s.cache.run())
            for _ in range(2000):
                await asyncio.sleep(0)
                if s.cache.fetched == 3:
                    break
            await stop(task)
        run(main())
        order = [p[-64:] for p, _ in s.server.requests]
        assert order == [now, early, late], order
        assert s.cache.state(gone) == MISSING
    finally:
        s.close()


def test_a_full_budget_evicts_clips_no_item_needs_and_keeps_the_one_airing_soon():
    size = len(clip(8, 1)[0])
    s = Setup(budget=3 * size)
    try:
        _, soon = s.add(8, 16, start=60)
        _, old = s.add(8, 17, want=False)
        _, older = s.add(8, 18, want=False)
        for sha in (soon, old, older):
            assert run(s.cache.fetch(sha)) is True
        s.cache._files[old[:16]][1] = 500  # last wanted later than `older`
        _, new = s.add(8, 19, start=3600)
        assert run(s.cache.fetch(new)) is True
        assert s.cache.has(soon) and s.cache.has(old) and not s.cache.has(older) and s.cache.has(new)
        assert s.file(older) is None
        assert ("clip_evicted", {"clip": older[:16], "size": size}) in s.events
        assert s.cache.used() <= 3 * size
    finally:
        s.close()


def test_a_clip_that_cannot_fit_is_reported_once_and_stays_missing():
    size = len(clip(8, 1)[0])
    s = Setup(budget=2 * size)
    try:
        _, a = s.add(8, 20, start=60)
        _, b = s.add(8, 21, start=120)
        _, c = s.add(8, 22, start=180)
        assert run(s.cache.fetch(a)) and run(s.cache.fetch(b))
        assert run(s.cache.fetch(c)) is False
        assert run(s.cache.fetch(c)) is False
        unfit = [d for k, d in s.events if k == "clip_unfit"]
        assert len(unfit) == 1 and unfit[0]["clip"] == c[:16] and unfit[0]["why"] == "budget", unfit
        assert s.cache.state(c) == MISSING and s.cache.has(a) and s.cache.has(b)
        assert s.file(c, ".part") is None
        s.clock = 200  # a's and b's windows (no end given: they stay wanted) ... a plan change:
        s.want = [w for w in s.want if w[2] != a]
        s.cache.need()
        assert s.cache._next() == c
        assert run(s.cache.fetch(c)) is True and not s.cache.has(a)
    finally:
        s.close()


def test_a_full_flash_is_survived_and_other_files_are_untouched():
    full = []

    def make(path):
        from hardware.flashfs import DirFS
        fs = FullFS(DirFS(path), free=10 ** 9)
        full.append(fs)
        return fs
    s = Setup(fs=make)
    try:
        store = Store(s.hal.fs)
        store.save("keep", b"precious")
        body, sha = s.add(16, 23)
        full[0].free = 1200
        assert run(s.cache.fetch(sha)) is False
        assert s.file(sha, ".part") is None and s.file(sha) is None
        unfit = [d for k, d in s.events if k == "clip_unfit"]
        assert unfit and unfit[0]["why"] == "flash_full"
        assert s.cache.state(sha) == MISSING
        assert store.load("keep") == b"precious"
        full[0].free = 10 ** 9
        s.cache.need()
        assert run(s.cache.fetch(sha)) is True and s.file(sha) == body
    finally:
        s.close()


def test_a_corrupt_file_on_flash_is_deleted_and_fetched_again():
    s = Setup()
    try:
        body, sha = s.add(12, 24)
        assert run(s.cache.fetch(sha))
        with open(s.path + "/" + file_name(sha), "wb") as f:  # flash lost the tail
            f.write(body[:2000])
        src = s.cache.open(sha)
        assert src is not None
        read_all(src)
        assert src.bad and src.ended
        assert not s.cache.has(sha) and s.file(sha) is None and s.cache.state(sha) == FETCHING
        assert ("clip_corrupt", {"clip": sha[:16], "where": "flash"}) in s.events
        assert run(s.cache.fetch(sha)) and s.file(sha) == body
        with open(s.path + "/" + file_name(sha), "r+b") as f:  # a bad header
            f.write(b"JUNK")
        assert s.cache.open(sha) is None and s.cache.state(sha) == FETCHING
    finally:
        s.close()


def test_a_reboot_finds_the_verified_clips_and_drops_stray_parts():
    s = Setup()
    try:
        body, sha = s.add(4, 25)
        _, other = s.add(8, 26)
        assert run(s.cache.fetch(sha))
        s.server.faults = [{"cut": 500}]
        assert not run(s.cache.fetch(other))
        s.want = [w for w in s.want if w[2] != other]
        s.reboot()
        assert s.cache.state(sha) == READY and s.cache.used() == len(body)
        _, third = s.add(4, 27)
        assert run(s.cache.fetch(third))
        assert s.file(other, ".part") is None  # at most one part on flash
    finally:
        s.close()


# ---- HTTP client ---------------------------------------------------------

def test_http_headers_are_bounded_and_bad_responses_refused():
    hal = VirtualHal(None, fs=object())

    async def fetch(raw):
        class Srv:
            async def open(self, host, port):
                conn = Raw(raw)
                self.conn = conn
                return conn, conn
        srv = Srv()
        try:
            await get(srv.open, "gw", 80, "/x", bytearray(128), Watch(hal))
        finally:
            assert srv.conn.closed
    big = b"HTTP/1.0 200 OK\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"
    raises_with(HttpError, "longer than", run, fetch(big))
    raises_with(HttpError, "not an HTTP response", run, fetch(b"SSH-2.0-x\r\n\r\n"))
    raises_with(HttpError, "closed in the response headers", run, fetch(b"HTTP/1.0 200"))
    raises_with(HttpError, "bad content-length", run, fetch(b"HTTP/1.0 200 OK\r\nContent-Length: x\r\n\r\n"))


class Raw:
    def __init__(self, data):
        self.data, self.closed = data, False

    def write(self, b):
        pass

    async def drain(self):
        pass

    async def read(self, n):
        out, self.data = self.data[:n], self.data[n:]
        return out

    def close(self):
        self.closed = True


def test_guarded_times_out_on_the_hal_clock():
    hal = VirtualHal(None, fs=object())

    async def forever():
        await asyncio.Event().wait()

    async def main():
        w = Watch(hal)
        exc = None
        try:
            await guarded(hal, w, forever(), 3000)
        except HttpError as e:
            exc = e
        assert exc is not None and "timeout" in str(exc)
        assert 3000 <= hal.t <= 3500
        assert await guarded(hal, Watch(hal), ok(), 3000) == 42

    async def ok():
        return 42
    run(main())


# ---- streams ---------------------------------------------------------------

def blocks(n, seed=3):
    return bytes(pattern(n, seed))


def stream_setup(data, faults=(), chunk=300, delay=0):
    server = FakeServer(chunk=chunk, delay=delay)
    server.streams["s-1"] = data
    server.faults = list(faults)
    hal = VirtualHal(None, fs=object())
    client = Client("gw", 8080, "n1", "pw", server.open)
    return server, hal, client


def test_stream_prebuffers_then_hands_out_blocks_in_order_and_ends():
    data = blocks(16)
    server, hal, client = stream_setup(data, chunk=100, delay=2)

    async def main():
        rx = StreamReceiver(hal, client, "s-1", make_ring(), bytearray(384))
        got = bytearray()
        buf = bytearray(2 * BLOCK_BYTES)
        first_at = None
        for _ in range(20000):
            n = rx.readinto(buf)
            if n and first_at is None:
                first_at = rx.received
            got += buf[:n]
            if rx.ended or rx.lost:
                break
            await hal.sleep_ms(5)
        assert first_at is not None and first_at >= PREBUFFER, first_at
        assert rx.ended and not rx.lost and rx.status == 200
        assert bytes(got) == data
        rx.close()
        assert server.requests[0][0] == "/node/v1/streams/s-1"
        assert server.all_closed()
    run(main())


def test_stream_full_ring_holds_back_the_socket_and_loses_nothing():
    data = blocks(24)
    server, hal, client = stream_setup(data, chunk=512)

    async def main():
        rx = StreamReceiver(hal, client, "s-1", make_ring(), bytearray(384))
        for _ in range(400):
            await asyncio.sleep(0)
        assert rx.received == RING and rx.buffered_ms() == RING * 1000 // 8111  # full: reading stopped
        got = bytearray()
        buf = bytearray(3 * BLOCK_BYTES)
        for _ in range(5000):
            got += buf[:rx.readinto(buf)]
            if rx.ended:
                break
            await asyncio.sleep(0)
        assert rx.ended and bytes(got) == data
    run(main())


def test_stream_lost_when_the_server_goes_silent_or_refuses():
    data = blocks(20)
    server, hal, client = stream_setup(data, faults=[{"hang": 14 * BLOCK_BYTES}])

    async def main():
        rx = StreamReceiver(hal, client, "s-1", make_ring(), bytearray(384))
        buf = bytearray(BLOCK_BYTES)
        got = 0
        for _ in range(5000):
            got += rx.readinto(buf)
            if rx.lost:
                break
            await hal.sleep_ms(10)
        assert rx.lost and not rx.ended and "timeout" in rx.error
        assert got == 14 * BLOCK_BYTES  # what came before the silence still played
        assert server.all_closed()
        rx2 = StreamReceiver(hal, client, "nope", make_ring(), bytearray(384))
        for _ in range(200):
            await asyncio.sleep(0)
        assert rx2.lost and rx2.status == 404 and rx2.readinto(buf) == 0
        server.refuse = True
        rx3 = StreamReceiver(hal, client, "s-1", make_ring(), bytearray(384))
        for _ in range(200):
            await asyncio.sleep(0)
        assert rx3.lost and rx3.status is None
    run(main())


def test_stream_underrun_rearms_the_prebuffer_and_close_stops_the_task():
    data = blocks(24)
    server, hal, client = stream_setup(data, chunk=256, delay=3)

    async def main():
        rx = StreamReceiver(hal, client, "s-1", make_ring(), bytearray(384), prebuffer=4 * BLOCK_BYTES)
        buf = bytearray(8 * BLOCK_BYTES)
        for _ in range(20000):
            if rx.readinto(buf):
                break
            await asyncio.sleep(0)
        assert rx.playing and rx.underruns == 0
        while rx.readinto(buf):
            pass
        assert rx.readinto(buf) == 0 and not rx.playing and rx.underruns == 1
        rx.close()
        for _ in range(10):
            await asyncio.sleep(0)
        assert server.all_closed() and rx.readinto(buf) == 0
    run(main())


# ---- configuration -----------------------------------------------------------

def test_config_files_and_clip_budget():
    cfg = NodeConfig(config())
    assert cfg.files_host == "127.0.0.1" and cfg.files_port == 8080 and cfg.clip_kb == 2048
    pa = {"warmup_s": 3, "cooldown_s": 10, "clip_kb": 512}
    cfg = NodeConfig(config(files={"host": "10.0.0.2", "port": 80}, pa=pa))
    assert cfg.files_host == "10.0.0.2" and cfg.files_port == 80 and cfg.clip_kb == 512
    raises(ConfigError, NodeConfig, config(files={"port": 0}))
    raises(ConfigError, NodeConfig, config(files={"host": ""}))
    raises(ConfigError, NodeConfig, config(files={"hots": "x"}))
    raises(ConfigError, NodeConfig, config(pa={"clip_kb": 10}))


# ---- the node's wiring ------------------------------------------------------

def test_the_node_tells_its_cache_what_to_fetch():
    from tests.firmware.rig import MONDAY, PROGRAM, Rig, at

    a, b, c = "a1" * 32, "b2" * 32, "c3" * 32
    items = [["n-1", at(MONDAY, 17), 900, 0, "clip", a, ["thon-1"], 80, "news"],
             ["n-2", at(MONDAY, 18), 900, 0, "clip", b, ["thon-9"], 80, "news"],  # not this node's zone
             ["n-3", at(MONDAY, 16), 900, 0, "line", None, ["thon-1"], 80, "news"]]
    rig = Rig(at(MONDAY, 12), program=PROGRAM, plan={"version": 4, "items": items})
    try:
        node = rig.boot()
        media = node.media
        assert media is not None and getattr(node.speaker, "media", None) is media
        assert list(node.clip_wants()) == [(at(MONDAY, 17), at(MONDAY, 17) + 900, a)]
        assert media.clip_state(a) == FETCHING and media.clip_state(b) == MISSING
        assert media.open_clip(a) is None
        assert media.clips.budget == 2048 * 1024
        media.clips._dirty = False
        ack = rig.send("broadcast_now", {"id": "x", "dur": 60, "src": "clip", "clip": c, "zones": ["thon-1"],
                                         "vol": 60})
        assert ack.applied and media.clips._dirty  # fetched at once
        assert (0, None, c) in list(node.clip_wants())
        media.clips._dirty = False
        items.append(["n-4", at(MONDAY, 19), 900, 0, "clip", c, ["thon-2"], 80, "news"])
        assert rig.send("set_program", {"plan": {"version": 5, "items": items}}).applied
        assert media.clips._dirty
        assert (at(MONDAY, 19), at(MONDAY, 19) + 900, c) in list(node.clip_wants())
    finally:
        rig.close()


def test_eviction_only_when_it_is_enough_and_never_while_the_wants_are_unknown():
    size = len(clip(4, 1)[0])
    s = Setup(budget=2 * size)
    try:
        _, x = s.add(4, 30, want=False)
        _, a = s.add(4, 31, start=60)
        assert run(s.cache.fetch(x)) and run(s.cache.fetch(a))
        _, big = s.add(10, 32, start=120)
        assert run(s.cache.fetch(big)) is False
        assert s.cache.has(x) and "clip_evicted" not in s.kinds()  # evicting x would not have made room
        assert [d["why"] for k, d in s.events if k == "clip_unfit"] == ["budget"]
        _, c = s.add(4, 33, start=180)
        wants, s.want = s.want, None  # the node's plan is being reloaded
        s.cache.wants = lambda: s.want
        assert run(s.cache.fetch(c)) is False
        assert s.cache.has(x) and s.cache.state(c) == MISSING
        assert s.events[-1][0] == "clip_fetch_failed"
        s.want = wants
        assert run(s.cache.fetch(c)) is True and not s.cache.has(x) and s.cache.has(a)
    finally:
        s.close()


def test_after_boot_the_verified_clips_are_rehashed_once():
    s = Setup()
    try:
        body, good = s.add(6, 34)
        _, rotten = s.add(6, 35)
        assert run(s.cache.fetch(good)) and run(s.cache.fetch(rotten))
        with open(s.path + "/" + file_name(rotten), "r+b") as f:
            f.seek(900)
            f.write(b"\xff")
        s.want = []
        s.reboot()
        assert s.cache.has(good) and sorted(s.cache._audit) == sorted([good[:16], rotten[:16]])

        async def main():
            task = asyncio.create_task(s.cache.run())
            for _ in range(500):
                await asyncio.sleep(0)
                if not s.cache._audit:
                    break
            for _ in range(20):
                await asyncio.sleep(0)
            await stop(task)
        run(main())
        assert s.cache.has(good) and not s.cache.has(rotten) and s.file(rotten) is None
        assert ("clip_corrupt", {"clip": rotten[:16], "where": "audit"}) in s.events
    finally:
        s.close()


def test_the_flash_directory_says_how_much_room_it_has():
    from hardware.flashfs import DirFS

    path = temp_dir()
    try:
        free = DirFS(path).free_bytes()
        assert free is None or free > 0  # None only where the port has no statvfs
        if free is not None:
            chunk = bytearray(4096)
            with open(path + "/x", "wb") as f:
                for _ in range(16):
                    f.write(chunk)
            assert DirFS(path).free_bytes() <= free  # (other writers on the machine can only lower it more)
    finally:
        remove_dir(path)


def test_a_live_stream_pauses_the_download_which_resumes_after_it():
    from firmware.media import Media

    path = temp_dir()
    try:
        hal = VirtualHal(path, auto=False)
        server = FakeServer(chunk=256, delay=1)
        body, sha = clip(16, 60)
        server.files["/node/v1/clips/" + sha] = body
        server.streams["live"] = blocks(12)
        cfg = NodeConfig(config(broker={"host": "gw", "user": "n1", "password": "pw"}))
        media = Media(hal, cfg, lambda: iter([(100, None, sha)]), open_connection=server.open)

        async def main():
            task = asyncio.create_task(media.run())
            for _ in range(2000):
                await asyncio.sleep(0)
                if server.connections and server.connections[-1].sent > 1500:
                    break
            assert media.clips.fetching == sha
            rx = media.open_stream("live")
            assert media.clips.hold()
            got = bytearray()
            buf = bytearray(4 * BLOCK_BYTES)
            for _ in range(3000):
                got += buf[:rx.readinto(buf)]
                if rx.ended:
                    break
                assert media.clips.fetching is None or not rx.connected  # paused before the stream connects
                await asyncio.sleep(0)
            assert rx.ended and bytes(got) == server.streams["live"], (rx.error, rx._done, len(got), rx.received)
            assert not media.clips.hold()
            for _ in range(3000):
                await asyncio.sleep(0)
                if media.clip_state(sha) == READY:
                    break
            await stop(task)
        run(main())
        assert media.clip_state(sha) == READY
        ranges = [h.get("range") for p, h in server.requests if p.startswith("/node/v1/clips/")]
        assert ranges[0] is None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 1000, ranges
        with open(path + "/" + file_name(sha), "rb") as f:
            assert f.read() == body
    finally:
        remove_dir(path)

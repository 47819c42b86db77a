"""A live stream's receiving end: GET /node/v1/streams/<id> into a ring buffer (the player's source).

The gateway sends raw 256-byte IMA-ADPCM blocks from the live edge until the
stream ends (it closes the connection). A task reads the socket into a ring of
RING bytes (20 blocks, 631 ms at 8,111 B/s) made of SEG-byte segments (small
blocks are found even in a fragmented heap; a block never straddles two);
`readinto` hands out whole blocks once PREBUFFER bytes (10 blocks, 316 ms)
have arrived, and again after it ran dry (an underrun re-arms the pre-buffer:
one longer gap rather than many stutters). A full ring stops reading the
socket (TCP holds the rest).

`lost`: the connection failed (refused, HTTP error, cut) or brought nothing
for STALL_MS; `ended`: the server closed it cleanly. Both become true only once
the blocks already received have been handed out. The player reconnects by
calling `open_stream` again.
"""
import asyncio

from firmware.http import HttpError, Watch, guarded
from protocol.ima import BLOCK_BYTES

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

SEG = const(4 * 256)
RING = const(20 * 256)
PREBUFFER = const(10 * 256)
STALL_MS = const(2000)
_FULL_WAIT_MS = const(20)


def make_ring(size=RING):
    """The ring's segments (a MemoryError if the heap has not even SEG bytes in one piece)."""
    return [bytearray(SEG) for _ in range(size // SEG)]


class StreamReceiver:
    samples = None  # a stream has no length
    bad = False

    def __init__(self, hal, client, stream_id, ring, head, prebuffer=PREBUFFER, stall_ms=STALL_MS):
        seg = len(ring[0])
        for part in ring:
            if len(part) != seg or seg % BLOCK_BYTES:
                raise ValueError("stream ring segments must be equal and whole blocks")
        if prebuffer > seg * len(ring):
            raise ValueError("the stream ring must hold the pre-buffer")
        self.hal, self.client = hal, client
        self.stream_id = stream_id
        self._segs = [memoryview(part) for part in ring]
        self._seg = seg
        self._size = seg * len(ring)
        self._head = head
        self.prebuffer = max(BLOCK_BYTES, prebuffer)
        self.stall_ms = stall_ms
        self._r = self._w = self._fill = 0
        self.playing = False  # the pre-buffer was reached; blocks are handed out
        self.connected = False  # the server answered 200
        self.received = 0  # bytes from the server
        self.underruns = 0
        self.status = None  # the HTTP status, once known
        self.error = None  # why it was lost
        self._done = None  # None while receiving, then "ended" or "lost"
        self._closed = False
        self._task = asyncio.create_task(self._run())

    # ---- the player's side -------------------------------------------------
    @property
    def ended(self):
        return self._done == "ended" and self._fill < BLOCK_BYTES

    @property
    def lost(self):
        return self._done == "lost" and self._fill < BLOCK_BYTES

    def buffered_ms(self):
        return self._fill * 1000 // 8111

    def readinto(self, buf):
        """Whole blocks into buf (never waits): their byte count, 0 when none is ready."""
        if self._closed:
            return 0
        fill = self._fill
        if not self.playing:
            if fill >= self.prebuffer or (self._done and fill >= BLOCK_BYTES):
                self.playing = True
            else:
                return 0
        n = min(len(buf) // BLOCK_BYTES, fill // BLOCK_BYTES) * BLOCK_BYTES
        if not n:
            if self._done is None:
                self.playing = False  # ran dry: fill the pre-buffer again
                self.underruns += 1
            return 0
        segs, seg, size, r = self._segs, self._seg, self._size, self._r
        out = memoryview(buf)
        done = 0
        while done < n:  # whole blocks never straddle two segments
            i, off = r // seg, r % seg
            k = min(n - done, seg - off)
            out[done:done + k] = segs[i][off:off + k]
            done += k
            r = (r + k) % size
        self._r = r
        self._fill = fill - n
        return n

    def seek(self, sample_offset):
        pass  # a live stream is always at its live edge

    def close(self):
        self._closed = True
        if self._done is None:
            self._done = "ended"
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        self._segs = []  # the ring goes back to the heap once the task has let go

    # ---- the receiving task ------------------------------------------------
    async def _run(self):
        watch = Watch(self.hal)
        try:
            await guarded(self.hal, watch, self._receive(watch), self.stall_ms)
            if self._done is None:
                self._done = "ended"
        except HttpError as exc:
            self.error = str(exc)[:100]
            self._done = "lost"
        except OSError as exc:
            self.error = "network: %s" % exc
            self._done = "lost"

    async def _receive(self, watch):
        resp = await self.client.get("/node/v1/streams/" + self.stream_id, self._head, watch)
        try:
            self.status = resp.status
            if resp.status != 200:
                raise HttpError("HTTP %d" % resp.status, resp.status)
            self.connected = True
            segs, seg, size = self._segs, self._seg, self._size
            while not self._closed:
                free = size - self._fill
                if not free:  # the player is behind: let TCP hold the rest
                    watch.poke()
                    await self.hal.sleep_ms(_FULL_WAIT_MS)
                    continue
                w = self._w
                off = w % seg
                n = await resp.readinto(segs[w // seg][off:off + min(free, seg - off)])
                if self._closed:
                    return
                if not n:
                    return  # the server closed: the stream ended
                self._w = (w + n) % size
                self._fill += n
                self.received += n
        finally:
            resp.close()

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

from firmware.http import HEAD_MAX, HttpError, Watch, guarded
from protocol.ima import BLOCK_BYTES

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

SEG = const(256)  # one block: found even among small holes of a fragmented heap
RING = const(20 * 256)
PREBUFFER = const(10 * 256)
MIN_RING = const(8 * 256)  # a short heap gets a shorter ring (253 ms), never less
RESERVE = const(6144)  # heap left to the rest of the node when the ring cannot be whole
STALL_MS = const(2000)
_FULL_WAIT_MS = const(20)


def make_ring(size=RING, least=MIN_RING):
    """The ring's segments: `size` bytes, or as many segments as the heap gives while keeping
    RESERVE bytes free for the rest of the node, at least `least` bytes (else MemoryError)."""
    import gc

    ring = [None] * (size // SEG)  # sized once: no list regrowth on a short heap
    mem_free = getattr(gc, "mem_free", None)
    n = 0
    while n < len(ring):
        if mem_free is not None and n * SEG >= least and mem_free() < RESERVE:
            break
        try:
            ring[n] = bytearray(SEG)
        except MemoryError:
            break
        n += 1
    if n * SEG < least:
        raise MemoryError("stream ring: %d of %d bytes" % (n * SEG, least))
    return ring[:n]


class StreamReceiver:
    samples = None  # a stream has no length
    bad = False

    def __init__(self, hal, client, stream_id, ring=None, head=None, prebuffer=PREBUFFER, stall_ms=STALL_MS,
                 busy=None):
        """`ring` (segments) and `head` (HEAD_MAX bytes) are made by the task when not given, once
        `busy()` is false (a download being dropped gives its buffers back first) or after 1 s."""
        self.hal, self.client = hal, client
        self.stream_id = stream_id
        self.prebuffer = max(BLOCK_BYTES, prebuffer)
        self.stall_ms = stall_ms
        self._busy = busy
        self._r = self._w = self._fill = 0
        self.playing = False  # the pre-buffer was reached; blocks are handed out
        self.connected = False  # the server answered 200
        self.received = 0  # bytes from the server
        self.underruns = 0
        self.status = None  # the HTTP status, once known
        self.error = None  # why it was lost
        self._done = None  # None while receiving, then "ended" or "lost"
        self._closed = False
        self._segs = []
        self._seg = self._size = 0
        self._head = head
        if ring is not None:
            self._use(ring)
        self._task = asyncio.create_task(self._run())

    def _use(self, ring):
        seg = len(ring[0])
        for part in ring:
            if len(part) != seg or seg % BLOCK_BYTES:
                raise ValueError("stream ring segments must be equal and whole blocks")
        if self.prebuffer > seg * len(ring) - 2 * BLOCK_BYTES:  # a shorter ring: pre-buffer less
            self.prebuffer = max(BLOCK_BYTES, seg * len(ring) - 2 * BLOCK_BYTES)
        self._segs = [memoryview(part) for part in ring]
        self._seg = seg
        self._size = seg * len(ring)

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
        try:
            if not self._segs:
                waited = 0
                while self._busy is not None and self._busy() and waited < 1000:
                    await self.hal.sleep_ms(50)
                    waited += 50
                if self._closed:
                    return
                self._use(make_ring())
                if self._head is None:
                    self._head = bytearray(HEAD_MAX)
        except MemoryError as exc:
            self.error = "no memory for the stream buffer: %s" % exc
            self._done = "lost"
            return
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
        except MemoryError:
            self.error = "no memory"
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

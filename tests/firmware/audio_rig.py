"""Fake media (clip cache + streams, docs/audio.md sections 5-7) and a two-task driver for
firmware tests of the node's player on a SoftBoard with a manual clock (portable)."""
import hashlib
from binascii import hexlify

from protocol import ima


def level(i):
    """A deterministic test signal: a loud triangle (period 80 samples) with a slow wobble."""
    t = i % 80
    v = (t * 800 if t < 40 else (80 - t) * 800) - 16000
    return v + ((i * 131) % 97) * 10


def write_clip(fs, name, samples):
    """A clip's data chunk (blocks encoded one by one from `level`) written to the board's flash.
    Returns (name, samples, sha256 of its PCM at gain 256 and the given ones)."""
    with fs.open(name, "wb") as f:
        for start in range(0, samples, ima.BLOCK_SAMPLES):
            n = min(ima.BLOCK_SAMPLES, samples - start)
            f.write(ima.encode([level(start + k) for k in range(n)]))
    return name


def pcm_sha(fs, name, samples, gain=256, first=0, count=None):
    """sha256 hex of the PCM the node must play: samples first .. first+count of the clip,
    decoded by the reference codec (protocol.ima's per-code step, as its decode_block does;
    sample by sample: the test runs in the node's 64 KB under MicroPython)."""
    import gc

    gc.collect()
    if count is None:
        count = samples - first
    stop = min(first + count, samples)
    h = hashlib.sha256()
    block = bytearray(ima.BLOCK_BYTES)
    pcm = bytearray(2 * ima.BLOCK_SAMPLES)
    pos = 0  # the clip's sample number of the block's first sample
    with fs.open(name, "rb") as f:
        while pos < stop:
            n = f.readinto(block)
            if not n:
                break
            sample = block[0] | (block[1] << 8)
            if sample >= 32768:
                sample -= 65536
            index = block[2]
            k = 0
            lo = max(first - pos, 0)
            o = 0
            for i in range(3, n):
                for code in ((-1,) if i == 3 else (block[i] & 15, block[i] >> 4)):
                    if code >= 0:
                        sample, index = ima._step(code, sample, index)
                    if lo <= k and pos + k < stop:
                        v = (sample * gain) >> 8  # the volume rule, as protocol.ima.pcm_bytes applies it
                        pcm[o] = v & 255
                        pcm[o + 1] = (v >> 8) & 255
                        o += 2
                    k += 1
            h.update(memoryview(pcm)[:o])
            pos += k
    return hexlify(h.digest()).decode()


class FakeClip:
    def __init__(self, fs, name, samples):
        self.f = fs.open(name, "rb")
        self.samples = samples
        self.ended = False
        self.lost = False
        self.reads = 0

    def readinto(self, buf):
        want = len(buf) // ima.BLOCK_BYTES * ima.BLOCK_BYTES
        n = self.f.readinto(memoryview(buf)[:want]) or 0
        self.reads += 1
        if n < want:
            self.ended = True
        return n

    def seek(self, sample):
        self.f.seek(sample // ima.BLOCK_SAMPLES * ima.BLOCK_BYTES)

    def close(self):
        self.f.close()


class FakeStream:
    """Blocks at the real rate on the board's clock, `pre` blocks at once; breaks at `lose_at`."""

    def __init__(self, clock, block, lose_at=None, end_at=None, pre=8):
        self.clock = clock
        self.t0 = clock.now()
        self.sent = 0
        self.lose_at = lose_at
        self.end_at = end_at
        self.pre = pre
        self.samples = None
        self.closed = False
        self.block = block

    @property
    def lost(self):
        return self.lose_at is not None and self.clock.now() >= self.lose_at

    @property
    def ended(self):
        return self.lost or (self.end_at is not None and self.clock.now() >= self.end_at)

    def readinto(self, buf):
        if self.ended:
            return 0
        due = self.pre + int((self.clock.now() - self.t0) * ima.RATE / ima.BLOCK_SAMPLES) - self.sent
        n = min(due, len(buf) // ima.BLOCK_BYTES)
        for k in range(max(n, 0)):
            buf[k * 256:(k + 1) * 256] = self.block
        self.sent += max(n, 0)
        return max(n, 0) * ima.BLOCK_BYTES

    def seek(self, sample):
        pass

    def close(self):
        self.closed = True


class FakeMedia:
    def __init__(self, fs, clock):
        self.fs = fs
        self.clock = clock
        self.clips = {}  # sha -> (file name, samples)
        self.states = {}  # sha -> "ready" | "fetching" | "missing" | "bad"
        self.streams = {}  # stream id -> [kwargs for FakeStream, one per open] (the last repeats)
        self.opened = []
        self.block = ima.encode([level(k) for k in range(ima.BLOCK_SAMPLES)])  # what streams carry

    def add_clip(self, sha, samples):
        name = "c-%s.ima" % sha[:16]
        write_clip(self.fs, name, samples)
        self.clips[sha] = (name, samples)
        self.states[sha] = "ready"

    def clip_state(self, sha):
        return self.states.get(sha, "missing")

    def open_clip(self, sha):
        if self.clip_state(sha) != "ready":
            return None
        name, samples = self.clips[sha]
        self.opened.append(sha)
        return FakeClip(self.fs, name, samples)

    def open_stream(self, stream_id):
        plans = self.streams.get(stream_id)
        if not plans:
            raise OSError("no such stream")
        kw = plans.pop(0) if len(plans) > 1 else plans[0]
        self.opened.append(stream_id)
        return FakeStream(self.clock, self.block, **kw)


def drive(rig, seconds, tick_ms=1000, step_ms=None, probe=None):
    """Run the node's control tick every tick_ms and its audio task when it asks to wake
    (speaker.pump()'s answer), on the manual clock, like asyncio would at 1x. Returns the
    control tick times (ms since the call) so a test can check the period. `probe()` is called
    after every step_ms step."""
    node = rig.node
    clock = rig.clock
    t = 0
    next_tick = tick_ms
    next_pump = 0
    end = int(seconds * 1000)
    ticks = []
    while True:
        nxt = min(next_tick, next_pump)
        if step_ms is not None:
            nxt = min(nxt, (t // step_ms + 1) * step_ms)
        if nxt > end:
            clock.advance((end - t) / 1000)
            break
        if nxt > t:
            clock.advance((nxt - t) / 1000)
            t = nxt
        if t >= next_pump:
            next_pump = t + max(1, node.speaker.pump())
        if t >= next_tick:
            node.tick()
            ticks.append(t)
            next_tick = t + tick_ms
        if probe is not None and step_ms is not None and t % step_ms == 0:
            probe()
    return ticks

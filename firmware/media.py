"""The node's audio sources for the player: verified clips from flash, live streams from the gateway.

`Media` is what the Loudspeaker calls (docs/audio.md sections 4-7):
  open_clip(sha) -> ClipSource or None      clip_state(sha) -> "ready" | "fetching" | "missing" | "bad"
  open_stream(stream_id) -> StreamReceiver  (one at a time: opening one closes the previous)
A source: readinto(buf) -> bytes of whole 256-byte blocks (0: none yet; never blocks), ended,
lost, bad, samples (clips), seek(sample_offset), close().
The node tells it when its wants change (`need()`) and runs `run()`, the clip fetch task.
"""
from firmware.clips import ClipCache
from firmware.http import HEAD_MAX, Client
from firmware.stream import StreamReceiver, make_ring


class Media:
    def __init__(self, hal, cfg, wants, emit=None, now=None, open_connection=None):
        self.hal = hal
        self.client = Client(cfg.files_host, cfg.files_port, cfg.broker_user, cfg.broker_password,
                             open_connection)
        self.clips = ClipCache(hal, hal.fs, cfg.clip_kb * 1024, self.client, wants, emit, now)
        self.stream = None

    def open_clip(self, sha):
        return self.clips.open(sha)

    def clip_state(self, sha):
        return self.clips.state(sha)

    def open_stream(self, stream_id):
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        try:  # the ring only while a stream plays, in 1 KB segments (fragmentation)
            ring, head = make_ring(), bytearray(HEAD_MAX)
        except MemoryError:
            import gc

            ring = None
            gc.collect()
            try:
                ring, head = make_ring(), bytearray(HEAD_MAX)
            except MemoryError:
                ring = None
                return NoStream("no memory for the stream buffer")
        self.stream = StreamReceiver(self.hal, self.client, stream_id, ring, head)
        ring = head = None
        return self.stream

    def need(self, *_ignored):
        self.clips.need()

    async def run(self):
        await self.clips.run()


class NoStream:
    """A stream that could not even start: lost at once (the player reports and retries)."""

    samples = None
    ended = bad = False
    lost = True
    status = None

    def __init__(self, error):
        self.error = error

    def readinto(self, buf):
        return 0

    def seek(self, sample_offset):
        pass

    def close(self):
        pass

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
from firmware.stream import RING, StreamReceiver


class Media:
    def __init__(self, hal, cfg, wants, emit=None, now=None, open_connection=None):
        self.hal = hal
        self.client = Client(cfg.files_host, cfg.files_port, cfg.broker_user, cfg.broker_password,
                             open_connection)
        self.clips = ClipCache(hal, hal.fs, cfg.clip_kb * 1024, self.client, wants, emit, now)
        self.stream = None
        self._ring = self._head = None  # allocated at the first stream, then kept (no fragmentation)

    def open_clip(self, sha):
        return self.clips.open(sha)

    def clip_state(self, sha):
        return self.clips.state(sha)

    def open_stream(self, stream_id):
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        if self._ring is None:
            self._ring = bytearray(RING)
            self._head = bytearray(HEAD_MAX)
        self.stream = StreamReceiver(self.hal, self.client, stream_id, self._ring, self._head)
        return self.stream

    def need(self, *_ignored):
        self.clips.need()

    async def run(self):
        await self.clips.run()

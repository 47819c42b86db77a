"""The node's audio sources for the player: verified clips from flash, live streams from the gateway.

`Media` is what the Loudspeaker calls (docs/audio.md sections 4-7):
  open_clip(sha) -> ClipSource or None      clip_state(sha) -> "ready" | "fetching" | "missing" | "bad"
  open_stream(stream_id) -> StreamReceiver  (one at a time: opening one closes the previous)
A source: readinto(buf) -> bytes of whole 256-byte blocks (0: none yet; never blocks), ended,
lost, bad, samples (clips), seek(sample_offset), close().
The node tells it when its wants change (`need()`) and runs `run()`, the clip fetch task.
"""
from firmware.clips import ClipCache
from firmware.http import Client
from firmware.stream import StreamReceiver


class Media:
    def __init__(self, hal, cfg, wants, emit=None, now=None, open_connection=None):
        self.hal = hal
        self.client = Client.for_config(cfg, open_connection)  # HTTPS when the config's files.tls says so
        self.clips = ClipCache(hal, hal.fs, cfg.clip_kb * 1024, self.client, wants, emit, now)
        self.stream = None

    def open_clip(self, sha):
        return self.clips.open(sha)

    def clip_state(self, sha):
        return self.clips.state(sha)

    def open_stream(self, stream_id):
        """Starts receiving at once; the clip download in flight (if any) is dropped and resumed
        once the stream is over: the link and the heap go to the live audio. The ring (in
        one-block segments) is made by the stream's task once that download let go of its buffers."""
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        clips = self.clips
        clips.pause()
        self.stream = clips.stream = StreamReceiver(self.hal, self.client, stream_id,
                                                    busy=lambda: clips.fetching is not None)
        return self.stream

    def need(self, *_ignored):
        self.clips.need()

    async def run(self):
        await self.clips.run()


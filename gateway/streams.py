"""Live streams: a microphone, a relayed URL or file, or a browser recording pushed in chunks,
converted by ffmpeg to the node format and fanned out to every listening node.

`StreamHub` (owned by the event loop, all state in memory) runs one ffmpeg
process a stream: its input is ALSA (`mic`), a URL or file (`url`, read at
native rate) or its own stdin (`push`: chunks of a webm/ogg recording, or raw
s16le 16 kHz mono PCM, as staff send them); its output is 16 kHz mono
IMA-ADPCM in 256-byte blocks (docs/audio.md section 1) written raw to a pipe
(`-f data`: no WAV header, every packet one block), flushed at every packet.

The hub keeps a ring of the last ~0.5 s of blocks. A node that connects gets
that ring, then every new block, until the stream ends; each listener has a
bounded queue (~3 s): one that falls further behind is dropped (its
connection ends; the node reconnects at the live edge), so a slow node never
slows the others or the stream.

`Streams` is the staff side: starting a stream also sends broadcast_now
(src "stream", the stream id) to the loudspeakers of its zones, through the
emergency service for emergency priority or the same fan-out at a lower one;
stopping a stream (or its end) sends stop_broadcast to the same nodes.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from gateway.commands import CommandService
from gateway.db import Database
from gateway.emergency import EXPIRES_S, Emergencies
from gateway.errors import Conflict, GatewayError, NotFound
from gateway.registry import Registry, has_speaker
from protocol import commands as ops
from protocol import ima
from protocol.plan import EMERGENCY, PRIORITY_NAMES

BLOCK = ima.BLOCK_BYTES
BLOCK_S = ima.BLOCK_SAMPLES / ima.RATE  # 31.6 ms of audio a block
KINDS = ("mic", "url", "push")
PUSH_FORMATS = ("auto", "s16le")  # auto: ffmpeg probes (webm/opus, ogg); s16le: raw PCM 16 kHz mono
URL_SCHEMES = ("http://", "https://", "rtsp://", "rtmp://", "file:")
MAX_CHUNK = 1 << 20
STOP_DELAY_S = 2.0  # a stream that ended by itself is stopped on the nodes after their pre-buffer played

# ffmpeg: low-latency input, node format out as raw blocks on stdout. (Not `-fflags nobuffer`: it
# throws away the packets read while probing, the first ~1 s of a file or of a pushed recording.)
INPUT_FLAGS = ["-flags", "low_delay", "-probesize", "32", "-analyzeduration", "0"]
OUTPUT_FLAGS = ["-map", "0:a:0", "-vn", "-ar", str(ima.RATE), "-ac", "1", "-c:a", "adpcm_ima_wav",
                "-block_size", str(BLOCK), "-fflags", "+bitexact", "-map_metadata", "-1",
                "-flush_packets", "1", "-f", "data", "pipe:1"]


def _protocols(source: str) -> str:
    """What ffmpeg may open for this source: a remote playlist must not reach local files."""
    if source.startswith(("http://", "https://")):
        return "http,https,tcp,tls,crypto"
    if source.startswith(("rtsp://", "rtmp://")):
        return "rtsp,rtmp,rtp,udp,tcp,tls"
    return "file"


def _fail(code: str, vi: str, en: str, field: str | None = None, status: int | None = None) -> GatewayError:
    return GatewayError(code, vi, en, field, status=status)


def _unknown(stream_id: str) -> NotFound:
    return NotFound("stream.unknown", "Không có luồng phát trực tiếp %s" % stream_id,
                    "No live stream %s" % stream_id, "stream")


class StreamClient:
    """One listening node: a bounded queue of blocks the HTTP response drains."""

    def __init__(self, node_id: str, limit: int, first: list[bytes]) -> None:
        self.node_id = node_id
        self.limit = limit
        self.buf: deque[bytes] = deque(first)
        self.wake = asyncio.Event()
        self.done = False  # no more blocks will come (stream ended or client dropped)
        self.dropped = False  # fell too far behind
        self.dropped_event = asyncio.Event()
        self.sent = 0  # blocks handed to the connection

    def put(self, block: bytes) -> bool:
        """Queue a block; False (and the client is dropped) when its queue is full."""
        if len(self.buf) >= self.limit:
            self.dropped = self.done = True
            self.buf.clear()
            self.wake.set()
            self.dropped_event.set()
            return False
        self.buf.append(block)
        self.wake.set()
        return True

    def finish(self) -> None:
        self.done = True
        self.wake.set()

    async def blocks(self) -> AsyncIterator[bytes]:
        """What is queued, coalesced, as it comes; returns when the stream ended (after the rest)
        or at once when dropped."""
        while True:
            if self.buf and not self.dropped:
                n = len(self.buf)
                data = b"".join(self.buf)
                self.buf.clear()
                self.sent += n
                yield data
            elif self.done:
                return
            else:
                self.wake.clear()
                await self.wake.wait()


class LiveStream:
    def __init__(self, stream_id: str, kind: str, zones: list[str], source: str | None, fmt: str,
                 max_seconds: float, ring_blocks: int) -> None:
        self.id = stream_id
        self.kind = kind
        self.zones = zones
        self.source = source
        self.fmt = fmt
        self.max_seconds = max_seconds
        self.started = time.time()
        self.ring: deque[bytes] = deque(maxlen=ring_blocks)
        self.clients: set[StreamClient] = set()
        self.blocks = 0
        self.dropped = 0  # listeners dropped for being too slow
        self.proc: asyncio.subprocess.Process | None = None
        self.first_block = asyncio.Event()
        self.ended = asyncio.Event()
        self.why: str | None = None  # why it ended
        self.stderr = bytearray()  # ffmpeg's last words
        self.tasks: list[asyncio.Task[None]] = []
        self.stderr_task: asyncio.Task[None] | None = None
        self.push_lock = asyncio.Lock()
        self.last_push = time.monotonic()
        self.final = False  # push: the last chunk came
        self.info: dict[str, Any] = {}  # the staff side's: priority, volume, batch, user

    @property
    def live(self) -> bool:
        return self.why is None

    def to_json(self) -> dict[str, Any]:
        return dict(self.info, id=self.id, kind=self.kind, zones=list(self.zones), source=self.source,
                    started=self.started, live=self.live, why=self.why, seconds=round(self.blocks * BLOCK_S, 2),
                    listeners=len(self.clients), nodes=sorted(c.node_id for c in self.clients),
                    dropped=self.dropped)


class StreamHub:
    """Live streams on the event loop: ffmpeg processes in, node listeners out. State is in memory:
    a gateway restart ends every stream (the nodes report stream_lost and reconnect in vain)."""

    def __init__(self, *, log: Callable[[str], None], mic_device: str = "default", ffmpeg: str = "ffmpeg",
                 ring_s: float = 0.5, client_queue_s: float = 3.0, readrate: float = 1.0,
                 push_idle_s: float = 20.0, start_timeout_s: float = 10.0, max_streams: int = 4) -> None:
        self.log = log
        self.mic_device = mic_device
        self.ffmpeg = ffmpeg
        self.ring_blocks = max(1, round(ring_s / BLOCK_S))
        self.client_blocks = max(self.ring_blocks + 1, round(client_queue_s / BLOCK_S))
        self.readrate = readrate  # how fast `url` input is read: 1 = real time (-re); tests go faster
        self.push_idle_s = push_idle_s
        self.start_timeout_s = start_timeout_s
        self.max_streams = max_streams
        self.streams: dict[str, LiveStream] = {}
        self.on_end: list[Callable[[LiveStream], None]] = []

    # ---- the ffmpeg command ---------------------------------------------------
    def command(self, kind: str, source: str | None, fmt: str) -> list[str]:
        cmd = [self.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats"]
        if kind == "mic":
            cmd += INPUT_FLAGS + ["-f", "alsa", "-i", self.mic_device]
        elif kind == "url":
            if source is None:
                raise ValueError("a url stream needs its source")
            cmd += ["-readrate", "%g" % self.readrate, "-protocol_whitelist", _protocols(source)] + INPUT_FLAGS
            cmd += ["-i", source]
        else:
            raw = ["-f", "s16le", "-ar", str(ima.RATE), "-ac", "1"] if fmt == "s16le" else []
            cmd += INPUT_FLAGS + raw + ["-i", "pipe:0"]
        return cmd + OUTPUT_FLAGS

    def _check(self, kind: str, source: str | None, fmt: str, max_seconds: float) -> None:
        if kind not in KINDS:
            raise _fail("stream.kind", "Loại luồng phải là mic, url hoặc push", "Stream kind must be mic, url or push",
                        "kind")
        if kind == "url":
            if not source or not isinstance(source, str) or len(source) > 2000:
                raise _fail("stream.url", "Cần địa chỉ luồng hoặc đường dẫn tệp", "A stream URL or file path is needed",
                            "url")
            if not source.startswith(URL_SCHEMES) and not os.path.isfile(source):
                raise _fail("stream.url", "Địa chỉ luồng không hợp lệ hoặc tệp không có: %s" % source,
                            "Not a stream URL (http, https, rtsp, rtmp) or an existing file: %s" % source, "url")
        elif source is not None:
            raise _fail("stream.url", "Chỉ luồng loại url mới có địa chỉ", "Only a url stream takes a URL", "url")
        if fmt not in PUSH_FORMATS or (fmt != "auto" and kind != "push"):
            raise _fail("stream.format", "Định dạng đẩy lên phải là auto hoặc s16le (chỉ cho loại push)",
                        "The push format must be auto or s16le (push streams only)", "format")
        if not 1 <= max_seconds <= 6 * 3600:
            raise _fail("stream.max_seconds", "Thời lượng tối đa từ 1 giây đến 6 giờ",
                        "max_seconds must be 1 s to 6 h", "max_seconds")
        if len(self.streams) >= self.max_streams:
            raise _fail("stream.busy", "Đã có %d luồng trực tiếp; hãy dừng bớt" % len(self.streams),
                        "%d live streams already: stop one first" % len(self.streams), status=409)

    # ---- lifecycle -------------------------------------------------------------
    async def start(self, stream_id: str, kind: str, zones: list[str], *, source: str | None = None,
                    fmt: str = "auto", max_seconds: float = 600) -> LiveStream:
        """Start ffmpeg for a stream. A mic or url stream is returned once its first block came
        (GatewayError if ffmpeg fails or nothing comes within start_timeout_s); a push stream at once."""
        self._check(kind, source, fmt, max_seconds)
        stream = LiveStream(stream_id, kind, zones, source, fmt, max_seconds, self.ring_blocks)
        try:
            stream.proc = await asyncio.create_subprocess_exec(
                *self.command(kind, source, fmt),
                stdin=asyncio.subprocess.PIPE if kind == "push" else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise _fail("stream.ffmpeg", "Không chạy được ffmpeg: %s" % exc, "Cannot run ffmpeg: %s" % exc, status=503)
        self.streams[stream_id] = stream
        stream.tasks = [asyncio.create_task(self._pump(stream)), asyncio.create_task(self._watchdog(stream))]
        stream.stderr_task = asyncio.create_task(self._stderr(stream))  # ends with the process
        if kind != "push":
            waiters = [asyncio.ensure_future(stream.first_block.wait()), asyncio.ensure_future(stream.ended.wait())]
            await asyncio.wait(waiters, timeout=self.start_timeout_s, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            if not stream.first_block.is_set():
                await self._finish(stream, "failed")
                tail = stream.stderr.decode("utf-8", "replace").strip()[-300:] or "no audio"
                raise _fail("stream.source", "Không nhận được âm thanh từ nguồn: %s" % tail,
                            "No audio from the source: %s" % tail, "url" if kind == "url" else "kind")
        self.log("stream %s started (%s, zones %s)" % (stream_id, kind, ",".join(zones)))
        return stream

    async def push(self, stream_id: str, chunk: bytes, final: bool = False) -> LiveStream:
        """Feed the next chunk of a push stream's recording (in order); `final`: it was the last."""
        stream = self.get(stream_id)
        if stream is None:
            raise _unknown(stream_id)
        if stream.kind != "push":
            raise Conflict("stream.not_push", "Luồng %s không nhận dữ liệu đẩy lên" % stream_id,
                           "Stream %s does not take pushed chunks" % stream_id)
        if len(chunk) > MAX_CHUNK:
            raise _fail("stream.chunk", "Mỗi phần tối đa 1 MiB", "A chunk is at most 1 MiB", status=413)
        async with stream.push_lock:
            proc = stream.proc
            if stream.final or proc is None or proc.stdin is None or not stream.live:
                raise Conflict("stream.ended", "Luồng %s đã kết thúc" % stream_id, "Stream %s has ended" % stream_id)
            stream.last_push = time.monotonic()
            try:
                if chunk:
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
                if final:
                    stream.final = True
                    proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                raise Conflict("stream.ended", "Luồng %s đã kết thúc" % stream_id, "Stream %s has ended" % stream_id)
        return stream

    async def stop(self, stream_id: str, why: str = "stopped") -> LiveStream:
        """End a stream now: listeners get what they have queued, then their connection closes."""
        stream = self.get(stream_id)
        if stream is None:
            raise _unknown(stream_id)
        await self._finish(stream, why)
        return stream

    async def end(self, stream: LiveStream, why: str) -> None:
        """End this stream if it is still live (no error when it has ended already)."""
        await self._finish(stream, why)

    async def close(self) -> None:
        """Stop every stream (the gateway stops)."""
        for stream_id in list(self.streams):
            await self.stop(stream_id, "shutdown")

    def get(self, stream_id: str) -> LiveStream | None:
        return self.streams.get(stream_id)

    def live(self) -> list[LiveStream]:
        return sorted(self.streams.values(), key=lambda s: s.started)

    # ---- listeners -------------------------------------------------------------
    def attach(self, stream: LiveStream, node_id: str) -> StreamClient:
        """A new listener, starting with the ring (the last ~0.5 s) so its playback can begin at once."""
        client = StreamClient(node_id, self.client_blocks, list(stream.ring))
        if stream.live:
            stream.clients.add(client)
        else:
            client.finish()
        return client

    def detach(self, stream: LiveStream, client: StreamClient) -> None:
        stream.clients.discard(client)
        client.finish()

    def _publish(self, stream: LiveStream, block: bytes) -> None:
        stream.ring.append(block)
        stream.blocks += 1
        slow = [c for c in stream.clients if not c.put(block)]
        for client in slow:
            stream.clients.discard(client)
            stream.dropped += 1
            self.log("stream %s: %s fell %d blocks behind and was dropped" % (stream.id, client.node_id, client.limit))
        stream.first_block.set()

    # ---- tasks -----------------------------------------------------------------
    async def _pump(self, stream: LiveStream) -> None:
        proc = stream.proc
        if proc is None or proc.stdout is None:
            return
        why = "ended"
        eof = False
        try:
            while True:
                try:
                    block = await proc.stdout.readexactly(BLOCK)
                except asyncio.IncompleteReadError:  # the source ended (a short tail is not a block)
                    eof = True
                    break
                self._publish(stream, block)
                await asyncio.sleep(0)  # a fast source must not starve the listeners
        except Exception as exc:  # a broken pipe: the stream ends, the gateway goes on
            why = "failed"
            self.log("stream %s: %r" % (stream.id, exc))
        if eof:  # its output ended: ffmpeg is exiting (stderr has its own reader); its status tells how
            await proc.wait()
            if stream.live and proc.returncode:
                why = "failed"
        await self._finish(stream, why)  # (after an error, ffmpeg may still run: _finish ends it)

    async def _stderr(self, stream: LiveStream) -> None:
        proc = stream.proc
        if proc is None or proc.stderr is None:
            return
        while True:
            data = await proc.stderr.read(4096)
            if not data:
                return
            stream.stderr += data
            del stream.stderr[:-4096]

    async def _watchdog(self, stream: LiveStream) -> None:
        """max_seconds, and a push stream nobody feeds any more."""
        deadline = time.monotonic() + stream.max_seconds
        while stream.live:
            now = time.monotonic()
            if now >= deadline:
                await self._finish(stream, "max_seconds")
                return
            if stream.kind == "push" and not stream.final and now - stream.last_push > self.push_idle_s:
                await self._finish(stream, "push_idle")
                return
            await asyncio.sleep(min(1.0, deadline - now))

    async def _finish(self, stream: LiveStream, why: str) -> None:
        if not stream.live:
            return
        stream.why = why
        self.streams.pop(stream.id, None)
        for client in list(stream.clients):
            client.finish()
        stream.clients.clear()
        current = asyncio.current_task()
        others = [task for task in stream.tasks if task is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if stream.proc is not None:
            await _reap(stream.proc)
        if stream.stderr_task is not None:
            await asyncio.wait([stream.stderr_task], timeout=1)
        stream.ended.set()  # and its ffmpeg is gone
        tail = stream.stderr.decode("utf-8", "replace").strip()
        self.log("stream %s ended (%s) after %.1f s%s" % (stream.id, why, stream.blocks * BLOCK_S,
                                                       ": " + tail[-300:] if tail and why == "failed" else ""))
        for fn in self.on_end:
            try:
                fn(stream)
            except Exception as exc:  # a hook must not keep the stream from ending
                self.log("stream end hook failed: %r" % exc)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """End a stream's ffmpeg (SIGTERM, SIGKILL 3 s later) and collect it, its stdout read to EOF meanwhile.

    The drain is what makes this end. Once the pump is cancelled nobody reads stdout, and asyncio's pipe
    reader stops reading when 128 KiB wait in its buffer (16 s of stream; a fast source or a busy loop
    gets there at once). ffmpeg then sits blocked on the full pipe (a process that does not act on
    SIGTERM in time is killed), and the paused reader never sees the EOF; but asyncio's proc.wait() (Python 3.11)
    returns only once every pipe has closed too. It never returned, and neither did whoever ended the
    stream: the DELETE /api/streams handler, a failed start (POST), the watchdog, the gateway's stop."""
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()  # a push stream: EOF for ffmpeg's input, and one pipe less to wait for
    drain = asyncio.ensure_future(_drain(proc.stdout)) if proc.stdout is not None else None
    try:
        if proc.returncode is None:
            try:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 3)
            except ProcessLookupError:
                pass
            except asyncio.TimeoutError:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
        await proc.wait()  # killed by now at the latest: its pipes reach EOF (stdout's read by the drain)
    finally:
        if drain is not None:
            if not drain.done():  # it exited earlier: what is left in the pipe is read (or given up on)
                await asyncio.wait([drain], timeout=1)
                drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)


async def _drain(reader: asyncio.StreamReader) -> None:
    """Read and drop everything until EOF."""
    try:
        while await reader.read(1 << 16):
            pass
    except (ValueError, RuntimeError, ConnectionError):  # closed meanwhile
        pass


def priority_of(value: Any) -> int:
    """0..2 or "routine" / "priority" / "emergency"."""
    if isinstance(value, str) and value in PRIORITY_NAMES:
        return PRIORITY_NAMES.index(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= EMERGENCY:
        return value
    raise _fail("stream.priority", "Mức ưu tiên phải là routine, priority hoặc emergency",
                "Priority must be routine, priority or emergency", "priority")


class Streams:
    """Staff-side live streams: the hub's stream plus the broadcast_now that tells the loudspeakers."""

    def __init__(self, *, hub: StreamHub, db: Database, registry: Registry, commands: CommandService,
                 emergencies: Emergencies, log: Callable[[str], None]) -> None:
        self.hub = hub
        self.db = db
        self.registry = registry
        self.commands = commands
        self.emergencies = emergencies
        self.log = log
        self._tasks: set[asyncio.Task[None]] = set()
        hub.on_end.append(self._ended)

    async def start(self, *, kind: str, zones: list[str] | str, url: str | None = None, fmt: str = "auto",
                    priority: Any = EMERGENCY, volume: int = 100, max_seconds: int = 600,
                    user: str | None = None) -> dict[str, Any]:
        """Start a live stream and air it on the loudspeakers of `zones`; returns the stream (to_json)
        with the broadcast's batch and progress."""
        prio = priority_of(priority)
        chosen = self.emergencies.zones(zones)
        if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
            raise _fail("stream.volume", "Âm lượng từ 0 đến 100", "Volume must be 0 to 100", "volume")
        stream_id = "st%d" % self.db.next_counter("stream")
        stream = await self.hub.start(stream_id, kind, chosen, source=url, fmt=fmt, max_seconds=max_seconds)
        stream.info.update(priority=PRIORITY_NAMES[prio], volume=volume, user=user)
        try:
            batch = await self._air(stream, prio, volume, int(max_seconds), user)
        except BaseException:
            await self.hub.end(stream, "failed")
            raise
        stream.info["batch"] = batch
        return dict(stream.to_json(), progress=self.commands.batch_progress(batch))

    async def _air(self, stream: LiveStream, prio: int, volume: int, dur: int, user: str | None) -> str:
        if prio == EMERGENCY:
            started = await self.emergencies.start(stream.zones, "stream", stream.id, volume, dur, user)
            batch: str = started["batch"]
            return batch
        # a lower priority: the same fan-out as an emergency's (gateway/emergency.py), at this priority
        nodes = [n for n in self.registry.nodes_in_zones(stream.zones) if has_speaker(n)]
        batch = "e%d" % self.db.next_counter("batch")
        commands = [(n["id"], ops.BROADCAST_NOW,
                     {"id": batch, "dur": dur, "src": "stream", "stream": stream.id, "vol": volume,
                      "zones": [z for z in n["zones"] if z in stream.zones], "prio": prio}) for n in nodes]
        await self.commands.fan_out(commands, user=user, batch=batch, expires_s=EXPIRES_S)
        return batch

    async def push(self, stream_id: str, chunk: bytes, final: bool) -> dict[str, Any]:
        stream = await self.hub.push(stream_id, chunk, final)
        return stream.to_json()

    async def stop(self, stream_id: str, user: str | None = None) -> dict[str, Any]:
        """End the stream and stop its broadcast on the nodes at once."""
        stream = await self.hub.stop(stream_id, "stopped")
        stopped = await self._stop_broadcast(stream, user)
        return dict(stream.to_json(), stop=stopped)

    def list(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.hub.live()]

    def _ended(self, stream: LiveStream) -> None:
        if stream.why == "stopped":
            return  # stop() sends the stop itself
        task = asyncio.ensure_future(self._stop_later(stream))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop_later(self, stream: LiveStream) -> None:
        await asyncio.sleep(STOP_DELAY_S)  # the nodes' pre-buffer plays out first
        try:
            await self._stop_broadcast(stream, "stream-end")
        except Exception as exc:
            self.log("stream %s: stopping its broadcast failed: %r" % (stream.id, exc))

    async def _stop_broadcast(self, stream: LiveStream, user: str | None) -> dict[str, Any] | None:
        batch = stream.info.get("batch")
        if not batch or stream.info.get("stopping") or not self.commands.batch_progress(batch)["total"]:
            return None
        stream.info["stopping"] = True
        stopped: dict[str, Any] = await self.emergencies.stop(batch, user)
        stream.info["stop_batch"] = stopped["batch"]
        return stopped

    async def close(self) -> None:
        await self.hub.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

"""Network faults between a group of simulated nodes and the MQTT broker: a TCP proxy per group.

    proxy = LinkProxy("127.0.0.1", broker.port, name="thon-2", rng=random.Random(7))
    port = await proxy.start()     # the group's nodes connect here instead of to the broker
    proxy.cut(); proxy.heal(); proxy.blackhole(); proxy.delay(300, jitter_ms=50)
    await proxy.stop()

asyncio protocols, no task per connection: bytes are forwarded from the read callback, so a healthy
link adds no latency. Jitter is drawn from the proxy's rng once per chunk: same seed, same delays.
"""
import asyncio
import logging
import random
from collections import deque

CHUNK = 64 * 1024             # one socket read at most
QUEUE_LIMIT = 1024 * 1024     # delayed bytes held per direction before the sender is paused
CONNECT_TIMEOUT = 5.0         # to open the broker side of a connection
STOP_TIMEOUT = 5.0
OK, CUT, BLACKHOLE = "ok", "cut", "blackhole"


class _Side(asyncio.BufferedProtocol):
    """One socket of a proxied connection (the node's or the broker's), and the bytes it has read that
    are on their way to the other socket: delayed chunks wait in `queue`, in order, until due."""

    def __init__(self, link, counter):
        self.link, self.proxy, self.counter = link, link.proxy, counter   # counter: "bytes_up" or "bytes_down"
        self.peer = self.transport = self.timer = None
        self.lost = False
        self.pauses = set()   # why reading is paused: "connecting", "peer full", "queue full"
        self.queue = deque()  # (due, chunk); chunk None: close the peer after what is before it
        self.queued = 0
        self.last_due = 0.0
        self._buf = bytearray(CHUNK)

    def connection_made(self, transport):
        self.transport = transport
        if self is self.link.node:
            self.link.admit()
        elif self.link.closed:   # the node went away while this side was being opened
            transport.abort()

    def get_buffer(self, sizehint):
        return self._buf

    def buffer_updated(self, nbytes):
        self.link.received(self, bytes(self._buf[:nbytes]))

    def eof_received(self):
        return False   # EOF ends the whole connection (MQTT never half-closes); connection_lost tells the link

    def connection_lost(self, exc):
        self.lost = True
        self.link.side_lost(self)

    def pause_writing(self):   # the peer sends faster than this socket drains
        self.peer.hold("peer full")

    def resume_writing(self):
        self.peer.release("peer full")

    def hold(self, reason):
        self.pauses.add(reason)
        if self.transport is not None:
            self.transport.pause_reading()

    def release(self, reason):
        self.pauses.discard(reason)
        if not self.pauses and self.transport is not None:
            self.transport.resume_reading()

    def forward(self, chunk):
        if self.proxy.delay_ms == (0, 0) and not self.queue:
            return self._write(chunk)
        self.last_due = max(self.proxy.due(), self.last_due)   # never overtake an earlier chunk
        self.queue.append((self.last_due, chunk))
        self.queued += len(chunk or b"")
        if self.queued > QUEUE_LIMIT:
            self.hold("queue full")
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_at(self.last_due, self._deliver)

    def _deliver(self):
        loop = asyncio.get_running_loop()
        while self.queue and self.queue[0][0] <= loop.time():
            chunk = self.queue.popleft()[1]
            self.queued -= len(chunk or b"")
            self._write(chunk)
        self.timer = loop.call_at(self.queue[0][0], self._deliver) if self.queue else None
        if self.queued <= QUEUE_LIMIT:
            self.release("queue full")

    def _write(self, chunk):
        transport = self.peer.transport
        if transport is None or transport.is_closing():
            return
        if chunk is None:
            transport.close()   # an orderly end: what is buffered still goes out
        else:
            transport.write(chunk)

    def drop(self):
        """Lose what is in flight: the link died under it."""
        self.proxy.stats["bytes_dropped"] += self.queued
        self.queue.clear()
        self.queued = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.release("queue full")


class _Link:
    """One node connection through the proxy: the node's socket and the broker's socket."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.node, self.broker = _Side(self, "bytes_up"), _Side(self, "bytes_down")
        self.node.peer, self.broker.peer = self.broker, self.node
        self.held = False        # admitted during a blackhole: never connected upstream
        self.closed = False      # nothing more is forwarded
        self.connecting = None   # the task opening the broker side

    def admit(self):
        proxy, peer = self.proxy, self.node.transport.get_extra_info("peername")
        if proxy.state == CUT:
            proxy.stats["refused"] += 1
            proxy.log("%s: refused %s (cut)" % (proxy.name, peer))
            self.closed = True
            return self.node.transport.abort()
        proxy.stats["accepted"] += 1
        proxy.links.add(self)
        if proxy.state == BLACKHOLE:
            self.held = True
            return proxy.log("%s: holding %s (blackhole)" % (proxy.name, peer))
        self.node.hold("connecting")
        self.connecting = asyncio.get_running_loop().create_task(self._connect(peer))
        proxy.tasks.add(self.connecting)
        self.connecting.add_done_callback(proxy.tasks.discard)

    async def _connect(self, peer):
        proxy = self.proxy
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await asyncio.get_running_loop().create_connection(
                    lambda: self.broker, proxy.upstream_host, proxy.upstream_port)
        except (OSError, TimeoutError) as e:
            self.connecting = None   # so that abort() does not cancel this very task
            proxy.stats["upstream_failed"] += 1
            proxy.log("%s: broker %s:%s unreachable for %s: %s" % (
                proxy.name, proxy.upstream_host, proxy.upstream_port, peer, str(e) or "no answer in time"))
            return self.abort()
        self.connecting = None
        self.node.release("connecting")

    def received(self, side, chunk):
        if self.closed or self.held or self.proxy.state != OK:
            self.proxy.stats["bytes_dropped"] += len(chunk)
        else:
            self.proxy.stats[side.counter] += len(chunk)
            side.forward(chunk)

    def side_lost(self, side):
        if not (self.closed or self.held or self.proxy.state != OK):
            # an orderly end reaches the other side after the bytes in flight (never through a blackhole)
            self.closed = True
            if self.connecting is not None:
                self.connecting.cancel()
            side.peer.drop()
            side.forward(None)
        if all(s.lost or s.transport is None for s in (self.node, self.broker)) and self in self.proxy.links:
            self.proxy.links.discard(self)
            self.proxy.stats["closed"] += 1

    def abort(self):
        """End both sides at once, as a lost link does: reset, nothing in flight delivered."""
        self.closed = True
        if self.connecting is not None:
            self.connecting.cancel()
        for side in (self.node, self.broker):
            side.drop()
            if side.transport is not None:
                side.transport.abort()


class LinkProxy:
    """A TCP proxy between a group of nodes and the broker: nodes connect to `port`, the proxy connects upstream.
    Faults are applied to every connection through it, now and later."""

    def __init__(self, upstream_host, upstream_port, *, host="127.0.0.1", port=0, name="", rng=None, log=None):
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.host, self.port, self.name = host, port, name or "link"
        self.rng = rng if rng is not None else random.Random(self.name)   # a str seed is stable across runs
        self.log = log or logging.getLogger("denloa.simulator.netfaults").info
        self.state = OK
        self.delay_ms = (0, 0)   # (delay, jitter)
        # connections accepted (held by a blackhole included) / refused (cut) / closed; bytes_up: node -> broker
        self.stats = {"accepted": 0, "refused": 0, "closed": 0, "upstream_failed": 0,
                      "bytes_up": 0, "bytes_down": 0, "bytes_dropped": 0}
        self.links, self.tasks = set(), set()
        self._server = None

    async def start(self):
        """Listen; returns the bound port (port=0 picks a free one)."""
        if self._server is None:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: _Link(self).node, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            self.log("%s: %s:%d -> %s:%s" % (self.name, self.host, self.port, self.upstream_host, self.upstream_port))
        return self.port

    async def stop(self):
        """Stop listening and end every connection; returns once nothing of this proxy is left running."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for link in list(self.links):
            link.abort()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=STOP_TIMEOUT)
        await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT
        while self.links and loop.time() < deadline:   # connection_lost callbacks run on the next turns
            await asyncio.sleep(0.005)

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    @property
    def connections(self):
        """Connections through the proxy now, those a blackhole holds included."""
        return len(self.links)

    def cut(self):
        """A partition: close every current connection (both sides) and refuse new ones until heal()."""
        self.state = CUT
        self.log("%s: cut, closing %d connections" % (self.name, len(self.links)))
        for link in list(self.links):
            link.abort()

    def blackhole(self):
        """A partition where TCP stays up but nothing flows either way (a dead Wi-Fi uplink)."""
        self.state = BLACKHOLE
        self.log("%s: blackhole over %d connections" % (self.name, len(self.links)))
        for link in self.links:
            link.node.drop()
            link.broker.drop()

    def delay(self, ms, jitter_ms=0):
        """Add latency to every chunk: ms +/- jitter_ms (uniform, from the rng); order is preserved."""
        if ms < 0 or jitter_ms < 0:
            raise ValueError("%s: delay and jitter must be >= 0 ms, got %r and %r" % (self.name, ms, jitter_ms))
        self.delay_ms = (ms, jitter_ms)
        self.log("%s: delay %s ms +/- %s ms" % (self.name, ms, jitter_ms))

    def heal(self):
        """Back to normal, no delay either. After a blackhole the connections it held are closed,
        as a real link loss would end them, so clients reconnect cleanly."""
        was, self.state, self.delay_ms = self.state, OK, (0, 0)
        self.log("%s: healed (was %s)" % (self.name, was))
        if was == BLACKHOLE:
            for link in list(self.links):
                link.abort()

    def due(self):
        """The loop time at which a chunk read now is to be written."""
        ms, jitter = self.delay_ms
        if jitter:
            ms = max(0.0, ms + self.rng.uniform(-jitter, jitter))
        return asyncio.get_running_loop().time() + ms / 1000.0

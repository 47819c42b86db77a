"""Network faults between a group of simulated nodes and the MQTT broker: a TCP proxy per group.

    proxy = LinkProxy("127.0.0.1", broker.port, name="thon-2", rng=random.Random(7))
    port = await proxy.start()       # the group's nodes connect here instead of to the broker
    proxy.cut(); ...; proxy.heal()   # a partition and its end
    proxy.blackhole()                # the link looks up but nothing flows: keepalives time out
    proxy.delay(300, jitter_ms=50)   # latency per chunk, order kept
    await proxy.stop()

Built on asyncio protocols: bytes are forwarded from the read callback, so a healthy link adds no
task and no latency, and cut() takes effect before it returns. Delays are drawn from the proxy's
own rng (one draw per chunk, only while jitter is set): the same seed gives the same delays.
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
    """One socket of a proxied connection (the node's or the broker's); what it reads goes to its link."""

    def __init__(self, link, role):
        self.link, self.role = link, role
        self.transport = None
        self.lost = False
        self.pauses = set()   # why reading is paused: "connecting", "peer full", "queue full"
        self._buf = bytearray(CHUNK)

    def connection_made(self, transport):
        self.transport = transport
        if self.pauses:
            transport.pause_reading()
        if self.role == "node":
            self.link.admit()
        elif self.link.closed:   # the node went away while the broker side was being opened
            transport.abort()

    def get_buffer(self, sizehint):
        return self._buf

    def buffer_updated(self, nbytes):
        self.link.received(self, bytes(self._buf[:nbytes]))

    def eof_received(self):
        return False   # close this socket; connection_lost tells the link

    def connection_lost(self, exc):
        self.lost = True
        self.link.side_lost(self)

    def pause_writing(self):
        self.link.other(self).hold("peer full")

    def resume_writing(self):
        self.link.other(self).release("peer full")

    def hold(self, reason):
        self.pauses.add(reason)
        if self.transport is not None:
            self.transport.pause_reading()

    def release(self, reason):
        self.pauses.discard(reason)
        if not self.pauses and self.transport is not None:
            self.transport.resume_reading()

    @property
    def done(self):
        return self.lost or self.transport is None


class _Lane:
    """Bytes on their way in one direction; delayed chunks wait here, in order, until due."""

    def __init__(self, link, src, dst, counter):
        self.link, self.src, self.dst, self.counter = link, src, dst, counter
        self.queue = deque()   # (due, chunk); chunk None = close dst once everything before it is written
        self.queued = 0
        self.last_due = 0.0
        self.timer = None

    def push(self, chunk):
        proxy = self.link.proxy
        if not proxy.delayed and not self.queue:
            return self._write(chunk)
        due = max(proxy.due(), self.last_due)   # never overtake an earlier chunk, whatever the jitter
        self.last_due = due
        self.queue.append((due, chunk))
        self.queued += len(chunk or b"")
        if self.queued > QUEUE_LIMIT:
            self.src.hold("queue full")
        if self.timer is None:
            self._arm()

    def _arm(self):
        self.timer = asyncio.get_running_loop().call_at(self.queue[0][0], self._deliver)

    def _deliver(self):
        self.timer = None
        now = asyncio.get_running_loop().time()
        while self.queue and self.queue[0][0] <= now:
            chunk = self.queue.popleft()[1]
            self.queued -= len(chunk or b"")
            self._write(chunk)
        if self.queue:
            self._arm()
        else:
            self.src.release("queue full")

    def _write(self, chunk):
        transport = self.dst.transport
        if transport is None or transport.is_closing():
            return
        if chunk is None:
            transport.close()   # an orderly end: what is buffered is still sent
        else:
            transport.write(chunk)

    def drop(self):
        """Lose what is in flight (the link died under it)."""
        self.link.proxy.stats["bytes_dropped"] += self.queued
        self.queue.clear()
        self.queued = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.src.release("queue full")


class _Link:
    """One node connection through the proxy: the node's socket, the broker's socket, the bytes between."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.node, self.broker = _Side(self, "node"), _Side(self, "broker")
        self.up = _Lane(self, self.node, self.broker, "bytes_up")
        self.down = _Lane(self, self.broker, self.node, "bytes_down")
        self.held = False        # admitted during a blackhole: never connected upstream
        self.closed = False      # no more forwarding
        self.connecting = None   # the task opening the broker side

    def other(self, side):
        return self.broker if side is self.node else self.node

    def admit(self):
        proxy = self.proxy
        peer = self.node.transport.get_extra_info("peername")
        if proxy.state == CUT:
            proxy.stats["refused"] += 1
            proxy.log("%s: refused %s (cut)" % (proxy.name, peer))
            self.closed = True
            self.node.transport.abort()
            return
        proxy.stats["accepted"] += 1
        proxy.links.add(self)
        if proxy.state == BLACKHOLE:
            self.held = True
            proxy.log("%s: holding %s (blackhole)" % (proxy.name, peer))
            return
        self.node.hold("connecting")
        self.connecting = proxy.spawn(self._connect(peer))

    async def _connect(self, peer):
        proxy = self.proxy
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await asyncio.get_running_loop().create_connection(
                    lambda: self.broker, proxy.upstream_host, proxy.upstream_port)
        except (OSError, TimeoutError) as e:
            proxy.stats["upstream_failed"] += 1
            proxy.log("%s: broker %s:%s unreachable for %s: %s"
                      % (proxy.name, proxy.upstream_host, proxy.upstream_port, peer, e or "timed out"))
            self.abort()
            return
        finally:
            self.connecting = None
        self.node.release("connecting")

    def received(self, side, chunk):
        proxy = self.proxy
        if self.closed or self.held or proxy.state != OK:
            proxy.stats["bytes_dropped"] += len(chunk)
            return
        lane = self.up if side is self.node else self.down
        proxy.stats[lane.counter] += len(chunk)
        lane.push(chunk)

    def side_lost(self, side):
        if not (self.closed or self.held or self.proxy.state != OK):
            # an orderly end on one side reaches the other after the bytes in flight; in a blackhole
            # it does not reach it at all, as over a dead uplink
            self.closed = True
            if self.connecting is not None:
                self.connecting.cancel()
            (self.down if side is self.node else self.up).drop()
            (self.up if side is self.node else self.down).push(None)
        if self.node.done and self.broker.done and self in self.proxy.links:
            self.proxy.links.discard(self)
            self.proxy.stats["closed"] += 1

    def abort(self):
        """End both sides at once, as a lost link does: reset, nothing in flight delivered."""
        self.closed = True
        if self.connecting is not None:
            self.connecting.cancel()
        self.up.drop()
        self.down.drop()
        for side in (self.node, self.broker):
            if side.transport is not None:
                side.transport.abort()


class LinkProxy:
    """A TCP proxy between a group of nodes and the broker: nodes connect to `port`, the proxy connects upstream.
    Faults are applied to every connection through it, now and later."""

    def __init__(self, upstream_host, upstream_port, *, host="127.0.0.1", port=0, name="", rng=None, log=None):
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.host, self.port = host, port
        self.name = name or "link"
        self.rng = rng if rng is not None else random.Random(self.name)   # str seeds are stable across runs
        self.log = log or logging.getLogger("denloa.simulator.netfaults").info
        self.state = OK
        self.stats = {"accepted": 0, "refused": 0, "closed": 0, "upstream_failed": 0,
                      "bytes_up": 0, "bytes_down": 0, "bytes_dropped": 0}
        self.links = set()
        self._tasks = set()
        self._delay = (0, 0)
        self._server = None

    async def start(self):
        """Listen; returns the bound port (port=0 picks a free one)."""
        if self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(lambda: _Link(self).node, self.host, self.port)
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
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_TIMEOUT)
        try:
            await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT)
        except TimeoutError:
            self.log("%s: listener did not close within %s s" % (self.name, STOP_TIMEOUT))
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
        """Connections through the proxy now (including those held by a blackhole)."""
        return len(self.links)

    @property
    def delayed(self):
        return self._delay != (0, 0)

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
            link.up.drop()
            link.down.drop()

    def delay(self, ms, jitter_ms=0):
        """Add latency to every chunk: ms +/- jitter_ms (uniform, from the rng); order is preserved."""
        if ms < 0 or jitter_ms < 0:
            raise ValueError("%s: delay and jitter must be >= 0 ms, got %r and %r" % (self.name, ms, jitter_ms))
        self._delay = (ms, jitter_ms)
        self.log("%s: delay %s ms +/- %s ms" % (self.name, ms, jitter_ms))

    def heal(self):
        """Back to normal, delay included. After a blackhole, the held connections are closed, as a real
        link loss would end them, so clients reconnect cleanly."""
        was, self.state, self._delay = self.state, OK, (0, 0)
        self.log("%s: healed (was %s)" % (self.name, was))
        if was == BLACKHOLE:
            for link in list(self.links):
                link.abort()

    def due(self):
        """When a chunk read now is to be written (loop time)."""
        ms, jitter = self._delay
        if jitter:
            ms = max(0.0, ms + self.rng.uniform(-jitter, jitter))
        return asyncio.get_running_loop().time() + ms / 1000.0

    def spawn(self, coro):
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

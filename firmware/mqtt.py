"""The node's asyncio MQTT 3.1.1 client (MicroPython; also imports under CPython).

Behaviour after mqtt_as: the application never sees an OSError from a dropped
link. `run()` connects, reads, pings and reconnects with jittered exponential
backoff; `publish()` waits for the link; incoming messages go to a bounded
queue read with `next_message()` or `async for m in client.messages()`.
QoS 0 and 1 both ways. QoS 2 is refused: `subscribe()` rejects it, and a QoS 2
PUBLISH that a broker sends anyway is answered (PUBREC, then PUBCOMP) and
discarded, so the broker does not redeliver it forever.
The packets themselves (bytes in, bytes out) are `firmware.mqtt_packets`.
Everything lives on the instance: many clients can share one interpreter.
"""
import asyncio
import struct

from firmware.mqtt_packets import (
    CONNACK, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, UNSUBACK,
    MqttError, ack_packet, as_bytes, connack_refusal, connect_packet, decode_remaining_length,
    parse_connack, parse_pid, parse_publish, parse_suback, puback_packet, publish_packet, subscribe_packet,
)

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    from time import ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython: monotonic milliseconds, no wrap-around
    from time import monotonic

    def ticks_ms():
        return int(monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

_STABLE_MS = const(10000)  # a link that lasted this long resets the backoff


def _wait_for_ms(aw, ms):
    wait_for_ms = getattr(asyncio, "wait_for_ms", None)  # MicroPython; CPython takes seconds
    return wait_for_ms(aw, ms) if wait_for_ms else asyncio.wait_for(aw, ms / 1000)


def _why(exc):
    return "%s %s" % (type(exc).__name__, exc)


class MqttClient:
    def __init__(self, host, port, client_id, *, user=None, password=None, keepalive=60,
                 will=None, clean=False, max_queue=16, max_inflight=8,
                 backoff_min_ms=500, backoff_max_ms=60000, rand=None, log=None,
                 max_packet=20480, io_timeout_ms=10000, open_connection=None, tls=None):
        self._host, self._port = host, port
        self._tls = tls  # firmware.tls.Tls: MQTT over TLS, the broker verified against the site CA
        self._connect = connect_packet(client_id, keepalive, clean, will, user, password)
        self._keepalive_ms = keepalive * 1000
        self._max_queue = max(1, max_queue)
        self._max_inflight = max(1, max_inflight)
        self._backoff_min_ms = max(1, backoff_min_ms)
        self._backoff_max_ms = max(self._backoff_min_ms, backoff_max_ms)
        if rand is None:
            from os import urandom as rand
        self._random_bytes, self._log = rand, log
        self._max_packet, self._io_timeout_ms = max_packet, io_timeout_ms
        self._open_connection = open_connection or asyncio.open_connection  # injectable: fakes, simulated networks
        self.up = asyncio.Event()  # set on every CONNACK; the application clears it
        self.down = asyncio.Event()  # set on every drop of a link that was up; the application clears it
        self.dropped = 0
        self.last_error = None  # why the last connection failed or dropped, for status reports
        self._subscriptions = []  # [topic, qos], sent on every (re)connect
        self._suback_pending = {}  # pid -> topics awaiting SUBACK
        self._inflight = []  # [pid, packet, done event], oldest first
        self._incoming = []  # (topic, payload, retained), oldest first, at most max_queue
        self._last_pid = 0
        self._connection_number = 0  # counts CONNACKs: a send meant for an older link never lands on a newer one
        self._reader = self._writer = None
        self._connected = self._broken = self._closing = False
        self._link = asyncio.Event()  # the link is up and usable (internal twin of `up`)
        self._inflight_freed = asyncio.Event()  # an in-flight slot was freed
        self._message_queued = asyncio.Event()  # a message was queued (or the client closed)
        self._send_lock = asyncio.Lock()  # one packet at a time on the socket
        self._run_task = self._subscribe_task = None
        self._last_read_ms = self._last_write_ms = self._last_ping_ms = 0  # ticks of the last packet each way

    # ---- application API ---------------------------------------------------
    def is_up(self):
        return self._link.is_set()

    def subscribe(self, topic, qos=1):
        if qos not in (0, 1):
            raise ValueError("subscribe QoS must be 0 or 1 (QoS 2 is not supported), not %r" % (qos,))
        topic = as_bytes(topic)
        for sub in self._subscriptions:
            if sub[0] == topic:
                sub[1] = qos
                break
        else:
            self._subscriptions.append([topic, qos])
        if self.is_up():
            self._subscribe_task = asyncio.create_task(self._subscribe([(topic, qos)], self._connection_number))

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=None):
        payload = as_bytes(payload)
        packet = publish_packet(topic, payload, qos, retain, False, 1)  # validates before any wait
        deadline = None if timeout_ms is None else ticks_add(ticks_ms(), timeout_ms)
        while True:
            if self._closing:
                return False
            if qos and len(self._inflight) >= self._max_inflight:
                self._inflight_freed.clear()
                ok = await self._wait(self._inflight_freed, deadline)
            elif not self._link.is_set():
                ok = await self._wait(self._link, deadline)
            elif not qos:
                ok = await self._send(packet, self._connection_number)
                if ok:
                    return True
            else:
                break
            if not ok and deadline is not None and ticks_diff(deadline, ticks_ms()) <= 0:
                return False
        pid = self._new_pid()
        struct.pack_into("!H", packet, len(packet) - len(payload) - 2, pid)
        entry = [pid, packet, asyncio.Event()]
        self._inflight.append(entry)
        try:
            await self._send(packet, self._connection_number)  # if the link drops, run() resends it after the reconnect
            return await self._wait(entry[2], deadline)
        finally:  # on timeout the message is withdrawn: it may or may not have arrived
            self._inflight.remove(entry)
            self._inflight_freed.set()

    async def next_message(self, timeout_ms=None):
        deadline = None if timeout_ms is None else ticks_add(ticks_ms(), timeout_ms)
        while not self._incoming:
            if self._closing:
                return None
            self._message_queued.clear()
            if not await self._wait(self._message_queued, deadline):
                return None
        return self._incoming.pop(0)

    def messages(self):
        """`async for topic, payload, retained in client.messages()`; ends after close()."""
        return self

    def __aiter__(self):
        return self

    async def __anext__(self):
        message = await self.next_message()
        if message is None:
            raise StopAsyncIteration
        return message

    async def close(self):
        """Clean DISCONNECT (the broker drops the will) and stop run()."""
        self._closing = True
        if self.is_up():
            await self._send(DISCONNECT)
        self._stop()

    def abort(self):
        """Drop the socket without DISCONNECT, as a power cut does: the broker publishes the will."""
        self._closing = True
        self._stop()

    # ---- connection task ---------------------------------------------------
    async def run(self):
        self._run_task = asyncio.current_task()
        delay = 0
        try:
            while not self._closing:
                if delay:
                    await asyncio.sleep((delay * 3 // 4 + delay * self._random_bytes(1)[0] // 510) / 1000)  # +-25 %
                if self._closing:
                    break
                stable = await self._session()
                delay = self._backoff_min_ms if stable or not delay else min(delay * 2, self._backoff_max_ms)
        except asyncio.CancelledError:
            if not self._closing:
                raise
        finally:
            self._drop()
            self._run_task = None

    async def _session(self):
        """One connection from open to drop; True if it stayed up long enough to count as stable."""
        self._up_since = None  # ticks when this connection came up; None once it proved stable
        self._stable = False
        try:
            if self._tls is None:
                opening = self._open_connection(self._host, self._port)
            else:  # the handshake runs in the first write and reads below, yielding while it waits
                opening = self._tls.open(self._open_connection, self._host, self._port)
            self._reader, self._writer = await _wait_for_ms(opening, self._io_timeout_ms)
            self._broken = False
            if not await self._send(self._connect):
                return False
            first, body, _ = await _wait_for_ms(self._read_packet(), self._io_timeout_ms)
            if first != CONNACK:
                raise MqttError("expected CONNACK, got packet 0x%02x" % first)
            present, code = parse_connack(body)
            if code:
                self._error("broker refused the connection: %d %s"
                            % (code, connack_refusal(code)))
                return False
            self._connection_number += 1
            self._connected = True
            self._last_read_ms = self._last_write_ms = self._last_ping_ms = ticks_ms()
            if self._subscriptions:
                await self._subscribe([(s[0], s[1]) for s in self._subscriptions])
            for entry in list(self._inflight):  # unacknowledged QoS 1: same packet id, DUP set
                entry[1][0] |= 0x08
                await self._send(entry[1])
            if self._broken:
                raise MqttError("link lost while resuming the session")
            self._up_since = ticks_ms()
            self.last_error = None
            self._link.set()
            self.up.set()
            self._say("connected to %s:%s (session present: %s)" % (self._host, self._port, present))
            await self._read_loop()
        except (OSError, EOFError, MqttError, asyncio.TimeoutError) as exc:
            self._error(self._tls_why(exc) or "link lost: " + _why(exc))
        except Exception as exc:  # a bug here must not end the node's MQTT for good
            self._error(self._tls_why(exc) or "unexpected error, reconnecting: " + _why(exc))
        finally:
            self._drop()
        self._check_stable()
        return self._stable

    def _check_stable(self):
        # latched while the link is up (the read loop wakes every keepalive/4): ticks_diff of a
        # mark days old would wrap (only +-2**29 ms is valid on the ESP32)
        if self._up_since is not None and ticks_diff(ticks_ms(), self._up_since) >= _STABLE_MS:
            self._stable = True
            self._up_since = None

    async def _read_loop(self):
        keepalive_ms = self._keepalive_ms
        step = keepalive_ms // 4 if keepalive_ms else 15000
        while True:
            if self._broken:
                raise MqttError("write failed")
            self._check_stable()
            now = ticks_ms()
            if keepalive_ms:
                quiet = ticks_diff(now, self._last_read_ms)
                if quiet >= keepalive_ms * 3 // 2:
                    raise MqttError("nothing from the broker for %d ms" % quiet)
                idle = max(quiet, ticks_diff(now, self._last_write_ms))
                if idle >= keepalive_ms // 2 and ticks_diff(now, self._last_ping_ms) >= keepalive_ms // 2:
                    self._last_ping_ms = now
                    await self._send(PINGREQ)
                    continue
            try:
                head = await _wait_for_ms(self._reader.readexactly(1), step)
            except asyncio.TimeoutError:
                continue
            first, body, pid = await _wait_for_ms(self._read_packet(head[0]), self._io_timeout_ms)
            self._last_read_ms = ticks_ms()
            if body is not None:
                await self._handle(first, body)
            elif pid:  # an oversized QoS 1/2 PUBLISH: acknowledge it so it is not redelivered forever
                await self._send(ack_packet(PUBACK if first & 0x06 == 0x02 else PUBREC, pid))

    async def _handle(self, first, body):
        kind = first & 0xF0
        if kind == PUBLISH:
            topic, payload, qos, retain, _, pid = parse_publish(first, body)
            if qos == 2:
                self._say("QoS 2 message on %s refused" % topic)
                await self._send(ack_packet(PUBREC, pid))
                return
            self._incoming.append((topic, payload, retain))
            if len(self._incoming) > self._max_queue:
                self._incoming.pop(0)
                self.dropped += 1
                self._say("incoming queue full: dropped the oldest message (%d so far)" % self.dropped)
            self._message_queued.set()
            if qos:
                await self._send(puback_packet(pid))
        elif kind == PUBACK:
            pid = parse_pid(body)
            for entry in self._inflight:
                if entry[0] == pid:
                    entry[2].set()
        elif kind == SUBACK:
            pid, codes = parse_suback(body)
            topics = self._suback_pending.pop(pid, ())
            for i, code in enumerate(codes):
                if code & 0x80:
                    name = topics[i][0] if i < len(topics) else b"?"
                    self._error("subscription refused: %s" % name.decode())
            self._say("subscribed: %d topic(s)" % len(codes))
        elif kind == PUBREL:
            await self._send(ack_packet(PUBCOMP, parse_pid(body)))
        elif kind not in (PINGRESP, PUBREC, PUBCOMP, UNSUBACK):
            raise MqttError("unexpected packet 0x%02x from the broker" % first)

    # ---- plumbing ------------------------------------------------------------
    async def _read_packet(self, first=None):
        """(first byte, body, 0), or (first byte, None, pid to ack) for an oversized packet skipped unread."""
        reader = self._reader
        if first is None:
            first = (await reader.readexactly(1))[0]
        length = await reader.readexactly(1)
        while length[-1] & 0x80 and len(length) < 4:
            length += await reader.readexactly(1)
        n = decode_remaining_length(length)[0]
        if n > self._max_packet:
            return first, None, await self._skip(first, n)
        if not hasattr(reader, "readinto"):  # CPython StreamReader
            return first, await reader.readexactly(n), 0
        buf = bytearray(n)  # MicroPython: read in place, no growing concatenation
        view = memoryview(buf)
        got = 0
        while got < n:
            k = await reader.readinto(view[got:])
            if k == 0:
                raise EOFError("connection closed by the broker")
            got += k or 0
        return first, buf, 0

    async def _skip(self, first, n):
        self._error("discarded a %d-byte packet 0x%02x (max_packet %d)" % (n, first, self._max_packet))
        pid = 0
        if first & 0xF0 == PUBLISH and first & 0x06 and n >= 2:
            topic_len = parse_pid(await self._reader.readexactly(2))
            n -= 2
            if topic_len + 2 <= n:
                n -= topic_len + 2
                while topic_len:  # read in small pieces: never allocate the packet whole
                    topic_len -= len(await self._reader.readexactly(min(topic_len, 256)))
                pid = parse_pid(await self._reader.readexactly(2))
        while n:
            n -= len(await self._reader.readexactly(min(n, 256)))
        return pid

    def _tls_why(self, exc):
        if self._tls is None:
            return None
        from firmware.tls import explain

        return explain(exc)

    async def _send(self, packet, connection_number=None):
        """Write one packet within io_timeout_ms; False (and the link marked broken) on failure."""
        async with self._send_lock:
            writer = self._writer
            stale = connection_number is not None and connection_number != self._connection_number
            if writer is None or self._broken or stale:
                return False
            try:
                writer.write(packet)
                await _wait_for_ms(writer.drain(), self._io_timeout_ms)
            except (OSError, ValueError, asyncio.TimeoutError) as exc:  # ValueError: MicroPython's TLS refusal
                self._error(self._tls_why(exc) or "send failed: " + _why(exc))
                self._broken = True  # the read loop drops the link
                self._link.clear()
                return False
            self._last_write_ms = ticks_ms()
            return True

    async def _subscribe(self, topics, connection_number=None):
        pid = self._new_pid()
        self._suback_pending[pid] = topics
        if not await self._send(subscribe_packet(pid, topics), connection_number):
            self._suback_pending.pop(pid, None)

    async def _wait(self, event, deadline):
        """Wait for event until deadline (None: no limit); False on timeout."""
        if event.is_set():
            return True
        if deadline is None:
            await event.wait()
            return True
        left = ticks_diff(deadline, ticks_ms())
        if left <= 0:
            return False
        try:
            await _wait_for_ms(event.wait(), left)
        except asyncio.TimeoutError:
            return False
        return True

    def _new_pid(self):
        """Next packet id in 1..65535, skipping ids still awaiting an answer."""
        pid = self._last_pid
        while True:
            pid = pid % 65535 + 1
            if pid not in self._suback_pending and not [e for e in self._inflight if e[0] == pid]:
                self._last_pid = pid
                return pid

    def _drop(self):
        writer = self._writer
        self._reader = self._writer = None
        self._link.clear()
        self._suback_pending.clear()
        if writer is not None:
            try:
                writer.close()
                sock = getattr(writer, "s", None)  # MicroPython: Stream.close() does nothing, wait_closed()
                if sock is not None:               # closes the socket; without this every reconnect kept a
                    sock.close()                   # socket (and over TLS mbedTLS's ~23 KB) until reboot
            except Exception:  # closing a dead socket may fail; it is gone either way
                pass
        if self._connected:
            self._connected = False
            self.down.set()
            self._say("link down")

    def _stop(self):
        self._drop()
        self._message_queued.set()
        task = self._run_task
        try:
            current = asyncio.current_task()
        except RuntimeError:  # CPython, called outside the event loop
            current = None
        if task is not None and task is not current:
            task.cancel()

    def _say(self, text):
        if self._log:
            self._log("mqtt: " + text)

    def _error(self, text):
        self.last_error = text
        self._say(text)

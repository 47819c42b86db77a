"""The node's asyncio MQTT 3.1.1 client (MicroPython; also imports under CPython).

Behaviour after mqtt_as: the application never sees an OSError from a dropped
link. `run()` connects, reads, pings and reconnects with jittered exponential
backoff; `publish()` waits for the link; incoming messages go to a bounded
queue read with `next_message()` or `async for m in client.messages()`.
QoS 0 and 1 both ways. QoS 2 is refused: `subscribe()` rejects it, and a QoS 2
PUBLISH that a broker sends anyway is answered (PUBREC, then PUBCOMP) and
discarded, so the broker does not redeliver it forever.
Everything lives on the instance: many clients can share one interpreter.
"""
import asyncio
import struct

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

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_PUBREC = const(0x50)
_PUBREL = const(0x60)
_PUBCOMP = const(0x70)
_SUBSCRIBE = const(0x80)
_SUBACK = const(0x90)
_UNSUBACK = const(0xB0)
_PINGRESP = const(0xD0)
_STABLE_MS = const(10000)  # a link that lasted this long resets the backoff

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
_REFUSED = ("accepted", "unacceptable protocol version", "client id rejected",
            "server unavailable", "bad user name or password", "not authorised")


class MqttError(Exception):
    """A malformed or unexpected packet from the broker; the client drops the link."""


def _wait_for_ms(aw, ms):
    wait_for_ms = getattr(asyncio, "wait_for_ms", None)  # MicroPython; CPython takes seconds
    return wait_for_ms(aw, ms) if wait_for_ms else asyncio.wait_for(aw, ms / 1000)


def _why(exc):
    return "%s %s" % (type(exc).__name__, exc)


def _b(s):
    return s.encode() if isinstance(s, str) else bytes(s)


def _field(s):
    b = _b(s)
    if len(b) > 65535:
        raise ValueError("MQTT string longer than 65535 bytes")
    return struct.pack("!H", len(b)) + b


def encode_remaining_length(n):
    """The variable-length encoding of a packet's remaining length (1 to 4 bytes)."""
    if not 0 <= n <= 268435455:
        raise ValueError("remaining length out of range: %d" % n)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if not n:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def decode_remaining_length(buf, offset=0):
    """(length, offset just after it) read from buf[offset:]; MqttError if malformed or cut short."""
    n = shift = 0
    for i in range(offset, offset + 4):
        if i >= len(buf):
            raise MqttError("remaining length cut short")
        n |= (buf[i] & 0x7F) << shift
        if not buf[i] & 0x80:
            return n, i + 1
        shift += 7
    raise MqttError("remaining length longer than 4 bytes")


def _packet(first, body):
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def connect_packet(client_id, keepalive=60, clean=False, will=None, user=None, password=None):
    """CONNECT (protocol level 4); will = (topic, payload, qos, retain) or None."""
    flags = 0x02 if clean else 0
    payload = _field(client_id)
    if will is not None:
        topic, message, qos, retain = will
        if qos not in (0, 1, 2):
            raise ValueError("will QoS must be 0, 1 or 2, not %r" % (qos,))
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _field(topic) + _field(message)
    if user is not None:
        flags |= 0x80
        payload += _field(user)
    if password is not None:
        if user is None:
            raise ValueError("MQTT 3.1.1 allows a password only with a user name")
        flags |= 0x40
        payload += _field(password)
    if not 0 <= keepalive <= 65535:
        raise ValueError("keepalive must be 0..65535 s, not %r" % (keepalive,))
    return _packet(_CONNECT, b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack("!H", keepalive) + payload)


def publish_packet(topic, payload, qos=0, retain=False, dup=False, pid=0):
    """PUBLISH as a bytearray (so a retransmission can set DUP in place)."""
    topic = _b(topic)
    if not topic or b"+" in topic or b"#" in topic:
        raise ValueError("cannot publish to topic %r" % (topic,))
    if qos not in (0, 1):
        raise ValueError("publish QoS must be 0 or 1, not %r" % (qos,))
    first = _PUBLISH | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    return bytearray(_packet(first, _field(topic) + (struct.pack("!H", pid) if qos else b"") + _b(payload)))


def subscribe_packet(pid, topics):
    """SUBSCRIBE for [(topic, qos), ...]."""
    body = struct.pack("!H", pid)
    for topic, qos in topics:
        body += _field(topic) + bytes((qos,))
    return _packet(_SUBSCRIBE | 0x02, body)


def _ack(first, pid):
    return bytes((first, 2)) + struct.pack("!H", pid)


def puback_packet(pid):
    return _ack(_PUBACK, pid)


def parse_pid(body):
    if len(body) < 2:
        raise MqttError("packet too short for a packet id")
    return (body[0] << 8) | body[1]


def parse_connack(body):
    """(session_present, return_code) from a CONNACK body."""
    if len(body) != 2:
        raise MqttError("CONNACK of %d bytes" % len(body))
    return bool(body[0] & 1), body[1]


def parse_suback(body):
    """(pid, return codes) from a SUBACK body."""
    return parse_pid(body), bytes(body[2:])


def parse_publish(first, body):
    """(topic, payload, qos, retain, dup, pid) from a PUBLISH; pid is 0 for QoS 0."""
    qos = (first >> 1) & 3
    if qos == 3:
        raise MqttError("PUBLISH with QoS 3")
    end = 2 + parse_pid(body)  # topic length, same layout as a packet id
    if end + (2 if qos else 0) > len(body):
        raise MqttError("PUBLISH topic runs past the packet")
    try:
        topic = bytes(body[2:end]).decode()
    except ValueError:
        raise MqttError("PUBLISH topic is not UTF-8")
    pid = 0
    if qos:
        pid = (body[end] << 8) | body[end + 1]
        end += 2
    # On MicroPython the packet was read into a bytearray: hand out a view of it, so
    # a 16 KB command costs one block of heap, not two.
    payload = memoryview(body)[end:] if isinstance(body, bytearray) else bytes(body[end:])
    return topic, payload, qos, bool(first & 1), bool(first & 8), pid


class MqttClient:
    def __init__(self, host, port, client_id, *, user=None, password=None, keepalive=60,
                 will=None, clean=False, max_queue=16, max_inflight=8,
                 backoff_min_ms=500, backoff_max_ms=60000, rand=None, log=None,
                 max_packet=20480, io_timeout_ms=10000, open_connection=None):
        self._host, self._port = host, port
        self._connect = connect_packet(client_id, keepalive, clean, will, user, password)
        self._ka_ms = keepalive * 1000
        self._max_queue = max(1, max_queue)
        self._max_inflight = max(1, max_inflight)
        self._bmin = max(1, backoff_min_ms)
        self._bmax = max(self._bmin, backoff_max_ms)
        if rand is None:
            from os import urandom as rand
        self._rand, self._log = rand, log
        self._max_packet, self._io_ms = max_packet, io_timeout_ms
        self._open = open_connection or asyncio.open_connection  # injectable: fakes, simulated networks
        self.up = asyncio.Event()  # set on every CONNACK; the application clears it
        self.down = asyncio.Event()  # set on every drop of a link that was up; the application clears it
        self.dropped = 0
        self.last_error = None  # why the last connection failed or dropped, for status reports
        self._subs = []  # [topic, qos], sent on every (re)connect
        self._sub_pending = {}  # pid -> topics awaiting SUBACK
        self._inflight = []  # [pid, packet, done event], oldest first
        self._queue = []
        self._pid = self._gen = 0  # _gen: connection number, so a stale send never lands on a newer link
        self._r = self._w = None
        self._connected = self._broken = self._closing = False
        self._link = asyncio.Event()  # the link is up and usable (internal twin of `up`)
        self._room = asyncio.Event()  # an in-flight slot was freed
        self._msg_ev = asyncio.Event()  # a message was queued (or the client closed)
        self._lock = asyncio.Lock()  # one packet at a time on the socket
        self._run_task = self._sub_task = None
        self._last_rx = self._last_tx = self._last_ping = 0

    # ---- application API ---------------------------------------------------
    def is_up(self):
        return self._link.is_set()

    def subscribe(self, topic, qos=1):
        if qos not in (0, 1):
            raise ValueError("subscribe QoS must be 0 or 1 (QoS 2 is not supported), not %r" % (qos,))
        topic = _b(topic)
        for sub in self._subs:
            if sub[0] == topic:
                sub[1] = qos
                break
        else:
            self._subs.append([topic, qos])
        if self.is_up():
            self._sub_task = asyncio.create_task(self._subscribe([(topic, qos)], self._gen))

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=None):
        payload = _b(payload)
        packet = publish_packet(topic, payload, qos, retain, False, 1)  # validates before any wait
        deadline = None if timeout_ms is None else ticks_add(ticks_ms(), timeout_ms)
        while True:
            if self._closing:
                return False
            if qos and len(self._inflight) >= self._max_inflight:
                self._room.clear()
                ok = await self._wait(self._room, deadline)
            elif not self._link.is_set():
                ok = await self._wait(self._link, deadline)
            elif not qos:
                ok = await self._send(packet, self._gen)
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
            await self._send(packet, self._gen)  # if the link drops, run() resends it after the reconnect
            return await self._wait(entry[2], deadline)
        finally:  # on timeout the message is withdrawn: it may or may not have arrived
            self._inflight.remove(entry)
            self._room.set()

    async def next_message(self, timeout_ms=None):
        deadline = None if timeout_ms is None else ticks_add(ticks_ms(), timeout_ms)
        while not self._queue:
            if self._closing:
                return None
            self._msg_ev.clear()
            if not await self._wait(self._msg_ev, deadline):
                return None
        return self._queue.pop(0)

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
                    await asyncio.sleep((delay * 3 // 4 + delay * self._rand(1)[0] // 510) / 1000)  # +-25 %
                if self._closing:
                    break
                stable = await self._session()
                delay = self._bmin if stable or not delay else min(delay * 2, self._bmax)
        except asyncio.CancelledError:
            if not self._closing:
                raise
        finally:
            self._drop()
            self._run_task = None

    async def _session(self):
        """One connection from open to drop; True if it stayed up long enough to count as stable."""
        self._began = None  # ticks when this connection came up; None once it proved stable
        self._stable = False
        try:
            self._r, self._w = await _wait_for_ms(self._open(self._host, self._port), self._io_ms)
            self._broken = False
            if not await self._send(self._connect):
                return False
            first, body, _ = await _wait_for_ms(self._read_packet(), self._io_ms)
            if first != _CONNACK:
                raise MqttError("expected CONNACK, got packet 0x%02x" % first)
            present, code = parse_connack(body)
            if code:
                self._error("broker refused the connection: %d %s"
                            % (code, _REFUSED[code] if code < len(_REFUSED) else "unknown"))
                return False
            self._gen += 1
            self._connected = True
            self._last_rx = self._last_tx = self._last_ping = ticks_ms()
            if self._subs:
                await self._subscribe([(s[0], s[1]) for s in self._subs])
            for entry in list(self._inflight):  # unacknowledged QoS 1: same packet id, DUP set
                entry[1][0] |= 0x08
                await self._send(entry[1])
            if self._broken:
                raise MqttError("link lost while resuming the session")
            self._began = ticks_ms()
            self.last_error = None
            self._link.set()
            self.up.set()
            self._say("connected to %s:%s (session present: %s)" % (self._host, self._port, present))
            await self._read_loop()
        except (OSError, EOFError, MqttError, asyncio.TimeoutError) as exc:
            self._error("link lost: " + _why(exc))
        except Exception as exc:  # a bug here must not end the node's MQTT for good
            self._error("unexpected error, reconnecting: " + _why(exc))
        finally:
            self._drop()
        self._check_stable()
        return self._stable

    def _check_stable(self):
        # latched while the link is up (the read loop wakes every keepalive/4): ticks_diff of a
        # mark days old would wrap (only +-2**29 ms is valid on the ESP32)
        if self._began is not None and ticks_diff(ticks_ms(), self._began) >= _STABLE_MS:
            self._stable = True
            self._began = None

    async def _read_loop(self):
        ka = self._ka_ms
        step = ka // 4 if ka else 15000
        while True:
            if self._broken:
                raise MqttError("write failed")
            self._check_stable()
            now = ticks_ms()
            if ka:
                quiet = ticks_diff(now, self._last_rx)
                if quiet >= ka * 3 // 2:
                    raise MqttError("nothing from the broker for %d ms" % quiet)
                idle = max(quiet, ticks_diff(now, self._last_tx))
                if idle >= ka // 2 and ticks_diff(now, self._last_ping) >= ka // 2:
                    self._last_ping = now
                    await self._send(PINGREQ)
                    continue
            try:
                head = await _wait_for_ms(self._r.readexactly(1), step)
            except asyncio.TimeoutError:
                continue
            first, body, pid = await _wait_for_ms(self._read_packet(head[0]), self._io_ms)
            self._last_rx = ticks_ms()
            if body is not None:
                await self._handle(first, body)
            elif pid:  # an oversized QoS 1/2 PUBLISH: acknowledge it so it is not redelivered forever
                await self._send(_ack(_PUBACK if first & 0x06 == 0x02 else _PUBREC, pid))

    async def _handle(self, first, body):
        kind = first & 0xF0
        if kind == _PUBLISH:
            topic, payload, qos, retain, _, pid = parse_publish(first, body)
            if qos == 2:
                self._say("QoS 2 message on %s refused" % topic)
                await self._send(_ack(_PUBREC, pid))
                return
            self._queue.append((topic, payload, retain))
            if len(self._queue) > self._max_queue:
                self._queue.pop(0)
                self.dropped += 1
                self._say("incoming queue full: dropped the oldest message (%d so far)" % self.dropped)
            self._msg_ev.set()
            if qos:
                await self._send(puback_packet(pid))
        elif kind == _PUBACK:
            pid = parse_pid(body)
            for entry in self._inflight:
                if entry[0] == pid:
                    entry[2].set()
        elif kind == _SUBACK:
            pid, codes = parse_suback(body)
            topics = self._sub_pending.pop(pid, ())
            for i, code in enumerate(codes):
                if code & 0x80:
                    name = topics[i][0] if i < len(topics) else b"?"
                    self._error("subscription refused: %s" % name.decode())
            self._say("subscribed: %d topic(s)" % len(codes))
        elif kind == _PUBREL:
            await self._send(_ack(_PUBCOMP, parse_pid(body)))
        elif kind not in (_PINGRESP, _PUBREC, _PUBCOMP, _UNSUBACK):
            raise MqttError("unexpected packet 0x%02x from the broker" % first)

    # ---- plumbing ------------------------------------------------------------
    async def _read_packet(self, first=None):
        """(first byte, body, 0), or (first byte, None, pid to ack) for an oversized packet skipped unread."""
        r = self._r
        if first is None:
            first = (await r.readexactly(1))[0]
        length = await r.readexactly(1)
        while length[-1] & 0x80 and len(length) < 4:
            length += await r.readexactly(1)
        n = decode_remaining_length(length)[0]
        if n > self._max_packet:
            return first, None, await self._skip(first, n)
        if not hasattr(r, "readinto"):  # CPython StreamReader
            return first, await r.readexactly(n), 0
        buf = bytearray(n)  # MicroPython: read in place, no growing concatenation
        view = memoryview(buf)
        got = 0
        while got < n:
            k = await r.readinto(view[got:])
            if k == 0:
                raise EOFError("connection closed by the broker")
            got += k or 0
        return first, buf, 0

    async def _skip(self, first, n):
        self._error("discarded a %d-byte packet 0x%02x (max_packet %d)" % (n, first, self._max_packet))
        pid = 0
        if first & 0xF0 == _PUBLISH and first & 0x06 and n >= 2:
            topic_len = parse_pid(await self._r.readexactly(2))
            n -= 2
            if topic_len + 2 <= n:
                n -= topic_len + 2
                while topic_len:  # read in small pieces: never allocate the packet whole
                    topic_len -= len(await self._r.readexactly(min(topic_len, 256)))
                pid = parse_pid(await self._r.readexactly(2))
        while n:
            n -= len(await self._r.readexactly(min(n, 256)))
        return pid

    async def _send(self, packet, gen=None):
        """Write one packet within io_timeout_ms; False (and the link marked broken) on failure."""
        async with self._lock:
            w = self._w
            if w is None or self._broken or (gen is not None and gen != self._gen):
                return False
            try:
                w.write(packet)
                await _wait_for_ms(w.drain(), self._io_ms)
            except (OSError, asyncio.TimeoutError) as exc:
                self._error("send failed: " + _why(exc))
                self._broken = True  # the read loop drops the link
                self._link.clear()
                return False
            self._last_tx = ticks_ms()
            return True

    async def _subscribe(self, topics, gen=None):
        pid = self._new_pid()
        self._sub_pending[pid] = topics
        if not await self._send(subscribe_packet(pid, topics), gen):
            self._sub_pending.pop(pid, None)

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
        pid = self._pid
        while True:
            pid = pid % 65535 + 1
            if pid not in self._sub_pending and not [e for e in self._inflight if e[0] == pid]:
                self._pid = pid
                return pid

    def _drop(self):
        w = self._w
        self._r = self._w = None
        self._link.clear()
        self._sub_pending.clear()
        if w is not None:
            try:
                w.close()
            except Exception:  # closing a dead socket may fail; it is gone either way
                pass
        if self._connected:
            self._connected = False
            self.down.set()
            self._say("link down")

    def _stop(self):
        self._drop()
        self._msg_ev.set()
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

"""A tiny asyncio HTTP/1.0 GET client for the node (clips and live streams from the gateway).

Over the same injectable `open_connection(host, port) -> (reader, writer)` the
MQTT client uses (asyncio's by default; tests and the simulator pass their own).
One request a connection (`Connection: close`), HTTP Basic auth, an optional
`Range: bytes=N-`. The status line and headers are read into a bounded buffer
(`HEAD_MAX` bytes, else HttpError); the body is read with `readinto` into the
caller's preallocated buffer. Nothing here blocks or sleeps on its own:
timeouts are the caller's, on the HAL's clock, with `guarded()` and a `Watch`
that every read pokes.
"""
import asyncio
import binascii

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

HEAD_MAX = const(384)  # status line + headers; our gateway sends about 150 bytes


class HttpError(Exception):
    """A request failed: `status` is the HTTP status when there was one (None: network)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class Watch:
    """When the connection last made progress, on the HAL's clock."""

    def __init__(self, hal):
        self._hal = hal
        self.at = hal.ticks_ms()
        self.abort = None  # set to a reason: guarded() drops the request at its next look

    def poke(self):
        self.at = self._hal.ticks_ms()

    def idle_ms(self):
        return self._hal.ticks_diff(self._hal.ticks_ms(), self.at)


class _Outcome:
    """What a guarded coroutine gave: its value, or the exception it raised."""

    def __init__(self):
        self.value = self.error = None


async def _capture(aw, out):
    try:
        out.value = await aw
    except Exception as exc:  # handed to the caller of guarded(); a task must not die with it
        out.error = exc


async def guarded(hal, watch, aw, stall_ms, poll_ms=250):
    """Await `aw` in a task; cancel it (HttpError "timeout") when `watch` saw no progress for
    `stall_ms` of the HAL's clock. The task's own exception is re-raised here."""
    out = _Outcome()
    watch.poke()
    task = asyncio.create_task(_capture(aw, out))
    try:
        while not task.done():
            await hal.sleep_ms(poll_ms)
            if not task.done() and watch.abort:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                raise HttpError(watch.abort)
            if not task.done() and watch.idle_ms() >= stall_ms:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                raise HttpError("timeout: nothing for %d ms" % watch.idle_ms())
    finally:
        if not task.done():  # we were cancelled ourselves: take the request down with us
            task.cancel()
    if out.error is not None:
        raise out.error
    return out.value


def basic_auth(user, password):
    token = binascii.b2a_base64(("%s:%s" % (user, password or "")).encode())
    return token.strip().decode()


def request_bytes(host, path, user=None, password=None, offset=0):
    lines = "GET %s HTTP/1.0\r\nHost: %s\r\n" % (path, host)
    if user is not None:
        lines += "Authorization: Basic %s\r\n" % basic_auth(user, password)
    if offset:
        lines += "Range: bytes=%d-\r\n" % offset
    return (lines + "Connection: close\r\n\r\n").encode()


def _close(writer):
    if writer is not None:
        try:
            writer.close()
            sock = getattr(writer, "s", None)  # MicroPython: Stream.close() does nothing (wait_closed()
            if sock is not None:               # closes): close the socket (over TLS: mbedTLS's ~23 KB) now
                sock.close()
        except Exception:  # closing a dead socket may fail; it is gone either way
            pass


class Response:
    """The status and body of one GET. `length`: body bytes of this response (None: until the
    server closes); `start`: the offset of its first byte in the resource; `total`: the size of
    the whole resource when known. Always close() it."""

    def __init__(self, reader, writer, head, watch):
        self._reader, self._writer = reader, writer
        self._head = head  # bytearray(HEAD_MAX): status + headers, then maybe the first body bytes
        self._watch = watch
        self.status = 0
        self.length = self.total = None
        self.start = 0
        self.got = 0  # body bytes handed out
        self._rest = self._rest_end = 0  # body bytes still in the head buffer: head[_rest:_rest_end]

    async def _read_some(self, mv):
        reader = self._reader
        readinto = getattr(reader, "readinto", None)  # MicroPython streams; CPython's StreamReader has none
        if readinto is not None:
            n = await readinto(mv)
            n = n or 0
        else:
            data = await reader.read(len(mv))
            n = len(data)
            mv[:n] = data
        if n:
            self._watch.poke()
        return n

    async def _read_head(self):
        head = self._head
        mv = memoryview(head)
        have = 0
        while True:
            if have == len(head):
                raise HttpError("response headers longer than %d bytes" % len(head))
            n = await self._read_some(mv[have:])
            if not n:
                raise HttpError("connection closed in the response headers")
            start = have - 3 if have > 3 else 0
            have += n
            end = bytes(mv[start:have]).find(b"\r\n\r\n")
            if end >= 0:
                end += start
                break
        self._parse(bytes(mv[:end]))
        self._rest, self._rest_end = end + 4, have

    def _parse(self, text):
        try:
            lines = text.decode().split("\r\n")
        except UnicodeError:
            raise HttpError("response headers are not text")
        parts = lines[0].split(" ")
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError("not an HTTP response: %r" % lines[0][:40])
        self.status = int(parts[1])
        for line in lines[1:]:
            colon = line.find(":")
            if colon < 0:
                continue
            name = line[:colon].strip().lower()
            value = line[colon + 1:].strip()
            try:
                if name == "content-length":
                    self.length = int(value)
                elif name == "content-range" and value.startswith("bytes "):
                    span, _, size = value[6:].partition("/")
                    self.start = int(span.partition("-")[0])
                    if size != "*":
                        self.total = int(size)
            except ValueError:
                raise HttpError("bad %s header: %r" % (name, value[:40]))
        if self.status == 200:
            self.start = 0
            self.total = self.length
        elif self.status == 206 and self.total is None and self.length is not None:
            self.total = self.start + self.length

    async def readinto(self, mv):
        """Body bytes into `mv`: how many (at least 1), or 0 at the end of the body.
        HttpError when the connection breaks before Content-Length bytes came."""
        left = len(mv) if self.length is None else min(len(mv), self.length - self.got)
        if left <= 0:
            return 0
        if self._rest < self._rest_end:
            n = min(left, self._rest_end - self._rest)
            mv[:n] = memoryview(self._head)[self._rest:self._rest + n]
            self._rest += n
        else:
            try:
                n = await self._read_some(mv[:left])
            except (OSError, ValueError) as exc:  # ValueError: MicroPython's TLS layer (a bad record)
                raise HttpError("connection broken: %s" % exc)
            if not n:
                if self.length is not None:
                    raise HttpError("connection cut after %d of %d bytes" % (self.got, self.length))
                return 0
        self.got += n
        return n

    def close(self):
        writer, self._writer, self._reader = self._writer, None, None
        _close(writer)


async def get(open_connection, host, port, path, head, watch, user=None, password=None, offset=0, tls=None):
    """Send GET `path` and read the status and headers: a Response (status in .status), to be
    closed by the caller. HttpError (the connection closed) when it fails before that.
    `tls` (firmware.tls.Tls): HTTPS, the server verified against the site CA."""
    writer = None
    try:
        if tls is None:
            reader, writer = await open_connection(host, port)
        else:
            reader, writer = await tls.open(open_connection, host, port)
        watch.poke()
        writer.write(request_bytes(host, path, user, password, offset))
        await writer.drain()
        response = Response(reader, writer, head, watch)
        await response._read_head()
        writer = None  # the response owns the connection now
        return response
    except (OSError, ValueError) as exc:  # ValueError: MicroPython's TLS refusal of the server
        if tls is not None:
            from firmware.tls import explain

            why = explain(exc)
            if why:
                raise HttpError("%s:%s: %s" % (host, port, why))
        if not isinstance(exc, OSError):
            raise
        raise HttpError("%s:%s: %s" % (host, port, exc))
    except EOFError:
        raise HttpError("%s:%s: connection closed" % (host, port))
    finally:
        _close(writer)


class Client:
    """Where the node fetches files: host, port and its credentials."""

    def __init__(self, host, port, user=None, password=None, open_connection=None, tls=None):
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.open_connection = open_connection  # None: asyncio's (looked up when first used)
        self.tls = tls  # firmware.tls.Tls: HTTPS (the config's files.tls)

    @classmethod
    def for_config(cls, cfg, open_connection=None):
        """The gateway's file server as the node's config says: host, port, its login, HTTPS or not."""
        return cls(cfg.files_host, cfg.files_port, cfg.broker_user, cfg.broker_password, open_connection,
                   cfg.tls if cfg.files_tls else None)

    async def get(self, path, head, watch, offset=0):
        return await get(self.open_connection or asyncio.open_connection, self.host, self.port, path, head,
                         watch, self.user, self.password, offset, self.tls)

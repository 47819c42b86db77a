"""An in-memory HTTP/1.0 server behind an injected open_connection, and a HAL with virtual time
(portable: CPython and MicroPython), for the clip cache and stream tests.

The server answers like the gateway's node routes (docs/audio.md section 4): Basic auth
(401), 404 for unknown paths, 200 with Content-Length, 206 + Content-Range for
`Range: bytes=N-`, 416 past the end. Faults, one dict per request, consumed in order:
  cut=k        close the connection after k body bytes
  hang=k       stop sending after k body bytes, keep the connection open
  corrupt=i    flip the body byte at resource offset i
  ignore_range ignore Range: answer 200 with the whole body
  status=s     answer status s with an empty body
Delivery: `chunk` bytes a read, `delay` extra yields to the loop before each read (slow).
Streams: `streams[id] = bytes`; sent with no Content-Length, then the connection closes
(or hangs with fault hang=k).
"""
import asyncio
import binascii

from hardware.flashfs import DirFS


class VirtualHal:
    """ticks and sleep_ms on a virtual clock that moves only when something sleeps (by what it
    sleeps: several sleepers make it run faster, so a test with many must pass auto=False)."""

    def __init__(self, path, fs=None, auto=True):
        self.t = 0
        self.auto = auto  # False: time stands still (no timeouts) unless a test moves t
        self._fs = fs if fs is not None else DirFS(path)
        self.logs = []

    @property
    def fs(self):
        return self._fs

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, t, d):
        return t + d

    async def sleep_ms(self, ms):
        if self.auto:
            self.t += ms
        await asyncio.sleep(0)

    def log(self, text):
        self.logs.append(text)


class FakeServer:
    def __init__(self, user="n1", password="pw", chunk=300, delay=0, history=True):
        self.files = {}  # path -> bytes
        self.streams = {}  # stream id -> bytes
        self.auth = "Basic " + binascii.b2a_base64(("%s:%s" % (user, password)).encode()).strip().decode()
        self.chunk, self.delay = chunk, delay
        self.faults = []  # one dict per request, consumed in order
        self.requests = []  # (path, headers dict) of every request
        self.connections = []  # every _Conn: closed is checked by the tests
        self.refuse = False
        self.history = history  # False: no requests kept, closed connections let go (a long test's heap is the node's)

    async def open(self, host, port):
        if self.refuse:
            raise OSError(111, "connection refused")
        conn = _Conn(self)
        if not self.history:
            self.connections = [c for c in self.connections if not c.closed]
        self.connections.append(conn)
        return conn, conn

    def all_closed(self):
        for c in self.connections:
            if not c.closed:
                return False
        return True

    def respond(self, request):
        """(head bytes, body bytes or memoryview, fault dict) for a request."""
        text = bytes(request).decode()
        lines = text.split("\r\n")
        method, path, version = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if self.history:
            self.requests.append((path, headers))
        fault = self.faults.pop(0) if self.faults else {}
        assert method == "GET" and version == "HTTP/1.0", lines[0]
        if "status" in fault:
            return _head(fault["status"], {"Content-Length": 0}), b"", fault
        if headers.get("authorization") != self.auth:
            return _head(401, {"Content-Length": 0, "WWW-Authenticate": 'Basic realm="node"'}), b"", fault
        if path.startswith("/node/v1/streams/"):
            data = self.streams.get(path[17:])
            if data is None:
                return _head(404, {"Content-Length": 0}), b"", fault
            return _head(200, {"Content-Type": "application/octet-stream"}), data, fault
        data = self.files.get(path)
        if data is None:
            return _head(404, {"Content-Length": 0}), b"", fault
        if "corrupt" in fault:
            i = fault["corrupt"]
            data = data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:]
        rng = headers.get("range")
        if rng and not fault.get("ignore_range"):
            assert rng.startswith("bytes=") and rng.endswith("-"), rng
            start = int(rng[6:-1])
            if start >= len(data):
                return _head(416, {"Content-Length": 0, "Content-Range": "bytes */%d" % len(data)}), b"", fault
            return (_head(206, {"Content-Length": len(data) - start,
                                "Content-Range": "bytes %d-%d/%d" % (start, len(data) - 1, len(data))}),
                    memoryview(data)[start:], fault)
        return _head(200, {"Content-Length": len(data), "Content-Type": "audio/wav"}), memoryview(data), fault


def _head(status, headers):
    reason = {200: "OK", 206: "Partial Content", 401: "Unauthorized", 404: "Not Found",
              416: "Range Not Satisfiable", 500: "Internal Server Error"}.get(status, "X")
    text = "HTTP/1.0 %d %s\r\nServer: fake\r\n" % (status, reason)
    for k, v in headers.items():
        text += "%s: %s\r\n" % (k, v)
    return (text + "\r\n").encode()


class _Conn:
    """Both ends the client sees: a reader (readinto, read) and a writer."""

    def __init__(self, server):
        self.server = server
        self.request = bytearray()
        self.out = None  # bytes of the whole response (head + body), once the request is in
        self.body_left = None  # body bytes the faults allow before cut/hang
        self.end = "close"
        self.closed = False
        self.answered = asyncio.Event()
        self.sent = 0

    # writer
    def write(self, data):
        if self.closed:
            raise OSError(32, "broken pipe")
        self.request += data
        if self.out is None and b"\r\n\r\n" in self.request:
            head, body, fault = self.server.respond(self.request)
            self.head, self.body = head, body  # not joined: the body stays the server's one copy
            self.out = len(head) + len(body)
            self.head_len = len(head)
            if "cut" in fault:
                self.body_left, self.end = fault["cut"], "close"
            elif "hang" in fault:
                self.body_left, self.end = fault["hang"], "hang"
            self.answered.set()

    async def drain(self):
        await asyncio.sleep(0)

    def close(self):
        self.closed = True

    async def wait_closed(self):
        pass

    # reader
    async def _next(self, n):
        await self.answered.wait()
        for _ in range(self.server.delay):
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        if self.closed:
            raise OSError(9, "closed")
        limit = self.out
        if self.body_left is not None:
            limit = min(limit, self.head_len + self.body_left)
        if self.sent >= limit:
            if self.end == "hang" and self.body_left is not None:
                await asyncio.Event().wait()  # never: the client must time out
            return None
        at = self.sent
        if at < self.head_len:
            k = min(n, self.server.chunk, self.head_len - at)
            data = memoryview(self.head)[at:at + k]
        else:
            k = min(n, self.server.chunk, limit - at)
            data = memoryview(self.body)[at - self.head_len:at - self.head_len + k]
        self.sent += k
        return data

    async def readinto(self, buf):
        data = await self._next(len(buf))
        if data is None:
            return 0
        buf[:len(data)] = data
        return len(data)

    async def read(self, n=-1):
        data = await self._next(n if n > 0 else 1 << 20)
        return b"" if data is None else bytes(data)

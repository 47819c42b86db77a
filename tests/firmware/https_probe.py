"""One GET with the node's HTTP client (firmware/http.py) in a MicroPython process, over HTTPS.

    micropython tests/firmware/https_probe.py HOST PORT PATH CA_FILE SERVER_NAME [USER PASSWORD]

Reads the body in 1 KB pieces (as the clip cache does) and prints `got STATUS BYTES SHA256HEX`,
or `error TEXT` when the request failed (HttpError: e.g. the server's certificate refused).
"""
import sys

_here = __file__.replace("\\", "/")
_root = _here[:_here.rfind("/tests/")] if "/tests/" in _here else "."
if _root not in sys.path:
    sys.path.insert(0, _root)

import asyncio  # noqa: E402
import binascii  # noqa: E402
import hashlib  # noqa: E402
import time  # noqa: E402

from firmware.http import HEAD_MAX, Client, HttpError, Watch  # noqa: E402
from firmware.tls import Tls  # noqa: E402


class Clock:
    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)


async def main(argv):
    host, port, path, ca_file, server_name = argv[:5]
    user, password = (argv[5], argv[6]) if len(argv) > 6 else (None, None)
    with open(ca_file) as f:
        ca = f.read()
    client = Client(host, int(port), user, password, tls=Tls(ca, server_name))
    head = bytearray(HEAD_MAX)
    buf = bytearray(1024)
    mv = memoryview(buf)
    try:
        response = await client.get(path, head, Watch(Clock()))
    except HttpError as exc:
        print("error", exc)
        return
    digest = hashlib.sha256()
    total = 0
    try:
        while True:
            n = await response.readinto(mv)
            if not n:
                break
            digest.update(mv[:n])
            total += n
    finally:
        response.close()
    print("got", response.status, total, binascii.hexlify(digest.digest()).decode())


asyncio.run(main(sys.argv[1:]))

"""SNTP against a server speaking real NTP packets on loopback (portable)."""
import asyncio
import socket
import struct

from firmware import sntp
from tests.firmware.rig import MONDAY, Rig, at

TRUE_UNIX = at(MONDAY, 21)


def _reply(request, unix_ms, stratum=2):
    secs = unix_ms // 1000 + sntp.NTP_TO_UNIX
    frac = (unix_ms % 1000) * (1 << 32) // 1000
    pkt = bytearray(48)
    pkt[0] = 0x24  # version 4, mode 4 (server)
    pkt[1] = stratum
    pkt[24:32] = request[40:48]  # originate = the client's transmit
    pkt[32:48] = struct.pack("!IIII", secs, frac, secs, frac)
    return pkt


async def _serve_once(sock, unix_ms, stratum):
    for _ in range(200):
        try:
            data, addr = sock.recvfrom(64)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        sock.sendto(_reply(data, unix_ms, stratum), addr)
        return


def _server():
    """A UDP socket on a free loopback port (MicroPython has no getsockname: try ports)."""
    import os

    for _ in range(50):
        port = 20000 + (os.urandom(2)[0] << 8 | os.urandom(1)[0]) % 30000
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        return sock, port
    raise AssertionError("no free UDP port")


def test_parse_reply_and_refusals():
    ms = 1795400000123
    t2, t3 = sntp.parse_reply(_reply(sntp.request_packet(), ms))
    assert t2 == ms and t3 == ms
    assert sntp.parse_reply(_reply(sntp.request_packet(), ms, stratum=0)) is None  # kiss-o'-death
    assert sntp.parse_reply(b"short") is None
    client = bytearray(48)
    client[0] = 0x23
    assert sntp.parse_reply(client) is None  # a client packet is not an answer


def test_node_sets_its_invalid_clock_by_ntp():
    sock, port = _server()
    rig = Rig(TRUE_UNIX, rtc_offset=None, cfg=None)
    try:
        rig.cfg.ntp = "127.0.0.1"
        node = rig.boot()
        assert node.clock.state == "invalid"

        async def run():
            server = asyncio.create_task(_serve_once(sock, TRUE_UNIX * 1000, 2))
            answer = await sntp.query(rig.board, "127.0.0.1", port)
            await server
            return answer

        answer = asyncio.run(run())
        assert answer is not None
        node.clock.apply_sync(*answer)
        assert node.clock.state == "synced" and node.clock.now() == TRUE_UNIX
    finally:
        sock.close()
        rig.close()


def test_a_silent_server_gives_none_when_the_time_is_up():
    from hardware.softboard import RealClock, SoftBoard

    board = SoftBoard(RealClock())
    sock, port = _server()  # bound, but never answers
    try:
        t0 = board.ticks_ms()
        answer = asyncio.run(sntp.query(board, "127.0.0.1", port, timeout_ms=300))
        assert answer is None
        assert board.ticks_diff(board.ticks_ms(), t0) >= 300
    finally:
        sock.close()

"""SNTP (RFC 4330) client for the node: one non-blocking query, time-limited.

The answer feeds NodeClock.apply_sync exactly like the gateway's time
service: (t1 = our ticks when sent, t2 = server receive, t3 = server send,
in Unix ms). Integers only (the ESP32's floats cannot hold a Unix time).
"""
import asyncio
import socket
import struct

NTP_TO_UNIX = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_MODE_CLIENT = 0x23  # version 4, mode 3


def request_packet():
    pkt = bytearray(48)
    pkt[0] = _MODE_CLIENT
    return pkt


def parse_reply(data):
    """(t2 ms, t3 ms) from a server reply, or None if it is not a usable answer."""
    if len(data) < 48:
        return None
    mode = data[0] & 7
    stratum = data[1]
    if mode not in (4, 5) or stratum == 0 or stratum > 15:  # not a server, or a kiss-o'-death
        return None
    rx_s, rx_f, tx_s, tx_f = struct.unpack("!IIII", bytes(data[32:48]))
    if tx_s == 0:
        return None
    return _ms(rx_s, rx_f), _ms(tx_s, tx_f)


def _ms(secs, frac):
    return (secs - NTP_TO_UNIX) * 1000 + ((frac * 1000 + (1 << 31)) >> 32)  # fraction rounded to the ms


async def query(hal, host, port=123, timeout_ms=2000):
    """(t1 ticks, t2 ms, t3 ms) from the server at `host` (an IP: no blocking DNS), or None."""
    try:
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return None
    try:
        s.setblocking(False)
        t1 = hal.ticks_ms()
        s.sendto(request_packet(), addr)
        while hal.ticks_diff(hal.ticks_ms(), t1) < timeout_ms:
            try:
                data = s.recv(64)
            except OSError:  # EAGAIN: nothing yet
                await asyncio.sleep(0.02)
                continue
            times = parse_reply(data)
            return None if times is None else (t1, times[0], times[1])
        return None
    except OSError:
        return None
    finally:
        s.close()

"""MQTT 3.1.1 packets as bytes: encode what the node sends, decode what the broker sends.

Pure functions, no I/O: `firmware.mqtt.MqttClient` writes and reads them on
its socket. QoS 0 and 1 for publish and subscribe; QoS 2 only as far as a
client must go to refuse it (PUBREC, PUBCOMP). Packet types are the first
byte's high nibble (`first & 0xF0`).
"""
import struct

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# Packet types (first byte, high nibble); the client dispatches on them.
CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
PUBREC = const(0x50)
PUBREL = const(0x60)
PUBCOMP = const(0x70)
SUBSCRIBE = const(0x80)
SUBACK = const(0x90)
UNSUBACK = const(0xB0)
PINGRESP = const(0xD0)

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
_REFUSED = ("accepted", "unacceptable protocol version", "client id rejected",
            "server unavailable", "bad user name or password", "not authorised")


class MqttError(Exception):
    """A malformed or unexpected packet from the broker; the client drops the link."""


def as_bytes(s):
    """Text as UTF-8 bytes; bytes-like as bytes."""
    return s.encode() if isinstance(s, str) else bytes(s)


def _string(s):
    """An MQTT UTF-8 string: 2-byte length, then the bytes."""
    b = as_bytes(s)
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
    payload = _string(client_id)
    if will is not None:
        topic, message, qos, retain = will
        if qos not in (0, 1, 2):
            raise ValueError("will QoS must be 0, 1 or 2, not %r" % (qos,))
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _string(topic) + _string(message)
    if user is not None:
        flags |= 0x80
        payload += _string(user)
    if password is not None:
        if user is None:
            raise ValueError("MQTT 3.1.1 allows a password only with a user name")
        flags |= 0x40
        payload += _string(password)
    if not 0 <= keepalive <= 65535:
        raise ValueError("keepalive must be 0..65535 s, not %r" % (keepalive,))
    return _packet(CONNECT, b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack("!H", keepalive) + payload)


def publish_packet(topic, payload, qos=0, retain=False, dup=False, pid=0):
    """PUBLISH as a bytearray (so a retransmission can set DUP in place)."""
    topic = as_bytes(topic)
    if not topic or b"+" in topic or b"#" in topic:
        raise ValueError("cannot publish to topic %r" % (topic,))
    if qos not in (0, 1):
        raise ValueError("publish QoS must be 0 or 1, not %r" % (qos,))
    first = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    return bytearray(_packet(first, _string(topic) + (struct.pack("!H", pid) if qos else b"") + as_bytes(payload)))


def subscribe_packet(pid, topics):
    """SUBSCRIBE for [(topic, qos), ...]."""
    body = struct.pack("!H", pid)
    for topic, qos in topics:
        body += _string(topic) + bytes((qos,))
    return _packet(SUBSCRIBE | 0x02, body)


def ack_packet(kind, pid):
    """A 4-byte acknowledgement (PUBACK, PUBREC, PUBCOMP) of packet id `pid`."""
    return bytes((kind, 2)) + struct.pack("!H", pid)


def puback_packet(pid):
    return ack_packet(PUBACK, pid)


def parse_pid(body):
    if len(body) < 2:
        raise MqttError("packet too short for a packet id")
    return (body[0] << 8) | body[1]


def parse_connack(body):
    """(session_present, return_code) from a CONNACK body."""
    if len(body) != 2:
        raise MqttError("CONNACK of %d bytes" % len(body))
    return bool(body[0] & 1), body[1]


def connack_refusal(code):
    """What a CONNACK return code means, for the log."""
    return _REFUSED[code] if code < len(_REFUSED) else "unknown"


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

"""firmware.mqtt_packets: exact packet bytes; firmware.mqtt: the client against an in-memory broker.

Portable: runs under pytest and under MicroPython (tests/mpy_run.py). The fake
broker below speaks MQTT the way Mosquitto does for these exchanges (CONNACK,
SUBACK, PUBACK, PINGRESP); tests/firmware/test_mqtt_broker_cpython.py runs the
same client against the real Mosquitto.
"""
import asyncio

from firmware.mqtt import MqttClient, ticks_diff, ticks_ms
from firmware.mqtt_packets import (
    DISCONNECT, PINGREQ, MqttError, connect_packet, decode_remaining_length, encode_remaining_length,
    parse_connack, parse_publish, parse_suback, puback_packet, publish_packet, subscribe_packet,
)
from tests.portable import raises

LENGTHS = (
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"), (2097152, b"\x80\x80\x80\x01"),
    (268435455, b"\xff\xff\xff\x7f"),
)


# ---- pure codec ---------------------------------------------------------------
def test_remaining_length_encodes_to_the_spec_bytes():
    for n, encoded in LENGTHS:
        assert encode_remaining_length(n) == encoded, n


def test_remaining_length_decodes_back():
    for n, encoded in LENGTHS:
        assert decode_remaining_length(b"\x30" + encoded + b"tail", 1) == (n, 1 + len(encoded)), n


def test_remaining_length_rejects_bad_input():
    raises(ValueError, encode_remaining_length, -1)
    raises(ValueError, encode_remaining_length, 268435456)
    raises(MqttError, decode_remaining_length, b"\xff\xff\xff\xff\x01")  # a fifth byte
    raises(MqttError, decode_remaining_length, b"\x80\x80")  # cut short


def test_connect_with_will_user_password_and_clean_session():
    packet = connect_packet("n1", 60, True, ("w", b"off", 1, True), "u", "p")
    assert packet == (b"\x10\x1c" b"\x00\x04MQTT\x04" b"\xee" b"\x00\x3c"
                      b"\x00\x02n1" b"\x00\x01w" b"\x00\x03off" b"\x00\x01u" b"\x00\x01p")


def test_connect_minimal_persistent_session():
    assert connect_packet("n1", 30) == b"\x10\x0e\x00\x04MQTT\x04\x00\x00\x1e\x00\x02n1"


def test_connect_rejects_what_mqtt_311_forbids():
    raises(ValueError, connect_packet, "n1", 60, False, None, None, "secret")  # password without user
    raises(ValueError, connect_packet, "n1", 70000)
    raises(ValueError, connect_packet, "n1", 60, False, ("w", b"x", 3, False))


def test_publish_qos0_retained():
    assert publish_packet("a/b", b"hi", 0, True) == b"\x31\x07\x00\x03a/bhi"
    assert publish_packet(b"a/b", "hi") == b"\x30\x07\x00\x03a/bhi"  # str and bytes both accepted


def test_publish_qos1_with_dup_and_packet_id():
    assert publish_packet("a/b", b"hi", 1, False, True, 0x0102) == b"\x3a\x09\x00\x03a/b\x01\x02hi"


def test_publish_long_payload_uses_two_length_bytes():
    packet = publish_packet("t", b"x" * 200, 1, False, False, 5)
    assert packet[:8] == b"\x32\xcd\x01\x00\x01t\x00\x05" and len(packet) == 3 + 205


def test_publish_rejects_wildcards_and_qos2():
    raises(ValueError, publish_packet, "a/+", b"")
    raises(ValueError, publish_packet, "a/#", b"")
    raises(ValueError, publish_packet, "", b"")
    raises(ValueError, publish_packet, "a", b"", 2)


def test_subscribe_puback_pingreq_disconnect():
    assert subscribe_packet(1, [("a/#", 1)]) == b"\x82\x08\x00\x01\x00\x03a/#\x01"
    assert subscribe_packet(0x1234, [("a", 0), ("b", 1)]) == b"\x82\x0a\x12\x34\x00\x01a\x00\x00\x01b\x01"
    assert puback_packet(7) == b"\x40\x02\x00\x07"
    assert PINGREQ == b"\xc0\x00"
    assert DISCONNECT == b"\xe0\x00"


def test_parse_incoming_packets():
    packet = publish_packet("denloa/s/node/n1/cmd", b"{}", 1, True, True, 300)
    first, (n, start) = packet[0], decode_remaining_length(packet, 1)
    assert parse_publish(first, packet[start:start + n]) == ("denloa/s/node/n1/cmd", b"{}", 1, True, True, 300)
    assert parse_publish(0x30, b"\x00\x01tpay") == ("t", b"pay", 0, False, False, 0)
    assert parse_connack(b"\x01\x00") == (True, 0)
    assert parse_connack(b"\x00\x05") == (False, 5)
    assert parse_suback(b"\x00\x02\x01\x80") == (2, b"\x01\x80")


def test_parse_rejects_malformed_packets():
    raises(MqttError, parse_publish, 0x30, b"\x00\x09short")  # topic runs past the end
    raises(MqttError, parse_publish, 0x32, b"\x00\x01t\x00")  # QoS 1 without a whole packet id
    raises(MqttError, parse_publish, 0x36, b"\x00\x01t\x00\x01")  # QoS 3
    raises(MqttError, parse_publish, 0x30, b"\x00\x01\xff")  # topic not UTF-8
    raises(MqttError, parse_connack, b"\x00")


def test_packet_ids_wrap_and_skip_ids_in_flight():
    client = MqttClient("h", 1, "n1")
    client._pid = 65534
    client._inflight = [[65535, None, None], [1, None, None]]
    assert client._new_pid() == 2
    assert client._new_pid() == 3
    raises(ValueError, client.subscribe, "a", 2)


# ---- the client against an in-memory broker -------------------------------------
class Pipe:
    """One direction of an in-memory TCP connection."""

    def __init__(self):
        self.data = bytearray()
        self.ready = asyncio.Event()
        self.closed = False

    def put(self, data):
        if self.closed:
            raise OSError(32, "broken pipe")
        self.data += data
        self.ready.set()

    def close(self):
        self.closed = True
        self.ready.set()

    async def readexactly(self, n):
        while len(self.data) < n:
            if self.closed:
                raise EOFError("connection closed")
            self.ready.clear()
            await self.ready.wait()
        out = bytes(self.data[:n])
        self.data = self.data[n:]
        return out


class End:
    """One end of the connection: the (reader, writer) pair asyncio gives both."""

    def __init__(self, rx, tx):
        self.rx, self.tx = rx, tx

    async def readexactly(self, n):
        return await self.rx.readexactly(n)

    def write(self, data):
        self.tx.put(bytes(data))

    async def drain(self):
        await asyncio.sleep(0)

    def close(self):
        self.rx.close()
        self.tx.close()

    async def packet(self, timeout=2):
        """The next whole packet as bytes, as a broker reads it."""
        async def read():
            head = await self.readexactly(1)
            length = b""
            while not length or length[-1] & 0x80:
                length += await self.readexactly(1)
            n, _ = decode_remaining_length(length)
            return head + length + await self.readexactly(n)
        return await asyncio.wait_for(read(), timeout)


class FakeBroker:
    """Accepts connections from the client's open_connection hook; the test plays the broker."""

    def __init__(self, refuse=False):
        self.ends = []
        self.arrived = asyncio.Event()
        self.refuse = refuse

    async def open(self, host, port):
        if self.refuse:
            raise OSError(111, "connection refused")
        up, down = Pipe(), Pipe()
        self.ends.append(End(up, down))
        self.arrived.set()
        client_end = End(down, up)
        return client_end, client_end

    async def accept(self, timeout=2):
        while not self.ends:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), timeout)
        return self.ends.pop(0)


def client_for(broker, **options):
    logs = []
    options.setdefault("rand", lambda n: b"\x80" * n)  # jitter factor ~1.0
    options.setdefault("backoff_min_ms", 10)
    client = MqttClient("broker", 1883, "n1", open_connection=broker.open, log=logs.append, **options)
    client.logs = logs
    return client


async def connected(client, broker, session_present=0):
    """Start run(), answer CONNECT; returns (run task, broker end, CONNECT bytes)."""
    task = asyncio.create_task(client.run())
    end = await broker.accept()
    connect = await end.packet()
    end.write(bytes((0x20, 2, session_present, 0)))
    return task, end, connect


async def stop(client, task):
    await client.close()
    await asyncio.wait_for(task, 2)


def test_session_connect_subscribe_receive_qos1_and_publish():
    async def main():
        broker = FakeBroker()
        will = ("denloa/s/node/n1/state", b'{"online":false}', 1, True)
        client = client_for(broker, keepalive=30, will=will, user="n1", password="pw")
        client.subscribe("denloa/s/node/n1/cmd", 1)
        task, end, connect = await connected(client, broker)
        assert connect == connect_packet("n1", 30, False, will, "n1", "pw")
        assert await end.packet() == subscribe_packet(1, [("denloa/s/node/n1/cmd", 1)])
        end.write(b"\x90\x03\x00\x01\x01")
        await asyncio.wait_for(client.up.wait(), 2)
        assert client.is_up()
        end.write(publish_packet("denloa/s/node/n1/cmd", b'{"c":1}', 1, False, False, 7))
        assert await client.next_message(2000) == ("denloa/s/node/n1/cmd", b'{"c":1}', False)
        assert await end.packet() == b"\x40\x02\x00\x07"  # PUBACK for packet id 7
        sending = asyncio.create_task(client.publish("denloa/s/node/n1/evt", '{"e":1}', qos=1, timeout_ms=2000))
        assert await end.packet() == publish_packet("denloa/s/node/n1/evt", b'{"e":1}', 1, False, False, 2)
        end.write(puback_packet(2))
        assert await asyncio.wait_for(sending, 2) is True
        assert await client.publish("denloa/s/node/n1/tele", b"t", timeout_ms=1000) is True
        assert await end.packet() == b"\x30\x18\x00\x15denloa/s/node/n1/telet"
        await stop(client, task)
        assert await end.packet() == DISCONNECT
        assert not client.is_up() and client.down.is_set()
        assert await client.next_message(10) is None
    asyncio.run(main())


def test_unacknowledged_qos1_is_resent_with_dup_after_reconnect():
    async def main():
        broker = FakeBroker()
        client = client_for(broker)
        task, end, _ = await connected(client, broker)
        await asyncio.wait_for(client.up.wait(), 2)
        sending = asyncio.create_task(client.publish("n/evt", b"e1", qos=1, timeout_ms=3000))
        first = await end.packet()
        assert first == b"\x32\x0b\x00\x05n/evt\x00\x01e1"
        end.close()  # the link dies before the PUBACK
        await asyncio.wait_for(client.down.wait(), 2)
        assert not client.is_up()
        end2 = await broker.accept()
        await end2.packet()  # CONNECT again
        end2.write(b"\x20\x02\x01\x00")
        again = await end2.packet()
        assert again == bytes((first[0] | 0x08,)) + first[1:]  # same packet id, DUP set
        end2.write(puback_packet(1))
        assert await asyncio.wait_for(sending, 2) is True
        assert client._inflight == []
        await stop(client, task)
    asyncio.run(main())


def test_incoming_queue_is_bounded_and_drops_the_oldest():
    async def main():
        broker = FakeBroker()
        client = client_for(broker, max_queue=2)
        task, end, _ = await connected(client, broker)
        for i in range(3):
            end.write(publish_packet("t", ("m%d" % i).encode(), 0, i == 0))
        end.write(b"\xd0\x00")  # PINGRESP: once it is read, the three were handled
        for _ in range(50):
            if client.dropped:
                break
            await asyncio.sleep(0.01)
        assert client.dropped == 1
        assert await client.next_message(500) == ("t", b"m1", False)
        async for message in client.messages():
            assert message == ("t", b"m2", False)
            break
        assert await client.next_message(20) is None
        await stop(client, task)
    asyncio.run(main())


def test_oversized_publish_is_skipped_and_acknowledged():
    async def main():
        broker = FakeBroker()
        client = client_for(broker, max_packet=64)
        task, end, _ = await connected(client, broker)
        end.write(publish_packet("t/big", b"x" * 300, 1, False, False, 9))
        end.write(publish_packet("t/ok", b"fine", 1, False, False, 10))
        assert await end.packet() == puback_packet(9)
        assert await end.packet() == puback_packet(10)
        assert await client.next_message(500) == ("t/ok", b"fine", False)
        assert client.is_up() and [line for line in client.logs if "discarded a 309-byte" in line]
        await stop(client, task)
    asyncio.run(main())


def test_refused_connack_backs_off_instead_of_spinning():
    async def main():
        broker = FakeBroker()
        client = client_for(broker, backoff_min_ms=20, backoff_max_ms=160)
        task = asyncio.create_task(client.run())
        attempts, began = 0, ticks_ms()
        while ticks_diff(ticks_ms(), began) < 600:
            try:
                end = await broker.accept(0.05)
            except asyncio.TimeoutError:
                continue
            await end.packet()
            end.write(b"\x20\x02\x00\x04")  # bad user name or password
            attempts += 1
        # tries at 0, 20, 60, 140, 300, 460 ms (waits doubling up to 160 ms): never dozens
        assert 3 <= attempts <= 8, attempts
        assert not client.is_up() and not client.up.is_set()
        assert "bad user name or password" in client.last_error
        await stop(client, task)
    asyncio.run(main())


def test_keepalive_pings_when_idle_and_drops_a_silent_broker():
    async def main():
        broker = FakeBroker()
        client = client_for(broker, keepalive=1, backoff_min_ms=5000)
        task, end, _ = await connected(client, broker)
        assert await end.packet(1.5) == PINGREQ  # within keepalive, while nothing else flows
        end.write(b"\xd0\x00")
        assert await end.packet(1.5) == PINGREQ
        await asyncio.wait_for(client.down.wait(), 2.5)  # no answer: dead after ~1.5 x keepalive
        assert "nothing from the broker" in client.last_error
        await stop(client, task)
    asyncio.run(main())


def test_publish_gives_up_after_its_timeout_while_the_broker_is_unreachable():
    async def main():
        broker = FakeBroker(refuse=True)
        client = client_for(broker, backoff_min_ms=50)
        task = asyncio.create_task(client.run())
        assert await client.publish("t", b"x", qos=0, timeout_ms=100) is False
        assert await client.publish("t", b"x", qos=1, timeout_ms=100) is False
        assert client._inflight == [] and "refused" in client.last_error
        client.abort()
        await asyncio.wait_for(task, 2)
        assert await client.publish("t", b"x", timeout_ms=10) is False
    asyncio.run(main())


def test_refused_subscription_is_logged_and_the_link_stays_up():
    async def main():
        broker = FakeBroker()
        client = client_for(broker)
        client.subscribe("denloa/s/node/n1/cmd")
        client.subscribe("secret/x")
        task, end, _ = await connected(client, broker)
        assert await end.packet() == subscribe_packet(1, [("denloa/s/node/n1/cmd", 1), ("secret/x", 1)])
        end.write(b"\x90\x04\x00\x01\x01\x80")  # the second one refused
        await asyncio.wait_for(client.up.wait(), 2)
        client.subscribe("late/topic", 0)  # while up: sent at once
        assert await end.packet() == subscribe_packet(2, [("late/topic", 0)])
        end.write(b"\x90\x03\x00\x02\x00")
        end.write(b"\xd0\x00")
        for _ in range(50):
            if "subscribed: 1 topic(s)" in client.logs[-1]:
                break
            await asyncio.sleep(0.01)
        assert "mqtt: subscription refused: secret/x" in client.logs
        assert client.is_up() and client.last_error == "subscription refused: secret/x"
        await stop(client, task)
    asyncio.run(main())

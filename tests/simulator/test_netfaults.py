"""simulator.netfaults.LinkProxy against a real Mosquitto, with paho clients connecting through it."""
import asyncio
import itertools
import random
import time

import paho.mqtt.client as mqtt
import pytest

from simulator.netfaults import LinkProxy
from tests.mosquitto import free_port, mosquitto  # noqa: F401  (the fixture)

SITE = "denloa/test"
CONNECT = bytes([0x10, 16, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 4])   # MQTT 3.1.1, clean; + a 4-byte client id
CONNACK = bytes([0x20, 2, 0, 0])


def run(scenario, timeout=20.0):
    """Run `scenario()` in a fresh loop; fail on any exception the loop saw or any task left behind."""
    errors = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        await asyncio.wait_for(scenario(), timeout)
        await asyncio.sleep(0)
        left = asyncio.all_tasks() - {asyncio.current_task()}
        assert not left, left

    asyncio.run(main())
    assert not errors, errors


async def until(condition, timeout, what):
    """Wait (without blocking the loop the proxy runs in) until condition() is true; return the time taken."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "%s: not within %s s" % (what, timeout)
        await asyncio.sleep(0.01)
    return time.monotonic() - start


class Client:
    """A paho client in its own loop_start thread, reconnecting by itself, recording what it sees."""
    ids = itertools.count()

    def __init__(self, name, port, *, keepalive=60, subscribe=(), will=None, inflight=20):
        self.name = name
        self.connects = self.disconnects = self.subscribed = 0
        self.messages = []   # (monotonic time, topic, payload)
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="%s-%d" % (name, next(self.ids)))
        self.c.on_connect = lambda c, u, flags, rc, props: self._connected(rc, subscribe)
        self.c.on_disconnect = lambda c, u, flags, rc, props: self._count("disconnects")
        self.c.on_subscribe = lambda c, u, mid, rcs, props: self._count("subscribed")
        self.c.on_message = lambda c, u, m: self.messages.append((time.monotonic(), m.topic, m.payload))
        if will:
            self.c.will_set(will[0], will[1], qos=1)
        self.c.reconnect_delay_set(0.1, 1)
        self.c.max_inflight_messages_set(inflight)
        self.c.connect_async("127.0.0.1", port, keepalive)
        self.c.loop_start()

    def _count(self, what):
        setattr(self, what, getattr(self, what) + 1)

    def _connected(self, rc, subscribe):
        assert not rc.is_failure, rc
        self.connects += 1
        for topic in subscribe:
            self.c.subscribe(topic, qos=1)

    def payloads(self, topic):
        return [p for _, t, p in self.messages if t == topic]

    def publish(self, topic, payload, qos=1):
        self.c.publish(topic, payload, qos=qos)

    async def ready(self, connects=1, subscribed=None, timeout=5.0):
        await until(lambda: self.connects >= connects, timeout, "%s connected" % self.name)
        await until(lambda: self.subscribed >= (connects if subscribed is None else subscribed), timeout,
                    "%s subscribed" % self.name)

    async def close(self):
        self.c.disconnect()
        await asyncio.wait_for(asyncio.to_thread(self.c.loop_stop), 5)


async def both_ways(node, watcher, tag, timeout=3.0):
    """A command reaches the node and an event reaches the watcher; returns the slower latency."""
    t0 = time.monotonic()
    watcher.publish(SITE + "/node/a/cmd", b"cmd-" + tag)
    node.publish(SITE + "/node/a/evt", b"evt-" + tag)
    await until(lambda: b"cmd-" + tag in node.payloads(SITE + "/node/a/cmd"), timeout, "cmd " + tag.decode())
    await until(lambda: b"evt-" + tag in watcher.payloads(SITE + "/node/a/evt"), timeout, "evt " + tag.decode())
    return time.monotonic() - t0


def node_and_watcher(port, broker_port, keepalive=60, extra=(), inflight=20):
    """A node through `port` (with a will) and a watcher connected straight to the broker."""
    node = Client("node", port, keepalive=keepalive, subscribe=[SITE + "/node/a/cmd", *extra],
                  will=(SITE + "/node/a/state", b"offline"), inflight=inflight)
    watcher = Client("watcher", broker_port, subscribe=[SITE + "/node/a/evt", SITE + "/node/a/state", *extra])
    return node, watcher


def test_healthy_proxy_passes_messages_both_ways_without_adding_latency(mosquitto, figure):
    async def rounds(port):
        node, watcher = node_and_watcher(port, mosquitto.port)
        try:
            await node.ready()
            await watcher.ready(subscribed=2)
            return sorted([await both_ways(node, watcher, b"%d" % i) for i in range(15)])
        finally:
            await node.close()
            await watcher.close()

    async def scenario():
        async with LinkProxy(mosquitto.host, mosquitto.port, name="healthy") as proxy:
            direct = await rounds(mosquitto.port)
            proxied = await rounds(proxy.port)
            assert proxied[7] < direct[7] + 0.02 and proxied[-1] < 0.5, (direct, proxied)
            figure("netfaults: healthy cmd+evt round (QoS 1, 10 ms polling), median direct %.1f ms, through the"
                   " proxy %.1f ms" % (direct[7] * 1000, proxied[7] * 1000))
            assert proxy.stats["accepted"] == 1 and proxy.stats["refused"] == 0
            assert proxy.stats["bytes_up"] > 0 and proxy.stats["bytes_down"] > 0
            await until(lambda: proxy.connections == 0, 3, "connection ended after DISCONNECT")
            assert proxy.stats["closed"] == 1 and proxy.stats["bytes_dropped"] == 0
    run(scenario)


def test_cut_drops_at_once_refuses_then_heals(mosquitto, figure):
    async def scenario():
        async with LinkProxy(mosquitto.host, mosquitto.port, name="cut") as proxy:
            node, watcher = node_and_watcher(proxy.port, mosquitto.port)
            try:
                await node.ready()
                await watcher.ready(subscribed=2)
                await both_ways(node, watcher, b"before")

                proxy.cut()
                t0 = time.monotonic()
                assert proxy.state == "cut"
                await until(lambda: node.disconnects >= 1, 1.0, "paho on_disconnect after cut")
                dropped = time.monotonic() - t0
                # the broker's side was reset, with no DISCONNECT before it: the will goes out at once
                await until(lambda: b"offline" in watcher.payloads(SITE + "/node/a/state"), 1.0, "will")
                will = time.monotonic() - t0
                figure("netfaults: cut -> paho on_disconnect after %.0f ms, will at the watcher after %.0f ms"
                       % (dropped * 1000, will * 1000))

                await until(lambda: proxy.stats["refused"] >= 2, 3.0, "reconnects refused while cut")
                assert node.connects == 1 and node.disconnects >= 2   # paho reports each refused attempt too

                proxy.heal()
                await node.ready(connects=2)
                await both_ways(node, watcher, b"after")
            finally:
                await node.close()
                await watcher.close()
            assert proxy.stats["accepted"] == 2
    run(scenario)


def test_blackhole_keepalive_expires_will_then_heal(mosquitto, figure):
    async def scenario():
        async with LinkProxy(mosquitto.host, mosquitto.port, name="blackhole") as proxy:
            node, watcher = node_and_watcher(proxy.port, mosquitto.port, keepalive=2)
            try:
                await node.ready()
                await watcher.ready(subscribed=2)
                await both_ways(node, watcher, b"before")

                proxy.blackhole()
                t0 = time.monotonic()
                assert proxy.state == "blackhole" and proxy.connections == 1
                watcher.publish(SITE + "/node/a/cmd", b"into-the-hole", qos=0)
                node.publish(SITE + "/node/a/evt", b"into-the-hole", qos=0)
                # no FIN, no RST: only the broker's keepalive check ends the session and sends the will.
                # Mosquitto 2.0.11 checks only every ~6 s: it drops a silent client 1.5 x keepalive to ~6 s late
                await until(lambda: node.disconnects >= 1, 6.0, "paho keepalive timeout")
                gave_up = time.monotonic() - t0
                await until(lambda: b"offline" in watcher.payloads(SITE + "/node/a/state"), 12.0, "will")
                will = time.monotonic() - t0
                assert will > 1.0, will   # not at once, as it is after a cut
                assert b"into-the-hole" not in node.payloads(SITE + "/node/a/cmd")
                assert b"into-the-hole" not in watcher.payloads(SITE + "/node/a/evt")
                assert node.connects == 1 and proxy.stats["bytes_dropped"] > 0
                figure("netfaults: blackhole, keepalive 2 s -> paho gives up after %.1f s, will at the watcher after"
                       " %.1f s" % (gave_up, will))

                proxy.heal()
                await node.ready(connects=2)
                await both_ways(node, watcher, b"after")
                assert b"into-the-hole" not in node.payloads(SITE + "/node/a/cmd")
            finally:
                await node.close()
                await watcher.close()
    run(scenario)


def test_delay_adds_latency_and_keeps_order(mosquitto, figure):
    async def scenario():
        async with LinkProxy(mosquitto.host, mosquitto.port, name="slow", rng=random.Random(3)) as proxy:
            echo = SITE + "/node/a/echo"
            # paho's default of 20 QoS 1 messages in flight would pace the echoes by the round trip
            node, watcher = node_and_watcher(proxy.port, mosquitto.port, extra=[echo], inflight=100)
            try:
                await node.ready(subscribed=2)
                await watcher.ready(subscribed=3)
                for phase, (ms, jitter) in enumerate([(300, 0), (40, 40)]):
                    proxy.delay(ms, jitter_ms=jitter)
                    sent = {}
                    for i in range(100):
                        payload = b"%d-%03d" % (phase, i)
                        sent[payload] = time.monotonic()
                        node.publish(echo, payload)
                        await asyncio.sleep(0.002)   # separate chunks, so jitter could reorder them
                    mine = lambda: [m for m in node.messages if m[1] == echo and m[2][:1] == b"%d" % phase]
                    theirs = lambda: [m for m in watcher.messages if m[1] == echo and m[2][:1] == b"%d" % phase]
                    await until(lambda: len(mine()) == 100 and len(theirs()) == 100, 5, "100 echoes")
                    assert [m[2] for m in mine()] == list(sent) == [m[2] for m in theirs()]
                    there = min(t - sent[p] for t, _, p in theirs())     # node -> proxy -> broker
                    back = min(t - sent[p] for t, _, p in mine())        # and back through the proxy
                    if phase == 0:
                        assert there >= 0.3 and back >= 0.6, (there, back)
                        figure("netfaults: delay 300 ms -> broker after >= %.0f ms, round trip >= %.0f ms"
                               % (there * 1000, back * 1000))
            finally:
                await node.close()
                await watcher.close()
    run(scenario)


def test_jitter_is_drawn_from_the_seeded_rng(mosquitto):
    """One PUBLISH in flight at a time is one chunk each way, so each round trip takes the next two draws."""
    topic = b"denloa/test/jitter"
    subscribe = bytes([0x82, 5 + len(topic), 0, 1, 0, len(topic)]) + topic + b"\x00"
    publish = bytes([0x30, 2 + len(topic) + 4, 0, len(topic)]) + topic + b"ping"   # QoS 0: echoed as is

    async def scenario():
        async with LinkProxy(mosquitto.host, mosquitto.port, name="jitter", rng=random.Random(42)) as proxy:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proxy.port), 3)
            writer.write(CONNECT + b"jitt" + subscribe)
            assert await asyncio.wait_for(reader.readexactly(9), 3) == CONNACK + bytes([0x90, 3, 0, 1, 0])
            proxy.delay(30, jitter_ms=30)
            draws = random.Random(42)
            for _ in range(15):
                expected = (max(0, 30 + draws.uniform(-30, 30)) + max(0, 30 + draws.uniform(-30, 30))) / 1000
                t0 = time.monotonic()
                writer.write(publish)
                assert await asyncio.wait_for(reader.readexactly(len(publish)), 3) == publish
                took = time.monotonic() - t0
                assert expected <= took < expected + 0.05, (expected, took)   # timers never fire early
            writer.close()
    run(scenario)


def test_many_proxies_in_one_loop_stop_cleanly(mosquitto):
    async def session(port, i):
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 3)
        writer.write(CONNECT + b"n%03d" % i)
        assert await asyncio.wait_for(reader.readexactly(4), 3) == CONNACK
        return reader, writer

    async def scenario():
        before = asyncio.all_tasks()
        proxies = [LinkProxy(mosquitto.host, mosquitto.port, name="group-%d" % i) for i in range(12)]
        ports = await asyncio.gather(*(p.start() for p in proxies))
        assert len(set(ports)) == 12
        proxies[1].delay(50)
        proxies[2].blackhole()
        proxies[3].cut()
        live = [await session(port, i) for i, port in enumerate(ports) if i not in (2, 3)]
        hole = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", ports[2]), 3)
        hole[1].write(CONNECT + b"hole")   # held: the broker never sees it
        await until(lambda: proxies[2].stats["bytes_dropped"] > 0, 3, "bytes into the blackhole")

        await asyncio.wait_for(asyncio.gather(*(p.stop() for p in proxies)), 10)
        for reader, writer in live + [hole]:
            try:
                assert await asyncio.wait_for(reader.read(100), 3) == b""
            except ConnectionResetError:
                pass   # stop() resets, as a lost link does
            writer.close()
        assert all(p.connections == 0 for p in proxies)
        assert sum(p.stats["closed"] for p in proxies) == 11
        assert asyncio.all_tasks() == before
        await proxies[0].stop()   # twice is harmless
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", ports[0]), 3)
    run(scenario)


def test_unreachable_broker_closes_the_node_connection():
    async def scenario():
        async with LinkProxy("127.0.0.1", free_port(), name="nowhere") as proxy:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proxy.port), 3)
            try:
                assert await asyncio.wait_for(reader.read(100), 6) == b""
            except ConnectionResetError:
                pass
            writer.close()
            await until(lambda: proxy.connections == 0, 3, "link forgotten")
            assert proxy.stats["upstream_failed"] == 1 and proxy.stats["closed"] == 1
    run(scenario)


def test_delay_arguments_are_checked():
    with pytest.raises(ValueError, match="delay"):
        LinkProxy("127.0.0.1", 1883).delay(-1)

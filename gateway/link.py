"""The gateway's own MQTT connection (aiomqtt): subscribe to every node's reports, publish commands.

`run()` is one task on the event loop: it keeps the link up (backoff to 10 s),
publishes the gateway's retained online state (the will says offline), and
hands what arrives to `deliver` in batches: everything already queued, up to
`BATCH_MAX`, so ingest can store a batch in one transaction instead of one
commit per message. Its session is persistent (clean_session=False, QoS 1
subscriptions): while the gateway is down the broker queues for it, and a QoS 1
message is acknowledged to the broker only after ingest stored it, so a message
the gateway had received but not stored when it stopped comes again (ingest
ignores the repeat).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiomqtt

from gateway.metrics import Metrics
from protocol import topics

BATCH_MAX = 500  # messages per ingest transaction at most


class MqttLink:
    def __init__(self, *, site: str, host: str, port: int, username: str | None, password: str | None,
                 deliver: Callable[[list[tuple[str, bytes]]], None], metrics: Metrics,
                 log: Callable[[str], None]) -> None:
        self.site = site
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.deliver = deliver
        self.metrics = metrics
        self.log = log
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.on_connect: list[Callable[[], None]] = []  # e.g. wake the command sender
        self.running = False

    @property
    def up(self) -> bool:
        return self.client is not None

    async def run(self) -> None:
        self.running = True
        state_topic = topics.gateway_state_topic(self.site)
        will = aiomqtt.Will(state_topic, b'{"v":1,"online":false}', qos=1, retain=True)
        backoff = 0.5
        while self.running:
            try:
                client = aiomqtt.Client(self.host, self.port, identifier="denloa-gw-" + self.site,
                                        username=self.username, password=self.password, will=will,
                                        clean_session=False, keepalive=30, max_inflight_messages=0,  # 0: no limit (paho)
                                        max_queued_incoming_messages=0, timeout=10)
                paho_client = getattr(client, "_client", None)
                if paho_client is not None:
                    # Acknowledge a QoS 1 message only once ingest has stored it (_receive): paho's default
                    # acks on arrival, so what sat in aiomqtt's queue when the gateway stopped (a restart, a
                    # crash) was acked to the broker and lost: the soak's single-event gaps. Set before
                    # connecting: the broker sends the session's queued messages right after CONNACK.
                    paho_client.manual_ack_set(True)
                async with client:
                    client.pending_calls_threshold = 10000  # an emergency fan-out has a thousand in flight
                    await client.publish(state_topic, b'{"v":1,"online":true}', qos=1, retain=True)
                    for kind in (topics.STATE, topics.EVT, topics.ACK):
                        await client.subscribe(topics.nodes_filter(self.site, kind), qos=1)
                    await client.subscribe(topics.nodes_filter(self.site, topics.TELE), qos=0)
                    self.client = client
                    self.connected.set()
                    self.metrics.mqtt_connected.set(1)
                    for fn in self.on_connect:
                        fn()
                    backoff = 0.5
                    await self._receive(client)
            except aiomqtt.MqttError as exc:
                self.log("MQTT link down: %s" % exc)
            finally:
                self.client = None
                self.connected.clear()
                self.metrics.mqtt_connected.set(0)
            if self.running:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)

    async def _receive(self, client: aiomqtt.Client) -> None:
        queue: Any = getattr(client, "_queue", None)  # aiomqtt 2.x keeps arrivals in an asyncio.Queue
        paho_client: Any = getattr(client, "_client", None)
        async for message in client.messages:
            messages = [message]
            while queue is not None and len(messages) < BATCH_MAX and not queue.empty():
                messages.append(queue.get_nowait())
            self.deliver([(str(m.topic), _payload(m.payload)) for m in messages])
            if paho_client is not None:  # stored (one commit for the batch): now the broker may forget them
                for m in messages:
                    if m.qos:
                        paho_client.ack(m.mid, m.qos)

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """True once the broker took it (QoS 1: its PUBACK); False while the link is down."""
        client = self.client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos, timeout=10)
            return True
        except aiomqtt.MqttError as exc:
            self.log("publish on %s failed: %s" % (topic, exc))
            return False

    async def publish_many(self, items: list[tuple[str, bytes]], timeout: float = 10.0) -> list[bool]:
        """Publish [(topic, payload)] at QoS 1 in one go and wait (up to `timeout`) for the broker's PUBACKs;
        per message, True if the broker took it or paho still holds it on a live link.

        aiomqtt's publish() awaits one future per message and scans every pending call on each
        acknowledgement: 1,000 concurrent publishes spent ~0.25 s in that bookkeeping alone. Here every
        message goes to paho (aiomqtt's own client, `_client`) at once, and we poll their PUBACKs."""
        client = self.client
        if client is None or not items:
            return [False] * len(items)
        paho_client = getattr(client, "_client", None)
        if paho_client is None:  # another aiomqtt: the plain way
            return list(await asyncio.gather(*(self.publish(t, p) for t, p in items)))
        infos = []
        for topic, payload in items:
            info = paho_client.publish(topic, payload, qos=1)
            infos.append(info if info.rc == 0 else None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiting = [i for i in infos if i is not None]
        while waiting and loop.time() < deadline and self.client is client:
            await asyncio.sleep(0.002)
            if waiting[-1].is_published():  # acks come in order: look at all only once the last is in
                waiting = [i for i in waiting if not i.is_published()]
        unacked = sum(1 for i in infos if i is not None and not i.is_published())
        if unacked:
            self.log("%d of %d publishes not yet acknowledged by the broker after %.0f s" % (unacked, len(items),
                                                                                          timeout))
        # Still queued in paho on a link that is up: it goes out; counted as sent, so the retry waits its
        # time instead of handing the same messages to paho again on every pass. A new link lost them.
        still_up = self.client is client
        return [i is not None and (i.is_published() or still_up) for i in infos]

    def stop(self) -> None:
        self.running = False


def _payload(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else bytes(payload or b"")

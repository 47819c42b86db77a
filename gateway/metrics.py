"""Prometheus metrics of one gateway (its own registry: no global state)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.messages = Counter("denloa_messages_total", "MQTT messages received from nodes", ["kind"], registry=r)
        self.bad_messages = Counter("denloa_bad_messages_total", "Messages dropped as malformed or unknown",
                                    ["reason"], registry=r)
        self.event_gaps = Counter("denloa_event_gaps_total", "Events missing in (boot, seq) numbering", registry=r)
        self.commands = Counter("denloa_commands_total", "Commands answered or expired", ["status"], registry=r)
        self.nodes = Gauge("denloa_nodes", "Registered nodes", registry=r)
        self.nodes_online = Gauge("denloa_nodes_online", "Nodes online", registry=r)
        self.alerts_open = Gauge("denloa_alerts_open", "Open alerts", registry=r)
        self.mqtt_connected = Gauge("denloa_mqtt_connected", "1 while the gateway's MQTT link is up", registry=r)

    def message(self, kind: str) -> None:
        self.messages.labels(kind).inc()

    def bad(self, reason: str) -> None:
        self.bad_messages.labels(reason).inc()

    def gap(self, n: int) -> None:
        self.event_gaps.inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)

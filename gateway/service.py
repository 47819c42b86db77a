"""The running gateway: the services gateway/app.py built, their lifecycle, and housekeeping.

`await start()` brings up the broker (unless external), the MQTT link and
housekeeping; `await stop()` takes them down. Every task here runs on the one
event loop that owns the database (docs/gateway.md, "Who owns what").
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Callable
from typing import Any

from gateway.alerts import Alerts
from gateway.audio.library import ClipLibrary
from gateway.clock import Clock
from gateway.commands import CommandService
from gateway.config import GatewayConfig
from gateway.db import Database
from gateway.emergency import Emergencies
from gateway.firmware import Firmware
from gateway.ingest import Ingest
from gateway.link import MqttLink
from gateway.metrics import Metrics
from gateway.overrides import Overrides
from gateway.plan_push import PlanPusher
from gateway.provisioning import Provisioning
from gateway.registry import Registry
from gateway.streams import Streams
from gateway.timesync import TimeService
from gateway.settings import Settings
from gateway.users import Users
from protocol import commands as ops

GATEWAY_USER = "gateway"
SWEEP_EVERY_S = 10  # silent nodes, rolling plans, missed broadcasts, gauges


def load_secrets(data_dir: str) -> dict[str, str]:
    """The gateway's own MQTT password and session key, made at first start (0600)."""
    path = os.path.join(data_dir, "secrets.json")
    if os.path.exists(path):
        with open(path) as f:
            data: dict[str, str] = json.load(f)
            return data
    data = {"mqtt_password": secrets.token_urlsafe(24), "session_key": secrets.token_hex(32)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    return data


class Gateway:
    """Holds the services; built only by gateway.app.make_gateway."""

    def __init__(self, *, cfg: GatewayConfig, clock: Clock, log: Callable[[str], None], db: Database,
                 secrets: dict[str, str], metrics: Metrics, registry: Registry, alerts: Alerts,
                 commands: CommandService, ingest: Ingest, link: MqttLink, timesync: TimeService,
                 emergencies: Emergencies, plans: PlanPusher, users: Users, settings: Settings,
                 provisioning: Provisioning,
                 broker: Any, clips: ClipLibrary, streams: Streams, firmware: Firmware) -> None:
        self.cfg = cfg
        self.clock = clock
        self.log = log
        self.db = db
        self.secrets = secrets
        self.metrics = metrics
        self.registry = registry
        self.alerts = alerts
        self.commands = commands
        self.ingest = ingest
        self.link = link
        self.timesync = timesync
        self.emergencies = emergencies
        self.users = users
        self.settings = settings  # site settings staff change in the UI (gateway/settings.py)
        self.provisioning = provisioning
        self.plans = plans
        self.broker = broker  # None when the broker is external
        self.clips = clips  # the audio clip library (gateway/audio/library.py)
        self.streams = streams  # live streams (gateway/streams.py)
        self.firmware = firmware  # firmware bundles and over-the-air rollouts (gateway/firmware.py)
        self.overrides = Overrides(commands=commands, registry=registry, clock=clock,  # lamp overrides staff set
                                   expiry_s=lambda: cfg.command_expiry_s)
        self._tasks: list[asyncio.Task[None]] = []
        self.running = False

    # ---- read models for the API ---------------------------------------------
    def node_status(self, node: dict[str, Any]) -> dict[str, Any]:
        """A registry entry with its live state and open alerts, for the API and the UI."""
        return dict(node, live=self.ingest.live(node["id"]), alerts=self.alerts.messages_for(node["id"]))

    @property
    def location(self) -> dict[str, Any]:
        return {"lat": self.cfg.lat, "lon": self.cfg.lon, "tz": self.cfg.utc_offset}

    def health(self) -> dict[str, Any]:
        return {"ok": True, "mqtt": self.link.up, "site": self.cfg.site}

    def metrics_text(self) -> bytes:
        self._gauges()
        return self.metrics.render()

    def _gauges(self) -> None:
        self.metrics.nodes.set(self.registry.count())
        self.metrics.nodes_online.set(self.ingest.online_count())
        self.metrics.alerts_open.set(self.alerts.count_open())

    # ---- broker users ---------------------------------------------------------
    def broker_users(self) -> list[Any]:
        return self.provisioning.broker_users()

    # ---- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        self.running = True
        if self.broker is not None:
            await self.broker.start(self.broker_users())
        self._tasks = [asyncio.create_task(self.link.run()), asyncio.create_task(self._housekeeping())]
        try:
            await asyncio.wait_for(self.link.connected.wait(), 15)
        except asyncio.TimeoutError:
            self.log("MQTT link not up yet; it keeps trying")

    async def stop(self) -> None:
        self.running = False
        await self.streams.close()
        self.link.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.broker is not None:
            await self.broker.stop()
        self.db.close()

    async def _housekeeping(self) -> None:
        """Send due commands, expire old ones, notice silent nodes, keep plans rolling."""
        last_sweep = 0.0
        work = self.commands.work
        while self.running:
            work.clear()
            try:
                if self.link.up:
                    due = self.commands.due()
                    if due:
                        await self.commands.send_many(due)
                self.commands.expire()
                now = self.clock.now()
                if now - last_sweep >= SWEEP_EVERY_S:
                    last_sweep = now
                    self.ingest.sweep()
                    self.plans.roll()
                    self.plans.check_missed()
                    self.ingest.history.prune(now)  # at most hourly: old telemetry thinned, then dropped
                    self._gauges()
            except Exception as exc:  # housekeeping must go on
                self.log("housekeeping error: %r" % exc)
            try:
                await asyncio.wait_for(work.wait(), timeout=min(1.0, self.cfg.command_retry_s / self.clock.speed))
            except asyncio.TimeoutError:
                pass

    def on_command_result(self, row: dict[str, Any]) -> None:
        self.metrics.commands.labels(row["status"]).inc()
        if row["status"] == "expired" and row["op"] != ops.TIME_SYNC:
            self.alerts.open("command_expired", row["node_id"], {"op": row["op"]})

"""The gateway: broker, MQTT link, ingest, commands, planner, time service, housekeeping.

`Gateway(cfg, clock)` builds everything from the config; `await start()`
brings up the broker (unless external) and the MQTT link; `await stop()`
takes them down. The HTTP API (gateway/api.py) is served on top of it.
"""
import asyncio
import json
import os
import secrets

import aiomqtt

from gateway import broker as brokers
from gateway.alerts import Alerts
from gateway.clock import SystemClock
from gateway.commands import CommandService
from gateway.db import Database
from gateway.ingest import Ingest
from gateway.metrics import Metrics
from gateway.provisioning import Provisioning
from gateway.registry import Registry
from protocol import commands as ops
from protocol import topics

GATEWAY_USER = "gateway"
TIME_SYNC_EXPIRY_S = 30


class Gateway:
    def __init__(self, cfg, clock=None, log=None):
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.log = log or (lambda text: print("gateway:", text, flush=True))
        os.makedirs(cfg.data_dir, mode=0o700, exist_ok=True)
        self.db = Database(os.path.join(cfg.data_dir, "denloa.db"))
        self.metrics = Metrics()
        self.registry = Registry(self.db, self.clock, brokers.hash_password)
        self.alerts = Alerts(self.db, self.clock, cfg.tz_s, self.node_name)
        self.commands = CommandService(self.db, cfg, self.clock, self.registry, self.log)
        self.ingest = Ingest(self.db, cfg, self.clock, self.registry, self.commands, self.alerts, self.metrics, self.log)
        self.commands.on_result.append(self._command_result)
        self.ingest.on_time_request.append(self._time_request)
        self.ingest.on_birth.append(self._birth)
        self.ingest.on_clock_skew.append(self._clock_skew)
        self.plans = None  # gateway.plans.PlanService, attached by make_gateway()
        self.secrets = self._secrets()
        self.provisioning = Provisioning(self.registry, self.reload_broker, brokers.BrokerUser(
            GATEWAY_USER, brokers.hash_password(self.secrets["mqtt_password"]), "gateway"), self.log)
        self.broker = None
        self.client = None
        self.connected = asyncio.Event()
        self._tasks = []
        self._wake = asyncio.Event()
        self.running = False

    # ---- identity ----------------------------------------------------------
    def _secrets(self):
        path = os.path.join(self.cfg.data_dir, "secrets.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        data = {"mqtt_password": secrets.token_urlsafe(24), "session_key": secrets.token_hex(32)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        return data

    def node_name(self, node_id):
        row = self.db.one("SELECT name FROM nodes WHERE id = ?", node_id)
        return row[0] if row else node_id

    def node_status(self, node):
        """A registry entry with its live state, for the API and the UI."""
        row = self.db.one("SELECT * FROM node_state WHERE node_id = ?", node["id"])
        live = {}
        if row is not None:
            live = {k: row[k] for k in ("online", "boot_id", "last_seen", "online_since", "offline_since",
                                        "firmware", "clock", "lamp_version", "plan_version", "safe")}
            live["online"] = bool(live["online"])
            live["safe"] = bool(live["safe"])
            live["caps"] = json.loads(row["caps"]) if row["caps"] else []
            live["tele"] = json.loads(row["tele"]) if row["tele"] else None
            live["failed"] = json.loads(row["failed"]) if row["failed"] else []
        alerts = [a["message_vi"] for a in self.alerts.list() if a["node_id"] == node["id"]]
        return dict(node, live=live, alerts=alerts)

    def events(self, node_id=None, limit=200):
        sql, args = "SELECT * FROM events", []
        if node_id:
            sql += " WHERE node_id = ?"
            args.append(node_id)
        rows = self.db.all(sql + " ORDER BY id DESC LIMIT ?", *args, limit)
        return [dict(r) | {"data": json.loads(r["data"])} for r in rows]

    @property
    def location(self):
        return {"lat": self.cfg.lat, "lon": self.cfg.lon, "tz": self.cfg.utc_offset}

    def broker_users(self):
        return self.provisioning.broker_users()

    # ---- lifecycle ---------------------------------------------------------
    async def start(self):
        self.running = True
        cfg = self.cfg
        if cfg.broker_mode != "external":
            self.broker = brokers.make_broker(cfg.broker_mode, os.path.join(cfg.data_dir, "broker"), cfg.site,
                                              host=cfg.broker_bind, port=cfg.broker_port, bridge=cfg.bridge,
                                              log=self.log)
            await self.broker.start(self.broker_users())
        self.commands.publish = self._publish
        self._tasks = [asyncio.create_task(self._mqtt_loop()), asyncio.create_task(self._housekeeping())]
        try:
            await asyncio.wait_for(self.connected.wait(), 15)
        except asyncio.TimeoutError:
            self.log("MQTT link not up yet; it keeps trying")

    async def stop(self):
        self.running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.broker is not None:
            await self.broker.stop()
        self.db.close()

    async def reload_broker(self, users=None):
        """After a node is added, re-provisioned or revoked: the broker's users and ACL follow."""
        if self.broker is not None:
            await self.broker.reload(self.broker_users() if users is None else users)

    # ---- MQTT --------------------------------------------------------------
    def _mqtt_params(self):
        cfg = self.cfg
        if cfg.broker_mode == "external":
            return cfg.broker_host, cfg.broker_port, cfg.broker_username or None, cfg.broker_password or None
        host = "127.0.0.1" if cfg.broker_bind in ("0.0.0.0", "::", "") else cfg.broker_bind
        return host, self.broker.port, GATEWAY_USER, self.secrets["mqtt_password"]

    async def _mqtt_loop(self):
        host, port, user, password = self._mqtt_params()
        state_topic = topics.gateway_state_topic(self.cfg.site)
        will = aiomqtt.Will(state_topic, b'{"v":1,"online":false}', qos=1, retain=True)
        backoff = 0.5
        while self.running:
            try:
                async with aiomqtt.Client(host, port, identifier="denloa-gw-" + self.cfg.site, username=user,
                                          password=password, will=will, clean_session=False, keepalive=30,
                                          max_inflight_messages=500, timeout=10) as client:
                    client.pending_calls_threshold = 10000  # an emergency fan-out has hundreds in flight
                    await client.publish(state_topic, b'{"v":1,"online":true}', qos=1, retain=True)
                    for kind in (topics.STATE, topics.EVT, topics.ACK):
                        await client.subscribe(topics.nodes_filter(self.cfg.site, kind), qos=1)
                    await client.subscribe(topics.nodes_filter(self.cfg.site, topics.TELE), qos=0)
                    self.client = client
                    self.connected.set()
                    self.metrics.mqtt_connected.set(1)
                    self._wake.set()  # send what waited for the link
                    backoff = 0.5
                    async for message in client.messages:
                        self.ingest.handle(str(message.topic), message.payload)
            except aiomqtt.MqttError as exc:
                self.log("MQTT link down: %s" % exc)
            finally:
                self.client = None
                self.connected.clear()
                self.metrics.mqtt_connected.set(0)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10)

    async def _publish(self, topic, payload, qos=1):
        client = self.client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos, timeout=10)
            return True
        except aiomqtt.MqttError as exc:
            self.log("publish on %s failed: %s" % (topic, exc))
            return False

    # ---- commands ----------------------------------------------------------
    def command(self, node_id, op, args=None, user=None, batch=None, expires_s=None):
        """Store a command and wake the sender; returns its id."""
        cmd_id = self.commands.create(node_id, op, args or {}, user=user, batch=batch, expires_s=expires_s)
        self._wake.set()
        return cmd_id

    async def send_now(self, cmd_ids):
        """Publish these commands at once, concurrently (emergency fan-out)."""
        await asyncio.gather(*(self.commands.send(c) for c in cmd_ids))

    def _command_result(self, row):
        self.metrics.commands.labels(row["status"]).inc()
        if row["status"] == "expired" and row["op"] != ops.TIME_SYNC:
            self.alerts.open("command_expired", row["node_id"], {"op": row["op"]})

    def _time_request(self, node_id, t1, received_ms):
        now_ms = int(self.clock.now() * 1000)
        self.command(node_id, ops.TIME_SYNC, {"t1": t1, "t2": received_ms, "t3": now_ms},
                     expires_s=TIME_SYNC_EXPIRY_S)

    def _clock_skew(self, node_id, skew_s):
        self.log("clock of %s is %+.0f s off: sending the time" % (node_id, skew_s))
        now_ms = int(self.clock.now() * 1000)
        self.command(node_id, ops.TIME_SYNC, {"t1": None, "t2": now_ms, "t3": now_ms}, expires_s=TIME_SYNC_EXPIRY_S)

    def _birth(self, node_id, state):
        now_ms = int(self.clock.now() * 1000)
        self.command(node_id, ops.TIME_SYNC, {"t1": None, "t2": now_ms, "t3": now_ms}, expires_s=TIME_SYNC_EXPIRY_S)
        if self.plans is not None:
            self.plans.on_birth(node_id, state)

    async def _housekeeping(self):
        """Send due commands, expire old ones, notice silent nodes, keep plans rolling."""
        last_sweep = 0.0
        while self.running:
            try:
                if self.client is not None:
                    due = self.commands.due()
                    if due:
                        await self.send_now(due)
                self.commands.expire()
                now = self.clock.now()
                if now - last_sweep >= 10:
                    last_sweep = now
                    self.ingest.sweep()
                    if self.plans is not None:
                        self.plans.roll()
                        self.plans.check_missed()
                    self._gauges()
            except Exception as exc:  # housekeeping must go on
                self.log("housekeeping error: %r" % exc)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(1.0, self.cfg.command_retry_s / self.clock.speed))
            except asyncio.TimeoutError:
                pass

    def _gauges(self):
        m = self.metrics
        m.nodes.set(self.db.one("SELECT COUNT(*) FROM nodes WHERE revoked = 0")[0])
        m.nodes_online.set(self.db.one("SELECT COUNT(*) FROM node_state WHERE online = 1")[0])
        m.alerts_open.set(self.alerts.count_open())

    # ---- emergency ---------------------------------------------------------
    async def emergency(self, zones, source, ref, volume, duration_s, user=None):
        """Air an emergency now on every loudspeaker of `zones`; returns the batch id."""
        nodes = [n for n in self.registry.nodes_in_zones(zones) if n["kind"] in ("speaker", "both")]
        batch = "e%d" % self.db.next_counter("batch")
        cmd_ids = []
        with self.db.tx():
            for node in nodes:
                args = {"id": batch, "dur": duration_s, "src": source, "zones": [z for z in node["zones"] if z in zones],
                        "vol": volume, "prio": 2}
                if source == "clip":
                    args["clip"] = ref
                elif source == "stream":
                    args["stream"] = ref
                cmd_ids.append(self.commands.create(node["id"], ops.BROADCAST_NOW, args, user=user, batch=batch,
                                                    expires_s=120))
        await self.send_now(cmd_ids)
        return batch

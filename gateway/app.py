"""The one wiring place: every gateway service is built here from the config, with explicit dependencies.

Nothing else constructs a service or attaches one to another after the fact;
hooks between services (a birth asks for a time sync and a plan check, an
answered command updates metrics and alerts) are connected here, in one list.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from gateway import broker as brokers
from gateway.alerts import Alerts
from gateway.audio.library import ClipLibrary
from gateway.clock import Clock, SystemClock
from gateway.commands import CommandService
from gateway.config import GatewayConfig
from gateway.db import Database
from gateway.emergency import Emergencies
from gateway.firmware import Firmware
from gateway.ingest import Ingest
from gateway.link import MqttLink
from gateway.metrics import Metrics
from gateway.plan_push import PlanPusher
from gateway.provisioning import Provisioning
from gateway.registry import Registry
from gateway.service import GATEWAY_USER, Gateway, load_secrets
from gateway.streams import StreamHub, Streams
from gateway.timesync import TimeService
from gateway.tls import SiteTls, node_bundle_tls
from gateway.settings import Settings
from gateway.users import Users


def _default_log(text: str) -> None:
    print("gateway:", text, flush=True)


def tls_names(cfg: GatewayConfig) -> list[str]:
    """The names in the gateway's certificate: [tls] names and the address nodes are told ([broker] host)."""
    names = list(cfg.tls_names)
    if cfg.broker_host not in ("", "127.0.0.1", "localhost", "::1", "0.0.0.0", "::") and cfg.broker_host not in names:
        names.append(cfg.broker_host)
    return names


def node_tls(site_tls: SiteTls, mqtt_port: int | None, https: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What the registry does to every provisioning bundle: the CA, the TLS port, HTTPS (gateway/tls.py)."""
    ca_pem, server = site_tls.ca_pem, site_tls.server_name

    def apply(bundle: dict[str, Any]) -> dict[str, Any]:
        return node_bundle_tls(bundle, ca_pem=ca_pem, server=server, mqtt_port=mqtt_port, https=https)
    return apply


def make_gateway(cfg: GatewayConfig, clock: Clock | None = None,
                 log: Callable[[str], None] | None = None) -> Gateway:
    clock = clock or SystemClock()
    log = log or _default_log
    os.makedirs(cfg.data_dir, mode=0o700, exist_ok=True)
    db = Database(os.path.join(cfg.data_dir, "denloa.db"))
    secrets = load_secrets(cfg.data_dir)
    metrics = Metrics()
    # The site CA and the gateway's certificate (gateway/tls.py), made at first start when TLS is on.
    site_tls = SiteTls.ensure(cfg.data_dir, cfg.site, tls_names(cfg), log) if cfg.tls_enabled else None
    broker_kind = cfg.broker_mode
    if broker_kind == "auto":
        broker_kind = "mosquitto" if brokers.mosquitto_available() else "embedded"
    mqtt_tls = site_tls is not None and broker_kind == "mosquitto"  # the embedded broker stays plain
    if site_tls is not None and not mqtt_tls:
        log("tls: MQTT stays plain: the %s broker has no TLS listener here (Mosquitto has; docs/security.md)"
            % broker_kind)
    registry = Registry(db, clock, brokers.hash_password, files_port=cfg.http_port,
                        tls=None if site_tls is None else node_tls(site_tls, cfg.tls_mqtt_port if mqtt_tls else None,
                                                                   cfg.tls_https))
    alerts = Alerts(db, clock, cfg.tz_s, registry.name)

    broker = None
    if cfg.broker_mode == "external":
        host, port = cfg.broker_host, cfg.broker_port
        username, password = cfg.broker_username or None, cfg.broker_password or None
    else:
        tls = None
        if mqtt_tls and site_tls is not None:
            tls = {"port": cfg.tls_mqtt_port, "cert": site_tls.cert_path, "key": site_tls.key_path,
                   "plain_host": "127.0.0.1" if cfg.tls_plain_mqtt == "localhost" else cfg.broker_bind}
        broker = brokers.make_broker(broker_kind, os.path.join(cfg.data_dir, "broker"), cfg.site,
                                     host=cfg.broker_bind, port=cfg.broker_port, bridge=cfg.bridge, log=log,
                                     **({"tls": tls} if tls else {}))
        host = "127.0.0.1" if cfg.broker_bind in ("0.0.0.0", "::", "") or tls else cfg.broker_bind
        port, username, password = broker.port, GATEWAY_USER, secrets["mqtt_password"]

    def deliver(batch: list[tuple[str, bytes]]) -> None:
        ingest.handle_batch(batch)  # ingest is built below; the link calls this only once it runs

    link = MqttLink(site=cfg.site, host=host, port=port, username=username, password=password,
                    deliver=deliver, metrics=metrics, log=log)
    commands = CommandService(db=db, cfg=cfg, clock=clock, registry=registry, publish=link.publish_many, log=log)
    ingest = Ingest(db=db, cfg=cfg, clock=clock, registry=registry, commands=commands, alerts=alerts,
                    metrics=metrics, log=log)
    timesync = TimeService(clock=clock, commands=commands, log=log)
    clips = ClipLibrary(db, cfg, clock, log)

    def clip_seconds(clip_id: str) -> float | None:
        row = clips.get(clip_id)
        return None if row is None else row["samples"] / 16000.0

    emergencies = Emergencies(db=db, registry=registry, commands=commands, clip_seconds=clip_seconds)

    plans = PlanPusher(db=db, clock=clock, registry=registry, alerts=alerts, commands=commands, ingest=ingest,
                       log=log, utc_offset=cfg.utc_offset, horizon_days=cfg.horizon_days, clip_seconds=clip_seconds)
    users = Users(db, clock, idle_s=cfg.session_idle_min * 60, tz_s=cfg.tz_s)
    settings = Settings(db, clock)
    ingest.offline_alert_after = lambda: 60.0 * float(settings.get("offline_alert_min"))
    streams = Streams(hub=StreamHub(log=log, mic_device=cfg.audio_mic_device), db=db,
                      registry=registry, commands=commands, emergencies=emergencies, log=log)

    async def reload_broker(broker_users: list[brokers.BrokerUser]) -> None:
        if broker is not None:
            await broker.reload(broker_users)

    firmware = Firmware(db=db, clock=clock, registry=registry, commands=commands, data_dir=cfg.data_dir,
                        release_key=cfg.firmware_release_key, allow_unsigned=cfg.firmware_allow_unsigned, log=log)
    gateway_user = brokers.BrokerUser(GATEWAY_USER, brokers.hash_password(secrets["mqtt_password"]), "gateway")
    provisioning = Provisioning(registry, reload_broker, gateway_user, log)
    gw = Gateway(cfg=cfg, clock=clock, log=log, db=db, secrets=secrets, metrics=metrics, registry=registry,
                 alerts=alerts, commands=commands, ingest=ingest, link=link, timesync=timesync,
                 emergencies=emergencies, plans=plans, users=users, settings=settings, provisioning=provisioning,
                 broker=broker, clips=clips, streams=streams, firmware=firmware)

    # ---- hooks, all of them ----
    link.on_connect.append(commands.work.set)  # send what waited for the link
    commands.on_result.append(gw.on_command_result)
    ingest.on_time_request.append(timesync.answer)
    ingest.on_clock_skew.append(timesync.on_clock_skew)
    ingest.on_birth.append(timesync.on_birth)
    ingest.on_birth.append(plans.on_birth)
    ingest.on_event.append(firmware.on_event)
    ingest.on_event.append(plans.on_event)  # an airing of a cancelled schedule: alert
    commands.on_result.append(firmware.on_command_result)

    def push_plans(what: str, node_ids: list[str]) -> None:
        if what == "add":
            with db.tx():  # the new nodes' program and plan, stored and their commands made, together
                plans.refresh(node_ids)

    provisioning.on_changed.append(push_plans)
    return gw

"""python -m gateway: run the commune's gateway service.

With no --config it starts on safe defaults with its data in ./data and
says so. At first start it creates the staff account "admin" with a
generated password, printed once and kept in DATA/admin-password.txt (0600).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.tls import SiteTls

SNDBUF_BYTES = 32 * 1024

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.service import Gateway


def http_socket(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, its connections' send buffers capped (SNDBUF_BYTES): a live stream to a
    node that stopped reading fills that buffer in about 4 s and the stream hub drops the node, where
    Linux's self-grown buffer (up to 4 MiB, ~5 minutes of stream) would hide it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF_BYTES)  # accepted sockets inherit it
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gateway",
        description="denloa gateway: commune security lighting and loudspeakers "
                    "(broker, registry, planner, signed commands, reports, HTTP API and web UI).")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (see gateway/config.py for every key); "
                                                    "without it, safe defaults and ./data")
    p.add_argument("--data-dir", metavar="DIR", help="override [data] dir")
    p.add_argument("--http-port", type=int, metavar="PORT", help="override [http] port")
    p.add_argument("--broker", choices=("auto", "mosquitto", "embedded", "external"), help="override [broker] mode")
    p.add_argument("--broker-port", type=int, metavar="PORT", help="override [broker] port")
    return p.parse_args(argv)


def load_config(args: argparse.Namespace) -> GatewayConfig:
    cfg = GatewayConfig.load(args.config) if args.config else GatewayConfig()
    if args.data_dir:
        cfg.data_dir = os.path.abspath(args.data_dir)
    if args.http_port is not None:
        cfg.http_port = args.http_port
    if args.broker:
        cfg.broker_mode = args.broker
    if args.broker_port is not None:
        cfg.broker_port = args.broker_port
    return cfg


async def first_admin(gw: Gateway) -> str | None:
    """Create the admin account on an empty database; returns its password or None."""
    if gw.users.count():
        return None
    password = secrets.token_urlsafe(12)
    await gw.users.add("admin", "Quản trị", "admin", password)
    path = os.path.join(gw.cfg.data_dir, "admin-password.txt")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


async def serve(cfg: GatewayConfig, clock: Clock | None = None,
                ready: Callable[[Gateway, str], object] | None = None) -> None:
    import uvicorn

    from gateway.api import create_app
    from gateway.app import make_gateway

    gw = make_gateway(cfg, clock)
    app = create_app(gw)
    password = await first_admin(gw)
    await gw.start()
    site_tls = SiteTls(os.path.join(cfg.data_dir, "tls"), cfg.site) if cfg.tls_enabled else None  # made by make_gateway
    https = site_tls is not None and cfg.tls_https
    url = "%s://%s:%d/" % ("https" if https else "http",
                           "127.0.0.1" if cfg.http_bind in ("0.0.0.0", "") else cfg.http_bind, cfg.http_port)
    print("denloa gateway for %s (%s)" % (cfg.site_name, cfg.site), flush=True)
    print("  data:   %s%s" % (cfg.data_dir, "" if cfg.path else "  (no --config: defaults)"), flush=True)
    print("  broker: %s on port %d" % (type(gw.broker).__name__ if gw.broker else "external", cfg.broker_port),
          flush=True)
    print("  web:    the staff dashboard (Vietnamese; English at the top right): %s" % url, flush=True)
    if site_tls is not None:
        print("  tls:    site CA %s  SHA-256 %s%s" % (site_tls.ca_path, site_tls.ca_fingerprint(),
                                                   "" if https else "  (HTTPS off: [tls] https = false)"), flush=True)
    else:
        print("  tls:    off ([tls] enabled = false): node passwords and reports cross the network in clear",
              flush=True)
    if password:
        print("  login:  admin / %s   (first start; also in %s)" % (
            password, os.path.join(cfg.data_dir, "admin-password.txt")), flush=True)
    tls_files = {"ssl_certfile": site_tls.cert_path, "ssl_keyfile": site_tls.key_path} if https and site_tls else {}
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.http_bind, port=cfg.http_port, log_level="warning",
                                           **tls_files))
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]  # gone since uvicorn 0.29
    task = asyncio.create_task(server.serve(sockets=[http_socket(cfg.http_bind, cfg.http_port)]))
    if ready is not None:
        result = ready(gw, url)
        if asyncio.iscoroutine(result):
            await result
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.should_exit = True
    await task
    await gw.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(args)
        asyncio.run(serve(cfg))
    except GatewayError as exc:
        print("denloa: %s\n        %s" % (exc.vi, exc.en), file=sys.stderr)
        return 2
    except OSError as exc:
        print("denloa: %s" % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

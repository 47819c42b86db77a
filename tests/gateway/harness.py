"""A real gateway (in this process) on a real broker, with real firmware nodes in MicroPython hosts."""
import asyncio
import os
import time

import httpx

from gateway.api import create_app
from gateway.app import make_gateway
from gateway.config import GatewayConfig
from simulator.hosts import NodeHost, free_port

ADMIN_PASSWORD = "mat-khau-quan-tri"


async def wait_until(predicate, timeout=20.0, what="condition", step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        await asyncio.sleep(step)


class GatewayRig:
    def __init__(self, tmp_path, broker="mosquitto", data_dir=None, broker_port=None, retry_s=2):
        self.tmp = tmp_path
        self.raw = {
            "site": {"id": "xa-an-binh", "name": "Xã An Bình", "lat": 21.0285, "lon": 105.8542, "utc_offset": 7},
            "data": {"dir": str(data_dir or tmp_path / "gw")},
            "http": {"bind": "127.0.0.1", "port": free_port()},
            "broker": {"mode": broker, "host": "127.0.0.1", "bind": "127.0.0.1", "port": broker_port or free_port()},
            "commands": {"retry_s": retry_s, "expiry_s": 300},
            "tls": {"enabled": False},  # plain: tests that need TLS turn it on (tests/security/test_tls_cpython.py)
        }
        self.gw = None
        self.http = None
        self.hosts = []
        self.logs = []
        self.clock = None  # the gateway's clock (None: the system clock)

    @property
    def cfg(self):
        return self.gw.cfg

    async def start(self):
        cfg = GatewayConfig(self.raw)
        self.gw = make_gateway(cfg, self.clock, log=self.logs.append)
        app = create_app(self.gw)
        if not self.gw.users.count():
            await self.gw.users.add("admin", "Quản trị", "admin", ADMIN_PASSWORD)
        await self.gw.start()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
        await self.login()
        return self

    async def login(self):
        r = await self.http.post("/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        self.http.headers["X-CSRF-Token"] = r.json()["csrf"]

    async def stop(self):
        for host in self.hosts:
            host.stop()
        if self.http is not None:
            await self.http.aclose()
        if self.gw is not None:
            await self.gw.stop()

    async def api(self, method, path, expect=None, **kw):
        r = await self.http.request(method, path, **kw)
        if r.status_code == 401 and b'"session.expired"' in r.content:  # idle or 12 h on a fast or
            await self.login()                                                  # fake clock: log in again
            r = await self.http.request(method, path, **kw)
        if expect is not None:
            assert r.status_code == expect, "%s %s -> %s %s" % (method, path, r.status_code, r.text)
        return r

    async def add_nodes(self, specs):
        """Register nodes through the API; returns their provisioning bundles."""
        bundles = []
        for spec in specs:
            r = await self.api("POST", "/api/nodes", json=spec, expect=201)
            bundles.append(r.json()["provisioning"])
        return bundles

    def start_host(self, bundles, speed=1, start=None, board=None, heap=None):
        nodes = []
        for bundle in bundles:
            cfg = dict(bundle)
            cfg["broker"] = dict(bundle["broker"], keepalive=10)
            cfg["tele_s"] = 5
            nodes.append({"dir": str(self.tmp / ("flash-" + bundle["node"])), "config": cfg,
                          "board": dict(board or {"zones": 2}, seed=len(nodes) + 1)})
        host = NodeHost(self.tmp, nodes, speed=speed, start=start,
                        heap=heap or "%dM" % max(2, len(nodes) // 6 + 2)).start(timeout=60)
        self.hosts.append(host)
        return host

    async def node(self, node_id):
        return (await self.api("GET", "/api/nodes/" + node_id, expect=200)).json()

    async def wait_online(self, node_ids, timeout=30):
        async def all_online():
            for n in node_ids:
                if not (await self.node(n))["live"].get("online"):
                    return False
            return True
        await wait_until(all_online, timeout, "nodes %s online" % node_ids)

    async def wait_command(self, cmd_id, status="applied", timeout=20):
        async def done():
            row = (await self.api("GET", "/api/commands/" + cmd_id, expect=200)).json()
            return row if row["status"] == status else None
        return await wait_until(done, timeout, "command %s %s" % (cmd_id, status))

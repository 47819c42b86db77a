"""A running gateway (uvicorn on a real port, its own Mosquitto) with a small simulated commune of real
firmware nodes, for the browser tests. The gateway runs on its own event loop in a thread (it owns its
database there, as in production); the tests talk to it through Chromium, through HTTP, or with `call()`
for a coroutine on its loop. Ground truth comes from the node hosts (`truth()`), never from the gateway.
"""
import asyncio
import os
import threading
import time

import httpx

from gateway.__main__ import http_socket
from gateway.api import create_app
from gateway.app import make_gateway
from gateway.config import GatewayConfig
from simulator.hosts import NodeHost, free_port

CENTER = (21.0285, 105.8542)
ZONES = [("thon-1", "Thôn Đông"), ("thon-2", "Thôn Tây")]
LAMPS, SPEAKERS = 3, 2
USERS = {  # username: (name, role, password)
    "admin": ("Nguyễn Văn Quản", "admin", "mat-khau-quan-tri"),
    "vanhoa": ("Trần Thị Văn Hóa", "operator", "mat-khau-van-hoa"),
    "congan": ("Lê Văn Xem", "viewer", "mat-khau-cong-an"),
}
PROGRAM = {
    "days": {"thuong": {"on": "sunset", "off": "sunrise", "level": 100,
                        "steps": [{"at": "23:00", "level": 40}], "motion": {"level": 80, "hold": 120}}},
    "calendar": [{"day": "thuong"}],
}


def node_specs():
    specs = []
    for h, (zone, name) in enumerate(ZONES):
        dlat, dlon = ((0.004, 0.001), (-0.003, -0.002))[h]
        for i in range(LAMPS):
            specs.append({"id": "den-%d-%d" % (h + 1, i + 1), "name": "Đèn %s số %d" % (name, i + 1), "zones": [zone],
                          "kind": "lamp", "lat": CENTER[0] + dlat * (i + 1) / 2, "lon": CENTER[1] + dlon * (i + 1) / 2})
        for j in range(SPEAKERS):
            specs.append({"id": "loa-%d-%d" % (h + 1, j + 1), "name": "Loa %s cụm %d" % (name, j + 1),
                          "zones": [zone], "kind": "both",
                          "lat": CENTER[0] + dlat * (2 * j + 1.5), "lon": CENTER[1] + dlon * (2 * j + 1.5)})
    return specs


class Commune:
    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.http_port = free_port()
        self.url = "http://127.0.0.1:%d" % self.http_port
        self.cfg = GatewayConfig({
            "site": {"id": "xa-an-binh", "name": "Xã An Bình", "lat": CENTER[0], "lon": CENTER[1], "utc_offset": 7},
            "data": {"dir": os.path.join(self.tmp, "gw")},
            "http": {"bind": "127.0.0.1", "port": self.http_port},
            "broker": {"mode": "mosquitto", "host": "127.0.0.1", "bind": "127.0.0.1", "port": free_port()},
            "commands": {"retry_s": 2, "expiry_s": 300},
            "tls": {"enabled": False},  # the UI tests talk plain HTTP to it
        })
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self.gw = None
        self.server = None
        self.host = None
        self.logs = []
        self.specs = node_specs()

    def call(self, coro_or_fn, timeout=60):
        """Run a coroutine (or a plain function) on the gateway's loop and return its result."""
        async def wrap():
            value = coro_or_fn() if callable(coro_or_fn) else coro_or_fn
            return await value if asyncio.iscoroutine(value) else value
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout)

    def start(self):
        import uvicorn

        self.thread.start()

        async def up():
            self.gw = make_gateway(self.cfg, log=self.logs.append)
            app = create_app(self.gw)
            for username, (name, role, password) in USERS.items():
                await self.gw.users.add(username, name, role, password)
            await self.gw.start()
            for zone, name in ZONES:
                self.gw.registry.add_zone({"id": zone, "name": name})
            added = await self.gw.provisioning.add_nodes(self.specs, self.cfg.site, "127.0.0.1", self.cfg.broker_port,
                                                         self.gw.location)
            self.gw.plans.set_program("default", "site", PROGRAM, "admin")
            self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            self.server_task = asyncio.ensure_future(self.server.serve(
                sockets=[http_socket("127.0.0.1", self.http_port)]))
            return [bundle for _node, bundle in added]

        bundles = self.call(up())
        nodes = []
        for i, bundle in enumerate(bundles):
            config = dict(bundle, tele_s=5)
            config["broker"] = dict(bundle["broker"], keepalive=10)
            config["files"] = {"host": "127.0.0.1", "port": self.http_port}
            nodes.append({"dir": os.path.join(self.tmp, "flash", bundle["node"]), "config": config,
                          "board": {"zones": 2, "seed": i + 1}})
        self.host = NodeHost(self.tmp, nodes, heap="4M").start(timeout=60)
        self.wait(lambda: self.call(lambda: self.gw.ingest.online_count()) == len(self.specs), 60, "every node online")
        return self

    def wait(self, predicate, timeout=30.0, what="condition", step=0.2):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
            time.sleep(step)

    def truth(self, node, what):
        """Ground truth: [(t, value)] the node's board reported for `what` (see simulator/hosts.py)."""
        return self.host.truth(node, what)

    def client(self, username="admin"):
        """An httpx client logged in through the JSON API (for setup and API permission checks)."""
        http = httpx.Client(base_url=self.url, timeout=30)
        r = http.post("/api/login", json={"username": username, "password": USERS[username][2]})
        assert r.status_code == 200, r.text
        http.headers["X-CSRF-Token"] = r.json()["csrf"]
        return http

    def stop(self):
        if self.host is not None:
            self.host.stop()

        async def down():
            if self.server is not None:
                self.server.should_exit = True
                await asyncio.wait([self.server_task], timeout=10)
            if self.gw is not None:
                await self.gw.stop()
        try:
            self.call(down(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

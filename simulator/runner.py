"""Run a scenario: the real gateway, the real broker, real firmware nodes, faults, staff actions.

One simulated clock serves everything: the gateway's (in this process) and
every node host's (MicroPython processes) read `start + (wall - epoch) *
speed`, with the same epoch. Nodes reach the broker through one TCP proxy
per zone (simulator/netfaults.py), so a zone can be partitioned. What each
lamp and amplifier physically did comes from the boards (ground truth), not
from what nodes report; assertions read it.
"""
import asyncio
import json
import os
import random
import shutil
import time

import httpx

from gateway.__main__ import http_socket
from gateway.api import create_app
from gateway.app import make_gateway
from gateway.clock import ScaledClock
from gateway.config import GatewayConfig
from simulator import assertions
from simulator.netfaults import LinkProxy
from simulator.hosts import NodeHost, free_port

ADMIN = ("sim", "mo-phong-%d")
EXPIRY_S = 1800  # simulated seconds a command lives, as a commune would set it


class SimClock(ScaledClock):
    """The run's clock; stands still at `start` until go(epoch)."""

    def __init__(self, start, speed):
        super().__init__(start, speed, epoch=float("inf"))

    def go(self, epoch):
        self.epoch = epoch

    def now(self):
        if self.epoch == float("inf"):
            return self.start
        return super().now()


class Run:
    def __init__(self, scenario, out_dir, speed=None, seed=None, log=print):
        self.sc = scenario
        self.out = os.path.abspath(out_dir)
        self.speed = float(speed or scenario.speed)
        self.seed = scenario.seed if seed is None else seed
        self.rng = random.Random(self.seed)
        self.log = log
        self.work = os.path.join(self.out, "run")
        self.clock = SimClock(scenario.start, self.speed)
        self.gw = None
        self.http = None
        self.http_server = None
        self.http_task = None
        self.clips = {}  # scenario name -> the clip row the gateway made (id, samples, pcm_sha256, ...)
        self.streams = {}  # scenario name -> the live stream the gateway started
        self.proxies = {}
        self.hosts = {}  # node id -> NodeHost
        self.bundles = {}
        self.faults = []
        self.actions = []
        self.alerts_seen = []
        self.batches = []
        self.gw_logs = []
        self.online_log = []  # [t, node, online]: the gateway's view, polled during the run
        self.births = []  # [t, node]: every birth the gateway handled
        self.t_wall = None  # wall time the run began (before the gateway and the hosts started)
        self.all_online_wall_s = None  # wall seconds from the run's start until the gateway saw every node online
        self.hosts_started_wall_s = None  # wall seconds from the run's start until the last host was up
        self.password = ADMIN[1] % self.seed
        self.flash_root = None  # the nodes' simulated flash: on tmpfs when the machine has one
        self.stats_every_s = None  # real seconds between `stats` asks to every node host (None: never)

    # ---- set-up --------------------------------------------------------------
    def _config(self, broker_port):
        sc = self.sc
        return GatewayConfig({
            "site": sc.site, "data": {"dir": os.path.join(self.work, "gateway")},
            "http": {"bind": "127.0.0.1", "port": free_port()},
            "broker": {"mode": sc.broker, "host": "127.0.0.1", "bind": "127.0.0.1", "port": broker_port},
            # plain unless the scenario says tls = true: then MQTT over TLS and HTTPS, as in production
            "tls": {"enabled": sc.tls, "https": sc.tls, "mqtt_port": free_port() if sc.tls else 8883},
            "commands": {"retry_s": max(30, int(self.speed)), "expiry_s": EXPIRY_S},
        })

    async def _start_gateway(self, cfg):
        self.gw = make_gateway(cfg, self.clock, log=self.gw_logs.append)
        app = create_app(self.gw)
        if not self.gw.users.count():
            await self.gw.users.add(ADMIN[0], "Mô phỏng", "admin", self.password)
        self.gw.ingest.on_birth.append(lambda node_id, state: self.births.append([self.clock.now(), node_id]))
        await self.gw.start()
        await self._serve_http(app, cfg)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=30)
        r = await self.http.post("/api/login", json={"username": ADMIN[0], "password": self.password})
        r.raise_for_status()
        self.http.headers["X-CSRF-Token"] = r.json()["csrf"]

    async def _serve_http(self, app, cfg):
        """The gateway's HTTP on its real port, as on the Pi: nodes fetch clips and live streams there
        (staff actions go through the ASGI transport: the same app, no socket)."""
        import uvicorn

        tls = {}
        if cfg.tls_https:  # the certificate make_gateway made (gateway/tls.py)
            tls = {"ssl_certfile": os.path.join(cfg.data_dir, "tls", "server.pem"),
                   "ssl_keyfile": os.path.join(cfg.data_dir, "tls", "server.key")}
        server = uvicorn.Server(uvicorn.Config(app, host=cfg.http_bind, port=cfg.http_port, log_level="warning",
                                               lifespan="off", **tls))
        server.install_signal_handlers = lambda: None  # the simulator owns its signals
        self.http_server = server
        self.http_task = asyncio.create_task(server.serve(sockets=[http_socket(cfg.http_bind, cfg.http_port)]))
        for _ in range(200):
            if server.started:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the gateway's HTTP server did not start")

    async def _stop_http(self):
        if self.http_task is not None:
            self.http_server.should_exit = True
            try:
                await asyncio.wait_for(self.http_task, 10)
            except (asyncio.TimeoutError, Exception):
                self.http_task.cancel()
            self.http_task = None

    async def api(self, method, path, **kw):
        r = await self.http.request(method, path, **kw)
        if r.status_code == 401:  # a long simulated run outlives a session
            r2 = await self.http.post("/api/login", json={"username": ADMIN[0], "password": self.password})
            self.http.headers["X-CSRF-Token"] = r2.json()["csrf"]
            r = await self.http.request(method, path, **kw)
        return r

    async def setup(self):
        sc = self.sc
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        cfg = self._config(free_port())
        await self._start_gateway(cfg)
        for zone in sc.zones:
            rng = random.Random(self.rng.random())  # drawn even without a proxy: the seed's other draws stay put
            if sc.proxy:
                proxy = LinkProxy("127.0.0.1", cfg.tls_mqtt_port if cfg.tls_enabled else cfg.broker_port,
                                  name=zone["id"], rng=rng)
                await proxy.start()
                self.proxies[zone["id"]] = proxy
            (await self.api("POST", "/api/zones", json={"id": zone["id"], "name": zone.get("name", zone["id"])})
             ).raise_for_status()
        if sc.program:
            (await self.api("PUT", "/api/programs/default/site", json=sc.program)).raise_for_status()
        await self._register(sc.nodes)

    async def _register(self, nodes):
        """Register every node as POST /api/nodes would, with one broker reload for all of them
        (Provisioning.add_nodes: the same checks, plan push and reload as the API, once for the lot;
        per node, 1,000 reloads of Mosquitto took about two minutes before the run could begin)."""
        sc, gw = self.sc, self.gw
        specs = []
        for i, node in enumerate(nodes):
            zone = next(z for z in sc.zones if z["id"] == node["zone"])
            lat = zone.get("lat", sc.site["lat"]) + 0.0004 * (i % 12) * (1 if i % 2 else -1)
            lon = zone.get("lon", sc.site["lon"]) + 0.0004 * (i % 7)
            node["lat"], node["lon"] = lat, lon
            specs.append({"id": node["id"], "name": node["id"], "zones": [node["zone"]], "kind": node["kind"],
                          "lat": lat, "lon": lon})
        added = await gw.provisioning.add_nodes(specs, gw.cfg.site, gw.cfg.broker_host, gw.cfg.broker_port,
                                                gw.location)
        for node, (_row, bundle) in zip(nodes, added):
            if node["zone"] in self.proxies:  # else straight to the broker (no network faults in this scenario)
                bundle["broker"]["port"] = self.proxies[node["zone"]].port
            if node.get("files") == "unreachable":  # nothing listens there: every download fails at once
                bundle["files"] = dict(bundle.get("files", {}), port=_closed_port())
            self.bundles[node["id"]] = bundle

    def _host_specs(self):
        out = []
        for node in self.sc.nodes:
            cfg = dict(self.bundles[node["id"]], tele_s=60)
            # network timing is real time: at high speed a 60 s reconnect backoff would be hours simulated
            cfg["broker"] = dict(cfg["broker"], keepalive=30, backoff_max_ms=max(200, int(60000 / self.speed)))
            board = dict({"zones": 2, "seed": self.rng.randrange(1, 2**31)}, **node["board"])
            if node["faults"].get("boot_crash"):  # must be there before the first boot
                board["boot_crash"] = int(node["faults"]["boot_crash"])
            out.append({"dir": os.path.join(self._flash_root(), node["id"]), "config": cfg, "board": board})
        return out

    def _flash_root(self):
        """Where the nodes' flash lives. On a disk, each command a node applies (its command log written
        temp-then-rename, with a backup) cost ~0.55 ms of host time against ~0.05 ms on tmpfs: with 50
        nodes a host that is most of an emergency's fan-out time. The simulated flash survives the
        nodes' power cuts and reboots either way (the directory lives as long as the run)."""
        if self.flash_root is None:
            shm = "/dev/shm"
            if os.path.isdir(shm) and os.access(shm, os.W_OK) and not os.environ.get("DENLOA_SIM_FLASH_ON_DISK"):
                import tempfile

                self.flash_root = tempfile.mkdtemp(prefix="denloa-flash-", dir=shm)
            else:
                self.flash_root = os.path.join(self.work, "flash")
            os.makedirs(self.flash_root, exist_ok=True)
        return self.flash_root

    def _start_hosts(self, epoch):
        specs = self._host_specs()
        per = max(1, self.sc.nodes_per_host)
        for k in range(0, len(specs), per):
            group = specs[k:k + per]
            host = NodeHost(self.work, group, speed=self.speed, start=self.sc.start, epoch=epoch,
                            heap="%dM" % max(2, len(group) // 6 + 2))
            host.start(timeout=60)
            for spec in group:
                self.hosts[spec["config"]["node"]] = host
        for node in self.sc.nodes:  # board faults present from the start
            for fault, value in node["faults"].items():
                if fault != "boot_crash":
                    self._board(node["id"], fault, value)

    def _board(self, node_id, fault, value=True):
        if fault == "stuck":
            words = "stuck %s" % (value or "none")
        elif fault == "clock_jump":
            words = "clock_jump %s" % float(value)
        elif fault == "motion":
            words = "motion"
        elif fault == "boot_crash":
            words = "boot_crash %d" % int(value)
        else:  # burnt, dark, rtc_dead, pir_dead
            words = "%s %d" % (fault, bool(value))
        self.hosts[node_id].send("%s %s" % (node_id, words))

    # ---- the run -----------------------------------------------------------
    async def run(self):
        t_wall = self.t_wall = time.time()
        try:
            await self.setup()
            epoch = time.time() + 1.0  # the hosts are up by then; every clock reads `start` at this instant
            self._start_hosts(epoch)
            self.hosts_started_wall_s = time.time() - t_wall
            self.clock.go(epoch)
            watcher = asyncio.create_task(self._watch_online())
            poller = asyncio.create_task(self._poll_stats()) if self.stats_every_s else None
            try:
                for entry in self.sc.timeline:
                    await self._until(entry["at"])
                    await (self._fault(entry) if entry["type"] == "fault" else self._action(entry))
                await self._until(self.sc.duration)
            finally:
                watcher.cancel()
                if poller is not None:
                    poller.cancel()
        except BaseException:
            # A run that fails (an action's request raised, Ctrl-C) still takes down what it started: the
            # node hosts, the gateway and its Mosquitto, which outlived the run before, orphaned.
            try:
                await self.close()
            except Exception as exc:
                self.log("  cleaning up after a failed run: %r" % exc)
            raise
        record = await self._finish(time.time() - t_wall)
        return record

    async def _watch_online(self):
        """Record when the gateway sees each node go offline and come back."""
        last = {}
        while True:
            gw = self.gw
            if gw is not None and gw.running:
                try:
                    rows = gw.db.all("SELECT node_id, online FROM node_state")
                except Exception:  # the gateway is being restarted
                    rows = []
                now = self.clock.now()
                for node_id, online in rows:
                    if last.get(node_id) != bool(online):
                        last[node_id] = bool(online)
                        self.online_log.append([now, node_id, bool(online)])
                if self.all_online_wall_s is None and rows and len(rows) >= len(self.sc.nodes) and all(
                        last.get(n["id"]) for n in self.sc.nodes):
                    self.all_online_wall_s = round(time.time() - self.t_wall, 2)
            await asyncio.sleep(0.2)

    async def _poll_stats(self):
        """Ask every node host how late its event loop wakes (simulator/node_host.py `stats`), now and then."""
        while True:
            await asyncio.sleep(self.stats_every_s)
            for host in set(self.hosts.values()):
                try:
                    host.send("stats")
                except Exception:  # a host that is gone reports nothing
                    pass

    def host_stats(self):
        """[{"host", "nodes", "p50_ms", "p99_ms", "max_ms", ...}] of every `stats` line the hosts printed."""
        out = []
        for k, host in enumerate(dict.fromkeys(self.hosts.values())):
            for line in list(host.lines):
                if line.startswith("stats "):
                    try:
                        out.append(dict(json.loads(line[6:]), host=k))
                    except ValueError:
                        pass
        return out

    def host_output(self, limit=200):
        """What the node hosts printed beside their protocol lines (tracebacks, warnings), first `limit`."""
        out = []
        for k, host in enumerate(dict.fromkeys(self.hosts.values())):
            for line in list(host.lines):
                if not line.startswith(("truth ", "stats ", "reboot ", "ready", "boot ")):
                    out.append("host %d: %s" % (k, line))
                    if len(out) >= limit:
                        return out
        return out

    def sim_elapsed(self):
        return self.clock.now() - self.sc.start

    async def _until(self, at):
        while True:
            left = at - self.sim_elapsed()
            if left <= 0:
                return
            await asyncio.sleep(min(left / self.speed, 0.5))

    async def _fault(self, entry):
        kind, targets = entry["do"], self.sc.targets(entry)
        now = self.clock.now()
        t_real = time.time()
        detail = ""
        if kind == "partition":
            for zone in ([entry["zone"]] if "zone" in entry else list(self.proxies)):
                (self.proxies[zone].blackhole if entry.get("mode") == "blackhole" else self.proxies[zone].cut)()
            detail = "zone %s" % entry.get("zone", "all")
        elif kind == "heal":
            for zone in ([entry["zone"]] if "zone" in entry else list(self.proxies)):
                self.proxies[zone].heal()
            detail = "zone %s" % entry.get("zone", "all")
        elif kind == "reboot":  # a staff reboot through the API: the firmware resets itself (hal.reset())
            for node_id in targets:
                r = await self.api("POST", "/api/nodes/%s/commands" % node_id, json={"op": "reboot", "args": {}})
                detail = "%d" % r.status_code
        elif kind in ("power_cut", "power_on"):
            for node_id in targets:
                self.hosts[node_id].send("%s power %s" % (node_id, "off" if kind == "power_cut" else "on"))
        elif kind == "broker_restart":
            broker = self.gw.broker
            await broker.stop()
            await asyncio.sleep(entry.get("down_s", 1.0))
            await broker.start(self.gw.broker_users())
        elif kind == "gateway_restart":
            cfg = self.gw.cfg
            await self.http.aclose()
            await self._stop_http()
            await self.gw.stop()
            await asyncio.sleep(entry.get("down_s", 1.0))
            await self._start_gateway(cfg)
        else:
            for node_id in targets:
                self._board(node_id, kind, entry.get("value", True))
        self.faults.append({"t": now, "t_real": t_real, "kind": kind, "targets": targets if kind not in (
            "broker_restart", "gateway_restart") else [],
            "detail": detail or str(entry.get("value", ""))})
        self.log("  %s  fault %s %s" % (self._hhmm(now), kind, detail or (",".join(targets[:4]) if kind not in (
            "broker_restart", "gateway_restart") else "")))

    async def _action(self, entry):
        kind, body = entry["do"], dict(entry.get("body", {}))
        now = self.clock.now()
        t_real = time.time()
        body = self._resolve(body)
        if kind == "schedule":
            r = await self.api("POST", "/api/schedules", json=body)
        elif kind == "cancel":
            r = await self.api("DELETE", "/api/schedules/%s" % body["id"])
        elif kind == "emergency":
            r = await self.api("POST", "/api/emergency", json=body)
            if r.status_code == 202:
                self.batches.append({"batch": r.json()["batch"], "t": now, "t_real": t_real, "index": entry["index"],
                                     "zones": body.get("zones", "all")})
        elif kind in ("tts", "upload"):
            r = await self._make_clip(kind, entry, body)
        elif kind == "stream":
            r = await self.api("POST", "/api/streams", json=self._resolve(body))
            if r.status_code in (200, 201, 202):
                self.streams[entry.get("name", "stream")] = r.json()
        elif kind == "stop_stream":
            stream = self.streams[entry.get("name", "stream")]
            r = await self.api("DELETE", "/api/streams/%s" % stream["id"])
        elif kind == "stop_emergency":
            r = await self.api("POST", "/api/emergency/%s/stop" % self.batches[-1]["batch"])
        elif kind == "program":
            r = await self.api("PUT", "/api/programs/default/site", json=body)
        else:  # override
            for node_id in self.sc.targets(entry):
                r = await self.api("POST", "/api/nodes/%s/commands" % node_id,
                                   json={"op": "lamp_override", "args": body})
        self.actions.append({"t": now, "t_real": t_real, "action": kind, "index": entry["index"],
                             "detail": json.dumps(body, ensure_ascii=False)[:200],
                             "result": "%d %s" % (r.status_code, r.text[:120])})
        self.log("  %s  action %s -> %d" % (self._hhmm(now), kind, r.status_code))

    def _resolve(self, value):
        """Body values "$name" become the id of the clip (or stream) the scenario made under that name."""
        if isinstance(value, dict):
            return {k: self._resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v) for v in value]
        if isinstance(value, str) and value.startswith("$"):
            name = value[1:]
            if name.endswith(".file"):
                return os.path.join(os.path.dirname(os.path.abspath(self.sc.path)), name[:-5])
            if name in self.clips:
                return self.clips[name]["id"]
            if name in self.streams:
                return self.streams[name]["id"]
        return value

    async def _make_clip(self, kind, entry, body):
        name = entry.get("name", "clip")
        if kind == "tts":
            r = await self.api("POST", "/api/clips/tts", json=dict({"title": name, "category": "news"}, **body))
        else:
            path = entry.get("file")
            if path:
                path = os.path.join(os.path.dirname(os.path.abspath(self.sc.path)), path)
                with open(path, "rb") as f:
                    data = f.read()
            else:  # a tone made here with ffmpeg: {hz, seconds}
                tone = entry.get("tone", {})
                data = await _tone(float(tone.get("hz", 440)), float(tone.get("seconds", 10)))
                path = "tone.wav"
            form = {"title": body.get("title", name), "category": body.get("category", "news")}
            r = await self.api("POST", "/api/clips", data=form,
                               files={"file": (os.path.basename(path), data, "application/octet-stream")})
        if r.status_code in (200, 201):
            self.clips[name] = r.json()
        return r

    def _hhmm(self, t):
        return time.strftime("%d/%m %H:%M", time.gmtime(t + self.sc.site["utc_offset"] * 3600))

    async def _host_stats(self):
        """Each node host's lateness over the run (node_host.py `stats`: its control ticks late on the
        simulated clock, its event loop late in real ms, its heap), asked once at the end."""
        asked = []
        for h in dict.fromkeys(self.hosts.values()):
            mark = len(h.lines)  # the answer is a line after this one (lines are only appended)
            try:
                if h.proc is not None and h.proc.poll() is None:
                    h.send("stats")
                    asked.append((h, mark))
            except OSError:  # a host that died (or was killed by a fault) has no figures
                pass
        out = []
        deadline = time.time() + 10
        for h, mark in asked:
            while True:
                got = [line for line in h.lines[mark:] if line.startswith("stats ")]
                if got or time.time() > deadline:
                    break
                await asyncio.sleep(0.05)
            if got:
                out.append(json.loads(got[-1].split(" ", 1)[1]))
        return out

    async def _finish(self, wall):
        end = self.clock.now()
        host_stats = await self._host_stats()
        truth, reboots = self._truth_and_reboots()
        gw = self.gw
        db_state = {
            "commands": [dict(r) for r in gw.db.all(
                "SELECT id, node_id, op, status, created, acked, expires FROM commands")],
            "airings": [dict(r) for r in gw.db.all("SELECT * FROM airings")],
            "reports": self._monthly_reports(gw),
            "gaps": [dict(r) for r in gw.db.all("SELECT * FROM seq_tracker WHERE missing > 0")],
            "alerts": [dict(r) for r in gw.db.all("SELECT node_id, kind, message_vi, opened, closed FROM alerts")],
            "online": {r[0]: bool(r[1]) for r in gw.db.all("SELECT node_id, online FROM node_state")},
            "events": [dict(r) for r in gw.db.all("SELECT node_id, kind, received, data FROM events")],
        }
        record = {
            "scenario": self.sc.name, "title": self.sc.title, "seed": self.seed, "speed": self.speed,
            "site": self.sc.site, "start": self.sc.start, "end": end, "wall_seconds": round(wall, 1),
            "nodes": [{"id": n["id"], "name": n["id"], "zones": [n["zone"]], "kind": n["kind"], "lat": n["lat"],
                       "lon": n["lon"]} for n in self.sc.nodes],
            "truth": truth, "reboots": reboots, "faults": self.faults, "actions": self.actions,
            "alerts": [{"t": a["opened"], "node": a["node_id"], "kind": a["kind"], "message": a["message_vi"]}
                       for a in db_state["alerts"]],
            "births": self.births,
            "connects": _connects_per_second(getattr(gw.broker, "log_path", None)),
            "host_stats": self.host_stats(),
            "host_output": self.host_output(),
            "snapshots": sorted({self.sc.start + self.sc.duration / 2} | {b["t"] + 5 for b in self.batches}),
        }
        record["assertions"] = assertions.evaluate(self.sc, record, db_state, self)
        record["figures"] = dict(getattr(self, "figures", {}))  # measured by assertions (e.g. start spread)
        record["metrics"] = {
            "commands": len(db_state["commands"]),
            "applied": sum(1 for c in db_state["commands"] if c["status"] == "applied"),
            "events": len(db_state["events"]),
            "alerts": len(db_state["alerts"]),
            "nodes_online_at_end": sum(db_state["online"].values()),
            "all_online_wall_s": self.all_online_wall_s,  # from the run's start, setup and host start-up included
            "hosts_started_wall_s": round(self.hosts_started_wall_s or 0, 2),
            "event_gaps": len(db_state["gaps"]),
            "hosts": host_stats,  # per host: control ticks late (simulated ms), loop late (real ms), heap
            "tick_late_p99_sim_ms": max((h.get("tick_p99_sim_ms", 0) for h in host_stats), default=None),
            "tick_late_max_sim_ms": max((h.get("tick_max_sim_ms", 0) for h in host_stats), default=None),
            "ticks": sum(h.get("ticks", 0) for h in host_stats),
        }
        await self.close()
        return record

    def _truth_and_reboots(self):
        """Every node's ground-truth rows [t, what, value] and reboots [t, cause], in one pass over each host's
        output (NodeHost.all_truth reads all of a host's lines per node: 48 h of 200 nodes took minutes)."""
        truth = {n["id"]: [] for n in self.sc.nodes}
        reboots = {n["id"]: [] for n in self.sc.nodes}
        for host in dict.fromkeys(self.hosts.values()):
            for line in list(host.lines):
                if line.startswith("truth "):
                    parts = line.split(" ", 4)
                    if len(parts) == 5 and parts[1] in truth:
                        truth[parts[1]].append([float(parts[2]), parts[3], json.loads(parts[4])])
                elif line.startswith("reboot "):
                    parts = line.split()
                    if len(parts) == 4 and parts[1] in reboots:
                        reboots[parts[1]].append([float(parts[3]), parts[2]])
        return truth, reboots

    def _monthly_reports(self, gw):
        """The gateway's monthly report for each local month the run touched."""
        from gateway.reports import monthly

        tz_s = int(self.sc.site["utc_offset"] * 3600)
        months = sorted({time.strftime("%Y-%m", time.gmtime(t + tz_s))
                         for t in (self.sc.start, self.clock.now())})
        out = {}
        for month in months:
            try:
                out[month] = monthly(gw.db, month, tz_s)
            except Exception as exc:  # a report that cannot be made fails the assertion reading it
                out[month] = {"error": repr(exc)}
        return out

    async def close(self):
        for host in set(self.hosts.values()):
            host.stop()
        if self.http is not None:
            await self.http.aclose()
        await self._stop_http()
        if self.gw is not None:
            await self.gw.stop()
            self.gw = None
        for proxy in self.proxies.values():
            await proxy.stop()
        if self.flash_root is not None and self.flash_root.startswith("/dev/shm/"):
            shutil.rmtree(self.flash_root, ignore_errors=True)


def _closed_port():
    """A local TCP port nothing listens on (refused at once)."""
    return free_port()


async def _tone(hz, secs):
    """A WAV of a sine tone with a little noise (loudness normalisation needs some signal), made by ffmpeg."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
        "sine=frequency=%g:sample_rate=22050:duration=%g" % (hz, secs), "-f", "wav", "pipe:1",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return out


def _connects_per_second(log_path):
    """{unix second: client connections} from Mosquitto's log (its timestamps are whole seconds)."""
    out = {}
    if not log_path or not os.path.exists(log_path):
        return out
    with open(log_path, errors="replace") as f:
        for line in f:
            if "New client connected" in line:
                second = line.split(":", 1)[0]
                if second.isdigit():
                    out[second] = out.get(second, 0) + 1
    return out


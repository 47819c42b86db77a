"""Over-the-air update in the simulator, on real firmware nodes that run the code of their own
flash slot (simulator/ota_host.py: one node per MicroPython process, restarted on every reboot)
and a real gateway (real Mosquitto, its HTTP served by uvicorn) on one simulated clock (x20):

- a good bundle rolls out to a zone, then to everyone; each node then runs it from slot b;
- a tampered bundle (a file changed on the gateway's disk after upload) is refused by the node,
  reported, and halts the rollout; the node runs on;
- a bundle that crashes at boot is rolled back by the node itself and halts the rollout;
- power cuts (SIGKILL of the node's process) during the download, right after the switch and
  during the trial leave a node that boots, every time, whole files of the old or the new version.
What a node runs is judged by its birth's version AND the slot and files it booted from.
"""
import asyncio
import os
import time

from gateway.clock import ScaledClock
from simulator.hosts import OtaNodeHost, flash_node
from tests.firmware.ota_kit import slot_version
from tests.gateway.bundle_zip import release_key, zip_bundle
from tests.gateway.harness import GatewayRig, wait_until
from tests.gateway.test_node_files import serve_http
from tests.simulator.ota_sim import slot_of, source_bundle

SPEED = 20
OLD = source_bundle("1.0.0")


def run(coro, timeout=240):
    asyncio.run(asyncio.wait_for(coro, timeout))


class Site:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.key, pub = release_key(tmp_path)
        self.start, self.epoch = time.time(), time.time()
        self.rig = GatewayRig(tmp_path)
        self.rig.clock = ScaledClock(self.start, SPEED, self.epoch)
        self.rig.raw["firmware"] = {"release_key": pub}
        self.hosts = {}
        self.stop_http = None

    async def up(self, specs, timeout=60):
        rig = self.rig
        await rig.start()
        self.stop_http = await serve_http(rig)
        for z in sorted({z for _n, z in specs}):
            await rig.api("POST", "/api/zones", json={"id": z, "name": z}, expect=201)
        bundles = await rig.add_nodes([{"id": n, "zones": [z], "kind": "speaker"} for n, z in specs])
        for b in bundles:
            cfg = dict(b, broker=dict(b["broker"], keepalive=10, backoff_max_ms=1000), tele_s=60)
            root = self.tmp / ("flash-" + b["node"])
            flash_node(root, OLD[2], OLD[0])
            self.hosts[b["node"]] = OtaNodeHost(self.tmp, root, cfg, board={"zones": 2, "seed": len(self.hosts) + 1},
                                                speed=SPEED, start=self.start, epoch=self.epoch).power_on()
        await self.wait_version(list(self.hosts), "1.0.0", timeout)
        return self

    async def upload(self, b, replace_on_disk=None):
        r = await self.rig.api("POST", "/api/firmware", content=zip_bundle(b, self.key),
                               headers={"content-type": "application/zip"}, expect=201)
        for path, data in (replace_on_disk or {}).items():  # someone changes a stored file afterwards
            from tests.firmware.ota_kit import sha_hex

            with open(os.path.join(self.rig.cfg.data_dir, "firmware", sha_hex(b[2][path])), "wb") as f:
                f.write(data)
        return r.json()

    async def rollout(self, version, first):
        r = await self.rig.api("POST", "/api/rollouts", json={"version": version, "first_zones": [first]},
                               expect=201)
        return r.json()["id"]

    async def get(self, rid):
        return (await self.rig.api("GET", "/api/rollouts/%d" % rid, expect=200)).json()

    async def wait_rollout(self, rid, pred, what, timeout=90):
        async def check():
            r = await self.get(rid)
            return r if pred(r) else None
        try:
            return await wait_until(check, timeout, what, step=0.2)
        except AssertionError:
            r = await self.get(rid)
            tails = {n: [l for l in h.lines if not l.startswith("truth")][-15:] for n, h in self.hosts.items()}
            raise AssertionError("%s: rollout %r\nnodes: %r\n%r" % (what, {k: r[k] for k in ("state", "stage", "reason")},
                                                                r["nodes"], tails))

    async def wait_version(self, nodes, version, timeout=60):
        async def check():
            for n in nodes:
                if (await self.rig.node(n))["live"].get("firmware") != version:
                    return False
            return True
        await wait_until(check, timeout, "%s running %s" % (nodes, version), step=0.2)

    def runs(self, node, bundles):
        """The node's last boot (slot, version it reports) after checking its slot holds that version whole."""
        host = self.hosts[node]
        slot, trial, version, path = host.boots()[-1]
        assert ("/app/%s/firmware/node.py" % slot) in path, path
        assert slot_version(host.root, slot, bundles) == version, (node, slot, version)
        return slot, version

    async def down(self):
        for host in self.hosts.values():
            host.stop()
        if self.stop_http is not None:
            await self.stop_http()
        await self.rig.stop()


def test_rollouts_good_tampered_and_crashing_bundles(tmp_path):
    good, bad, crash = source_bundle("1.1.0"), source_bundle("1.2.0"), source_bundle("1.3.0", crash=True)

    async def scenario():
        site = await Site(tmp_path).up([("loa-1", "thon-1"), ("loa-2", "thon-2"), ("loa-3", "thon-2")])
        try:
            for n in site.hosts:
                assert site.runs(n, [OLD]) == ("a", "1.0.0")
            # 1. a good bundle: thon-1 first, then the rest, each node confirming itself
            await site.upload(good)
            rid = await site.rollout("1.1.0", "thon-1")
            r = await site.get(rid)
            assert {n["node_id"]: n["status"] for n in r["nodes"]}["loa-2"] == "pending"
            await site.wait_rollout(rid, lambda r: r["stage"] == 2 or r["state"] == "done", "stage 2")
            r = await site.get(rid)
            first = {n["node_id"]: n for n in r["nodes"]}["loa-1"]
            assert first["status"] == "confirmed"
            r = await site.wait_rollout(rid, lambda r: r["state"] in ("done", "halted"), "rollout done")
            assert r["state"] == "done", r
            assert r["progress"]["confirmed"] == 3
            await site.wait_version(list(site.hosts), "1.1.0")
            for n in site.hosts:
                assert site.runs(n, [good]) == ("b", "1.1.0")
                assert [b[2] for b in site.hosts[n].boots()] == ["1.0.0", "1.1.0"]  # one trial boot, no more
            # 2. a tampered file on the gateway: refused by the node, reported, the rollout halts
            await site.upload(bad, replace_on_disk={
                "firmware/version.py": bad[2]["firmware/version.py"].replace(b"1.2.0", b"6.6.6")})  # same size
            rid = await site.rollout("1.2.0", "thon-1")
            r = await site.wait_rollout(rid, lambda r: r["state"] == "halted", "halt on a refusal")
            byid = {n["node_id"]: n for n in r["nodes"]}
            assert byid["loa-1"]["status"] == "failed" and "firmware/version.py hash mismatch" in byid["loa-1"]["reason"]
            assert byid["loa-2"]["status"] == "pending" and byid["loa-3"]["status"] == "pending"
            assert site.runs("loa-1", [good]) == ("b", "1.1.0") and len(site.hosts["loa-1"].boots()) == 2
            await site.rig.api("POST", "/api/rollouts/%d/cancel" % rid, expect=200)
            # 3. a build that crashes at boot: the nodes roll back by themselves; the rollout halts
            await site.upload(crash)
            rid = await site.rollout("1.3.0", "thon-2")
            r = await site.wait_rollout(rid, lambda r: r["state"] == "halted", "halt on a rollback")
            assert "rolled back" in r["reason"] and "crashed at boot" in r["reason"], r["reason"]
            await site.wait_rollout(rid, lambda r: r["progress"]["rolled_back"] == 2, "both rolled back")
            await site.wait_version(["loa-2", "loa-3"], "1.1.0")
            for n in ("loa-2", "loa-3"):
                boots = site.hosts[n].boots()
                assert [b[2] for b in boots][-2:] == ["1.1.0", "1.1.0"] and boots[-1][0] == "b"
                assert any("crashes at boot" in line for line in site.hosts[n].lines)
                assert site.runs(n, [good]) == ("b", "1.1.0")
            assert {n["node_id"]: n["status"] for n in r["nodes"]}["loa-1"] == "pending"  # stage 2 never sent
            alerts = [e for e in (await site.rig.api("GET", "/api/events?node=loa-2", expect=200)).json()
                      if e["kind"] == "ota_rolled_back"]
            assert alerts and alerts[0]["data"]["version"] == "1.3.0"
            for host in site.hosts.values():
                assert not host.errors(), host.errors()
        finally:
            await site.down()
    run(scenario())


def test_power_cuts_during_an_update_leave_a_node_that_boots_the_old_or_new_version(tmp_path):
    new = source_bundle("1.1.0")

    async def scenario():
        site = await Site(tmp_path).up([("loa-1", "thon-1"), ("loa-2", "thon-1")])
        one, two = site.hosts["loa-1"], site.hosts["loa-2"]
        try:
            await site.upload(new)
            rid = await site.rollout("1.1.0", "thon-1")
            seen = []

            def cut_and_check(host, where):
                host.cut()
                slot, version = slot_of(host.root, [OLD, new])
                assert version in ("1.0.0", "1.1.0"), (where, slot)
                seen.append((host.name, where, slot, version))
                host.power_on()

            def files_in_b(host):
                n = 0
                for _d, _s, names in os.walk(os.path.join(host.root, "app", "b")):
                    n += len(names)
                return n

            def state(host):
                with open(os.path.join(host.root, "boot.json")) as f:
                    return f.read()
            # loa-1: cuts during the download (some files of the new version in slot b), then at the switch
            for want in (3, 15, 30):
                await wait_until(lambda: files_in_b(one) >= want, 60, "%d files in slot b" % want, step=0.01)
                cut_and_check(one, "download %d" % want)
            await wait_until(lambda: '"trial"' in state(one), 60, "the switch", step=0.005)
            cut_and_check(one, "switched")
            # loa-2: a cut while its new version is on trial, before it could confirm itself
            await wait_until(lambda: any(b[1] for b in two.boots()), 60, "loa-2's trial boot", step=0.01)
            cut_and_check(two, "trial")
            r = await site.wait_rollout(rid, lambda r: r["state"] == "halted", "the halt", timeout=120)
            assert "loa-2 rolled back" in r["reason"] and "before it confirmed" in r["reason"], r["reason"]
            await site.wait_rollout(rid, lambda r: {n["node_id"]: n["status"] for n in r["nodes"]}["loa-1"]
                                    in ("confirmed", "rolled_back"), "loa-1 settled")
            # every boot of both ran whole files of one version, from the slot it says
            for host in (one, two):
                for slot, trial, version, path in host.boots():
                    assert version in ("1.0.0", "1.1.0") and "/app/%s/" % slot in path
                assert not host.errors(), host.errors()
            await site.wait_version(["loa-2"], "1.0.0")
            assert site.runs("loa-2", [OLD]) == ("a", "1.0.0")
            if {n["node_id"]: n["status"] for n in (await site.get(rid))["nodes"]}["loa-1"] == "confirmed":
                await site.wait_version(["loa-1"], "1.1.0")
                assert site.runs("loa-1", [new]) == ("b", "1.1.0")
            else:  # the cut at the switch came after the bootstrap had started the trial: rolled back too
                assert site.runs("loa-1", [OLD]) == ("a", "1.0.0")
            print("OTA power cuts: %s; rollout %s (%s)" % (seen, r["state"], r["reason"]))
        finally:
            await site.down()
    run(scenario())

"""`python -m hardware provision` against a real gateway (HTTP on a real port) and the pty node.

The gateway is the product's (gateway.app.make_gateway + gateway.api.create_app
on uvicorn, the embedded broker), configured like tests/gateway/harness.py's
GatewayRig; the node is tests/hardware/pty_node.py with a bundle installed.
"""
import asyncio
import csv
import json
import os
import re
import sys

import pytest

from firmware.config import NodeConfig
from tests.gateway.harness import ADMIN_PASSWORD, GatewayRig
from tests.hardware.pty_node import PtyNode
from tests.hardware.test_tools_cpython import REPO

SITE = "xa-an-binh"


class ServedGateway:
    """A GatewayRig's gateway with its API served over TCP for the tool (a subprocess) to reach."""

    def __init__(self, tmp_path):
        self.rig = GatewayRig(tmp_path, broker="embedded")

    async def __aenter__(self):
        import uvicorn

        from gateway.api import create_app
        from gateway.app import make_gateway
        from gateway.config import GatewayConfig

        rig = self.rig
        rig.gw = gw = make_gateway(GatewayConfig(rig.raw), None, log=rig.logs.append)
        app = create_app(gw)
        await gw.users.add("admin", "Quản trị", "admin", ADMIN_PASSWORD)
        await gw.users.add("viewer", "Xem", "viewer", ADMIN_PASSWORD)
        await gw.start()
        gw.registry.add_zone({"id": "thon-1", "name": "Thôn 1"})
        gw.registry.add_zone({"id": "thon-2", "name": "Thôn 2"})
        self.port = rig.raw["http"]["port"]
        self.url = "http://127.0.0.1:%d" % self.port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.task = asyncio.ensure_future(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc):
        self.server.should_exit = True
        await self.task
        await self.rig.gw.stop()

    def key(self, node_id):
        row = self.rig.gw.registry.db.one("SELECT hmac_key FROM nodes WHERE id = ?", node_id)
        return None if row is None else bytes(row[0]).hex()


async def atool(*args, env=None):
    """The tool as a subprocess without blocking the gateway's loop; (rc, stdout, stderr)."""
    e = dict(os.environ, PYTHONPATH=str(REPO), DENLOA_ADMIN_PASSWORD=ADMIN_PASSWORD)
    e.update(env or {})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hardware", *args, env=e, cwd=str(REPO),
                                                stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


def provision(node, tmp_path, node_id, *extra, env=None):
    return atool("provision", "--port", node.port, "--site", SITE, "--node", node_id,
                 "--inventory", str(tmp_path / "inventory.csv"), "--label-dir", str(tmp_path / "labels"), *extra,
                 env=env)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 240))


def test_provision_registers_writes_the_config_labels_and_logs_then_replace(tmp_path, bundle):
    async def main():
        with PtyNode(tmp_path / "node") as node:
            node.install(bundle)
            async with ServedGateway(tmp_path) as gw:
                rc, so, se = await provision(node, tmp_path, "den-thon1-03", "--zone", "thon-1", "--zone", "thon-2",
                                             "--gateway", gw.url, "--kind", "lamp", "--wifi-ssid", "xa-wifi",
                                             env={"DENLOA_WIFI_PASSWORD": "wifi-pass-123"})
                assert rc == 0, so + se
                raw = json.loads((node.root / "config.json").read_text())
                cfg = NodeConfig(raw)  # the node's own parser accepts it
                assert cfg.node == "den-thon1-03" and cfg.site == SITE and cfg.zones == {"thon-1": 1, "thon-2": 2}
                assert cfg.firmware == "0.1.0" and cfg.board == "denloa-v1"
                assert raw["wifi"] == {"ssid": "xa-wifi", "password": "wifi-pass-123"}
                assert raw["key"] == gw.key("den-thon1-03")  # the gateway made the key and kept it
                assert cfg.broker_user == "den-thon1-03" and len(cfg.broker_password) >= 20
                assert not list(node.root.glob("*.tmp"))
                first_key = raw["key"]

                # the id is taken: refused, the node's config untouched
                rc, so, se = await provision(node, tmp_path, "den-thon1-03", "--zone", "thon-1", "--zone", "thon-2",
                                             "--gateway", gw.url)
                assert rc == 2 and "đã có" in se and "--replace" in se and "Traceback" not in se
                assert json.loads((node.root / "config.json").read_text())["key"] == first_key

                # --replace: new credentials from the gateway, the old key is dead
                rc, so, se = await provision(node, tmp_path, "den-thon1-03", "--zone", "thon-1", "--zone", "thon-2",
                                             "--gateway", gw.url, "--replace")
                assert rc == 0, so + se
                raw2 = json.loads((node.root / "config.json").read_text())
                assert raw2["key"] != first_key and raw2["key"] == gw.key("den-thon1-03")
                assert raw2["broker"]["password"] != raw["broker"]["password"]

                # a viewer may not register nodes; a gateway that is not there
                rc, so, se = await provision(node, tmp_path, "den-x", "--zone", "thon-1", "--gateway", gw.url,
                                             "--user", "viewer")
                assert rc == 2 and "admin" in se and gw.key("den-x") is None
            rc, so, se = await provision(node, tmp_path, "den-y", "--zone", "thon-1", "--gateway", gw.url)
            assert rc == 2 and "Cannot reach the gateway" in se and "Không kết nối được" in se
        # the label: QR of the id and the id as text
        import segno

        svg = (tmp_path / "labels" / "den-thon1-03.svg").read_text()
        import xml.etree.ElementTree as ET

        ET.fromstring(svg.encode())  # well-formed
        assert svg.startswith("<?xml") and ">den-thon1-03</text>" in svg and "thon-1, thon-2" in svg
        want = re.search(r' d="([^"]+)"', segno.make_qr("den-thon1-03", error="m").svg_inline(scale=1, border=2))
        assert want and want.group(1) in svg  # the same QR modules segno makes for the id
        # the inventory: two lines (new, replace), the keys' ids differ, no secret in it
        text = (tmp_path / "inventory.csv").read_text()
        rows = list(csv.DictReader(text.splitlines()))
        assert [(r["node"], r["action"]) for r in rows] == [("den-thon1-03", "new"), ("den-thon1-03", "replace")]
        assert rows[0]["zones"] == "thon-1 thon-2" and rows[0]["firmware"] == "0.1.0" and rows[0]["port"] == node.port
        assert rows[0]["key_id"] != rows[1]["key_id"] and rows[0]["site"] == SITE
        for secret in (first_key, raw2["key"], raw["broker"]["password"], raw2["broker"]["password"], "wifi-pass-123"):
            assert secret not in text

    run(main())


def test_offline_bundle_is_written_once_and_never_again(tmp_path, bundle):
    async def main():
        async with ServedGateway(tmp_path) as gw:
            import httpx

            async with httpx.AsyncClient(base_url=gw.url) as http:
                r = await http.post("/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})
                http.headers["X-CSRF-Token"] = r.json()["csrf"]
                r = await http.post("/api/nodes", json={"id": "loa-2", "zones": ["thon-2"], "kind": "speaker"})
                assert r.status_code == 201, r.text
                exported = r.json()
        (tmp_path / "loa-2.json").write_text(json.dumps([exported]))
        with PtyNode(tmp_path / "node") as node:
            node.install(bundle)
            rc, so, se = await provision(node, tmp_path, "loa-2", "--offline-bundle", str(tmp_path / "loa-2.json"),
                                         "--site", "xa-khac")
            assert rc == 2 and "not 'xa-khac'" in se and not (node.root / "config.json").exists()
            rc, so, se = await provision(node, tmp_path, "loa-2", "--offline-bundle", str(tmp_path / "loa-2.json"))
            assert rc == 0, so + se
            cfg = NodeConfig(json.loads((node.root / "config.json").read_text()))
            assert cfg.node == "loa-2" and cfg.has_lamp is False
            assert cfg.key.hex() == exported["provisioning"]["key"]
            (node.root / "config.json").unlink()
            rc, so, se = await provision(node, tmp_path, "loa-2", "--offline-bundle", str(tmp_path / "loa-2.json"))
            assert rc == 2 and "never reused" in se and "Traceback" not in se
            assert not (node.root / "config.json").exists()
            rc, so, se = await provision(node, tmp_path, "loa-9", "--offline-bundle", str(tmp_path / "loa-2.json"))
            assert rc == 2 and "no provisioning bundle for node loa-9" in se

    run(main())


def test_a_board_without_the_firmware_is_refused_before_the_gateway_is_asked(tmp_path):
    async def main():
        async with ServedGateway(tmp_path) as gw:
            with PtyNode(tmp_path / "node") as node:  # MicroPython only: nothing uploaded
                rc, so, se = await provision(node, tmp_path, "den-1", "--zone", "thon-1", "--gateway", gw.url)
            assert rc == 2 and "hardware flash" in se
            assert gw.key("den-1") is None  # no key issued for a board that cannot take it

    run(main())


def test_an_explicit_board_wins_over_the_bundles_and_an_unknown_one_is_refused():
    """The gateway's add form may leave its default board in the bundle: --board says what is on the pole."""
    from hardware.tools.common import ToolError
    from hardware.tools.provision import node_config

    bundle = {"site": "xa", "node": "den-1", "key": "00" * 32, "broker": {}, "location": {}, "board": "denloa-v1"}
    assert node_config(bundle, "devkitc-pole", "0.1.0", None)["board"] == "devkitc-pole"
    assert node_config(bundle, None, "0.1.0", None)["board"] == "denloa-v1"
    try:
        node_config(bundle, "devkit-typo", "0.1.0", None)
    except ToolError as exc:
        assert "devkitc-pole" in exc.en and "devkitc-pole" in exc.vi  # it names the boards there are
    else:
        raise AssertionError("an unknown board was accepted")

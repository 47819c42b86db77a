"""Firmware bundles and staged rollouts on a real gateway (gateway/firmware.py, docs/ota.md): the
upload checks (signature by the release key, hashes, paths), content-addressed serving only to
nodes an open rollout sent the bundle, stages, pause/resume, progress from the nodes' events,
and the halt on a rollback or a refusal. Nodes here are their MQTT messages fed to the gateway's
ingest; tests/simulator/test_ota_sim.py runs the real firmware."""
import asyncio
import hashlib
import json
import zipfile

from protocol import topics
from protocol.messages import Ack, Event, State
from tests.firmware.ota_kit import app_files, bundle, sha_hex
from tests.gateway.bundle_zip import release_key, zip_bundle
from tests.gateway.harness import GatewayRig
from tests.gateway.test_node_files import raw_request, serve_http

NEW = bundle("1.1.0")


def run(coro, timeout=60):
    asyncio.run(asyncio.wait_for(coro, timeout))


class Nodes:
    """Nodes as the gateway hears them: births, events, acks into its ingest."""

    def __init__(self, rig):
        self.rig = rig
        self.seq = {}

    def say(self, node, kind, payload):
        self.rig.gw.ingest.handle(topics.node_topic(self.rig.cfg.site, node, kind), payload)

    def birth(self, node, fw):
        self.say(node, topics.STATE, State(True, "b" + node[-1], fw, 1, 0, ["amp"], 1790000000).encode())

    def event(self, node, kind, data):
        n = self.seq[node] = self.seq.get(node, -1) + 1
        self.say(node, topics.EVT, Event("b" + node[-1], n, kind, data, 1790000000).encode())

    def ack(self, cmd_id, node, applied=True, reason=None, detail=None):
        self.say(node, topics.ACK, Ack(cmd_id, "applied" if applied else "rejected", reason, detail,
                                       1790000000).encode())


async def _setup(tmp_path, unsigned=False):
    key, pub = release_key(tmp_path)
    rig = GatewayRig(tmp_path)
    rig.raw["firmware"] = {"release_key": pub, "allow_unsigned": unsigned}
    await rig.start()
    for z in ("thon-1", "thon-2"):
        await rig.api("POST", "/api/zones", json={"id": z, "name": z}, expect=201)
    specs = [("loa-1", "thon-1"), ("loa-2", "thon-1"), ("loa-3", "thon-2"), ("loa-4", "thon-2")]
    bundles = await rig.add_nodes([{"id": n, "zones": [z], "kind": "speaker"} for n, z in specs])
    pw = {b["node"]: b["broker"]["password"] for b in bundles}
    return rig, key, pw


async def _upload(rig, data, expect):
    return await rig.api("POST", "/api/firmware", content=data, headers={"content-type": "application/zip"},
                         expect=expect)


def test_upload_checks_the_release_signature_hashes_and_paths(tmp_path):
    async def scenario():
        rig, key, _pw = await _setup(tmp_path)
        try:
            other, _ = release_key(tmp_path / "..")
            r = await _upload(rig, zip_bundle(NEW), 400)
            assert r.json()["error"] == "firmware.unsigned"
            r = await _upload(rig, zip_bundle(NEW, other), 400)  # signed by someone else
            assert r.json()["error"] == "firmware.signature"
            tampered = dict(NEW[2], **{"firmware/node.py": b"evil"})
            r = await _upload(rig, zip_bundle(NEW, key, replace=tampered), 400)
            assert r.json()["error"] == "firmware.hash" and "firmware/node.py" in r.json()["message_en"]
            good = zip_bundle(NEW, key)
            at = good.index(b"firmware/node.py") + len(b"firmware/node.py") + 8  # inside its compressed bytes
            damaged = good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1:]
            r = await _upload(rig, damaged, 400)  # the zip's own CRC (or inflate) fails: a refusal, not a 500
            assert r.json()["error"] in ("firmware.hash", "firmware.zip"), r.json()
            r = await _upload(rig, zip_bundle(NEW, key, extra={"boot.py": b"x"}), 400)
            assert r.json()["error"] == "firmware.extra"
            evil = bundle("6.6.6", files={"main.py": b"x", "../config.json": b"{}"})
            assert (await _upload(rig, zip_bundle(evil, key), 400)).json()["error"] == "firmware.path"
            assert (await _upload(rig, b"not a zip", 400)).json()["error"] == "firmware.zip"
            r = await _upload(rig, zip_bundle(NEW, key), 201)
            row = r.json()
            assert row["version"] == "1.1.0" and row["manifest_sha"] == NEW[1] and row["signed"] == 1
            assert row["files"] == len(NEW[2])
            for data in list(NEW[2].values()) + [NEW[0]]:  # content-addressed, exact bytes
                sha = hashlib.sha256(data).hexdigest()
                assert (tmp_path / "gw" / "firmware" / sha).read_bytes() == data
            await _upload(rig, zip_bundle(NEW, key), 201)  # the same again: fine
            clash = bundle("1.1.0", app_files("1.1.0", size=700))
            assert (await _upload(rig, zip_bundle(clash, key), 400)).json()["error"] == "firmware.exists"
            listed = (await rig.api("GET", "/api/firmware", expect=200)).json()
            assert [b["version"] for b in listed["bundles"]] == ["1.1.0"]
            actions = [a["action"] for a in (await rig.api("GET", "/api/audit", expect=200)).json()]
            assert "firmware.add" in actions and "firmware.refused" in actions
            await rig.api("DELETE", "/api/firmware/1.1.0", expect=200)
            assert not list((tmp_path / "gw" / "firmware").iterdir())
        finally:
            await rig.stop()
    run(scenario())


def test_the_bundle_hardware_build_makes_is_accepted(tmp_path):
    """The real build (mpy-cross, manifest, Ed25519 signature by the release key) meets the gateway's
    checks: the formats of the technician's tool and the OTA service are one contract."""
    from cryptography.hazmat.primitives import serialization

    from hardware.tools.build import build

    async def scenario():
        rig, key, _pw = await _setup(tmp_path)
        try:
            pem = tmp_path / "release.key"
            pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
            path = build(tmp_path / "bundle", sign=str(pem))
            row = (await _upload(rig, path.read_bytes(), 201)).json()
            assert row["signed"] == 1 and row["files"] > 30
            with zipfile.ZipFile(path) as z:
                manifest = json.loads(z.read("manifest.json"))
            assert manifest["boot"] == "main.py" and manifest["bootstrap"] == "bootstrap.py"
            assert row["version"] == manifest["version"]
        finally:
            await rig.stop()
    run(scenario())


def test_unsigned_bundles_only_when_configured(tmp_path):
    async def scenario():
        rig, key, _pw = await _setup(tmp_path, unsigned=True)
        try:
            row = (await _upload(rig, zip_bundle(NEW), 201)).json()
            assert row["signed"] == 0
            other = bundle("1.2.0")
            bad_key, _ = release_key(tmp_path / "..")
            assert (await _upload(rig, zip_bundle(other, bad_key), 400)).json()["error"] == "firmware.signature"
        finally:
            await rig.stop()
    run(scenario())


def test_a_staged_rollout_serves_only_its_nodes_moves_by_stage_and_halts_on_a_rollback(tmp_path):
    async def scenario():
        rig, key, pw = await _setup(tmp_path)
        stop_http = await serve_http(rig)
        nodes = Nodes(rig)
        try:
            for n in ("loa-1", "loa-2", "loa-3", "loa-4"):
                nodes.birth(n, "1.0.0")
            await _upload(rig, zip_bundle(NEW, key), 201)
            file_sha = sha_hex(NEW[2]["firmware/node.py"])

            async def get(node, sha):
                return await asyncio.to_thread(raw_request, rig.cfg.http_port, "/node/v1/firmware/" + sha, node,
                                               pw[node])
            assert (await get("loa-1", NEW[1]))[0] == 404  # no rollout yet
            r = (await rig.api("POST", "/api/rollouts", json={"version": "1.1.0", "first_zones": ["thon-1"]},
                               expect=201)).json()
            rid = r["id"]
            stage = {n["node_id"]: (n["stage"], n["status"]) for n in r["nodes"]}
            assert stage == {"loa-1": (1, "sent"), "loa-2": (1, "sent"), "loa-3": (2, "pending"),
                             "loa-4": (2, "pending")}
            cmds = {n["node_id"]: n["cmd_id"] for n in r["nodes"] if n["cmd_id"]}
            cmd = (await rig.api("GET", "/api/commands/" + cmds["loa-1"], expect=200)).json()
            assert cmd["op"] == "ota" and cmd["args"] == {"version": "1.1.0", "manifest": NEW[1],
                                                         "path": "/node/v1/firmware/"}
            # serving: the manifest and files of this bundle, to nodes it was sent to, with their own login
            status, _h, body = await get("loa-1", NEW[1])
            assert status == 200 and body == NEW[0]
            status, _h, body = await get("loa-2", file_sha)
            assert status == 200 and body == NEW[2]["firmware/node.py"]
            assert (await get("loa-3", file_sha))[0] == 404  # stage 2: not yet
            assert (await asyncio.to_thread(raw_request, rig.cfg.http_port, "/node/v1/firmware/" + file_sha,
                                            "loa-1", "wrong"))[0] == 401
            assert (await get("loa-1", "0" * 64))[0] == 404
            for n in ("loa-1", "loa-2"):
                nodes.ack(cmds[n], n)
                nodes.event(n, "ota_progress", {"version": "1.1.0", "files": 0, "of": 5, "bytes": 2400})
            nodes.event("loa-1", "ota_switched", {"version": "1.1.0", "from": "1.0.0", "slot": "b"})
            r = (await rig.api("GET", "/api/rollouts/%d" % rid, expect=200)).json()
            assert r["progress"]["switched"] == 1 and r["progress"]["downloading"] == 1
            # pause: confirmations still count, but stage 2 waits
            await rig.api("POST", "/api/rollouts/%d/pause" % rid, expect=200)
            for n in ("loa-1", "loa-2"):
                nodes.birth(n, "1.1.0")
                nodes.event(n, "ota_confirmed", {"version": "1.1.0", "slot": "b"})
            r = (await rig.api("GET", "/api/rollouts/%d" % rid, expect=200)).json()
            assert r["state"] == "paused" and r["progress"]["confirmed"] == 2 and r["stage"] == 1
            assert (await get("loa-1", file_sha))[0] == 404  # done: no more files for it
            r = (await rig.api("POST", "/api/rollouts/%d/resume" % rid, expect=200)).json()
            assert r["stage"] == 2 and {n["node_id"]: n["status"] for n in r["nodes"]}["loa-3"] == "sent"
            cmds = {n["node_id"]: n["cmd_id"] for n in r["nodes"] if n["cmd_id"]}
            assert (await get("loa-3", file_sha))[0] == 200
            # loa-3's new version does not confirm itself: it rolls back, and the rollout halts
            nodes.event("loa-3", "ota_rolled_back", {"version": "1.1.0", "running": "1.0.0",
                                                     "why": "restarted before it confirmed itself"})
            r = (await rig.api("GET", "/api/rollouts/%d" % rid, expect=200)).json()
            assert r["state"] == "halted" and "loa-3 rolled back" in r["reason"]
            byid = {n["node_id"]: n for n in r["nodes"]}
            assert byid["loa-3"]["status"] == "rolled_back" and "before it confirmed" in byid["loa-3"]["reason"]
            assert (await rig.api("POST", "/api/rollouts", json={"version": "1.1.0", "first_zones": ["thon-1"]},
                                  expect=409)).json()["error"] == "rollout.open"
            await rig.api("DELETE", "/api/firmware/1.1.0", expect=409)
            versions = (await rig.api("GET", "/api/firmware", expect=200)).json()["versions"]
            assert versions == {"1.1.0": 2, "1.0.0": 2}
            # resumed after the halt: the node that rolled back is sent the bundle again; once every node of
            # the stage confirms, the rollout is done (it does not hang on the old rolled_back status)
            r = (await rig.api("POST", "/api/rollouts/%d/resume" % rid, expect=200)).json()
            byid = {n["node_id"]: n for n in r["nodes"]}
            assert r["state"] == "running" and byid["loa-3"]["status"] == "sent", r
            for n in ("loa-3", "loa-4"):
                nodes.birth(n, "1.1.0")
                nodes.event(n, "ota_confirmed", {"version": "1.1.0", "slot": "b"})
            r = (await rig.api("GET", "/api/rollouts/%d" % rid, expect=200)).json()
            assert r["state"] == "done", r
            # a rollout whose first zones hold none of its nodes would send to all at once: refused
            r = (await rig.api("POST", "/api/rollouts", json={"version": "1.1.0", "first_zones": ["thon-9"]},
                               expect=400)).json()
            assert r["error"] == "rollout.zones" and r["message_en"]
            actions = [a["action"] for a in (await rig.api("GET", "/api/audit", expect=200)).json()]
            assert {"rollout.start", "rollout.pause", "rollout.resume"} <= set(actions)
        finally:
            await stop_http()
            await rig.stop()
    run(scenario())


def test_a_refusal_halts_and_nodes_already_on_the_version_count_as_done(tmp_path):
    async def scenario():
        rig, key, pw = await _setup(tmp_path)
        nodes = Nodes(rig)
        try:
            nodes.birth("loa-1", "1.1.0")  # already runs it
            nodes.birth("loa-2", "1.0.0")
            await _upload(rig, zip_bundle(NEW, key), 201)
            r = (await rig.api("POST", "/api/rollouts", expect=201,
                               json={"version": "1.1.0", "first_zones": ["thon-1"], "nodes": ["loa-1", "loa-2"]})).json()
            byid = {n["node_id"]: n for n in r["nodes"]}
            assert byid["loa-1"]["status"] == "confirmed" and byid["loa-1"]["reason"] == "already"
            nodes.event("loa-2", "ota_failed", {"version": "1.1.0", "reason": "firmware/node.py hash mismatch"})
            r = (await rig.api("GET", "/api/rollouts/%d" % r["id"], expect=200)).json()
            assert r["state"] == "halted" and "hash mismatch" in r["reason"]
            assert {n["node_id"]: n["status"] for n in r["nodes"]}["loa-2"] == "failed"
        finally:
            await rig.stop()
    run(scenario())

"""Issue 13, re-provisioning end to end: the real gateway (HTTP API, Provisioning, command
signer) on real Mosquitto and a real firmware node in a MicroPython host.

After a board is re-provisioned, the gateway's counter (reset to 0 with the new key) and the
node's command log (a new key starts a new counter) must fit: the gateway's next command
applies. And a command captured under the old key (a real gateway-signed one, replayed
byte for byte by someone with broker access, e.g. through the province bridge), or forged
with the old board's key and a huge counter, is refused by the node and reported to the
gateway, without locking out the gateway's next command.
"""
import asyncio
import time

from protocol.commands import Command
from simulator.hosts import NodeHost
from tests.gateway.harness import GatewayRig, wait_until

SITE = "xa-an-binh"
NODE = {"id": "den-1", "name": "Đèn 1", "zones": ["thon-1"], "kind": "lamp"}


async def _command(rig, op, args=None):
    r = await rig.api("POST", "/api/nodes/den-1/commands", json={"op": op, "args": args or {}}, expect=202)
    return (await rig.wait_command(r.json()["id"], timeout=30))["id"]


async def _rejected(rig, cmd_id):
    """The node's cmd_rejected event for `cmd_id`, once the gateway has it."""
    def find():
        for event in rig.gw.ingest.events("den-1"):
            if event["kind"] == "cmd_rejected" and event["data"].get("id") == cmd_id:
                return event
        return None
    return await wait_until(find, 20, "cmd_rejected for %s" % cmd_id)


def _start_board(rig, bundle, seed):
    """rig.start_host for one node, with a board seed of our own: a second host with the same seed would
    draw the same boot id, and the gateway would drop the new boot's events as already stored."""
    cfg = dict(bundle, broker=dict(bundle["broker"], keepalive=10), tele_s=5)
    host = NodeHost(rig.tmp, [{"dir": str(rig.tmp / "flash-den-1"), "config": cfg,
                               "board": {"zones": 2, "seed": seed}}], heap="2M").start(timeout=60)
    rig.hosts.append(host)
    return host


def test_after_re_provisioning_the_old_keys_commands_are_refused_end_to_end(tmp_path):
    async def scenario():
        rig = await GatewayRig(tmp_path).start()
        try:
            await rig.api("POST", "/api/zones", json={"id": "thon-1", "name": "Thôn 1"}, expect=201)
            (old,) = await rig.add_nodes([NODE])
            host = _start_board(rig, old, seed=1)
            await rig.wait_online(["den-1"])
            applied = await _command(rig, "self_test")
            topic, captured = rig.gw.db.one("SELECT topic, payload FROM commands WHERE id = ?", applied)

            r = await rig.api("POST", "/api/nodes/den-1/reprovision", expect=200)
            new = r.json()["provisioning"]
            assert new["key"] != old["key"] and new["broker"]["password"] != old["broker"]["password"]
            host.stop()  # the technician loads the new bundle; the flash (command log) is kept
            rig.hosts.remove(host)
            _start_board(rig, new, seed=2)
            await _command(rig, "self_test")  # the gateway's new counter fits the node's new one

            assert await rig.gw.link.publish(topic, bytes(captured))  # the captured old-key command, replayed
            event = await _rejected(rig, applied)
            assert event["data"]["reason"] == "bad_signature"
            now = int(time.time())
            forged = Command(SITE, "den-1", "c-old-board", 2**40, now + 600, "lamp_override",
                             {"level": 0, "until": now + 3600}, now)
            assert await rig.gw.link.publish(*forged.sign(bytes.fromhex(old["key"])))
            event = await _rejected(rig, "c-old-board")
            assert event["data"]["reason"] == "bad_signature"
            await _command(rig, "rebirth")  # the forged counter of 2**40 locked nothing out
        finally:
            await rig.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))

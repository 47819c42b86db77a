"""Many commands in one go (an emergency fan-out): all or none, each one a node accepts."""
import pytest

from gateway.app import make_gateway
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from protocol import commands as ops
from protocol.commands import OK, verify

SITE = "xa-an-binh"


@pytest.fixture
def gw(tmp_path):
    cfg = GatewayConfig({"site": {"id": SITE, "name": "x"}, "data": {"dir": str(tmp_path / "gw")},
                         "broker": {"mode": "external", "host": "127.0.0.1", "port": 1}})
    gw = make_gateway(cfg, log=lambda text: None)
    gw.registry.add_zone({"id": "thon-1", "name": "Thôn 1"})
    bundles = {}
    for i in range(5):
        _node, bundle = gw.registry.add_node({"id": "loa-%d" % i, "zones": ["thon-1"], "kind": "speaker"},
                                             SITE, "127.0.0.1", 1883, gw.location)
        bundles[bundle["node"]] = bundle
    gw.bundles = bundles
    yield gw
    gw.db.close()


def test_every_command_of_a_batch_verifies_on_its_own_node_with_its_own_counter(gw):
    gw.commands.create("loa-0", ops.REBIRTH, {})  # loa-0 is one counter ahead of the others
    args = {"id": "e1", "dur": 60, "src": "line", "vol": 100, "zones": ["thon-1"], "prio": 2}
    ids = gw.commands.create_many([(n, ops.BROADCAST_NOW, dict(args)) for n in sorted(gw.bundles)], batch="e1")
    assert len(set(ids)) == 5
    now = gw.clock.now()
    for cmd_id in ids:
        row = gw.db.one("SELECT * FROM commands WHERE id = ?", cmd_id)
        node = row["node_id"]
        key = bytes.fromhex(gw.bundles[node]["key"])
        verdict = verify(bytes(row["payload"]), row["topic"], SITE, node, key, row["counter"] - 1, now)
        assert verdict.reason == OK, (node, verdict.reason)
        assert row["counter"] == (2 if node == "loa-0" else 1)
        forged = verify(bytes(row["payload"]), row["topic"], SITE, node, b"k" * 32, row["counter"] - 1, now)
        assert forged.reason != OK


def test_a_batch_with_an_unknown_node_or_a_bad_command_stores_nothing(gw):
    good = {"id": "e1", "dur": 60, "src": "line", "vol": 100, "zones": ["thon-1"], "prio": 2}
    with pytest.raises(GatewayError):
        gw.commands.create_many([("loa-0", ops.BROADCAST_NOW, good), ("loa-x", ops.BROADCAST_NOW, good)])
    with pytest.raises(GatewayError):
        gw.commands.create_many([("loa-0", ops.BROADCAST_NOW, good), ("loa-1", ops.BROADCAST_NOW, dict(good, vol=900))])
    assert gw.db.one("SELECT COUNT(*) FROM commands")[0] == 0
    assert [r[0] for r in gw.db.all("SELECT counter FROM nodes")] == [0] * 5


class Node:
    """What a node does with what it receives: verify, then remember the counter (protocol.verify)."""

    def __init__(self, bundle, clock):
        self.key = bytes.fromhex(bundle["key"])
        self.node = bundle["node"]
        self.clock = clock
        self.counter = 0
        self.applied, self.refused = [], []

    def receive(self, topic, payload):
        verdict = verify(payload, topic, SITE, self.node, self.key, self.counter, self.clock.now())
        if verdict.reason == OK:
            self.counter = verdict.accept(lambda c: None).counter
            self.applied.append(verdict.cmd_id)
        else:
            self.refused.append((verdict.cmd_id, verdict.reason))


def test_retries_and_new_commands_in_one_send_reach_the_node_in_counter_order(gw):
    import asyncio

    node = Node(gw.bundles["loa-0"], gw.clock)
    wire = []

    async def publish(items):
        wire.extend(items)
        return [True] * len(items)

    gw.commands.publish = publish
    first = [gw.commands.create("loa-0", ops.REBIRTH, {}) for _ in range(2)]
    asyncio.run(gw.commands.send_many(first))
    wire.clear()  # those two were lost on the way: the node never saw them
    third = gw.commands.create("loa-0", ops.REBIRTH, {})
    asyncio.run(gw.commands.send_many([third]))
    for topic, payload in wire:
        node.receive(topic, payload)
    wire.clear()
    newest = gw.commands.create("loa-0", ops.REBIRTH, {})  # not sent yet, and below the re-signed retries
    assert asyncio.run(gw.commands.send_many(first + [newest])) == 3
    for topic, payload in wire:
        node.receive(topic, payload)
    assert node.refused == []
    assert node.applied == [third] + first + [newest]


def test_a_command_being_published_is_not_handed_over_twice(gw):
    import asyncio

    published = []

    async def main():
        release = asyncio.Event()

        async def slow_publish(items):  # the broker's PUBACKs take a while
            published.extend(items)
            await release.wait()
            return [True] * len(items)

        gw.commands.publish = slow_publish
        ids = [gw.commands.create("loa-%d" % i, ops.REBIRTH, {}) for i in range(3)]
        fanout = asyncio.create_task(gw.commands.send_many(ids))
        await asyncio.sleep(0)
        assert gw.commands.due() == []  # housekeeping leaves them to the fan-out under way
        assert await gw.commands.send_many(ids) == 0
        release.set()
        assert await fanout == 3

    asyncio.run(main())
    assert len(published) == 3

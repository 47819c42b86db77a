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

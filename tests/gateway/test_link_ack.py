"""The gateway's MQTT link acknowledges a node's QoS 1 message only once ingest stored it (gateway/link.py).

The soak found single-event gaps on nodes no fault touched, all at a gateway restart: paho acknowledged a
message as it arrived, so what sat in the link's queue, received but not yet stored, when the gateway
stopped was acknowledged to the broker and lost. Here the gateway dies between receiving an event and
storing it; after the restart the broker delivers it again from the gateway's persistent session.
Real Mosquitto, the gateway in this process.
"""
import asyncio
import json

import paho.mqtt.client as paho

from tests.gateway.harness import GatewayRig, wait_until


def _event(seq):
    return json.dumps({"v": 1, "boot": "b0071", "seq": seq, "kind": "boot" if seq == 0 else "time_request",
                       "ts": None}).encode()


def test_an_event_received_but_not_stored_when_the_gateway_dies_comes_again(tmp_path):
    async def scenario():
        rig = await GatewayRig(tmp_path).start()
        port, data = rig.cfg.broker_port, rig.cfg.data_dir
        await rig.api("POST", "/api/zones", json={"id": "thon-1", "name": "Thôn 1"}, expect=201)
        r = await rig.api("POST", "/api/nodes", expect=201,
                          json={"id": "den-01", "name": "Đèn 1", "zones": ["thon-1"], "kind": "lamp"})
        b = r.json()["provisioning"]
        node = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=b["node"])
        node.username_pw_set(b["broker"]["user"], b["broker"]["password"])
        node.connect("127.0.0.1", b["broker"]["port"])
        node.loop_start()
        topic = "denloa/xa-an-binh/node/%s/evt" % b["node"]
        try:
            node.publish(topic, _event(0), qos=1).wait_for_publish(5)
            await wait_until(lambda: rig.gw.db.one("SELECT COUNT(*) FROM events")[0] == 1, 10, "event 0 stored")
            received = []

            def dies(batch):  # the gateway stops (or crashes) after the link got the message, before the store
                received.extend(batch)
                raise asyncio.CancelledError

            rig.gw.link.deliver = dies
            node.publish(topic, _event(1), qos=1).wait_for_publish(5)  # the broker has it: the node forgets it
            await wait_until(lambda: received, 10, "the link to receive event 1")
            await rig.stop()
            rig2 = GatewayRig(tmp_path, data_dir=data, broker_port=port)
            await rig2.start()
            try:
                await wait_until(lambda: rig2.gw.db.one("SELECT COUNT(*) FROM events")[0] == 2, 15,
                                 "event 1 delivered again after the restart")
                await wait_until(node.is_connected, 15, "the node back on the restarted broker")
                node.publish(topic, _event(2), qos=1).wait_for_publish(5)
                await wait_until(lambda: rig2.gw.db.one("SELECT COUNT(*) FROM events")[0] == 3, 15, "event 2")
                row = rig2.gw.db.one("SELECT next_seq, missing FROM seq_tracker WHERE node_id = 'den-01'")
                assert (row["next_seq"], row["missing"]) == (3, 0)
            finally:
                await rig2.stop()
        finally:
            node.loop_stop()
            node.disconnect()
    asyncio.run(asyncio.wait_for(scenario(), 120))

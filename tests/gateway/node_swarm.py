"""Hundreds of simulated nodes in one process (paho, each with its own node login): a birth, then
numbered events (QoS 1) and telemetry (QoS 0) as fast as the broker takes them.

Reads {"host", "port", "site", "nodes": [{"id", "password"}], "events", "tele_per_event"} as JSON on
stdin; prints {"boots": {node: boot_id}, "events": {node: n}, "tele": n, "seconds": s} when every QoS 1
message was acknowledged by the broker. A separate process so that the load is not the gateway's loop.
"""
import json
import secrets
import sys
import time

import paho.mqtt.client as paho

from protocol.messages import Event, State, Telemetry


def main():
    spec = json.load(sys.stdin)
    site, nodes = spec["site"], spec["nodes"]
    clients, boots = {}, {}
    for node in nodes:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="%s.%s" % (site, node["id"]), clean_session=False)
        c.username_pw_set(node["id"], node["password"])
        c.max_queued_messages_set(0)
        c.connect(spec["host"], spec["port"], keepalive=60)
        c.loop_start()
        clients[node["id"]] = c
    deadline = time.time() + 30
    while not all(c.is_connected() for c in clients.values()):
        if time.time() > deadline:
            raise SystemExit("swarm: not every node connected within 30 s")
        time.sleep(0.05)
    t0 = time.time()
    pending = []
    prefix = "denloa/%s/node/" % site
    for node_id, c in clients.items():
        boots[node_id] = secrets.token_hex(4)
        birth = State(True, boots[node_id], "swarm-1", caps=["lamp", "speaker"], clock="synced", ts=int(time.time()))
        pending.append(c.publish(prefix + node_id + "/state", birth.encode(), qos=1, retain=True))
    tele = 0
    for seq in range(spec["events"]):
        for node_id, c in clients.items():
            evt = Event(boots[node_id], seq, "motion", {"n": seq}, ts=int(time.time()))
            pending.append(c.publish(prefix + node_id + "/evt", evt.encode(), qos=1))
            for _ in range(spec["tele_per_event"]):
                t = Telemetry(boots[node_id], int(time.time()), seq, "synced",
                              lamp={"lvl": 50, "relay": True, "w": 30.0, "wh": 1.0, "on_s": seq})
                c.publish(prefix + node_id + "/tele", t.encode(), qos=0)
                tele += 1
    for info in pending:
        info.wait_for_publish(timeout=60)
        if not info.is_published():
            raise SystemExit("swarm: a QoS 1 message was not acknowledged within 60 s")
    seconds = time.time() - t0
    for c in clients.values():
        c.disconnect()
        c.loop_stop()
    print(json.dumps({"boots": boots, "events": {n: spec["events"] for n in clients}, "tele": tele,
                      "seconds": round(seconds, 2), "publish_start": t0, "publish_end": t0 + seconds}), flush=True)


if __name__ == "__main__":
    main()

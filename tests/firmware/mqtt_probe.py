"""Run firmware.mqtt.MqttClient in a MicroPython process, driven by a test over stdin/stdout.

    micropython tests/firmware/mqtt_probe.py HOST PORT CLIENT_ID [key=value ...]

keys: user, password, keepalive (s), clean=0|1, will=TOPIC|PAYLOAD|QOS|RETAIN,
      sub=TOPIC|QOS (repeatable), bmin, bmax (backoff ms), max_queue,
      ca=PEM FILE (TLS, verified against it), server_name=NAME (the name the server's certificate must have)
stdin, one command a line:
  pub TAG TOPIC QOS RETAIN TIMEOUT_MS PAYLOAD   publish in the background; prints "pub TAG True|False"
  sub TOPIC QOS                                 subscribe now (and on every reconnect)
  close                                         clean DISCONNECT, prints "closed", exits
  abort                                         drop the socket (power cut), prints "aborted", exits
stdout: "ready", "up", "down", "msg TOPIC RETAINED PAYLOAD", "log MS TEXT" (MS since start).
End of stdin aborts, so the probe never outlives its test.
"""
import sys

_here = __file__.replace("\\", "/")
_root = _here[:_here.rfind("/tests/")] if "/tests/" in _here else "."
if _root not in sys.path:
    sys.path.insert(0, _root)

import asyncio  # noqa: E402
import time  # noqa: E402

from firmware.mqtt import MqttClient  # noqa: E402


def options(argv):
    kw = {"subs": []}
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("user", "password"):  # noqa: SIM114
            kw[key] = value
        elif key in ("keepalive", "max_queue"):
            kw[key] = int(value)
        elif key in ("bmin", "bmax"):
            kw["backoff_%s_ms" % key[1:]] = int(value)
        elif key == "ca":
            with open(value) as f:
                kw["ca"] = f.read()
        elif key == "server_name":
            kw["server_name"] = value
        elif key == "clean":
            kw["clean"] = value == "1"
        elif key == "will":
            topic, payload, qos, retain = value.split("|")
            kw["will"] = (topic, payload.encode(), int(qos), retain == "1")
        elif key == "sub":
            topic, qos = value.split("|")
            kw["subs"].append((topic, int(qos)))
        else:
            raise ValueError("unknown option " + arg)
    return kw


async def show(event, word):
    while True:
        await event.wait()
        event.clear()
        print(word)


async def show_messages(client):
    async for topic, payload, retained in client.messages():
        print("msg", topic, int(retained), bytes(payload).decode())


async def publish(client, tag, topic, qos, retain, timeout_ms, payload):
    ok = await client.publish(topic, payload, qos=qos, retain=retain, timeout_ms=timeout_ms)
    print("pub", tag, ok)


async def main(argv):
    host, port, client_id = argv[0], int(argv[1]), argv[2]
    kw = options(argv[3:])
    subs = kw.pop("subs")
    if "ca" in kw:
        from firmware.tls import Tls

        kw["tls"] = Tls(kw.pop("ca"), kw.pop("server_name", host))
    began = time.ticks_ms()

    def log(text):
        print("log", time.ticks_diff(time.ticks_ms(), began), text)

    client = MqttClient(host, port, client_id, log=log, **kw)
    for topic, qos in subs:
        client.subscribe(topic, qos)
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(show(client.up, "up")),
             asyncio.create_task(show(client.down, "down")), asyncio.create_task(show_messages(client))]
    stdin = asyncio.StreamReader(sys.stdin)
    print("ready")
    while True:
        words = (await stdin.readline()).decode().strip().split(" ", 6)
        if words[0] == "pub":
            tag, topic, qos, retain, timeout_ms, payload = words[1:]
            tasks.append(asyncio.create_task(
                publish(client, tag, topic, int(qos), retain == "1", int(timeout_ms), payload)))
        elif words[0] == "sub":
            client.subscribe(words[1], int(words[2]))
        elif words[0] == "close":
            await client.close()
            print("closed")
            return
        else:  # "abort", or end of stdin
            client.abort()
            print("aborted")
            return


asyncio.run(main(sys.argv[1:]))

"""The node's heap while its MQTT client connects over TLS (MicroPython; driven by
tests/firmware/test_tls_memory_cpython.py through tests/mpy_run.py --budget=64K).

Environment: DENLOA_TLS_PORT, DENLOA_PLAIN_PORT, DENLOA_TLS_CA (PEM file), DENLOA_TLS_NAME,
DENLOA_TLS_USER, DENLOA_TLS_PASSWORD. The node is booted with its normal state (a full lamp
program and a 50-item plan, as in test_node_memory), then connects with its own client
(Node.make_client) once in plain MQTT and once over TLS; a task samples the live heap (after a
collection) at every turn of the event loop until CONNACK, and how long the loop was held.
Prints one `tls-heap {...}` line. mbedTLS allocates with the C library (unix port), outside
this heap: when the test runs under the malloc counter (LD_PRELOAD, see the driver), the bytes
malloc'd at most during connect + handshake are read through getenv("DENLOA_MALLOC_PEAK").
"""
import asyncio
import gc
import json
import os
import time

import firmware.mqtt  # noqa: F401  (code: frozen into flash on the ESP32, loaded before the budget here)
import firmware.tls  # noqa: F401
import ssl  # noqa: F401
from tests.firmware.full_day import heap_used, program_command
from tests.firmware.rig import MONDAY, Rig, config

# Signed at import: the gateway's work, not the node's heap.
_signer = Rig(MONDAY, program=None)
COMMAND = program_command(_signer)
_signer.close()
del _signer

LIVE_PEAK_TARGET = 48 * 1024


async def _connect(client, base, timeout_ms=20000):
    """Run the client until CONNACK; (live heap peak over base, longest loop hold in ms)."""
    st = {"peak": 0, "gap": 0}
    done = []

    async def sample():
        last = time.ticks_ms()
        while not done:
            await asyncio.sleep_ms(0)
            st["gap"] = max(st["gap"], time.ticks_diff(time.ticks_ms(), last))
            st["peak"] = max(st["peak"], heap_used() - base)
            last = time.ticks_ms()  # the collection above is the test's, not the node's

    sampler = asyncio.create_task(sample())
    runner = asyncio.create_task(client.run())
    try:
        try:
            await asyncio.wait_for_ms(client.up.wait(), timeout_ms)
        except asyncio.TimeoutError:
            raise AssertionError("no CONNACK within %d ms: %s" % (timeout_ms, client.last_error))
        st["peak"] = max(st["peak"], heap_used() - base)
        if _malloc("PEAK"):
            st["connected"] = int(_malloc("PEAK").split()[1])
    finally:
        done.append(1)
        await sampler
        client.abort()
        try:
            await runner
        except asyncio.CancelledError:
            pass
    return st["peak"], st["gap"], st.get("connected")


def _malloc(what):
    return os.getenv("DENLOA_MALLOC_" + what)  # answered by the malloc counter when it is loaded


def test_tls_handshake_fits_the_node_heap():
    base = heap_used()
    port, plain = int(os.getenv("DENLOA_TLS_PORT")), int(os.getenv("DENLOA_PLAIN_PORT"))
    with open(os.getenv("DENLOA_TLS_CA")) as f:
        ca = f.read()  # the node's config holds it: counted in the node's state
    broker = {"host": "127.0.0.1", "port": port, "tls": True, "user": os.getenv("DENLOA_TLS_USER"),
              "password": os.getenv("DENLOA_TLS_PASSWORD"), "keepalive": 30}
    cfg = config(broker=broker, tls={"ca": ca, "server_name": os.getenv("DENLOA_TLS_NAME")})
    del ca, broker
    rig = Rig(MONDAY, program=None, cfg=cfg)
    try:
        rig.boot()
        rig.node.handle_message(COMMAND[0], memoryview(bytearray(COMMAND[1])))
        assert rig.last_ack().applied
        state = heap_used() - base
        out = {"state": state}

        # the node's own client, as run() makes it: over TLS
        client = rig.node.make_client()
        marked = _malloc("MARK")
        peak, gap, connected = asyncio.run(_connect(client, base))
        out["tls_peak"], out["tls_hold_ms"] = peak, gap
        if marked:
            gc.collect()
            out["malloc_peak"], out["malloc_closed"] = [int(x) for x in _malloc("PEAK").split()]
            out["malloc_connected"] = connected
        client = None

        # the same node in plain MQTT, for comparison (the figure before TLS)
        rig.node.cfg.broker_tls = False
        rig.node.cfg.broker_port = plain
        client = rig.node.make_client()
        try:
            peak, gap, _ = asyncio.run(_connect(client, base))
            out["plain_peak"], out["plain_hold_ms"] = peak, gap
        except MemoryError:  # a second client in a fragmented heap: not what a node does
            out["plain_peak"], out["plain_hold_ms"] = None, None
        client = None
        out["free_after"] = gc.mem_free()
        print("tls-heap", json.dumps(out))
        assert out["tls_peak"] <= LIVE_PEAK_TARGET, out
    finally:
        rig.close()

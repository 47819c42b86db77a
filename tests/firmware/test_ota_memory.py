"""An update downloads and verifies a 36-file bundle while the node holds a full program and a
50-item plan, within the node's heap (portable; under MicroPython the runner leaves the node
64 KB, see tests/mpy_run.py). Target: live heap <= 48 KB at every sample of the download (the
node with its plan and program takes ~27 KB here; the update adds its two buffers, the HTTP
request's coroutine frames and the one manifest entry being installed, ~9 KB on this 64-bit port).
Until issue 13 this measured 53.6 KB: firmware.ota's code was imported inside the measure (the node
imports it when built), and the plan's items took 270 B each instead of 210."""
import asyncio

from firmware import boot
from tests.firmware.full_day import heap_used, program_command
from tests.firmware.http_fake import FakeServer
from tests.firmware.ota_kit import app_files, bundle, node_root, ota_args, rmtree, serve, slot_version
from tests.firmware.rig import MONDAY, Rig

LIMIT = 48 * 1024
# What the node imports when first used (asyncio's Event, the updater, the audio decoder) is imported
# here, before the runner sets the budget: on the ESP32 that code is frozen in flash, not in the heap.
asyncio.Event
try:  # viper code: MicroPython only
    import firmware.ima_viper  # noqa: F401
except ImportError:
    pass
import firmware.ota  # noqa: E402,F401
_extra = {}
for _i in range(31):
    _extra["firmware/mod%02d.py" % _i] = (("# module %d of the new build\n" % _i) * 90).encode()
NEW = bundle("2.0.0", app_files("2.0.0", size=3000, extra=_extra))  # the server's copies, made before the node boots
OLD = bundle("1.0.0")
_signer = Rig(MONDAY, program=None)
PROGRAM = program_command(_signer)
OTA = _signer.command("ota", ota_args(NEW))
_signer.close()
del _signer
# the node's flash and the gateway: not the node's memory (made before the runner sets the budget)
ROOT = node_root(OLD)
class LeanServer(FakeServer):
    """Keeps no history (requests, closed connections): the heap measured is the node's."""

    async def open(self, host, port):
        self.requests = []
        ends = await FakeServer.open(self, host, port)
        self.connections = []  # the node holds its connection while it uses it: no other reference
        return ends


SERVER = LeanServer(chunk=256)
serve(SERVER, NEW)
PAYLOADS = (bytearray(PROGRAM[1]), bytearray(OTA[1]))  # as the MQTT client hands them over


def test_an_update_fits_the_heap_beside_a_50_item_plan():
    root, server = ROOT, SERVER
    figures = {"peak": 0}
    base = heap_used()
    rig = Rig(MONDAY, program=None, path=root + "/data")
    try:
        rig.board.root_fs = boot.RootFS(root)
        rig.board.micropython_version = (1, 24, 0)
        rig.boot()
        rig.node.handle_message(PROGRAM[0], memoryview(PAYLOADS[0]))
        assert rig.last_ack().applied
        rig.node.handle_message(OTA[0], memoryview(PAYLOADS[1]))
        assert rig.last_ack().applied
        figures["plan"] = heap_used() - base
        ota = rig.node.ota
        client = ota.client()
        client.open_connection = server.open
        client.user, client.password = "n1", "pw"
        done = []

        async def sample():
            n = 0
            while not done:
                await asyncio.sleep(0)
                n += 1
                if n % 25 == 0:
                    figures["peak"] = max(figures["peak"], heap_used() - base)

        async def main():
            task = asyncio.create_task(sample())
            try:
                await ota.attempt()
            finally:
                done.append(1)
                await task
        asyncio.run(main())
        assert ota.switched, (rig.event_kinds(), ota.failures, ota.last_error, ota.done_files, figures)
        assert slot_version(root, "b", [NEW]) == "2.0.0"
        assert boot.load(boot.RootFS(root))["state"] == "trial"
    finally:
        rig.node = None
        rmtree(root)
    print("node live heap during an update: %(plan)d B with the 50-item plan; peak %(peak)d B while 36 files"
          " download (target <= 49152 B)" % figures)
    if figures["peak"]:  # MicroPython measures; CPython has no gc.mem_alloc
        assert figures["peak"] <= LIMIT, figures

"""The node's heap with its clip cache at work (portable; under MicroPython the runner leaves the
node 64 KB of heap, see tests/mpy_run.py): a 50-item plan and full program, a clip open for
playing, a download in flight and a live stream receiving. Target: live heap <= 48 KB."""
import asyncio

from tests.firmware.full_day import CLIPS, heap_used, program_command
from tests.firmware.http_fake import FakeServer
from tests.firmware.rig import MONDAY, Rig
from tests.firmware.test_clips import clip, pattern

_signer = Rig(MONDAY, program=None)
COMMAND = program_command(_signer)
_signer.close()
del _signer
BODY, SHA = clip(24, 51)  # the server's copies: not the node's memory
OTHER = clip(40, 52)[0]
LIVE = bytes(pattern(40, 53))
LIMIT = 48 * 1024


def test_heap_with_a_clip_playing_a_download_in_flight_and_a_stream():
    server = FakeServer(chunk=256)
    server.files["/node/v1/clips/" + SHA] = BODY
    server.files["/node/v1/clips/" + CLIPS[0]] = OTHER  # its hash will not match: it stays in flight
    server.streams["live"] = LIVE
    figures = {}
    base = heap_used()
    rig = Rig(MONDAY, program=None, truth=lambda t, what, value: None)  # ground truth is not the node's memory
    try:
        payload = memoryview(bytearray(COMMAND[1]))  # as the MQTT client hands it over (made first:
        rig.boot()  # this test measures the audio part, test_node_memory the command path)
        rig.node.handle_message(COMMAND[0], payload)
        payload = None
        assert rig.last_ack().applied
        buf = bytearray(1024)  # a player's read buffer
        media = rig.node.media
        media.client.open_connection = server.open
        media.client.user, media.client.password = "n1", "pw"
        figures["plan"] = heap_used() - base

        async def main():
            assert await media.clips.fetch(SHA)

            src = media.open_clip(SHA)
            assert src.readinto(buf) == 1024
            figures["clip"] = heap_used() - base
            server.faults = [{"hang": 5000}]
            task = asyncio.create_task(media.clips.fetch(CLIPS[0]))
            for _ in range(2000):
                await asyncio.sleep(0)
                if server.connections[-1].sent >= 5000:
                    break
            assert media.clips.fetching == CLIPS[0]
            assert src.readinto(buf) == 1024
            figures["download"] = heap_used() - base
            rx = media.open_stream("live")
            for _ in range(500):
                await asyncio.sleep(0)
                if rx.playing or rx.readinto(buf):
                    break
            assert rx.connected
            figures["stream"] = heap_used() - base
            rx.close()
            src.close()
            task.cancel()
            for _ in range(5):
                await asyncio.sleep(0)
        asyncio.run(main())
    finally:
        rig.close()
    print("node live heap: %(plan)d B with the plan, %(clip)d B + a clip playing, %(download)d B + a download"
          " in flight, %(stream)d B + a live stream (target <= 49152 B)" % figures)
    if figures["download"]:  # MicroPython measures; CPython has no gc.mem_alloc
        assert figures["download"] <= LIMIT, figures

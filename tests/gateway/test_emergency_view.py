"""What the dashboard and the emergency pages read: active emergencies, repeats made as one clip, the map."""
import asyncio
import io
import wave

import pytest

from gateway.app import make_gateway
from gateway.config import GatewayConfig
from gateway.emergency import _repeat_wav, repeated_clip
from gateway.errors import GatewayError
from gateway.ui.pages.dashboard import map_layout
from protocol import commands as ops

SITE = "xa-an-binh"


@pytest.fixture
def gw(tmp_path):
    cfg = GatewayConfig({"site": {"id": SITE, "name": "x"}, "data": {"dir": str(tmp_path / "gw")},
                         "broker": {"mode": "external", "host": "127.0.0.1", "port": 1}})
    gw = make_gateway(cfg, log=lambda text: None)
    gw.registry.add_zone({"id": "thon-1", "name": "Thôn 1"})
    for i in range(2):
        gw.registry.add_node({"id": "loa-%d" % i, "zones": ["thon-1"], "kind": "speaker"},
                             SITE, "127.0.0.1", 1883, gw.location)
    yield gw
    gw.db.close()


def _wav(frames, rate=16000):
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x01\x02" * frames)
    return out.getvalue()


def test_repeats_are_n_readings_with_silence_between():
    data = _repeat_wav(_wav(1000), 3, 0.5)
    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        assert w.getnframes() == 3 * 1000 + 2 * 8000
        frames = w.readframes(w.getnframes())
    assert frames[:2000] == b"\x01\x02" * 1000 and frames[2000:2000 + 16000] == b"\0" * 16000


class FakeClips:
    def __init__(self):
        self.added = []

    def require(self, clip_id):
        return {"id": clip_id, "title": "Bão", "category": "disaster"}

    async def browser_audio(self, clip_id):
        return _wav(160)

    async def add_upload(self, data, filename, title, category, user, source="upload"):
        self.added.append((len(data), title, category))
        return {"id": "r" * 64, "title": title, "duplicate": False}


def test_one_reading_is_the_clip_itself_and_more_is_a_new_clip():
    clips = FakeClips()
    assert asyncio.run(repeated_clip(clips, "a" * 64, 1, "vanhoa"))["id"] == "a" * 64
    assert not clips.added
    made = asyncio.run(repeated_clip(clips, "a" * 64, 2, "vanhoa"))
    assert made["title"] == "Bão (x2)" and clips.added[0][2] == "disaster"
    for bad in (0, 6, True, "2"):
        with pytest.raises(GatewayError):
            asyncio.run(repeated_clip(clips, "a" * 64, bad, "vanhoa"))


def test_an_emergency_is_active_until_stopped_or_over(gw):
    now = gw.clock.now()
    args = {"id": "e7", "dur": 90, "src": "line", "vol": 100, "zones": ["thon-1"], "prio": 2}
    gw.commands.create_many([(n, ops.BROADCAST_NOW, dict(args)) for n in ("loa-0", "loa-1")], batch="e7")
    active = gw.emergencies.active(now)
    assert [a["batch"] for a in active] == ["e7"] and active[0]["zones"] == ["thon-1"]
    assert gw.emergencies.active(now + 120) == []
    assert [c["node_id"] for c in gw.emergencies.commands_of("e7")] == ["loa-0", "loa-1"]
    assert gw.emergencies.stopped("e7") is None
    gw.commands.create_many([(n, ops.STOP_BROADCAST, {"id": "e7"}) for n in ("loa-0", "loa-1")], batch="se7")
    assert gw.emergencies.active(now) == []
    assert gw.emergencies.stopped("e7")["total"] == 2


def test_the_map_fits_every_node_and_outlines_each_hamlet():
    nodes = [{"id": "a", "zones": ["z1"], "lat": 21.03, "lon": 105.85}, {"id": "b", "zones": ["z1"], "lat": 21.05, "lon": 105.851},
             {"id": "c", "zones": ["z2"], "lat": 21.01, "lon": 105.86}, {"id": "d", "zones": ["z2"], "lat": None, "lon": None}]
    layout = map_layout(nodes, [{"id": "z1", "name": "Thôn 1"}, {"id": "z2", "name": "Thôn 2"}])
    assert set(layout["nodes"]) == {"a", "b", "c"}
    for x, y in layout["nodes"].values():
        assert 0 < x < layout["width"] and 0 < y < layout["height"]
    assert [z["id"] for z in layout["zones"]] == ["z1", "z2"] and all(z["path"].endswith("Z") for z in layout["zones"])
    assert map_layout([], [])["nodes"] == {}

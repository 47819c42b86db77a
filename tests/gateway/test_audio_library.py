"""The clip library with the real ffmpeg and espeak-ng (gateway/audio/, docs/audio.md).

Fixtures are made at test time: Vietnamese speech from espeak-ng, encoded by
ffmpeg into each accepted format at a quiet level (so normalisation has work
to do). The checks measure the stored files again with ffmpeg's own ebur128
filter and decode them with protocol/ima.py, independent of the library.
AMR cannot be tested here: this ffmpeg has an AMR decoder but no AMR encoder
(no libopencore-amrnb), so the phone recordings made here are 3GP with AAC at
8 kHz and an Opus voice note; an AMR case runs where the encoder exists.
"""
import asyncio
import hashlib
import io
import json
import os
import re
import subprocess
import wave

import httpx
import pytest

from gateway.audio import tts as tts_mod
from gateway.audio.library import ClipLibrary
from gateway.clock import SystemClock
from gateway.config import GatewayConfig
from gateway.db import Database
from gateway.errors import GatewayError
from protocol import ima
from tests.gateway.harness import GatewayRig

SPEECH = "Ủy ban nhân dân xã thông báo: chiều nay thôn một họp bàn công tác an ninh."


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True, timeout=60)


def ebur128(path):
    """(integrated LUFS, true peak dBTP) as ffmpeg measures the file."""
    run = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-i", str(path),
                          "-af", "ebur128=peak=true", "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    summary = run.stderr[run.stderr.rfind("Summary:"):]
    return (float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1)),
            float(re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary).group(1)))


def ffmpeg_pcm(path):
    return subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
                           "-f", "s16le", "-c:a", "pcm_s16le", "-"], capture_output=True, check=True, timeout=60).stdout


def has_encoder(name):
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return re.search(r"\s%s\s" % re.escape(name), out) is not None


FORMATS = {  # name -> (file name, ffmpeg output options)
    "wav": ("notice.wav", ["-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le"]),
    "mp3": ("notice.mp3", ["-ar", "44100", "-c:a", "libmp3lame", "-b:a", "96k"]),
    "ogg": ("notice.ogg", ["-c:a", "libvorbis"]),
    "m4a": ("notice.m4a", ["-c:a", "aac", "-b:a", "64k"]),
    "phone-3gp": ("Recording_20260902.3gp", ["-ar", "8000", "-ac", "1", "-c:a", "aac", "-b:a", "12k", "-f", "3gp"]),
    "voice-note-opus": ("voice-note.ogg", ["-ar", "48000", "-c:a", "libopus", "-b:a", "16k"]),
    "amr": ("recording.amr", ["-ar", "8000", "-ac", "1", "-c:a", "libopencore_amrnb", "-b:a", "12.2k"]),
}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    speech = d / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "vi", "-w", str(speech), SPEECH], check=True, timeout=30)
    files = {"speech": speech}
    for name, (filename, opts) in FORMATS.items():
        if name == "amr" and not has_encoder("libopencore_amrnb"):
            continue
        files[name] = d / filename
        ffmpeg("-i", str(speech), "-af", "volume=-12dB", *opts, str(files[name]))  # quiet: about -31 LUFS
    with wave.open(str(speech)) as w:
        files["seconds"] = w.getnframes() / w.getframerate()
    return files


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def make_library(tmp_path, **audio):
    cfg = GatewayConfig({"data": {"dir": str(tmp_path / "gw")}, "audio": audio})
    os.makedirs(cfg.data_dir, exist_ok=True)
    db = Database(os.path.join(cfg.data_dir, "denloa.db"))
    logs = []
    return ClipLibrary(db, cfg, SystemClock(), logs.append), db, logs


def tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, files in os.walk(path) for f in files)


def check_node_clip(lib, row, seconds=None):
    """The stored file is the node format, named by its hash, at -16 LUFS; its row tells the truth."""
    path = lib.path(row["id"])
    data = path.read_bytes()
    assert path.name == row["id"] + ".wav" and hashlib.sha256(data).hexdigest() == row["id"]
    offset, length, samples = ima.parse_header(data[:512])  # tag 0x11, mono, 16 kHz, block 256, or it raises
    tag, channels, rate, _, align, bits = __import__("struct").unpack("<HHIIHH", data[20:36])
    assert (tag, channels, rate, align, bits) == (0x11, 1, 16000, 256, 4)
    assert data[12:20] == b"fmt \x14\x00\x00\x00" and data[40:44] == b"fact"  # fmt of 20 bytes, then fact
    assert data[36:40] == b"\x02\x00\xf9\x01"  # cbSize 2, 505 samples a block
    assert b"LIST" not in data[:offset]  # -map_metadata -1, bitexact: no tags
    assert samples == row["samples"] and row["duration_ms"] == samples * 1000 // 16000
    if seconds is not None:
        assert abs(samples / 16000 - seconds) < 0.15, (samples / 16000, seconds)
    lufs, peak = ebur128(path)
    assert -17.0 <= lufs <= -15.0, lufs
    assert peak <= -1.0, peak  # target -1.5 dBTP
    decoded = ima.decode(data[offset:offset + length])[:samples]
    assert row["pcm_sha256"] == hashlib.sha256(ima.pcm_bytes(decoded)).hexdigest()
    return decoded, path


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_becomes_a_node_clip_at_minus_16_lufs(tmp_path, media, fmt):
    if fmt not in media:
        pytest.skip("this ffmpeg cannot encode %s (no libopencore_amrnb encoder); the decoder is there" % fmt)
    lib, db, _ = make_library(tmp_path)

    async def go():
        src = media[fmt]
        row = await lib.add_upload(src.read_bytes(), src.name, "Thông báo " + fmt, "news", "canbo")
        assert row["duplicate"] is False and row["source"] == "upload" and row["created_by"] == "canbo"
        assert row["filename"] == src.name and row["category"] == "news" and row["input_lufs"] < -25
        check_node_clip(lib, row, media["seconds"] if fmt not in ("phone-3gp", "m4a", "voice-note-opus") else None)
        assert lib.get(row["id"]) == {k: v for k, v in row.items() if k != "duplicate"}
        assert [r["id"] for r in lib.list()] == [row["id"]]
        assert tree(lib.dir) == [row["id"] + ".wav"]  # no temp file left
    run(go())


def test_protocol_ima_decodes_a_clip_exactly_as_ffmpeg(tmp_path, media):
    lib, _, _ = make_library(tmp_path)

    async def go():
        row = await lib.add_upload(media["mp3"].read_bytes(), "a.mp3", "a", "news", "x")
        decoded, path = check_node_clip(lib, row, media["seconds"])
        ours = ima.pcm_bytes(decoded)
        theirs = ffmpeg_pcm(path)
        assert len(theirs) >= len(ours) > 16000 * 2
        assert theirs[:len(ours)] == ours  # bit-exact, every sample the node plays
        wav = await lib.browser_audio(row["id"])
        with wave.open(io.BytesIO(wav)) as w:
            assert (w.getsampwidth(), w.getnchannels(), w.getframerate()) == (2, 1, 16000)
            assert w.readframes(row["samples"]) == ours
    run(go())


def test_the_same_content_twice_is_one_clip(tmp_path, media):
    lib, db, _ = make_library(tmp_path)

    async def go():
        data = media["ogg"].read_bytes()
        first = await lib.add_upload(data, "a.ogg", "Lần một", "news", "a")
        again = await lib.add_upload(data, "b.ogg", "Lần hai", "health", "b")
        assert again["id"] == first["id"] and again["duplicate"] is True and again["title"] == "Lần một"
        assert db.scalar("SELECT COUNT(*) FROM clips") == 1 and tree(lib.dir) == [first["id"] + ".wav"]
        # the same new content twice at once: one clip, one file, both answers name it
        data = media["mp3"].read_bytes()
        a, b = await asyncio.gather(lib.add_upload(data, "c.mp3", "c", "news", "a"),
                                    lib.add_upload(data, "d.mp3", "d", "news", "b"))
        assert a["id"] == b["id"] and sorted([a["duplicate"], b["duplicate"]]) == [False, True]
        assert db.scalar("SELECT COUNT(*) FROM clips") == 2 and sorted(tree(lib.dir)) == sorted(
            [first["id"] + ".wav", a["id"] + ".wav"])
    run(go())


@pytest.fixture(scope="module")
def bad_inputs(media, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    text = "Đây là một tệp văn bản, không phải âm thanh.\n".encode() * 50
    jpeg = tmp / "photo.jpg"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", str(jpeg))
    silent = tmp / "silence.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3", "-c:a", "pcm_s16le", str(silent))
    hiss = tmp / "hiss.wav"  # -70 dBFS noise: not digital silence, still nothing to hear
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=a=0.0003:r=16000:seed=3", "-t", "3", "-c:a", "pcm_s16le", str(hiss))
    wav = media["wav"].read_bytes()
    truncated_wav = wav[:len(wav) // 3 // 4 * 4]  # whole frames (decodes cleanly); the header promises 3x more
    mp3 = bytearray(media["mp3"].read_bytes())
    for pos in range(3000, len(mp3) - 200, 1500):  # garbled: runs of junk over some frames
        mp3[pos:pos + 100] = bytes((pos * 7 + i * 13) & 0xFF for i in range(100))
    truncated_mp3 = media["mp3"].read_bytes()[:len(mp3) // 3]  # its Xing header gives the real length
    return {
        "text-as-mp3": (text, "thong-bao.mp3", "clip.not_audio", {}),
        "jpeg-as-mp3": (jpeg.read_bytes(), "bai-hat.mp3", "clip.not_audio", {}),
        "empty": (b"", "a.wav", "clip.empty", {}),
        "silent": (silent.read_bytes(), "im-lang.wav", "clip.silent", {}),
        "hiss": (hiss.read_bytes(), "tieng-u.wav", "clip.silent", {}),
        "too-long": (wav, "dai.wav", "clip.too_long", {"max_seconds": 3}),
        "truncated-wav": (truncated_wav, "cut.wav", "clip.corrupt", {}),
        "garbled-mp3": (bytes(mp3), "hong.mp3", "clip.corrupt", {}),
        "truncated-mp3": (truncated_mp3, "cut.mp3", "clip.corrupt", {}),
        "mp3-named-wav": (media["mp3"].read_bytes(), "that-ra-la-mp3.wav", "clip.extension_mismatch", {}),
        "too-big": (wav, "lon.wav", "clip.too_big", {"max_upload_mb": 0.1}),
    }


BAD = ("text-as-mp3", "jpeg-as-mp3", "empty", "silent", "hiss", "too-long", "truncated-wav", "garbled-mp3",
       "truncated-mp3", "mp3-named-wav", "too-big")


@pytest.mark.parametrize("case", BAD)
def test_refused_inputs_leave_nothing(tmp_path, bad_inputs, case):
    data, filename, code, audio = bad_inputs[case]
    lib, db, _ = make_library(tmp_path, **audio)

    async def go():
        before = tree(lib.dir)
        with pytest.raises(GatewayError) as err:
            await lib.add_upload(data, filename, "x", "news", "canbo")
        e = err.value
        assert e.code == code, (e.code, e.en)
        assert e.vi and e.en and e.vi != e.en and 400 <= e.status < 500
        assert tree(lib.dir) == before == []  # no clip file, no temp file
        assert db.scalar("SELECT COUNT(*) FROM clips") == 0
        return e
    e = run(go())
    if case == "mp3-named-wav":
        assert "MP3" in e.en and "MP3" in e.vi  # says what the file really is
    if case == "jpeg-as-mp3":
        assert "picture" in e.en and "ảnh" in e.vi


def test_tts_each_voice_makes_a_clip_and_preview_plays(tmp_path):
    lib, db, _ = make_library(tmp_path)
    text = "Lúc 17h30 ngày 2/9, UBND xã họp về ANTT. Gọi 113 khi cần."

    async def go():
        ids = set()
        for voice in ("north", "central", "south"):
            row = await lib.add_tts(text, voice, 1.0, None, "security", "canbo")
            assert row["source"] == "tts" and row["voice"] == voice and row["text"] == text
            assert "mười bảy giờ ba mươi" in row["spoken"] and "ủy ban nhân dân" in row["spoken"]
            assert "một một ba" in row["spoken"] and row["title"] == text[:120]
            check_node_clip(lib, row)
            assert row["duration_ms"] > 2000
            ids.add(row["id"])
        assert len(ids) == 3  # three different voices, three clips
        seconds = {}
        for speed in (0.7, 1.5):  # the engine alone: its speed option reaches espeak-ng
            with wave.open(io.BytesIO(lib.engine.synthesize(row["spoken"], "north", speed))) as w:
                seconds[speed] = w.getnframes() / w.getframerate()
        assert seconds[0.7] > seconds[1.5] * 1.5
        before = tree(lib.dir)
        wav = await lib.preview_tts("Xin chào bà con thôn 3.", "south", 1.0)
        with wave.open(io.BytesIO(wav)) as w:
            assert (w.getsampwidth(), w.getnchannels(), w.getframerate()) == (2, 1, 16000)
            frames = w.readframes(w.getnframes())
        assert w.getnframes() > 8000 and max(abs(x) for x in memoryview(frames).cast("h")) > 8000
        assert tree(lib.dir) == before and db.scalar("SELECT COUNT(*) FROM clips") == 3  # preview stores nothing
        for bad, code in ((("", "north", 1.0, None), "tts.empty"), (("x", "west", 1.0, None), "tts.voice"),
                          (("x", "north", 3.0, None), "tts.speed"), (("x", "north", 1.0, "a\x07b"), "clip.title")):
            with pytest.raises(GatewayError) as err:
                await lib.add_tts(*bad, "news", "canbo")
            assert err.value.code == code
        assert db.scalar("SELECT COUNT(*) FROM clips") == 3 and tree(lib.dir) == before
    run(go())


class FakeVoice:
    loaded = []

    @classmethod
    def load(cls, model):
        cls.loaded.append(model)
        return cls()

    def synthesize_wav(self, text, wav, syn_config=None):
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(22050)
        wav.writeframes(b"\x00\x10" * 22050)


class FakePiper:
    PiperVoice = FakeVoice

    class SynthesisConfig:
        def __init__(self, length_scale):
            self.length_scale = length_scale


def test_piper_is_used_only_with_its_module_and_model_else_espeak(tmp_path):
    logs = []
    assert isinstance(tts_mod.make_engine("espeak", "", logs.append), tts_mod.EspeakEngine) and not logs

    def missing():
        raise ImportError("No module named 'piper'")
    engine = tts_mod.make_engine("piper", str(tmp_path / "vi.onnx"), logs.append, importer=missing)
    assert isinstance(engine, tts_mod.EspeakEngine) and "piper-tts is not usable" in logs[-1]
    engine = tts_mod.make_engine("piper", str(tmp_path / "vi.onnx"), logs.append, importer=lambda: FakePiper)
    assert isinstance(engine, tts_mod.EspeakEngine) and "is not there" in logs[-1]
    model = tmp_path / "vi_VN-vais1000-medium.onnx"
    model.write_bytes(b"onnx")
    engine = tts_mod.make_engine("piper", str(model), logs.append, importer=lambda: FakePiper)
    assert isinstance(engine, tts_mod.PiperEngine) and FakeVoice.loaded == [str(model)]
    with wave.open(io.BytesIO(engine.synthesize("xin chào", "north", 1.0))) as w:
        assert w.getframerate() == 22050 and w.getnframes() == 22050
    # from the config, on this machine (no piper-tts): a warning and espeak-ng
    lib, _, lib_logs = make_library(tmp_path, tts={"engine": "piper", "model": str(model)})
    assert isinstance(lib.engine, tts_mod.EspeakEngine) and any("warning" in x for x in lib_logs)
    with pytest.raises(GatewayError) as err:
        GatewayConfig({"audio": {"tts": {"engine": "festival"}}})
    assert err.value.code == "config.audio.tts.engine"


def test_a_request_cancelled_at_any_point_leaves_nothing_half_done(tmp_path, media):
    lib, db, _ = make_library(tmp_path)
    data = media["wav"].read_bytes()

    async def go():
        for delay in (0.0, 0.05, 0.2, 0.5, 1.0):
            task = asyncio.ensure_future(lib.add_upload(data, "a.wav", "a", "news", "x"))
            await asyncio.sleep(delay)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            for _ in range(100):  # a store already under way finishes (shielded): wait for the temp files to go
                if not list(lib.tmp.iterdir()):
                    break
                await asyncio.sleep(0.05)
            rows = [r[0] for r in db.all("SELECT id FROM clips")]
            assert tree(lib.dir) == [i + ".wav" for i in rows]  # a file exactly for each row, no temp file
            assert len(rows) <= 1
    run(go())


def test_a_crash_between_file_and_row_is_cleaned_at_start(tmp_path, media):
    lib, db, _ = make_library(tmp_path)

    async def go():
        row = await lib.add_upload(media["wav"].read_bytes(), "a.wav", "a", "news", "x")
        (lib.tmp / "in-deadbeef").write_bytes(b"half an upload")
        orphan = lib.dir / ("ab" * 32 + ".wav")
        orphan.write_bytes(b"a clip whose row never got in")
        return row
    row = run(go())
    db.close()
    lib2, _, logs = make_library(tmp_path)
    assert tree(lib2.dir) == [row["id"] + ".wav"] and lib2.path("ab" * 32) is None
    assert lib2.path(row["id"]) is not None and lib2.path("../../etc/passwd") is None


def test_api_routes(tmp_path, media):
    async def scenario():
        rig = await GatewayRig(tmp_path, broker="embedded").start()
        try:
            await rig.api("POST", "/api/users", expect=201, json={"username": "xem", "name": "Xem", "role": "viewer",
                                                                   "password": "mat-khau-xem"})
            await rig.api("POST", "/api/zones", expect=201, json={"id": "thon-1", "name": "Thôn 1"})
            up = await rig.api("POST", "/api/clips", expect=201,
                               data={"title": "Thông báo họp", "category": "news", "source": "recording"},
                               files={"file": ("hop.m4a", media["m4a"].read_bytes(), "audio/mp4")})
            clip = up.json()
            assert clip["duplicate"] is False and re.fullmatch(r"[0-9a-f]{64}", clip["id"])
            assert clip["source"] == "recording" and clip["created_by"] == "admin" and clip["filename"] == "hop.m4a"
            again = await rig.api("POST", "/api/clips", expect=200, data={"title": "x", "category": "news"},
                                  files={"file": ("hop.m4a", media["m4a"].read_bytes(), "audio/mp4")})
            assert again.json()["id"] == clip["id"] and again.json()["duplicate"] is True
            bad = await rig.api("POST", "/api/clips", expect=422, data={"title": "x", "category": "news"},
                                files={"file": ("a.mp3", b"not audio at all " * 20, "audio/mpeg")})
            assert bad.json()["error"] == "clip.not_audio" and bad.json()["message"] and bad.json()["message_en"]
            max_bytes, rig.gw.clips.max_bytes = rig.gw.clips.max_bytes, 100_000
            r = await rig.api("POST", "/api/clips", expect=413, data={"title": "x", "category": "news"},
                              files={"file": ("big.wav", b"RIFF" + bytes(300_000), "audio/wav")})
            assert r.json()["error"] == "clip.too_big"
            rig.gw.clips.max_bytes = max_bytes
            anon = httpx.AsyncClient(transport=rig.http._transport, base_url="http://gateway")
            r = await anon.post("/api/clips", files={"file": ("a.wav", media["wav"].read_bytes(), "audio/wav")})
            assert r.status_code == 401
            await anon.aclose()
            r = await rig.api("POST", "/api/clips", expect=400, data={"title": "x"})
            assert r.json()["error"] == "clip.no_file"
            r = await rig.api("POST", "/api/clips", expect=400, data={"title": "x", "category": "weather"},
                              files={"file": ("a.wav", media["wav"].read_bytes(), "audio/wav")})
            assert r.json()["error"] == "clip.category"
            t = await rig.api("POST", "/api/clips/tts", expect=201, json={
                "text": "UBND xã thông báo: cắt điện từ 7h-11h.", "voice": "central", "speed": 1.0,
                "title": "Cắt điện", "category": "news"})
            assert "bảy giờ đến mười một giờ" in t.json()["spoken"]
            r = await rig.api("POST", "/api/clips/tts", expect=422, json={"text": "x", "voice": "west"})
            assert r.json()["error"] == "request.invalid"
            listed = (await rig.api("GET", "/api/clips", expect=200)).json()
            assert {c["id"] for c in listed} == {clip["id"], t.json()["id"]}
            one = (await rig.api("GET", "/api/clips/" + clip["id"], expect=200)).json()
            assert one["title"] == "Thông báo họp" and one["category"] == "news"
            assert (await rig.api("GET", "/api/clips/" + "0" * 64, expect=404)).json()["error"] == "clip.unknown"
            audio = await rig.api("GET", "/api/clips/%s/audio" % clip["id"], expect=200)
            assert audio.headers["content-type"] == "audio/wav"
            with wave.open(io.BytesIO(audio.content)) as w:
                assert (w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 16000, clip["samples"])
            prev = await rig.api("POST", "/api/tts/preview", expect=200,
                                 json={"text": "Xin chào", "voice": "north", "speed": 1.2})
            assert prev.headers["content-type"] == "audio/wav" and prev.content[:4] == b"RIFF"
            # a viewer reads and listens, never adds or deletes
            viewer = httpx.AsyncClient(transport=rig.http._transport, base_url="http://gateway")
            r = await viewer.post("/api/login", json={"username": "xem", "password": "mat-khau-xem"})
            viewer.headers["X-CSRF-Token"] = r.json()["csrf"]
            try:
                assert (await viewer.get("/api/clips")).status_code == 200
                r = await viewer.post("/api/clips/tts", json={"text": "x", "voice": "north", "title": "x"})
                assert r.status_code == 403
                assert (await viewer.delete("/api/clips/" + clip["id"])).status_code == 403
            finally:
                await viewer.aclose()
            # in use by a schedule: refused, and said why
            await rig.api("POST", "/api/schedules", expect=201, json={
                "id": "hop-thon", "title": "Họp thôn", "category": "news", "zones": ["thon-1"],
                "source": "clip", "ref": clip["id"], "volume": 80, "start": "2030-01-01T07:00", "duration_s": 600})
            r = await rig.api("DELETE", "/api/clips/" + clip["id"], expect=409)
            assert r.json()["error"] == "clip.in_use" and "hop-thon" in r.json()["message_en"]
            await rig.api("DELETE", "/api/schedules/hop-thon", expect=200)
            await rig.api("DELETE", "/api/clips/" + clip["id"], expect=200)
            assert rig.gw.clips.path(clip["id"]) is None
            assert not (rig.gw.clips.dir / (clip["id"] + ".wav")).exists()
            await rig.api("GET", "/api/clips/" + clip["id"], expect=404)
            log = (await rig.api("GET", "/api/audit", expect=200)).json()
            actions = [(e["action"], e["target"]) for e in log]
            assert ("clip.add", clip["id"]) in actions and ("clip.add", t.json()["id"]) in actions
            assert ("clip.delete", clip["id"]) in actions
            assert sum(1 for a, _ in actions if a == "clip.add") == 2  # the duplicate upload added nothing
            spec = rig.http._transport.app.openapi()  # the schema (its /openapi.json is off by default)
            assert "/api/clips" in spec["paths"] and "/api/tts/preview" in spec["paths"]
        finally:
            await rig.stop()
    run(scenario())


def test_config_audio_defaults_and_checks():
    cfg = GatewayConfig({})
    assert (cfg.audio_max_seconds, cfg.audio_max_upload_mb, cfg.tts_engine, cfg.tts_model) == (900, 50, "espeak", "")
    for raw, code in (({"audio": {"max_seconds": 0}}, "config.audio.max_seconds"),
                      ({"audio": {"tts": {"voice": "x"}}}, "config.audio.tts.voice"),
                      ({"audio": {"bogus": 1}}, "config.audio.bogus")):
        with pytest.raises(GatewayError) as err:
            GatewayConfig(raw)
        assert err.value.code == code, json.dumps(raw)

"""The clip library: uploads and text-to-speech become clips of the node playback format.

A clip is content-addressed: its id is the SHA-256 of its file (docs/audio.md
section 1), stored at `<data_dir>/clips/<id>.wav`, with one row in table
`clips`. The same content twice is the same clip (no second file, no second
row: the first title stays).

The pipeline for every input (upload, phone recording, TTS output):

1. size and emptiness (`clip.too_big`, `clip.empty`), written to a temp file
   in `<data_dir>/clips/tmp/`;
2. ffprobe (JSON): an audio stream (`clip.not_audio`), a container that agrees
   with the file's extension (`clip.extension_mismatch`, saying what it really
   is), the header's duration under `audio.max_seconds` (`clip.too_long`);
3. first loudnorm pass: the decode must give no error-level line
   (`clip.corrupt`), and the audio must not be silent (`clip.silent`: integrated
   loudness below -70 LUFS, or true peak below -60 dBTP);
4. second pass: loudnorm to -16 LUFS / -1.5 dBTP with the measured values
   (linear when the peak allows), straight into the node format (ffmpeg flags
   of docs/audio.md); the decoded length must be at least 90 % of what the
   header promised, less half a second (`clip.corrupt`: a truncated file), and
   under the limit too;
5. the file is hashed, fsynced, renamed to `<id>.wav` (its directory fsynced),
   and only then its row is inserted, in one transaction. A crash in between
   leaves a file without a row, which the next start removes; a temp file is
   always removed (and any left by a crash at the next start).

Every refusal leaves nothing behind: no file, no row, no temp file.
ffmpeg runs as a subprocess (asyncio, with a timeout), at most two at a time;
hashing and file writes run in worker threads; the database is used only on
the event loop, between awaits.
"""
from __future__ import annotations

import asyncio
import builtins
import hashlib
import math
import os
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.audio import ffmpeg
from gateway.audio.tts import TtsEngine, check_speed, check_voice, make_engine
from gateway.audio.vi_text import normalize_vi
from gateway.clock import Clock
from gateway.config import GatewayConfig
from gateway.db import Database
from gateway.errors import Conflict, GatewayError, NotFound
from protocol import ima
from protocol.plan import CATEGORIES

SOURCES = ("upload", "tts", "recording")
MAX_TITLE = 120
MAX_TEXT = 5000  # characters of text-to-speech input
SILENT_LUFS = -70.0  # integrated loudness below this: silent (EBU R128's absolute gate)
SILENT_PEAK_DB = -60.0  # or a true peak below this: silent
TRUNCATED_RATIO = 0.9  # decoded audio shorter than 90 % of the header's duration (less 0.5 s): corrupt
LOUDNESS_TOLERANCE = 0.3  # LU: further off from -16 LUFS (R128 allows 0.5 for files), made again with more gain
LOUDNESS_RETRIES = 2
LOUDNESS_STEP = 1.4
CONCURRENT = 2  # ffmpeg runs at once (the Pi has 4 cores; the event loop keeps one)

# what ffprobe's format_name says -> the family, and the extensions each family may carry
_FAMILIES = {"wav": "wav", "mp3": "mp3", "ogg": "ogg", "mov,mp4,m4a,3gp,3g2,mj2": "mp4", "amr": "amr",
             "flac": "flac", "matroska,webm": "webm", "aac": "aac", "aiff": "aiff", "caf": "caf"}
_EXTENSIONS = {".wav": {"wav"}, ".wave": {"wav"}, ".mp3": {"mp3"}, ".ogg": {"ogg"}, ".oga": {"ogg"},
               ".opus": {"ogg"}, ".m4a": {"mp4"}, ".mp4": {"mp4"}, ".3gp": {"mp4", "amr"}, ".3gpp": {"mp4", "amr"},
               ".3g2": {"mp4"}, ".aac": {"aac", "mp4"}, ".amr": {"amr"}, ".flac": {"flac"}, ".webm": {"webm"},
               ".mka": {"webm"}, ".aif": {"aiff"}, ".aiff": {"aiff"}, ".caf": {"caf"}}
_FAMILY_NAMES = {"wav": "WAV", "mp3": "MP3", "ogg": "OGG", "mp4": "MP4/M4A/3GP", "amr": "AMR", "flac": "FLAC",
                 "webm": "WebM/Matroska", "aac": "AAC", "aiff": "AIFF", "caf": "CAF"}
_COLUMNS = ("id", "title", "category", "duration_ms", "samples", "size", "source", "created_by", "created_at",
            "filename", "pcm_sha256", "text", "spoken", "voice", "speed", "input_lufs", "lufs", "true_peak")


def _refuse(code: str, vi: str, en: str, status: int = 422, field: str | None = None) -> GatewayError:
    return GatewayError(code, vi, en, field=field, status=status)


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_temp(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _read(path: str, n: int | None = None) -> bytes:
    with open(path, "rb") as f:
        return f.read() if n is None else f.read(n)


def _install(tmp: str, final: str) -> None:
    """fsync the finished file, rename it into place, fsync the directory."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    dfd = os.open(os.path.dirname(final), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _wav_data_sizes(path: str) -> tuple[int | None, int]:
    """(bytes the WAV header promises in its data chunk or None when it does not say, bytes there)."""
    size = os.path.getsize(path)
    head = _read(path, 1 << 16)
    pos = 12
    while pos + 8 <= len(head):
        cid, length = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"data":
            unknown = length in (0, 0xFFFFFFFF, 0x7FFFFFFF) or length - 0x7FFFF000 in range(0x1000)  # streamed writers
            return (None if unknown else length), max(0, size - pos - 8)
        pos += 8 + length + (length & 1)
    return None, size


T = TypeVar("T")


async def _thread(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in a worker thread; a cancel waits for the thread to finish (it cannot be stopped)
    before it goes on, so that the cleanup after it never races a file still being written."""
    fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        await asyncio.wait([fut])
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ClipLibrary:
    """The gateway's clips: files of the node format under <data_dir>/clips, rows in `clips`."""

    def __init__(self, db: Database, cfg: GatewayConfig, clock: Clock, log: Callable[[str], None],
                 engine: TtsEngine | None = None) -> None:
        self.db = db
        self.clock = clock
        self.log = log
        self.dir = Path(cfg.data_dir) / "clips"
        self.tmp = self.dir / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.max_seconds = cfg.audio_max_seconds
        self.max_bytes = int(cfg.audio_max_upload_mb * 1024 * 1024)
        self.timeout = cfg.audio_ffmpeg_timeout_s
        self.engine = engine or make_engine(cfg.tts_engine, cfg.tts_model, log, timeout=self.timeout)
        self._slots = asyncio.Semaphore(CONCURRENT)
        self._clean()

    def _clean(self) -> None:
        """At start: temp files of runs that died, and clip files whose row never got in (crash in between)."""
        for p in self.tmp.iterdir():
            _unlink(str(p))
        known = {r[0] for r in self.db.all("SELECT id FROM clips")}
        for p in self.dir.glob("*.wav"):
            if p.stem not in known:
                self.log("clips: removing %s (no row: a store cut short)" % p.name)
                _unlink(str(p))

    # ---- reading ------------------------------------------------------------------------------
    def path(self, clip_id: str) -> Path | None:
        """The stored file of a known clip, or None."""
        if not isinstance(clip_id, str) or len(clip_id) != 64 or not all(c in "0123456789abcdef" for c in clip_id):
            return None
        if self.db.one("SELECT 1 FROM clips WHERE id = ?", clip_id) is None:
            return None
        p = self.dir / (clip_id + ".wav")
        return p if p.is_file() else None

    def get(self, clip_id: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT * FROM clips WHERE id = ?", clip_id)
        return dict(row) if row is not None else None

    def list(self) -> builtins.list[dict[str, Any]]:
        return [dict(r) for r in self.db.all("SELECT * FROM clips ORDER BY created_at DESC, id")]

    def require(self, clip_id: str) -> dict[str, Any]:
        row = self.get(clip_id)
        if row is None:
            raise NotFound("clip.unknown", "Không có clip %s" % clip_id[:80], "No clip %s" % clip_id[:80])
        return row

    async def browser_audio(self, clip_id: str) -> bytes:
        """The clip as a 16-bit PCM WAV (16 kHz mono): what a node plays at 100 %, for a browser."""
        self.require(clip_id)
        p = self.path(clip_id)
        if p is None:
            raise NotFound("clip.missing", "Tệp của clip không còn trên máy chủ", "The clip's file is missing")
        async with self._slots:
            return await ffmpeg.pcm_wav(str(p), self.timeout)

    # ---- adding ---------------------------------------------------------------------------------
    async def add_upload(self, data: bytes, filename: str | None, title: str | None, category: str,
                         user: str | None, source: str = "upload") -> dict[str, Any]:
        """An uploaded file (or a recording) -> a clip row (the existing one when the content is known)."""
        if source not in SOURCES:
            raise _refuse("clip.source", "Nguồn clip không hợp lệ", "Invalid clip source", 400, "source")
        title = self._title(title, filename)
        category = self._category(category)
        if len(data) > self.max_bytes:
            raise self.too_big()
        if not data:
            raise _refuse("clip.empty", "Tệp âm thanh rỗng (0 byte)", "The audio file is empty (0 bytes)")
        meta = {"title": title, "category": category, "source": source, "created_by": user,
                "filename": os.path.basename(filename) if filename else None}
        return await self._ingest(data, filename or "", meta)

    async def add_tts(self, text: str, voice: str, speed: float, title: str | None, category: str,
                      user: str | None) -> dict[str, Any]:
        """Typed text, read by the configured engine, normalised and stored like an upload (source 'tts')."""
        self._check_text(text, voice, speed)
        title = self._title(title or " ".join(text.strip().split("\n")[0].split())[:MAX_TITLE], None)
        category = self._category(category)
        spoken, wav = await self._speak(text, voice, speed)
        meta = {"title": title, "category": category, "source": "tts", "created_by": user, "filename": None,
                "text": text, "spoken": spoken, "voice": voice, "speed": float(speed)}
        return await self._ingest(wav, "tts.wav", meta)

    async def preview_tts(self, text: str, voice: str, speed: float) -> bytes:
        """What add_tts would store, as a browser-playable 16-bit PCM WAV; nothing is stored."""
        _, wav = await self._speak(text, voice, speed)
        out, _ = await self._process(wav, "tts.wav")
        try:
            async with self._slots:
                return await ffmpeg.pcm_wav(out, self.timeout)
        finally:
            _unlink(out)

    async def _speak(self, text: str, voice: str, speed: float) -> tuple[str, bytes]:
        self._check_text(text, voice, speed)
        engine = self.engine

        def work() -> tuple[str, bytes, bool]:
            spoken, used_g2p = normalize_vi(text)
            return spoken, engine.synthesize(spoken, voice, speed), used_g2p

        async with self._slots:
            spoken, wav, used_g2p = await _thread(work)
        if not used_g2p:
            self.log("tts: g2p-hamster did not take part; read with the commune rules only")
        return spoken, wav

    @staticmethod
    def _check_text(text: str, voice: str, speed: float) -> None:
        if not isinstance(text, str) or not text.strip():
            raise _refuse("tts.empty", "Chưa có văn bản để đọc", "There is no text to read", 400, "text")
        if len(text) > MAX_TEXT:
            raise _refuse("tts.too_long", "Văn bản dài quá %d ký tự" % MAX_TEXT,
                          "The text is longer than %d characters" % MAX_TEXT, 400, "text")
        check_voice(voice)
        check_speed(speed)

    # ---- deleting -------------------------------------------------------------------------------
    def users_of(self, clip_id: str) -> builtins.list[str]:
        """Schedules and open commands that play this clip."""
        found = [r[0] for r in self.db.all(
            "SELECT id FROM schedules WHERE json_extract(body, '$.source') = 'clip' AND json_extract(body, '$.ref') = ?",
            clip_id)]
        found += ["command " + r[0] for r in self.db.all(
            "SELECT id FROM commands WHERE status IN ('pending', 'sent') AND json_extract(args, '$.clip') = ?",
            clip_id)]
        return found

    def delete(self, clip_id: str) -> dict[str, Any]:
        """Remove a clip no schedule or open command uses (clip.in_use otherwise). Returns the row."""
        with self.db.tx():
            row = self.require(clip_id)
            users = self.users_of(clip_id)
            if users:
                raise Conflict("clip.in_use", "Clip đang được dùng, không xóa được: %s" % ", ".join(users[:5]),
                               "The clip is in use and cannot be deleted: %s" % ", ".join(users[:5]))
            self.db.run("DELETE FROM clips WHERE id = ?", clip_id)
        _unlink(str(self.dir / (clip_id + ".wav")))  # after the commit: a crash between leaves a file _clean removes
        return row

    # ---- the pipeline ---------------------------------------------------------------------------
    def too_big(self) -> GatewayError:
        mb = self.max_bytes / (1024 * 1024)
        return _refuse("clip.too_big", "Tệp lớn quá %g MB" % mb, "The file is larger than %g MB" % mb, 413)

    def _title(self, title: str | None, filename: str | None) -> str:
        title = (title or "").strip() or (os.path.splitext(os.path.basename(filename or ""))[0].strip())
        if not title:
            raise _refuse("clip.title", "Clip cần có tên", "A clip needs a title", 400, "title")
        if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in title):
            raise _refuse("clip.title", "Tên clip không được chứa ký tự điều khiển",
                          "The title may not hold control characters", 400, "title")
        if len(title) > MAX_TITLE:
            raise _refuse("clip.title", "Tên clip dài quá %d ký tự" % MAX_TITLE,
                          "The title is longer than %d characters" % MAX_TITLE, 400, "title")
        return title

    @staticmethod
    def _category(category: str) -> str:
        if category not in CATEGORIES:
            raise _refuse("clip.category", "Thể loại phải là một trong: %s" % ", ".join(CATEGORIES),
                          "Category must be one of: %s" % ", ".join(CATEGORIES), 400, "category")
        return category

    async def _ingest(self, data: bytes, filename: str, meta: dict[str, Any]) -> dict[str, Any]:
        tmp_out, info = await self._process(data, filename)
        # From here on the clip is complete: storing it is shielded from a request that goes away,
        # so that a cancel can never leave a file without its row (or a row without its file).
        return await asyncio.shield(asyncio.ensure_future(self._store(tmp_out, info, meta)))

    async def _store(self, tmp_out: str, info: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        clip_id = info["id"]
        final = str(self.dir / (clip_id + ".wav"))
        try:
            if self.get(clip_id) is not None:
                return dict(self.require(clip_id), duplicate=True)
            await _thread(_install, tmp_out, final)
            row = dict(meta, id=clip_id, duration_ms=info["samples"] * 1000 // ima.RATE, samples=info["samples"],
                       size=info["size"], created_at=self.clock.now(), pcm_sha256=info["pcm_sha256"],
                       input_lufs=info["input_lufs"], lufs=info["lufs"], true_peak=info["true_peak"])
            values = [row.get(c) for c in _COLUMNS]
            try:
                with self.db.tx():
                    self.db.run("INSERT INTO clips (%s) VALUES (%s)" % (", ".join(_COLUMNS), ", ".join("?" * len(_COLUMNS))),
                                *values)
            except sqlite3.IntegrityError:  # the same content stored meanwhile by another request: that one
                return dict(self.require(clip_id), duplicate=True)
            except BaseException:
                if self.get(clip_id) is None:
                    _unlink(final)
                raise
            self.log("clips: stored %s %r (%d ms, %s, %.1f LUFS)" % (
                clip_id[:12], row["title"], row["duration_ms"], row["source"], row["lufs"] or -99))
            return dict(self.require(clip_id), duplicate=False)
        finally:
            _unlink(tmp_out)

    async def _process(self, data: bytes, filename: str) -> tuple[str, dict[str, Any]]:
        """Check and convert: (a node-format temp file the caller removes, what it is); refusals leave nothing."""
        if len(data) > self.max_bytes:
            raise self.too_big()
        token = secrets.token_hex(8)
        src, out = str(self.tmp / ("in-" + token)), str(self.tmp / ("out-" + token + ".wav"))
        ok = False
        try:
            await _thread(_write_temp, src, data)
            async with self._slots:
                info = await self._convert(src, out, filename)
            ok = True
            return out, info
        finally:
            _unlink(src)
            if not ok:
                _unlink(out)

    async def _convert(self, src: str, out: str, filename: str) -> dict[str, Any]:
        probed = await ffmpeg.probe(src, self.timeout)
        streams = probed.get("streams", []) if probed else []
        if probed is None or not any(s.get("codec_type") == "audio" for s in streams if isinstance(s, dict)):
            vi, en = self._kind(probed)
            raise _refuse("clip.not_audio", "Tệp không phải âm thanh%s" % vi, "The file is not audio%s" % en)
        fmt = probed.get("format", {})
        family = _FAMILIES.get(str(fmt.get("format_name", "")), str(fmt.get("format_name", "")))
        ext = os.path.splitext(filename.lower())[1]
        if ext in _EXTENSIONS and family not in _EXTENSIONS[ext]:
            real = _FAMILY_NAMES.get(family, family.upper())
            raise _refuse("clip.extension_mismatch",
                          "Tệp mang đuôi %s nhưng thực ra là %s; hãy đổi đúng đuôi rồi tải lên lại" % (ext, real),
                          "The file is named %s but is really %s; rename it and upload it again" % (ext, real))
        if family == "wav":
            promised, present = await _thread(_wav_data_sizes, src)
            if promised is not None and present < promised * TRUNCATED_RATIO:
                raise _refuse("clip.corrupt",
                              "Tệp WAV bị cắt cụt: đầu tệp ghi %d byte âm thanh nhưng chỉ có %d byte" % (promised, present),
                              "The WAV file is truncated: its header promises %d bytes of audio, %d are there"
                              % (promised, present))
        header_s = self._duration(probed)
        if header_s is not None and header_s > self.max_seconds:
            raise self._too_long(header_s)
        loud = await ffmpeg.measure(src, self.timeout)
        if loud.errors:
            raise _refuse("clip.corrupt", "Tệp âm thanh bị hỏng (lỗi khi giải mã: %s)" % loud.errors[0][:160],
                          "The audio file is corrupt (decoding error: %s)" % loud.errors[0][:160])
        if loud.decoded_s is not None and loud.decoded_s > self.max_seconds:
            raise self._too_long(loud.decoded_s)
        if loud.input_i < SILENT_LUFS or loud.input_tp < SILENT_PEAK_DB:
            raise _refuse("clip.silent",
                          "Tệp gần như im lặng (độ to %s LUFS, đỉnh %s dBTP): không có gì để phát"
                          % (_db(loud.input_i), _db(loud.input_tp)),
                          "The audio is silent (loudness %s LUFS, peak %s dBTP): nothing to play"
                          % (_db(loud.input_i), _db(loud.input_tp)))
        gain = ffmpeg.TARGET_I - loud.input_i  # what loudnorm's linear mode would apply
        for _ in range(1 + LOUDNESS_RETRIES):
            await ffmpeg.to_node_format(src, out, gain, self.timeout)
            lufs, true_peak = await ffmpeg.loudness(out, self.timeout)
            if not math.isfinite(lufs) or abs(lufs - ffmpeg.TARGET_I) <= LOUDNESS_TOLERANCE:
                break
            # the limiter took some loudness; more gain makes it take a little more, so step past the error
            gain += LOUDNESS_STEP * (ffmpeg.TARGET_I - lufs)
        head = await _thread(_read, out, 4096)
        try:
            _, _, samples = ima.parse_header(head)
        except ima.FormatError as exc:
            raise _refuse("clip.corrupt", "Không tạo được clip đúng định dạng: %s" % exc,
                          "The converted clip is not of the node format: %s" % exc, 500)
        decoded_s = samples / ima.RATE
        if samples == 0:
            raise _refuse("clip.empty", "Tệp không có mẫu âm thanh nào", "The file holds no audio samples")
        if header_s is not None and decoded_s < TRUNCATED_RATIO * header_s - 0.5:
            raise _refuse("clip.corrupt",
                          "Tệp âm thanh bị cắt cụt: đầu tệp ghi %.1f giây nhưng chỉ giải mã được %.1f giây"
                          % (header_s, decoded_s),
                          "The audio file is truncated: its header says %.1f s but only %.1f s decode"
                          % (header_s, decoded_s))
        if decoded_s > self.max_seconds:
            raise self._too_long(decoded_s)
        pcm = await ffmpeg.pcm(out, self.timeout)

        def hashes() -> tuple[str, str, int]:
            return _sha256_file(out), hashlib.sha256(pcm[:2 * samples]).hexdigest(), os.path.getsize(out)

        clip_id, pcm_sha, size = await _thread(hashes)
        return {"id": clip_id, "samples": samples, "size": size, "pcm_sha256": pcm_sha,
                "input_lufs": loud.input_i if loud.input_i > -1e9 else None,
                "lufs": lufs if math.isfinite(lufs) else None, "true_peak": true_peak if math.isfinite(true_peak) else None}

    def _too_long(self, seconds: float) -> GatewayError:
        return _refuse("clip.too_long", "Clip dài %d giây, quá giới hạn %d giây" % (seconds, self.max_seconds),
                       "The clip is %d s long, over the %d s limit" % (seconds, self.max_seconds))

    @staticmethod
    def _duration(probed: dict[str, Any]) -> float | None:
        for value in [probed.get("format", {}).get("duration")] + [
                s.get("duration") for s in probed.get("streams", []) if s.get("codec_type") == "audio"]:
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                continue
            if seconds > 0:
                return seconds
        return None

    @staticmethod
    def _kind(probed: dict[str, Any] | None) -> tuple[str, str]:
        """What the file is instead, for the message: (Vietnamese, English) with a leading ': '."""
        if not probed:
            return (", hoặc hỏng đến mức không đọc được", ", or too damaged to be read")
        for s in probed.get("streams", []):
            if s.get("codec_type") == "video":
                codec = str(s.get("codec_name", "?"))
                return (": đây là ảnh hoặc video (%s)" % codec, ": it is a picture or a video (%s)" % codec)
        name = str(probed.get("format", {}).get("format_name", ""))
        return (": %s" % name, ": %s" % name) if name else ("", "")


def _db(x: float) -> str:
    return "%.1f" % x if x > -1e9 else "-inf"

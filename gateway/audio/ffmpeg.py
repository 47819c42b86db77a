"""ffmpeg and ffprobe, run as subprocesses off the event loop, each with a timeout.

Everything here takes paths and plain values and gives plain values back; it
never touches the database. `probe` is ffprobe's JSON, `measure` is the first
loudnorm pass (and the decode-error check), `to_node_format` the second pass
straight into the node playback format of docs/audio.md section 1, `pcm` and
`pcm_wav` decode a stored clip for checks and for browsers.
"""
from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"

TARGET_I = -16.0  # LUFS integrated (EBU R128)
TARGET_TP = -1.5  # dBTP, in the stored file
CEILING_DB = TARGET_TP - 0.8  # the limiter's ceiling (dBFS): resampling to 16 kHz and ADPCM's noise add ~0.5 dB
TARGET_LRA = 20.0  # LU: wide, so that speech is never squeezed for its range (linear whenever the peak allows)

# docs/audio.md section 1, exactly
NODE_FORMAT_ARGS = ("-ar", "16000", "-ac", "1", "-c:a", "adpcm_ima_wav", "-block_size", "256",
                    "-fflags", "+bitexact", "-map_metadata", "-1", "-f", "wav")
# the first audio stream only (cover art, video, subtitles ignored), mixed to mono before it is measured
_INPUT_ARGS = ("-map", "0:a:0", "-vn", "-sn", "-dn")
_MONO = "aformat=channel_layouts=mono"
_MONO_FLOAT = "aformat=sample_fmts=flt:channel_layouts=mono"  # float: the gain never clips before the limiter


class ToolTimeout(GatewayError):
    status = 422


@dataclass(frozen=True)
class Loudness:
    """The first loudnorm pass: what the input measures, and the decoder's complaints."""
    input_i: float
    input_tp: float
    input_lra: float
    input_thresh: float
    target_offset: float
    decoded_s: float | None  # how much audio the decoder produced (ffmpeg's last time=)
    errors: tuple[str, ...]  # error-level lines of the decode (corrupt input)


async def run(args: list[str], timeout: float, what: str) -> tuple[int, bytes, bytes]:
    """(returncode, stdout, stderr) of one program; killed and refused past `timeout` seconds."""
    try:
        proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        raise GatewayError("audio.unavailable", "Máy chủ chưa cài %s nên không xử lý được âm thanh" % args[0],
                           "%s is not installed on the gateway: audio cannot be processed" % args[0], status=503)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        _kill(proc)
        await proc.wait()
        raise ToolTimeout("clip.timeout",
                          "Xử lý âm thanh (%s) quá %d giây nên đã dừng; tệp không được lưu" % (what, timeout),
                          "Audio processing (%s) took longer than %d s and was stopped; nothing was stored"
                          % (what, timeout))
    except BaseException:  # cancelled: never leave the process behind
        _kill(proc)
        await proc.wait()
        raise
    return proc.returncode or 0, out, err


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        proc.kill()
    except ProcessLookupError:
        pass


async def probe(path: str, timeout: float) -> dict[str, Any] | None:
    """ffprobe's JSON (format and streams), or None when ffprobe cannot read the file at all."""
    rc, out, _ = await run([FFPROBE, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path],
                           timeout, "ffprobe")
    if rc != 0:
        return None
    try:
        data = json.loads(out.decode("utf-8", "replace"))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return -math.inf


_TIME = re.compile(r"time=\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


async def measure(path: str, timeout: float) -> Loudness:
    """First pass: decode everything, measure it with loudnorm (JSON), collect decode errors."""
    rc, _, err = await run([FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info",
                            "-i", path, *_INPUT_ARGS, "-af",
                            "%s,loudnorm=I=%s:TP=%s:LRA=%s:print_format=json" % (_MONO, TARGET_I, TARGET_TP, TARGET_LRA),
                            "-f", "null", "-"], timeout, "ffmpeg loudnorm")
    text = err.decode("utf-8", "replace")
    errors = tuple(line.strip() for line in text.splitlines() if "[error]" in line or "[fatal]" in line)
    start, end = text.rfind("{"), text.rfind("}")
    stats: dict[str, Any] = {}
    if start >= 0 and end > start:
        try:
            stats = json.loads(text[start:end + 1])
        except ValueError:
            stats = {}
    if rc != 0 and not errors:
        errors = ("ffmpeg exited with status %d" % rc,)
    if not stats and not errors:
        errors = ("ffmpeg printed no loudness measurement",)
    times = _TIME.findall(text)
    decoded = None
    if times:
        h, m, s = times[-1]
        decoded = int(h) * 3600 + int(m) * 60 + float(s)
    return Loudness(_number(stats.get("input_i")), _number(stats.get("input_tp")), _number(stats.get("input_lra")),
                    _number(stats.get("input_thresh")), _number(stats.get("target_offset")) if stats else 0.0,
                    decoded, errors)


async def to_node_format(src: str, dst: str, gain_db: float, timeout: float) -> None:
    """Second pass: a linear gain (from the first pass), peaks above CEILING_DB held by a limiter, into the node format.

    With the gain loudnorm's linear mode would apply, the limiter touches nothing
    while the peak-to-loudness ratio allows a linear result; speech over that ratio
    (espeak-ng's always, most recordings) gets its few highest peaks held instead
    of loudnorm falling back to its dynamic mode, which lands about 1 LU short.
    """
    chain = "%s,volume=%.2fdB,alimiter=limit=%.5f:attack=5:release=50:level=false" % (
        _MONO_FLOAT, gain_db, 10 ** (CEILING_DB / 20))
    rc, _, err = await run([FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
                            "-i", src, *_INPUT_ARGS, "-af", chain, *NODE_FORMAT_ARGS, dst],
                           timeout, "ffmpeg convert")
    if rc != 0:
        raise GatewayError("clip.corrupt", "Không chuyển được tệp âm thanh sang định dạng phát: %s"
                           % _first_line(err), "The audio could not be converted: %s" % _first_line(err), status=422)


_SUMMARY_I = re.compile(r"^\s*I:\s*(-?[\d.]+|-inf)\s*LUFS", re.M)
_SUMMARY_PEAK = re.compile(r"^\s*Peak:\s*(-?[\d.]+|-inf)\s*dBFS", re.M)


async def loudness(path: str, timeout: float) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) of a file, as ffmpeg's ebur128 filter measures it."""
    rc, _, err = await run([FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-i", path, "-map", "0:a:0",
                            "-af", "ebur128=peak=true", "-f", "null", "-"], timeout, "ffmpeg ebur128")
    text = err.decode("utf-8", "replace")
    text = text[text.rfind("Summary:"):]
    i, peak = _SUMMARY_I.findall(text), _SUMMARY_PEAK.findall(text)
    if rc != 0 or not i or not peak:
        return -math.inf, -math.inf
    return float(i[-1]), float(peak[-1])


def _first_line(err: bytes) -> str:
    lines = [x for x in err.decode("utf-8", "replace").splitlines() if x.strip()]
    return lines[-1][:200] if lines else "ffmpeg failed"


async def pcm(path: str, timeout: float) -> bytes:
    """A stored clip decoded by ffmpeg: int16 LE mono 16 kHz, every sample of every block."""
    rc, out, err = await run([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", path,
                              "-f", "s16le", "-c:a", "pcm_s16le", "-"], timeout, "ffmpeg decode")
    if rc != 0:
        raise GatewayError("clip.decode", "Không giải mã được clip: %s" % _first_line(err),
                           "The clip could not be decoded: %s" % _first_line(err), status=500)
    return out


async def pcm_wav(path: str, timeout: float) -> bytes:
    """A clip as a 16-bit PCM WAV (browsers do not play IMA-ADPCM)."""
    rc, out, err = await run([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", path,
                              "-c:a", "pcm_s16le", "-fflags", "+bitexact", "-map_metadata", "-1", "-f", "wav", "-"],
                             timeout, "ffmpeg decode")
    if rc != 0:
        raise GatewayError("clip.decode", "Không giải mã được clip: %s" % _first_line(err),
                           "The clip could not be decoded: %s" % _first_line(err), status=500)
    return _fix_wav_sizes(out)


def _fix_wav_sizes(data: bytes) -> bytes:
    """ffmpeg writing WAV to a pipe cannot seek back: it leaves the RIFF and data sizes unset. Set them."""
    if len(data) < 12 or data[:4] != b"RIFF":
        return data
    out = bytearray(data)
    out[4:8] = (len(out) - 8).to_bytes(4, "little")
    pos = 12
    while pos + 8 <= len(out):
        cid = bytes(out[pos:pos + 4])
        size = int.from_bytes(out[pos + 4:pos + 8], "little")
        if cid == b"data":
            out[pos + 4:pos + 8] = (len(out) - pos - 8).to_bytes(4, "little")
            break
        pos += 8 + size + (size & 1)
    return bytes(out)

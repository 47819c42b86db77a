"""Text-to-speech engines behind one interface: text in, WAV bytes out.

`TtsEngine.synthesize(text, voice, speed) -> bytes` is blocking (a child
process or a model run): the library calls it in a worker thread with plain
values. The text it gets is already normalised (gateway/audio/vi_text.py).

- EspeakEngine (default; Debian's espeak-ng, run as a process): voices
  "north" -> `vi`, "central" -> `vi-vn-x-central`, "south" -> `vi-vn-x-south`.
  Speed is a factor 0.5-2.0 of espeak-ng's normal rate: `-s round(175 * speed)`
  words a minute (88-350).
- PiperEngine (optional, config `[audio.tts] engine = "piper"`, `model = path
  of the .onnx voice`): used only when the `piper` module (piper-tts) and the
  model file are both there; otherwise `make_engine` logs a warning and gives
  espeak-ng. Piper's voice is its model; `voice` is then ignored. Speed maps
  to Piper's length_scale = 1 / speed.
"""
from __future__ import annotations

import io
import os
import subprocess
import wave
from collections.abc import Callable
from typing import Any, Protocol

from gateway.errors import GatewayError

VOICES: dict[str, str] = {"north": "vi", "central": "vi-vn-x-central", "south": "vi-vn-x-south"}
ESPEAK_WPM = 175  # espeak-ng's own normal rate: speed 1.0
MIN_SPEED, MAX_SPEED = 0.5, 2.0


def check_voice(voice: str) -> str:
    if voice not in VOICES:
        raise GatewayError("tts.voice", "Giọng đọc phải là north (Bắc), central (Trung) hoặc south (Nam)",
                           "Voice must be north, central or south", field="voice")
    return voice


def check_speed(speed: float) -> float:
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise GatewayError("tts.speed", "Tốc độ đọc phải từ %.1f đến %.1f (1.0 là bình thường)" % (MIN_SPEED, MAX_SPEED),
                           "Speed must be from %.1f to %.1f (1.0 is normal)" % (MIN_SPEED, MAX_SPEED), field="speed")
    return float(speed)


class TtsEngine(Protocol):
    name: str

    def synthesize(self, text: str, voice: str, speed: float) -> bytes:
        """Normalised text -> a WAV file's bytes (any rate; the library converts it). Blocking."""
        ...


class EspeakEngine:
    name = "espeak-ng"

    def __init__(self, binary: str = "espeak-ng", timeout: float = 120.0) -> None:
        self.binary = binary
        self.timeout = timeout

    def synthesize(self, text: str, voice: str, speed: float) -> bytes:
        args = [self.binary, "-v", VOICES[check_voice(voice)], "-s", str(round(ESPEAK_WPM * check_speed(speed))),
                "-b", "1", "--stdout"]  # -b 1: the text is UTF-8; read from stdin (a text starting with "-" stays text)
        try:
            run = subprocess.run(args, input=text.encode("utf-8"), capture_output=True, timeout=self.timeout)
        except FileNotFoundError:
            raise GatewayError("tts.unavailable", "Chưa cài espeak-ng trên máy chủ", "espeak-ng is not installed",
                               status=503)
        except subprocess.TimeoutExpired:
            raise GatewayError("tts.timeout", "Đọc văn bản quá %d giây nên đã dừng" % self.timeout,
                               "Text-to-speech took longer than %d s and was stopped" % self.timeout, status=422)
        if run.returncode != 0 or run.stdout[:4] != b"RIFF":
            detail = run.stderr.decode("utf-8", "replace").strip()[:200]
            raise GatewayError("tts.failed", "espeak-ng không đọc được văn bản: %s" % detail,
                               "espeak-ng failed: %s" % detail, status=500)
        return _fix_stream_wav(run.stdout)


def _fix_stream_wav(data: bytes) -> bytes:
    """espeak-ng --stdout leaves the RIFF and data sizes at 0x7fffffff (it cannot seek): set them."""
    out = bytearray(data)
    if len(out) >= 44 and out[36:40] == b"data":
        out[4:8] = (len(out) - 8).to_bytes(4, "little")
        out[40:44] = (len(out) - 44).to_bytes(4, "little")
    return bytes(out)


class PiperEngine:
    """Piper (piper-tts) with one voice model the operator copied onto the gateway."""
    name = "piper"

    def __init__(self, module: Any, model: str) -> None:
        self.model = model
        self._voice = module.PiperVoice.load(model)
        self._module = module

    def synthesize(self, text: str, voice: str, speed: float) -> bytes:
        check_voice(voice)
        length_scale = 1.0 / check_speed(speed)
        buf = io.BytesIO()
        with wave.open(buf, "wb") as wav:
            if hasattr(self._voice, "synthesize_wav"):  # piper-tts >= 1.3
                config = self._module.SynthesisConfig(length_scale=length_scale) \
                    if hasattr(self._module, "SynthesisConfig") else None
                self._voice.synthesize_wav(text, wav, syn_config=config)
            else:  # piper-tts 1.2
                self._voice.synthesize(text, wav, length_scale=length_scale)
        return buf.getvalue()


def _import_piper() -> Any:
    import importlib
    return importlib.import_module("piper")


def make_engine(engine: str, model: str, log: Callable[[str], None],
                importer: Callable[[], Any] = _import_piper, timeout: float = 120.0) -> TtsEngine:
    """The configured engine; Piper without its module or model falls back to espeak-ng (logged)."""
    if engine != "piper":
        return EspeakEngine(timeout=timeout)
    try:
        module = importer()
        if not hasattr(module, "PiperVoice"):
            raise ImportError("the installed `piper` module is not piper-tts (no PiperVoice)")
    except Exception as exc:
        log("warning: audio.tts.engine is piper but piper-tts is not usable (%s); using espeak-ng" % exc)
        return EspeakEngine(timeout=timeout)
    if not model or not os.path.isfile(model):
        log("warning: audio.tts.engine is piper but its model %r is not there; using espeak-ng" % model)
        return EspeakEngine(timeout=timeout)
    try:
        return PiperEngine(module, model)
    except Exception as exc:
        log("warning: piper could not load %r (%r); using espeak-ng" % (model, exc))
        return EspeakEngine(timeout=timeout)

"""Broadcast audio on the gateway: the clip library, ffmpeg, text-to-speech (docs/audio.md)."""

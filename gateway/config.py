"""The gateway's TOML configuration, with safe defaults for every key.

    [site]
    id = "xa-an-binh"            # the commune: lowercase letters, digits, '-'
    name = "Xã An Bình"
    lat = 21.0285
    lon = 105.8542
    utc_offset = 7               # hours; Vietnam has no daylight saving

    [data]
    dir = "./data"               # SQLite, broker files, secrets (0700)

    [http]
    bind = "127.0.0.1"
    port = 8080
    metrics = "localhost"        # who may read /metrics: "localhost" (127.0.0.1/::1 only), "token", or "open"
    metrics_token_file = ""      # "token": a file holding the Bearer token Prometheus sends
    api_docs = false             # true: FastAPI's /docs, /redoc, /openapi.json, behind a staff login
    session_idle_min = 30        # a session unused this long ends (besides the 12 h absolute limit)

    [broker]
    mode = "auto"                # auto: Mosquitto when installed, else the embedded broker; or "external"
    host = "127.0.0.1"           # where nodes and the gateway connect (external: the broker's address)
    port = 1883
    bind = "0.0.0.0"             # what a broker we run listens on (nodes are on the LAN)
    username = ""                # external only
    password = ""

    [tls]                        # the site CA and encrypted links (docs/security.md)
    enabled = true               # nodes' MQTT over TLS (Mosquitto) and HTTPS (staff UI, node downloads)
    mqtt_port = 8883             # Mosquitto's TLS listener for nodes, on [broker] bind
    plain_mqtt = "localhost"     # the plain listener ([broker] port): "localhost" (only the gateway's own
                                 # link) or "lan" (nodes not yet re-provisioned, during a migration)
    https = true                 # with enabled: HTTPS on [http] port (the staff UI, clip and bundle downloads)
    names = []                   # host names / IP addresses the gateway is reached at (its certificate's names)
                                 # The embedded broker has no TLS: with it MQTT stays plain (HTTPS still applies).

    [commands]
    expiry_s = 600               # a command not acknowledged by then is shown as expired
    retry_s = 10

    [planner]
    horizon_days = 3             # how far ahead each node's plan reaches

    [bridge]                     # optional: forward the site's topics to a province broker
    host = ""

    [audio]                      # the clip library (docs/audio.md)
    max_seconds = 900            # longest clip accepted (upload or text-to-speech)
    max_upload_mb = 50           # biggest upload accepted
    ffmpeg_timeout_s = 300       # one ffmpeg or TTS run longer than this is stopped and refused
    mic_device = "default"       # the Pi's microphone for live broadcasts (ALSA device name)

    [audio.tts]
    engine = "espeak"            # or "piper" (falls back to espeak-ng, with a warning, without it)
    model = ""                   # piper: path of the .onnx voice (its .onnx.json beside it)

    [firmware]                   # over-the-air update (docs/ota.md)
    release_key = ""             # the release public key (PEM or 64 hex digits) bundles must be signed with
    allow_unsigned = false       # true: accept unsigned bundles too (a lab only)
"""
from __future__ import annotations

import os
import tomllib
from typing import Any

from gateway.errors import GatewayError
from protocol.topics import TopicError, check_id

DEFAULTS: dict[str, dict[str, Any]] = {
    "site": {"id": "xa-demo", "name": "Xã Demo", "lat": 21.0285, "lon": 105.8542, "utc_offset": 7},
    "data": {"dir": "./data"},
    "http": {"bind": "127.0.0.1", "port": 8080, "metrics": "localhost", "metrics_token_file": "", "api_docs": False,
             "session_idle_min": 30},
    "broker": {"mode": "auto", "host": "127.0.0.1", "port": 1883, "bind": "0.0.0.0", "username": "", "password": ""},
    "tls": {"enabled": True, "mqtt_port": 8883, "plain_mqtt": "localhost", "https": True, "names": []},
    "commands": {"expiry_s": 600, "retry_s": 10},
    "planner": {"horizon_days": 3},
    "bridge": {"host": "", "port": 8883, "username": "", "password": "", "tls_ca": "", "remote_prefix": ""},
    "audio": {"max_seconds": 900, "max_upload_mb": 50, "ffmpeg_timeout_s": 300, "mic_device": "default",
              "tts": {}},
    # over-the-air update (docs/ota.md): the release public key bundles must be signed with
    "firmware": {"release_key": "", "allow_unsigned": False},
}
TTS_DEFAULTS: dict[str, Any] = {"engine": "espeak", "model": ""}


def _bad(key: str, vi: str, en: str) -> GatewayError:
    return GatewayError("config." + key, vi, en, field=key)


class GatewayConfig:
    """Validated settings; `path` is None when running on defaults."""

    def __init__(self, raw: dict[str, Any] | None = None, path: str | None = None) -> None:
        raw = raw or {}
        self.path = path
        merged: dict[str, dict[str, Any]] = {}
        for section, defaults in DEFAULTS.items():
            given = raw.get(section, {})
            if not isinstance(given, dict):
                raise _bad(section, "Mục [%s] phải là một bảng" % section, "[%s] must be a table" % section)
            unknown = set(given) - set(defaults)
            if unknown:
                key = "%s.%s" % (section, sorted(unknown)[0])
                raise _bad(key, "Khóa cấu hình không xác định: %s" % key, "Unknown configuration key: %s" % key)
            merged[section] = dict(defaults, **given)
        unknown = set(raw) - set(DEFAULTS)
        if unknown:
            key = sorted(unknown)[0]
            raise _bad(key, "Mục cấu hình không xác định: [%s]" % key, "Unknown configuration section: [%s]" % key)
        s = merged["site"]
        try:
            self.site = check_id(s["id"], "site id")
        except TopicError as exc:
            raise _bad("site.id", "Mã xã không hợp lệ: %s" % exc, "Invalid site id: %s" % exc)
        self.site_name = str(s["name"])
        self.lat = self._number("site.lat", s["lat"], -90, 90)
        self.lon = self._number("site.lon", s["lon"], -180, 180)
        self.utc_offset = self._number("site.utc_offset", s["utc_offset"], -12, 14)
        base = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
        self.data_dir = os.path.normpath(os.path.join(base, os.path.expanduser(merged["data"]["dir"])))
        self.http_bind = str(merged["http"]["bind"])
        self.http_port = int(self._number("http.port", merged["http"]["port"], 0, 65535))
        h = merged["http"]
        if h["metrics"] not in ("localhost", "token", "open"):
            raise _bad("http.metrics", "http.metrics phải là localhost, token hoặc open",
                       "http.metrics must be localhost, token or open")
        self.metrics_access = str(h["metrics"])
        token_file = str(h["metrics_token_file"])
        self.metrics_token_file = os.path.normpath(os.path.join(base, os.path.expanduser(token_file))) \
            if token_file else ""
        if self.metrics_access == "token" and not self.metrics_token_file:
            raise _bad("http.metrics_token_file", "http.metrics = \"token\" cần http.metrics_token_file",
                       "http.metrics = \"token\" needs http.metrics_token_file")
        if not isinstance(h["api_docs"], bool):
            raise _bad("http.api_docs", "http.api_docs phải là true hoặc false", "http.api_docs must be true or false")
        self.api_docs = bool(h["api_docs"])
        self.session_idle_min = self._number("http.session_idle_min", h["session_idle_min"], 1, 24 * 60)
        b = merged["broker"]
        if b["mode"] not in ("auto", "mosquitto", "embedded", "external"):
            raise _bad("broker.mode", "broker.mode phải là auto, mosquitto, embedded hoặc external",
                       "broker.mode must be auto, mosquitto, embedded or external")
        self.broker_mode = b["mode"]
        self.broker_host = str(b["host"])
        self.broker_port = int(self._number("broker.port", b["port"], 0, 65535))
        self.broker_bind = str(b["bind"])
        self.broker_username = str(b["username"])
        self.broker_password = str(b["password"])
        t = merged["tls"]
        for key in ("enabled", "https"):
            if not isinstance(t[key], bool):
                raise _bad("tls." + key, "tls.%s phải là true hoặc false" % key, "tls.%s must be true or false" % key)
        self.tls_enabled = bool(t["enabled"])
        self.tls_mqtt_port = int(self._number("tls.mqtt_port", t["mqtt_port"], 0, 65535))
        if t["plain_mqtt"] not in ("localhost", "lan"):
            raise _bad("tls.plain_mqtt", "tls.plain_mqtt phải là localhost hoặc lan",
                       "tls.plain_mqtt must be localhost or lan")
        self.tls_plain_mqtt = str(t["plain_mqtt"])
        self.tls_https = bool(t["https"]) and self.tls_enabled
        names = t["names"]
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() and len(n) <= 253 for n in names):
            raise _bad("tls.names", "tls.names phải là danh sách tên máy hoặc địa chỉ IP",
                       "tls.names must be a list of host names or IP addresses")
        self.tls_names = [n.strip() for n in names]
        self.command_expiry_s = int(self._number("commands.expiry_s", merged["commands"]["expiry_s"], 10, 86400))
        self.command_retry_s = self._number("commands.retry_s", merged["commands"]["retry_s"], 0.2, 3600)
        self.horizon_days = int(self._number("planner.horizon_days", merged["planner"]["horizon_days"], 1, 14))
        self.bridge = merged["bridge"] if merged["bridge"]["host"] else None
        a = merged["audio"]
        self.audio_max_seconds = int(self._number("audio.max_seconds", a["max_seconds"], 1, 6 * 3600))
        self.audio_max_upload_mb = self._number("audio.max_upload_mb", a["max_upload_mb"], 0.001, 2048)
        self.audio_ffmpeg_timeout_s = self._number("audio.ffmpeg_timeout_s", a["ffmpeg_timeout_s"], 1, 3600)
        self.audio_mic_device = str(a["mic_device"])
        fw = merged["firmware"]
        key = str(fw["release_key"])
        self.firmware_release_key = os.path.normpath(os.path.join(base, os.path.expanduser(key))) if key else ""
        self.firmware_allow_unsigned = bool(fw["allow_unsigned"])
        tts = a["tts"]
        if not isinstance(tts, dict):
            raise _bad("audio.tts", "Mục [audio.tts] phải là một bảng", "[audio.tts] must be a table")
        unknown = set(tts) - set(TTS_DEFAULTS)
        if unknown:
            key = "audio.tts.%s" % sorted(unknown)[0]
            raise _bad(key, "Khóa cấu hình không xác định: %s" % key, "Unknown configuration key: %s" % key)
        tts = dict(TTS_DEFAULTS, **tts)
        if tts["engine"] not in ("espeak", "piper"):
            raise _bad("audio.tts.engine", "audio.tts.engine phải là espeak hoặc piper",
                       "audio.tts.engine must be espeak or piper")
        self.tts_engine = str(tts["engine"])
        model = str(tts["model"])
        self.tts_model = os.path.normpath(os.path.join(base, os.path.expanduser(model))) if model else ""

    @staticmethod
    def _number(key: str, value: object, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise _bad(key, "%s phải là số từ %s đến %s" % (key, lo, hi), "%s must be a number from %s to %s" % (key, lo, hi))
        return value

    @property
    def tz_s(self) -> int:
        return int(self.utc_offset * 3600)

    @classmethod
    def load(cls, path: str) -> GatewayConfig:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as exc:
            raise GatewayError("config.file", "Không đọc được tệp cấu hình %s: %s" % (path, exc.strerror),
                               "Cannot read the configuration file %s: %s" % (path, exc.strerror))
        except tomllib.TOMLDecodeError as exc:
            raise GatewayError("config.syntax", "Tệp cấu hình %s sai cú pháp: %s" % (path, exc),
                               "Configuration file %s is not valid TOML: %s" % (path, exc))
        return cls(raw, path)

"""The node's provisioned configuration (config.json on flash), validated.

Written by the technician's provisioning tool; never sent over MQTT.
"""
from protocol.errors import ProtocolError
from protocol.fields import Fields
from protocol.topics import check_id


class ConfigError(ProtocolError):
    """The provisioned configuration is unusable; the message says which field."""


def _key(value):
    if not isinstance(value, str) or len(value) < 32 or len(value) > 128 or len(value) % 2:
        raise ConfigError("key must be 32 to 128 hex digits (16 to 64 bytes)")
    import binascii

    try:
        return binascii.unhexlify(value)
    except ValueError:
        raise ConfigError("key must be hex digits")


class NodeConfig:
    def __init__(self, obj):
        f = Fields(obj, "config", ConfigError)
        self.site = f.checked("site", lambda v: check_id(v, "site id"))
        self.node = f.checked("node", lambda v: check_id(v, "node id"))
        self.key = f.checked("key", _key)
        b = f.child("broker")
        self.broker_host = b.text("host", 64, min_len=1)
        self.broker_port = b.int("port", 1, 65535, 1883)
        self.broker_user = b.text("user", 64, None)
        self.broker_password = b.text("password", 128, None)
        self.broker_tls = b.bool("tls", False)  # MQTT over TLS, verified against tls.ca (firmware/tls.py)
        self.keepalive = b.int("keepalive", 10, 600, 60)
        self.backoff_max_ms = b.int("backoff_max_ms", 100, 600000, 60000)  # the simulator shortens it with its speed
        b.done()
        zones = f.object("zones", {})  # zone id -> zone relay number (1-based)
        self.zones = {}
        for zone, relay in zones.items():
            check_id(zone, "zone id")
            if not isinstance(relay, int) or isinstance(relay, bool) or not 1 <= relay <= 16:
                f.fail("zones", "must map zone ids to relay numbers 1-16")
            self.zones[zone] = relay
        loc = f.child("location")
        self.lat = loc.number("lat", -90, 90)
        self.lon = loc.number("lon", -180, 180)
        self.tz_hours = loc.number("tz", -12, 14)
        loc.done()
        lamp = f.child("lamp", {})
        self.has_lamp = lamp.bool("fitted", True)
        self.rated_w = lamp.number("rated_w", 1, 2000, 60)
        self.ramp_ms = lamp.int("ramp_ms", 0, 60000, 2000)
        self.fault_ma = lamp.int("fault_ma", 1, 10000, 20)  # below this while on: lamp failure
        self.dayburn_ma = lamp.int("dayburn_ma", 1, 10000, 20)  # above this while off: day-burner
        self.fault_s = lamp.int("fault_s", 1, 3600, 10)  # condition must last this long
        lamp.done()
        pa = f.child("pa", {})
        self.warmup_s = pa.int("warmup_s", 0, 60, 3)
        self.cooldown_s = pa.int("cooldown_s", 0, 600, 10)
        self.clip_kb = pa.int("clip_kb", 64, 16384, 2048)  # flash for cached clips (docs/audio.md)
        pa.done()
        files = f.child("files", {})  # where clips and streams come from (the gateway's HTTP)
        self.files_host = files.text("host", 64, self.broker_host, min_len=1)
        self.files_port = files.int("port", 1, 65535, 8080)
        self.files_tls = files.bool("tls", False)  # HTTPS, verified against tls.ca
        files.done()
        tls = f.child("tls", {})  # the site CA (PEM; two during a CA rotation) and the name in the gateway's cert
        self.tls_ca = tls.text("ca", 4096, None, min_len=1)
        self.tls_server_name = tls.text("server_name", 253, self.broker_host, min_len=1)
        tls.done()
        if (self.broker_tls or self.files_tls) and self.tls_ca is None:
            tls.fail("ca", "is needed for broker.tls or files.tls (the site CA from the provisioning bundle)")
        if self.tls_ca is not None and "-----BEGIN CERTIFICATE-----" not in self.tls_ca:
            tls.fail("ca", "must be PEM (-----BEGIN CERTIFICATE-----)")
        self.tls = None  # firmware.tls.Tls: its context made now, while the heap is whole (firmware/tls.py)
        if self.broker_tls or self.files_tls:
            from firmware.tls import Tls

            try:
                self.tls = Tls(self.tls_ca, self.tls_server_name)
            except (ValueError, OSError) as exc:
                tls.fail("ca", "is not a usable certificate: %s" % exc)
            self.tls_ca = None  # parsed into the context: the text is not kept
        self.tele_s = f.int("tele_s", 5, 3600, 60)
        self.tick_ms = f.int("tick_ms", 100, 1000, 1000)
        self.board = f.text("board", 32, "denloa-v1")
        self.firmware = f.text("firmware", 32, "0.1.0")
        self.wifi = f.object("wifi", {})
        self.ntp = f.text("ntp", 64, None, min_len=1)  # an NTP server's IP address, if the site has one
        f.done()

    @property
    def tz_s(self):
        return int(self.tz_hours * 3600)

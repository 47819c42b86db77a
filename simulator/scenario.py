"""Scenario files (TOML): the commune, its nodes, staff actions, faults and assertions.

    name = "smoke"
    title = "Một đêm, 5 đèn"
    seed = 1
    speed = 600                   # 1 = real time
    start = "2026-11-23T16:00"    # site local time
    duration = "16h"              # "90s", "30m", "16h", or seconds
    broker = "mosquitto"          # or "embedded"
    nodes_per_host = 50           # nodes per MicroPython host process
    tls = false                   # true: nodes reach Mosquitto over TLS (site CA) and fetch over HTTPS
    proxy = "auto"                # nodes reach the broker through a TCP proxy per zone: true, false, or
                                  # "auto" (only when the scenario has partition / heal faults)

    [site]  id, name, lat, lon, utc_offset
    [program]                     # the site's lamp program (protocol/program.py JSON as TOML)
    [[zones]]   id, name, lat, lon
    [[nodes]]   count | ids, prefix, zone, kind, faults = {burnt = true, ...},
                board = {rtc = "ds3231" | "internal", rtc_drift_ppm = 40, rtc_offset = 0, zones = 2, ...}
    [[actions]] at = "+30m", do = "schedule" | "emergency" | "stop_emergency" | "program" | "override", body = {...}
                do = "cancel", body = {id}: the staff delete schedule `id` (DELETE /api/schedules/ID)
                do = "tts", name = "notice", body = {text, voice, speed, title, category}: a clip made by the
                  gateway's text-to-speech; do = "upload", name, file = "x.mp3" (next to the scenario) or
                  tone = {hz, seconds}: a clip uploaded; a body value "$notice" anywhere later is that clip's id
                do = "stream", name, body = {kind, url, zones, priority, volume, max_seconds}: a live stream
                  ("$name.file" in url: a file next to the scenario); do = "stop_stream", name
                ([[nodes]] files = "unreachable": the node's clip/stream downloads cannot reach the gateway)
    [[faults]]  at = "+2h", do = "partition" | "heal" | "power_cut" | "power_on" | "broker_restart"
                | "gateway_restart" | "burnt" | "stuck" | "dark" | "motion" | "rtc_dead" | "pir_dead"
                | "clock_jump" (value = seconds) | "boot_crash" (value = N: the next N boots crash)
                | "reboot" (a reboot command through the gateway's API: the firmware resets itself),
                zone | nodes, value
                ([[nodes]] faults = {boot_crash = 3} crashes the first 3 boots from the start)
    [[assert]]  kind = ..., see simulator/assertions.py
"""
import calendar
import tomllib

ACTIONS = ("schedule", "cancel", "emergency", "stop_emergency", "program", "override", "tts", "upload", "stream",
           "stop_stream")
FAULTS = ("partition", "heal", "power_cut", "power_on", "broker_restart", "gateway_restart", "burnt", "stuck",
          "dark", "motion", "rtc_dead", "pir_dead", "clock_jump", "boot_crash", "reboot")


class ScenarioError(ValueError):
    """The scenario file is wrong; the message says where."""


def seconds(text, where):
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if isinstance(text, str):
        body = text.strip().lstrip("+")
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        try:
            if body and body[-1] not in units:
                return float(body)
            total, number = 0.0, ""
            for ch in body:  # "2h30m", "1h1m", "90s"
                if ch in units:
                    total += float(number) * units[ch]
                    number = ""
                else:
                    number += ch
            if body and not number:
                return total
        except ValueError:
            pass
    raise ScenarioError("%s: %r is not a duration (use 90s, 30m, 16h or seconds)" % (where, text))


def local_time(text, utc_offset, where):
    try:
        date, hm = text.split("T")
        y, mo, d = (int(p) for p in date.split("-"))
        parts = [int(p) for p in hm.split(":")]
        if not 2 <= len(parts) <= 3:
            raise ValueError
        hh, mm, ss = parts[0], parts[1], parts[2] if len(parts) == 3 else 0
        return calendar.timegm((y, mo, d, hh, mm, ss)) - int(utc_offset * 3600)
    except (ValueError, AttributeError):
        raise ScenarioError("%s: %r is not a local time YYYY-MM-DDTHH:MM[:SS]" % (where, text))


class Scenario:
    def __init__(self, raw, path="scenario"):
        self.path = path
        self.raw = raw
        self.name = str(raw.get("name") or path)
        self.title = str(raw.get("title", self.name))
        self.seed = int(raw.get("seed", 1))
        self.speed = float(raw.get("speed", 1))
        if not 0.1 <= self.speed <= 3600:
            raise ScenarioError("%s: speed must be from 0.1 to 3600" % path)
        site = raw.get("site", {})
        self.site = {"id": site.get("id", "xa-mo-phong"), "name": site.get("name", "Xã mô phỏng"),
                     "lat": float(site.get("lat", 21.0285)), "lon": float(site.get("lon", 105.8542)),
                     "utc_offset": float(site.get("utc_offset", 7))}
        self.start = local_time(raw.get("start", "2026-11-23T16:00"), self.site["utc_offset"], path + ": start")
        self.duration = seconds(raw.get("duration", "1h"), path + ": duration")
        self.broker = raw.get("broker", "mosquitto")
        if self.broker not in ("mosquitto", "embedded"):
            raise ScenarioError("%s: broker must be mosquitto or embedded" % path)
        self.tls = raw.get("tls", False)
        if not isinstance(self.tls, bool) or (self.tls and self.broker != "mosquitto"):
            raise ScenarioError("%s: tls must be true or false, and true needs broker = \"mosquitto\" "
                                "(the embedded broker has no TLS)" % path)
        self.nodes_per_host = int(raw.get("nodes_per_host", 50))
        self.program = raw.get("program")
        self.zones = list(raw.get("zones", []))
        if not self.zones:
            raise ScenarioError("%s: at least one [[zones]] is needed" % path)
        zone_ids = {z["id"] for z in self.zones}
        self.nodes = []
        for i, group in enumerate(raw.get("nodes", [])):
            where = "%s: nodes[%d]" % (path, i)
            zone = group.get("zone")
            if zone not in zone_ids:
                raise ScenarioError("%s: zone %r is not in [[zones]]" % (where, zone))
            ids = group.get("ids") or ["%s-%02d" % (group.get("prefix", zone), k + 1)
                                       for k in range(int(group.get("count", 1)))]
            for node_id in ids:
                self.nodes.append({"id": node_id, "zone": zone, "kind": group.get("kind", "lamp"),
                                   "board": dict(group.get("board", {})), "faults": dict(group.get("faults", {})),
                                   "files": group.get("files", "gateway")})
        if not self.nodes:
            raise ScenarioError("%s: no [[nodes]]" % path)
        self.timeline = []
        for key, allowed in (("actions", ACTIONS), ("faults", FAULTS)):
            for i, entry in enumerate(raw.get(key, [])):
                where = "%s: %s[%d]" % (path, key, i)
                if entry.get("do") not in allowed:
                    raise ScenarioError("%s: do must be one of %s" % (where, ", ".join(allowed)))
                at = seconds(entry.get("at", 0), where + ".at")
                if not 0 <= at <= self.duration:
                    raise ScenarioError("%s: at is outside the run" % where)
                self.timeline.append(dict(entry, at=at, type=key[:-1], index=i))
        self.timeline.sort(key=lambda e: (e["at"], e["type"] != "fault", e["index"]))
        proxy = raw.get("proxy", "auto")
        if proxy not in (True, False, "auto"):
            raise ScenarioError("%s: proxy must be true, false or \"auto\"" % path)
        # A TCP proxy per zone (simulator/netfaults.py) runs in the gateway's process: every byte of every
        # node passes through the gateway's event loop. Only a scenario that partitions zones needs it.
        self.proxy = proxy if proxy != "auto" else any(e["do"] in ("partition", "heal") for e in self.timeline)
        self.assertions = list(raw.get("assert", []))

    def targets(self, entry):
        """Node ids an action or fault names: nodes = [...], zone = "...", or all."""
        if "nodes" in entry:
            return list(entry["nodes"])
        if "zone" in entry:
            return [n["id"] for n in self.nodes if n["zone"] == entry["zone"]]
        return [n["id"] for n in self.nodes]

    @classmethod
    def load(cls, path):
        try:
            with open(path, "rb") as f:
                return cls(tomllib.load(f), str(path))
        except OSError as exc:
            raise ScenarioError("%s: %s" % (path, exc.strerror))
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError("%s: not valid TOML: %s" % (path, exc))

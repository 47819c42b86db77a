"""make demo: the gateway on its embedded broker and a simulated commune of about 40 nodes.

Four hamlets (thôn) along the roads of a commune, each with 8 street lamps
and 2 loudspeaker clusters, every node running the real firmware on the
real MicroPython interpreter in node hosts, in real time. A realistic lamp
program (on at sunset, 40 % from 23:00, off at 04:30, motion boost) and the
daily news at 05:30 and 17:00 are set up at first start. Runs until Ctrl-C;
everything is kept in ./data/demo, so a second start resumes the same commune.
"""
import asyncio
import json
import os
import socket

from gateway.__main__ import serve
from gateway.config import GatewayConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAMLETS = [("thon-1", "Thôn Đông"), ("thon-2", "Thôn Tây"), ("thon-3", "Thôn Nam"), ("thon-4", "Thôn Bắc")]
LAMPS_PER_HAMLET = 8
SPEAKERS_PER_HAMLET = 2
CENTER = (21.0285, 105.8542)
NOTICE = ("Ủy ban nhân dân xã nhắc bà con: khóa cửa, giữ gìn an ninh trật tự thôn xóm. "
          "Khi thấy người lạ khả nghi, báo ngay công an xã. Khi có cháy, gọi 114.")
PROGRAM = {
    "days": {
        "thuong": {"on": "sunset", "off": "sunrise", "level": 100,
                   "steps": [{"at": "23:00", "level": 40}, {"at": "04:30", "level": 0}],
                   "motion": {"level": 80, "hold": 120}},
        "tet": {"on": "sunset-15", "off": "sunrise+15", "level": 100},
    },
    "calendar": [{"day": "tet", "from": "2027-02-05", "to": "2027-02-13"}, {"day": "thuong"}],
}


def free_port(preferred):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def commune():
    """(zones, node specs) of the demo commune, positioned along four roads out of the centre."""
    specs = []
    for h, (zone, name) in enumerate(HAMLETS):
        dlat, dlon = ((0.004, 0), (-0.004, 0), (0, 0.004), (0, -0.004))[h]
        for i in range(LAMPS_PER_HAMLET):
            specs.append({"id": "den-%d-%02d" % (h + 1, i + 1), "name": "Đèn %s số %d" % (name, i + 1),
                          "zones": [zone], "kind": "lamp",
                          "lat": CENTER[0] + dlat * (i + 1) / 2, "lon": CENTER[1] + dlon * (i + 1) / 2})
        for j in range(SPEAKERS_PER_HAMLET):
            specs.append({"id": "loa-%d-%d" % (h + 1, j + 1), "name": "Loa %s cụm %d" % (name, j + 1),
                          "zones": [zone], "kind": "both",
                          "lat": CENTER[0] + dlat * (3 * j + 2), "lon": CENTER[1] + dlon * (3 * j + 2)})
    return specs


async def setup(gw, data_dir):
    """First start: zones, nodes, program, schedules. Returns the provisioning bundles (kept on disk)."""
    path = os.path.join(data_dir, "demo-nodes.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    for zone, name in HAMLETS:
        gw.registry.add_zone({"id": zone, "name": name})
    added = await gw.provisioning.add_nodes(list(commune()), gw.cfg.site, "127.0.0.1", gw.cfg.broker_port,
                                            gw.location)
    bundles = [bundle for _node, bundle in added]
    gw.plans.set_program("default", "site", PROGRAM, "demo")
    zones = [z for z, _ in HAMLETS]
    for sid, title, hhmm in (("tin-sang", "Bản tin buổi sáng", "05:30"), ("tin-chieu", "Bản tin buổi chiều", "17:00")):
        gw.plans.put_schedule({"id": sid, "title": title, "category": "news", "priority": 0, "zones": zones,
                               "source": "line", "volume": 80, "start": "2026-01-01T%s" % hhmm,
                               "duration_s": 1800, "rrule": "FREQ=DAILY"}, "demo", new=True)
    gw.plans.put_schedule({"id": "an-ninh", "title": "Tuyên truyền phòng chống tội phạm", "category": "security",
                           "priority": 1, "zones": zones, "source": "line", "volume": 70,
                           "start": "2026-01-02T18:00", "duration_s": 600, "rrule": "FREQ=WEEKLY;BYDAY=FR"},
                          "demo", new=True)
    try:  # a typed notice read by text-to-speech every evening: a real clip every loudspeaker fetches and plays
        clip = await gw.clips.add_tts(NOTICE, "north", 1.0, "Nhắc nhở an ninh buổi tối", "security", "demo")
        gw.plans.put_schedule({"id": "nhac-nho", "title": "Nhắc nhở an ninh buổi tối", "category": "security",
                               "priority": 0, "zones": zones, "source": "clip", "ref": clip["id"], "volume": 80,
                               "start": "2026-01-01T19:30", "rrule": "FREQ=DAILY"}, "demo", new=True)
    except Exception as exc:  # no espeak-ng or ffmpeg on this machine: the demo runs without the notice
        print("  note: no text-to-speech notice in the demo (%s)" % exc, flush=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(bundles, f)
    return bundles


def main():
    data_dir = os.environ.get("DENLOA_DEMO_DIR") or os.path.join(ROOT, "data", "demo")
    cfg = GatewayConfig({
        "site": {"id": "xa-an-binh", "name": "Xã An Bình (mô phỏng)", "lat": CENTER[0], "lon": CENTER[1], "utc_offset": 7},
        "data": {"dir": data_dir},
        "http": {"bind": "127.0.0.1", "port": free_port(8080)},
        "broker": {"mode": "embedded", "host": "127.0.0.1", "bind": "127.0.0.1", "port": free_port(1883)},
        "tls": {"enabled": False},  # the demo stays plain: the embedded broker has no TLS (docs/security.md)
    })
    from simulator.hosts import NodeHost

    hosts = []

    async def ready(gw, url):
        bundles = await setup(gw, data_dir)
        for bundle in bundles:  # the broker and HTTP ports may differ from the first start
            bundle["broker"]["port"] = gw.cfg.broker_port
            bundle["files"] = {"host": "127.0.0.1", "port": gw.cfg.http_port}
        for start in range(0, len(bundles), 20):
            nodes = [{"dir": os.path.join(data_dir, "flash", b["node"]), "config": dict(b, tele_s=30),
                      "board": {"zones": 2, "seed": start + i + 1}} for i, b in enumerate(bundles[start:start + 20])]
            hosts.append(NodeHost(data_dir, nodes, heap="8M").start(timeout=60))
        print("  nodes:  %d simulated (real firmware on MicroPython), 4 hamlets; Ctrl-C to stop" % len(bundles),
              flush=True)

    try:
        asyncio.run(serve(cfg, ready=ready))
    finally:
        for host in hosts:
            host.stop()


if __name__ == "__main__":
    main()

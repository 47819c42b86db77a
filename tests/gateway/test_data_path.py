"""The gateway's data path under load: many staff clients over real HTTP while hundreds of nodes report.

The gateway runs as `python -m gateway` (uvicorn, real Mosquitto); 200 nodes
(paho, each with its own login, in another process) send a birth, numbered
events (QoS 1) and telemetry at full rate while 12 client threads log in,
read, write schedules and air emergencies. Judged on the database file
afterwards and on every HTTP answer: no answer >= 500, every write there
exactly once, every event stored once with no gap. On the code before the
database got one owner (a connection shared with FastAPI's thread pool) this
failed with HTTP 500 "cannot start a transaction within a transaction".
"""
import concurrent.futures
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import pytest

from simulator.hosts import free_port
from tests.mosquitto import MISSING, MOSQUITTO

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = "xa-an-binh"
NODES = 200
EVENTS = 20  # per node
CLIENTS = 12
ROUNDS = 12  # per client


def start_gateway(tmp_path):
    http_port, broker_port = free_port(), free_port()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[site]\nid = "%s"\nname = "Xã An Bình"\n[data]\ndir = "%s"\n[http]\nport = %d\n'
                   '[broker]\nmode = "mosquitto"\nbind = "127.0.0.1"\nport = %d\n[commands]\nretry_s = 5\n'
                   '[tls]\nenabled = false\n'
                   % (SITE, tmp_path / "data", http_port, broker_port))
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "--config", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    password, lines = None, []
    while password is None:  # the login line comes last; a gateway that dies ends the output
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "login:" in line:
            password = line.split("admin / ")[1].split()[0]
    assert password, "gateway did not start:\n" + "".join(lines)
    threading.Thread(target=lambda: [lines.append(x) for x in proc.stdout], daemon=True).start()
    return proc, "http://127.0.0.1:%d" % http_port, broker_port, password, lines


def client(base, username, password):
    c = httpx.Client(base_url=base, timeout=30)
    r = c.post("/api/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c


@pytest.mark.skipif(not os.path.exists(MOSQUITTO), reason=MISSING)
def test_staff_and_hundreds_of_nodes_at_once_nothing_fails_nothing_doubles(tmp_path):
    t_start = time.time()
    proc, base, broker_port, admin_password, log = start_gateway(tmp_path)
    print("gateway up in %.1f s" % (time.time() - t_start))
    answers = []  # (method, path, status)
    answers_lock = threading.Lock()
    try:
        admin = client(base, "admin", admin_password)
        for z in ("thon-1", "thon-2", "thon-3"):
            assert admin.post("/api/zones", json={"id": z, "name": z}).status_code == 201
        nodes = []
        t0 = time.time()
        for i in range(NODES):
            zones = ["thon-%d" % (1 + i % 2)] + (["thon-3"] if i < 4 else [])  # schedules go to thon-3's four
            r = admin.post("/api/nodes", json={"id": "n-%03d" % i, "zones": zones, "kind": "both"})
            assert r.status_code == 201, r.text
            nodes.append({"id": "n-%03d" % i, "password": r.json()["provisioning"]["broker"]["password"]})
        print("registered %d nodes in %.1f s" % (NODES, time.time() - t0))
        for k in range(CLIENTS):
            r = admin.post("/api/users", json={"username": "op%02d" % k, "role": "operator", "password": "mat-khau-%02d!" % k})
            assert r.status_code == 201, r.text

        swarm = subprocess.Popen([sys.executable, "-m", "tests.gateway.node_swarm"], cwd=ROOT, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        swarm.stdin.write(json.dumps({"host": "127.0.0.1", "port": broker_port, "site": SITE, "nodes": nodes,
                                      "events": EVENTS, "tele_per_event": 2}))
        swarm.stdin.close()
        swarm.stdin = None  # written whole: communicate() must not flush it

        def staff(k):
            made = {"schedules": [], "batches": []}
            password = "mat-khau-%02d!" % k
            c = client(base, "op%02d" % k, password)

            def call(method, path, **kw):
                try:
                    r = c.request(method, path, **kw)
                except httpx.HTTPError as exc:
                    with answers_lock:
                        answers.append((method, path, "%s" % type(exc).__name__))
                    return None
                with answers_lock:
                    answers.append((method, path, r.status_code))
                return r

            for i in range(ROUNDS):
                call("GET", "/api/nodes")
                call("GET", "/api/events", params={"limit": 100})
                call("GET", "/api/alerts")
                sid = "lich-%02d-%02d" % (k, i)
                r = call("POST", "/api/schedules", json={
                    "id": sid, "title": "Bản tin %d/%d" % (k, i), "category": "news", "priority": 0,
                    "zones": ["thon-3"], "source": "line", "volume": 70, "start": "2026-12-24T%02d:%02d" % (6 + k, i),
                    "duration_s": 60, "rrule": "FREQ=DAILY;COUNT=2"})
                if r is not None and r.status_code == 201:
                    made["schedules"].append(sid)
                if i % 4 == k % 4:
                    r = call("POST", "/api/emergency", json={"zones": ["thon-%d" % (1 + k % 2)], "duration_s": 30})
                    if r is not None and r.status_code == 202:
                        made["batches"].append(r.json()["batch"])
                        call("GET", "/api/emergency/" + r.json()["batch"])
                if i % 5 == 0:  # a fresh login now and then: Argon2 while everything else runs
                    again = client(base, "op%02d" % k, password)
                    c.headers["X-CSRF-Token"] = again.headers["X-CSRF-Token"]
                    c.cookies = again.cookies
                    again.close()
                call("GET", "/api/schedules")
            c.close()
            return made

        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            made = list(pool.map(staff, range(CLIENTS)))
        print("staff done in %.1f s" % (time.time() - t0))
        staff_end = time.time()
        out, err = swarm.communicate(timeout=180)
        assert swarm.returncode == 0, err
        print("swarm done in %.1f s" % (time.time() - t0))
        sent = json.loads(out)
        # the load really overlapped: the nodes were still publishing after the staff clients began
        assert sent["publish_end"] > t0 and sent["publish_start"] < staff_end, (sent, t0, staff_end)

        expected_events = NODES * EVENTS
        db_path = tmp_path / "data" / "denloa.db"
        deadline = time.time() + 60
        while time.time() < deadline:  # the gateway drains what the broker queued for it
            with sqlite3.connect(db_path) as peek:
                if peek.execute("SELECT COUNT(*) FROM events").fetchone()[0] >= expected_events:
                    break
            time.sleep(0.5)
        print("drained at %.1f s" % (time.time() - t0))
        schedules_seen = admin.get("/api/schedules").json()
        admin.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

    print("stopped at %.1f s" % (time.time() - t_start))
    failed = [a for a in answers if not isinstance(a[2], int) or a[2] >= 500]
    assert not failed, "%d answers failed, first: %s\ngateway log:\n%s" % (len(failed), failed[:5], "".join(log[-40:]))
    refused = [a for a in answers if a[2] >= 400]
    assert not refused, refused[:5]
    assert len(answers) >= CLIENTS * ROUNDS * 5

    db = sqlite3.connect(db_path)
    # every write there exactly once
    wanted = sorted(s for m in made for s in m["schedules"])
    assert len(wanted) == CLIENTS * ROUNDS
    assert sorted(r[0] for r in db.execute("SELECT id FROM schedules WHERE id LIKE 'lich-%'")) == wanted
    assert sorted(s["id"] for s in schedules_seen if s["id"].startswith("lich-")) == wanted
    audited = [r[0] for r in db.execute("SELECT target FROM audit WHERE action = 'schedule.add'")]
    assert sorted(audited) == wanted
    batches = [b for m in made for b in m["batches"]]
    assert batches and len(set(batches)) == len(batches)
    for batch in batches:
        zone_nodes = db.execute("SELECT COUNT(*) FROM commands WHERE batch = ?", (batch,)).fetchone()[0]
        assert zone_nodes == NODES // 2, (batch, zone_nodes)
    assert db.execute("SELECT COUNT(*) FROM users WHERE username LIKE 'op%'").fetchone()[0] == CLIENTS
    # every event stored once, none missing
    for node_id, boot in sent["boots"].items():
        seqs = [r[0] for r in db.execute("SELECT seq FROM events WHERE node_id = ? AND boot_id = ? ORDER BY seq",
                                         (node_id, boot))]
        assert seqs == list(range(EVENTS)), (node_id, seqs[:5], len(seqs))
    assert db.execute("SELECT COUNT(*) FROM seq_tracker WHERE missing > 0").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM node_state WHERE online = 1").fetchone()[0] == NODES
    db.close()

"""make demo: the gateway and a simulated commune come up, staff can log in, every node is online."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_runs_and_stops_cleanly(tmp_path):
    env = dict(os.environ, DENLOA_DEMO_DIR=str(tmp_path / "demo"))
    proc = subprocess.Popen([sys.executable, "-m", "simulator.demo"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    threading.Thread(target=lambda: [lines.append(l.rstrip()) for l in proc.stdout], daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while not any("nodes:" in l for l in lines):
            assert proc.poll() is None, "\n".join(lines)
            assert time.monotonic() < deadline, "\n".join(lines)
            time.sleep(0.2)
        url = [l.split()[-1] for l in lines if "web:" in l][0]
        password = [l.split()[3] for l in lines if "login:" in l][0]
        assert len(password) >= 12  # generated, never a fixed default
        with open(tmp_path / "demo" / "admin-password.txt") as f:
            assert f.read().strip() == password
        with httpx.Client(base_url=url, timeout=10) as http:
            r = http.post("/api/login", json={"username": "admin", "password": password})
            assert r.status_code == 200
            online = 0
            while online < 40 and time.monotonic() < deadline + 30:
                nodes = http.get("/api/nodes").json()
                online = sum(1 for n in nodes if n["live"].get("online"))
                time.sleep(0.5)
            assert len(nodes) == 40 and online == 40
            schedules = {s["id"]: s for s in http.get("/api/schedules").json()}
            assert len(schedules) == 4
            # the evening notice is a text-to-speech clip of the library, fetchable by the loudspeakers
            notice = schedules["nhac-nho"]
            assert notice["source"] == "clip" and http.get("/api/clips/" + notice["ref"]).status_code == 200
            page = http.get("/")  # the printed URL is the staff dashboard, in Vietnamese
            assert page.status_code == 200 and '<html lang="vi">' in page.text and "Tổng quan" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, "\n".join(lines[-20:])
    assert not [l for l in lines if "Traceback" in l], "\n".join(lines)

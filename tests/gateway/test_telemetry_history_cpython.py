"""The telemetry history behind the node page's charts stays bounded: one row per node per interval
whatever the nodes' rate, thinned to one per 15 minutes after two days, nothing after fourteen days."""
import json

from gateway.db import Database
from gateway.telemetry import COARSE_S, EVERY_S, FINE_S, KEEP_S, TelemetryHistory, compact

T0 = 1_800_000_000.0
TELE = {"v": 1, "boot": "b1", "ts": T0, "up": 5, "clock": "synced", "rssi": -61, "heap": 120000,
        "lamp": {"lvl": 40, "relay": True, "w": 24.5, "wh": 1200.0, "on_s": 3600},
        "amp": {"on": False, "zones": [], "src": None, "vol": 80, "item": None}}


def test_one_row_per_interval_whatever_the_telemetry_rate(tmp_path):
    db = Database(str(tmp_path / "g.db"))
    h = TelemetryHistory(db)
    stored = sum(h.record("den-1", T0 + i * 5, TELE) for i in range(10 * 60 // 5))  # 10 min at 5 s
    assert stored == 10 and h.count("den-1") == 10
    s = h.series("den-1", T0 - 1)
    assert s["t"] == [T0 + i * EVERY_S for i in range(10)]
    assert s["w"][0] == 24.5 and s["rssi"][0] == -61 and s["heap"][0] == 120000 and s["lvl"][0] == 40
    # a second node is independent; a restarted history (new object) does not write twice in an interval
    assert h.record("den-2", T0, TELE)
    again = TelemetryHistory(db)
    assert not again.record("den-1", T0 + 9 * EVERY_S + 10, TELE)
    assert again.record("den-1", T0 + 10 * EVERY_S, TELE)
    db.close()


def test_prune_thins_then_drops_and_bounds_rows_per_node(tmp_path):
    db = Database(str(tmp_path / "g.db"))
    h = TelemetryHistory(db)
    days = 16
    rows = [("den-1", T0 + i * EVERY_S, json.dumps(compact(TELE))) for i in range(days * 86400 // EVERY_S)]
    with db.tx():
        db.run_many("INSERT INTO telemetry (node_id, ts, data) VALUES (?, ?, ?)", rows)
    now = T0 + days * 86400
    assert h.prune(now) > 0
    assert h.prune(now + 60) == 0  # at most hourly unless forced
    ts = [r[0] for r in db.all("SELECT ts FROM telemetry WHERE node_id = 'den-1' ORDER BY ts")]
    assert min(ts) >= now - KEEP_S
    fine = [t for t in ts if t >= now - FINE_S]
    coarse = [t for t in ts if t < now - FINE_S]
    assert len(fine) == FINE_S // EVERY_S  # the last two days untouched
    buckets = [int(t // COARSE_S) for t in coarse]
    assert len(buckets) == len(set(buckets))  # at most one row per 15 minutes before that
    assert len(coarse) <= (KEEP_S - FINE_S) // COARSE_S + 1
    assert len(ts) <= FINE_S // EVERY_S + (KEEP_S - FINE_S) // COARSE_S + 1
    # pruning again later keeps the same thinned rows (stable buckets) and moves the window
    before = set(coarse)
    h.prune(now + 3600, force=True)
    after = {r[0] for r in db.all("SELECT ts FROM telemetry WHERE ts < ?", now - FINE_S)}
    assert after <= before
    assert h.series("den-1", now - 3600)["t"][-1] == ts[-1]
    db.close()


def test_compact_keeps_only_what_the_charts_use():
    assert compact(TELE) == {"w": 24.5, "wh": 1200.0, "lvl": 40, "amp": 0, "vol": 80, "rssi": -61, "heap": 120000}
    assert compact({"v": 1, "boot": "b", "up": 1, "clock": "rtc"}) == {}

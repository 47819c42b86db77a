"""The run report: three files, escaped user text, local times, ground-truth helpers, and its size at 200 nodes."""
import calendar
import json
import re
import time
import xml.etree.ElementTree as ET

import pytest

from simulator.report import _light_points, _walk, light_series, state_at, write_report

OFFSET = 7
H = 3600


def local(y, mo, d, hh, mm=0):
    """Unix seconds of a local (UTC+7) wall-clock time."""
    return calendar.timegm((y, mo, d, hh, mm, 0)) - OFFSET * H


START = local(2026, 11, 23, 16)   # 16:00 local = 09:00 UTC
DUSK = local(2026, 11, 23, 17, 30)
DIM = local(2026, 11, 23, 23)
CUT, BACK = local(2026, 11, 24, 1), local(2026, 11, 24, 3)
ALARM = local(2026, 11, 23, 20, 15)
END = local(2026, 11, 24, 7)
EVIL = 'Đèn <script>alert("x")</script> & cầu Thôn Tây'


def night_record():
    """6 nodes in 2 hamlets over one night: lamps on at dusk, 40 % at 23:00, off at 05:30;
    den-b-2 loses power 01:00-03:00; loa-b airs an emergency clip at 20:15; one assertion fails."""
    nodes, truth = [], {}
    for z, zone in enumerate(("thon-a", "thon-b")):
        for i in (1, 2):
            nid = "den-%s-%d" % (zone[-1], i)
            nodes.append({"id": nid, "name": EVIL if nid == "den-a-1" else "Đèn thôn %d số %d" % (z + 1, i),
                          "zones": [zone], "kind": "lamp", "lat": 21.02 + 0.004 * z, "lon": 105.85 + 0.003 * i})
            truth[nid] = [[DUSK, "relay", True], [DUSK, "light", [100, 2000]], [DIM, "light", [40, 60000]],
                          [local(2026, 11, 24, 5, 30), "light", [0, 0]], [local(2026, 11, 24, 5, 30), "relay", False]]
        nid = "loa-" + zone[-1]
        nodes.append({"id": nid, "name": "Loa thôn %d" % (z + 1), "zones": [zone], "kind": "both" if z else "speaker",
                      "lat": 21.021 + 0.004 * z, "lon": 105.851})
        truth[nid] = [[DUSK, "light", [100, 0]]] if z else []
    b2 = truth["den-b-2"]
    b2[3:3] = [[CUT, "power", False], [BACK, "power", True], [BACK + 30, "relay", True], [BACK + 30, "light", [40, 0]]]
    truth["loa-b"] += [[ALARM, "amp", True], [ALARM + 3, "zones", 1], [ALARM + 3, "source", "clip"],
                       [ALARM + 3, "volume", 90], [ALARM + 10, "audio", 4096],
                       [ALARM + 183, "source", None], [ALARM + 183, "zones", 0], [ALARM + 213, "amp", False]]
    return {
        "scenario": "night", "title": "Một đêm ở xã An Bình", "seed": 7, "speed": 600.0,
        "site": {"id": "xa-an-binh", "name": "Xã An Bình", "lat": 21.0285, "lon": 105.8542, "utc_offset": OFFSET},
        "start": START, "end": END, "wall_seconds": 81.3, "nodes": nodes, "truth": truth,
        "faults": [
            {"t": CUT, "kind": "power_cut", "targets": ["den-b-2"], "detail": "cắt điện cột 2"},
            {"t": BACK, "kind": "power_on", "targets": ["den-b-2"], "detail": "có điện lại"},
            {"t": local(2026, 11, 23, 21), "kind": "broker_restart", "targets": [], "detail": "khởi động lại broker"}],
        "actions": [
            {"t": ALARM - 5, "action": "emergency", "detail": "Cảnh báo lũ <b>khẩn</b>", "result": "đã gửi 2 loa"}],
        "assertions": [
            {"name": "đèn theo chương trình", "ok": True, "detail": "6 nút, lệch tối đa 0 %", "t": None},
            {"name": "loa khẩn cấp phát ngay", "ok": False, "detail": "loa-a không phát trong 10 s <x>",
             "t": ALARM + 10},
            {"name": "sau khi có điện lại đèn đúng", "ok": True, "detail": "den-b-2 40 % sau 30 s", "t": BACK}],
        "alerts": [{"t": CUT + 120, "node": "den-b-2", "kind": "offline", "message": "Đèn thôn 2 số 2 mất kết nối"}],
        "snapshots": [ALARM + 60, CUT + H],
        "metrics": {"commands": 12, "acked": 11, "latency_ms": {"p50": 40, "p95": 210}},
    }


@pytest.fixture
def written(tmp_path):
    record = night_record()
    return record, write_report(record, tmp_path), tmp_path


def test_three_files_written(written):
    _, paths, out = written
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "junit.xml", "summary.json"]
    assert set(paths) == {"summary", "junit", "html"}


def test_junit_counts_and_text(written):
    _, paths, _ = written
    root = ET.parse(paths["junit"]).getroot()
    suites = root.findall("testsuite") if root.tag == "testsuites" else [root]
    assert len(suites) == 1 and suites[0].get("name") == "scenario.night"
    cases = suites[0].findall("testcase")
    assert len(cases) == 3 and all(c.get("time") is not None for c in cases)
    failures = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["loa khẩn cấp phát ngay"]
    assert failures[0].find("failure").get("message") == "loa-a không phát trong 10 s <x>"
    assert suites[0].get("tests") == "3" and suites[0].get("failures") == "1"
    assert "20:15" in failures[0].find("failure").text  # local time of the failure


def test_summary_counts_without_truth(written):
    _, paths, _ = written
    with open(paths["summary"], encoding="utf-8") as f:
        summary = json.load(f)
    assert "truth" not in summary and summary["ok"] is False
    assert summary["counts"]["passed"] == 2 and summary["counts"]["failed"] == 1
    assert summary["counts"]["truth_changes"]["loa-b"] == 8  # the audio row is bytes played, not a change
    assert summary["counts"]["truth_changes"]["den-b-2"] == 9
    assert summary["nodes"][0]["name"] == EVIL


def test_html_escaped_local_times_and_valid_svg(written):
    _, paths, _ = written
    with open(paths["html"], encoding="utf-8") as f:
        html = f.read()
    assert 'lang="vi"' in html and '<meta charset="utf-8">' in html
    assert "loa-a không phát trong 10 s &lt;x&gt;" in html
    assert html.index("loa khẩn cấp phát ngay") < html.index("đèn theo chương trình")  # failures first
    assert "<script" not in html and "&lt;script&gt;" in html and "<b>khẩn" not in html
    assert "FAIL" in html and "UTC+7" in html
    assert "23/11/2026 16:00" in html and "24/11/2026 07:00" in html  # the period, local
    assert ">17:00<" in html and "24/11 01:02:00" in html  # an axis tick, the alert time
    assert "23/11/2026 09:00" not in html  # UTC would show 09:00
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)  # self-contained
    svgs = re.findall(r"<svg\b.*?</svg>", html, re.S)
    assert len(svgs) == 2 + 2  # a timeline per zone, a map per snapshot
    for svg in svgs:
        ET.fromstring(svg)
    night = ET.fromstring(svgs[-1])
    titles = [t.text for t in night.iter("{http://www.w3.org/2000/svg}title")]
    assert any("den-b-2" in t and "MẤT ĐIỆN" in t for t in titles)
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert night.findall(".//s:circle[@class='dead']", ns)
    alarm = ET.fromstring(svgs[-2])
    assert len(alarm.findall(".//s:circle[@class='air']", ns)) == 1 + 1  # loa-b, plus the legend


def test_state_at_edges():
    rows = night_record()["truth"]["den-b-2"]
    before = state_at(rows, START)
    assert before == {"light": 0, "relay": False, "amp": False, "zones": 0, "source": None, "volume": 0, "power": True}
    assert state_at(rows, DUSK)["light"] == 100 and state_at(rows, DUSK)["relay"] is True  # exactly at the change
    assert state_at(rows, DUSK - 0.001)["light"] == 0
    assert state_at(rows, DIM + 1)["light"] == 40  # the ramp target once the ramp has begun
    dark = state_at(rows, CUT + 60)
    assert dark["power"] is False and dark["light"] == 0 and dark["relay"] is False
    assert state_at(rows, BACK)["power"] is True and state_at(rows, BACK)["light"] == 0  # boots with outputs off
    assert state_at(rows, BACK + 30)["light"] == 40
    speaker = night_record()["truth"]["loa-b"]
    assert state_at(speaker, ALARM + 4)["source"] == "clip" and state_at(speaker, ALARM + 4)["zones"] == 1
    assert state_at([], END) == before


def test_light_series_clipped_steps():
    rows = night_record()["truth"]["den-b-2"]
    assert light_series(rows, START, END) == [(START, 0), (DUSK, 100), (DIM, 40), (CUT, 0), (BACK + 30, 40),
                                              (local(2026, 11, 24, 5, 30), 0)]
    assert light_series(rows, DIM + 60, CUT + 60) == [(DIM + 60, 40), (CUT, 0)]
    assert light_series(rows, CUT + 60, BACK) == [(CUT + 60, 0)]
    assert light_series([], START, END) == [(START, 0)]


def test_drawn_light_honours_ramps_and_steps():
    rows = night_record()["truth"]["den-b-2"]
    points = _light_points(list(_walk(rows)), START, END)
    assert (DUSK, 0) in points and (DUSK + 2, 100) in points  # a 2 s ramp up at dusk
    assert (DIM, 100) in points and (DIM + 60, 40) in points  # a 60 s ramp down to 40 %
    assert (CUT, 40) in points and (CUT, 0) in points  # the power cut is a straight drop
    assert points[0] == (START, 0) and points[-1] == (END, 0)
    mid = _light_points(list(_walk(rows)), DIM + 30, DIM + 90)  # a window that starts mid-ramp
    assert mid[0] == (DIM + 30, 70) and (DIM + 60, 40) in mid


def test_control_characters_and_missing_parts(tmp_path):
    record = night_record()
    record["nodes"][1]["name"] = "bad\x01name"
    record["snapshots"] = []
    record["truth"]["ghost"] = [[DUSK, "light", [50, 0]]]  # truth of a node missing from the list
    paths = write_report(record, tmp_path)
    ET.parse(paths["junit"])
    with open(paths["html"], encoding="utf-8") as f:
        html = f.read()
    for svg in re.findall(r"<svg\b.*?</svg>", html, re.S):
        ET.fromstring(svg)
    assert "ghost" in html and "\x01" not in html


def test_200_nodes_size_and_speed(tmp_path, figure):
    record = night_record()
    nodes, truth = [], {}
    for i in range(200):
        nid = "den-%03d" % i
        nodes.append({"id": nid, "name": "Đèn số %d" % i, "zones": ["thon-%d" % (i % 8)], "kind": "both",
                      "lat": 21.0 + (i % 20) * 0.001, "lon": 105.8 + (i // 20) * 0.001})
        rows, t = [], START
        for k in range(500):  # a change about every 100 s: motion boosts, broadcasts, volume
            t += 30 + (k * 37 + i) % 140
            what = ("light", "amp", "source", "volume", "light")[k % 5]
            value = {"light": [(k * 13 + i) % 101, 2000 * (k % 3)], "amp": k % 2 == 0,
                     "source": (None, "clip", "stream", "line")[k % 4], "volume": k % 100}[what]
            rows.append([t, what, value])
        truth[nid] = rows
    record.update(nodes=nodes, truth=truth, snapshots=[START + 3 * H, START + 8 * H, START + 12 * H])
    began = time.perf_counter()
    paths = write_report(record, tmp_path)
    took = time.perf_counter() - began
    size = (tmp_path / "index.html").stat().st_size
    figure("report: 200 nodes x 500 truth rows -> index.html %.2f MB in %.2f s" % (size / 1e6, took))
    assert size < 3e6 and took < 5
    with open(paths["html"], encoding="utf-8") as f:
        for svg in re.findall(r"<svg\b.*?</svg>", f.read(), re.S):
            ET.fromstring(svg)

"""Broadcasts pages: calendar, the schedule form (TTS, upload, conflicts), approval, and the plans on the nodes.

The plans are judged on the node side: what a loudspeaker keeps on its flash (the set_program command it
applied, firmware/node.py PROGRAM_FILES, read the way firmware/store.py writes it: a 12-byte header then
the command's JSON). A node writes that file only after it verified and applied the command, and it is
what the node airs from after a reboot: stronger than the gateway's own record, and less racy than
the plan_version the node reports (which says a version, not what is in it).
"""
import glob
import json
import os
import struct
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from gateway.schedules import parse_schedule
from gateway.ui.pages.broadcasts_form import form_of, recurrence, schedule_body

TZ = timezone(timedelta(hours=7))
SPEAKERS = {"thon-1": ["loa-1-1", "loa-1-2"], "thon-2": ["loa-2-1", "loa-2-2"]}
ALL_SPEAKERS = SPEAKERS["thon-1"] + SPEAKERS["thon-2"]


# ---- fast: the form's repetition -> rrule ------------------------------------------------------------------

@pytest.mark.parametrize("repeat, extra, start, rule", [
    ("once", {}, "2026-12-03T18:30", None),
    ("daily", {}, "2026-12-03T18:30", "FREQ=DAILY"),
    ("weekdays", {}, "2026-12-03T18:30", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),  # a Thursday
    ("days", {"days": ["SA", "MO"]}, "2026-12-05T18:30", "FREQ=WEEKLY;BYDAY=MO,SA"),  # moved to Saturday
    ("range", {"until": "10/12/2026"}, "2026-12-03T18:30", "FREQ=DAILY;UNTIL=20261210T235959"),
    ("monthly", {"monthday": "1"}, "2027-01-01T18:30", "FREQ=MONTHLY;BYMONTHDAY=1"),
    ("monthly", {"monthday": "31"}, "2026-12-31T18:30", "FREQ=MONTHLY;BYMONTHDAY=31"),
    ("custom", {"custom": "rrule:freq=weekly;byday=th"}, "2026-12-03T18:30", "FREQ=WEEKLY;BYDAY=TH"),
])
def test_repetition_maps_to_an_rrule_whose_first_occurrence_is_the_start(repeat, extra, start, rule):
    got = recurrence(repeat, "03/12/2026", "18:30", extra.get("until", ""), extra.get("days"),
                     extra.get("monthday", ""), extra.get("custom", ""))
    assert got == (start, rule)
    body = {"id": "x", "title": "t", "category": "news", "zones": ["a"], "source": "line", "ref": None, "volume": 80,
            "start": start, "duration_s": 600, "rrule": rule}
    stored = parse_schedule(body, ["a"], 7).to_json()  # recurrence.py agrees: start is the rule's first occurrence
    back = form_of(stored)
    assert back["repeat"] == ("days" if repeat == "custom" else repeat)  # a typed weekly rule reads back as ticks
    assert recurrence(back["repeat"], back["date"], back["time"], back["until"], back["days"], back["monthday"],
                      back["custom"]) == (start, rule)


def test_form_errors_name_their_field():
    from gateway.errors import GatewayError
    for fields, name in [({"repeat": "daily", "date": "2026-12-03", "time": "25:00"}, "time"),
                         ({"repeat": "days", "date": "2026-12-03", "time": "06:00"}, "days"),
                         ({"repeat": "range", "date": "2026-12-03", "time": "06:00", "until": "2026-12-01"}, "until"),
                         ({"repeat": "once", "date": "2026-12-03", "time": "06:00", "zones": []}, "zones"),
                         ({"repeat": "once", "date": "2026-12-03", "time": "06:00", "zones": ["a"], "volume": "80",
                           "source": "tts", "tts_text": " "}, "tts_text")]:
        with pytest.raises(GatewayError) as caught:
            schedule_body(fields, ["a"])
        assert caught.value.field == name
    body, tts = schedule_body({"repeat": "once", "date": "2026-12-03", "time": "6:05", "zones": ["all"],
                               "volume": "70", "priority": "1", "source": "tts", "tts_text": "Xin chào",
                               "voice": "south", "speed": "1,2", "title": "T", "category": "news"}, ["a", "b"])
    assert body["zones"] == ["a", "b"] and body["start"] == "2026-12-03T06:05" and body["priority"] == 1
    assert tts == {"text": "Xin chào", "voice": "south", "speed": 1.2}


# ---- browser -----------------------------------------------------------------------------------------------

def plan_items(commune, node):
    """Item ids of the plan the node holds on its flash (the newest stored set_program carrying a plan)."""
    best = (-1, [])
    for path in glob.glob(os.path.join(commune.tmp, "flash", node, "**", "prog-*"), recursive=True):
        if path.endswith((".tmp", ".bak")):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < 12 or data[:4] != b"dls1":
            continue
        length = struct.unpack("<4sII", data[:12])[1]
        try:
            cmd = json.loads(data[12:12 + length])
        except ValueError:
            continue
        plan = cmd.get("args", {}).get("plan")
        if plan is not None and cmd.get("ctr", 0) > best[0]:
            best = (cmd["ctr"], [item[0] for item in plan["items"]])
    return best[1]


def holds(commune, node, schedule_id):
    return any(i.startswith(schedule_id + ".") for i in plan_items(commune, node))


def later_today(hours=2):
    """(yyyy-mm-dd, dd/mm/yyyy, HH:MM) a few hours from now, site time."""
    when = datetime.now(TZ) + timedelta(hours=hours)
    return when.strftime("%Y-%m-%d"), when.strftime("%d/%m/%Y"), when.strftime("%H:%M")


def add_line_schedule(commune, title, zone, day, at, user="admin", minutes=30, priority=0):
    http = commune.client(user)
    sid = "ut-" + uuid.uuid4().hex[:8]
    r = http.post("/api/schedules", json={"id": sid, "title": title, "category": "news", "priority": priority,
                                          "zones": [zone], "source": "line", "ref": None, "volume": 70,
                                          "start": "%sT%s" % (day, at), "duration_s": minutes * 60,
                                          "rrule": "FREQ=DAILY"})
    assert r.status_code == 201, r.text
    return sid


def delete_schedule(commune, sid):
    commune.client("admin").delete("/api/schedules/" + sid)


def test_operator_schedules_a_daily_tts_broadcast_and_the_zone_speakers_get_it(commune, login, shot, axe_check):
    day, shown, at = later_today()
    base = add_line_schedule(commune, "Tiếp sóng đài huyện", "thon-1", day, at)
    sid = clip_id = None
    try:
        page = login("vanhoa")
        page.goto("/broadcasts/new")
        assert page.locator("h1").inner_text() == "Lịch phát mới"
        page.fill("#title", "Thông báo tiêm phòng")
        page.select_option("#category", "health")
        page.select_option("#repeat", "daily")
        page.fill("#date", shown)
        page.fill("#time", at)
        page.check("input.zone[value=thon-1]")
        page.check("input[name=source][value=tts]")
        page.fill("#tts_text", "Sáng mai, trạm y tế xã tiêm phòng cho trẻ em dưới 5 tuổi.")
        page.click("#tts-preview")
        page.wait_for_function("() => { const a = document.getElementById('tts-audio');"
                               " return a.src.startsWith('blob:') && a.readyState >= 1 && a.duration > 0; }",
                               timeout=30000)
        # the conflict panel: the existing broadcast at the same time in the same zone, and who wins
        panel = page.locator("#conflicts")
        page.click("#check-now")
        panel.get_by_text("Tiếp sóng đài huyện").first.wait_for(timeout=20000)
        assert "Thôn Đông" in panel.inner_text()
        shot(page, "broadcasts-new")
        axe_check(page, "new broadcast form")
        page.click("#save")
        page.wait_for_url("**/broadcasts?saved=*", timeout=60000)
        sid = page.url.split("saved=")[1]
        assert page.get_by_role("status").first.inner_text().startswith("Đã lưu")
        cal = page.locator("#calendar")
        assert cal.locator("li[data-schedule='%s']" % sid).count() >= 1
        assert "Thông báo tiêm phòng" in cal.inner_text() and "Thông thường" in cal.inner_text()
        shot(page, "broadcasts-week")
        axe_check(page, "week calendar")
        page.click("text=Tháng")
        page.wait_for_url("**view=month**")
        assert page.locator("#calendar li[data-schedule='%s']" % sid).count() >= 20
        shot(page, "broadcasts-month")
        axe_check(page, "month calendar")

        schedule = commune.client("vanhoa").get("/api/schedules").json()
        mine = [s for s in schedule if s["id"] == sid][0]
        assert mine["source"] == "clip" and mine["rrule"] == "FREQ=DAILY" and mine["pending"] is False
        clip_id = mine["ref"]
        # edit: the form comes back filled in (the text is now a library clip), a new title is saved
        page.goto("/broadcasts/" + sid)
        assert page.input_value("#title") == "Thông báo tiêm phòng" and page.input_value("#time") == at
        assert page.is_checked("input[name=source][value=clip]") and page.input_value("#clip") == clip_id
        assert page.input_value("#repeat") == "daily" and page.input_value("#date") == shown
        page.click("#check-now")  # the stored version of itself is no overlap: the other one is still listed
        page.locator("#conflicts").get_by_text("Tiếp sóng đài huyện").first.wait_for()
        assert "Thông báo tiêm phòng" not in page.locator("#conflicts table").inner_text()
        page.fill("#title", "Thông báo tiêm phòng đợt 2")
        page.click("#save")
        page.wait_for_url("**/broadcasts?saved=*")
        assert "Thông báo tiêm phòng đợt 2" in page.locator("#schedule-%s" % sid).inner_text()
        # the node side: both loudspeakers of Thôn Đông hold the item, those of Thôn Tây do not
        commune.wait(lambda: all(holds(commune, n, sid) for n in SPEAKERS["thon-1"]), 60, "thon-1 plans")
        assert not any(holds(commune, n, sid) for n in SPEAKERS["thon-2"])

        # delete from the list: the row, the calendar entries and the nodes' items go
        page.goto("/broadcasts")
        page.once("dialog", lambda d: d.accept())
        page.locator("#schedule-%s button.danger" % sid).click()
        page.wait_for_load_state()
        assert page.locator("#schedule-%s" % sid).count() == 0
        commune.wait(lambda: not any(holds(commune, n, sid) for n in ALL_SPEAKERS), 60, "item gone from plans")
        sid = None
    finally:
        if sid:
            delete_schedule(commune, sid)
        delete_schedule(commune, base)
        if clip_id:
            commune.client("admin").delete("/api/clips/" + clip_id)


def test_approval_flow(commune, login):
    gw = commune.gw
    commune.call(lambda: gw.settings.update({"approval_required": True}, "admin"))
    sid = None
    try:
        page = login("vanhoa")
        page.goto("/broadcasts/new")
        assert page.get_by_role("note").count() == 1  # "an administrator must approve"
        day, shown, at = later_today(3)
        page.fill("#title", "Họp tổ dân phố")
        page.select_option("#repeat", "daily")
        page.fill("#date", shown)
        page.fill("#time", at)
        page.check("input.zone[value=thon-2]")
        page.check("input[name=source][value=line]")
        page.fill("#duration_min", "20")
        page.click("#save")
        page.wait_for_url("**/broadcasts?saved=*")
        sid = page.url.split("saved=")[1]
        assert "duyệt" in page.get_by_role("status").first.inner_text()
        assert page.locator("#pending-%s" % sid).count() == 1
        assert page.locator("#pending-%s button" % sid).count() == 0  # an operator cannot approve
        api = commune.client("vanhoa")
        assert [s["pending"] for s in api.get("/api/schedules").json() if s["id"] == sid] == [True]
        assert api.post("/api/schedules/%s/approve" % sid).status_code == 403
        # not in any plan: the gateway sent nothing with it, and no node holds it
        digests = commune.call(lambda: [r["plan_digest"] or "" for r in gw.db.all("SELECT plan_digest FROM node_plans")])
        assert not any(sid in d for d in digests)
        assert not any(holds(commune, n, sid) for n in ALL_SPEAKERS)

        admin = login("admin")
        admin.goto("/broadcasts")
        admin.locator("#pending-%s button[value=approve]" % sid).click()
        admin.wait_for_load_state()
        assert admin.locator("#pending-%s" % sid).count() == 0
        commune.wait(lambda: all(holds(commune, n, sid) for n in SPEAKERS["thon-2"]), 60, "approved item in plans")
        assert not any(holds(commune, n, sid) for n in SPEAKERS["thon-1"])
        audit = [a["action"] for a in commune.client("admin").get("/api/audit").json() if a.get("target") == sid]
        assert "schedule.approve" in audit and "schedule.add" in audit
    finally:
        commune.call(lambda: gw.settings.update({"approval_required": False}, "admin"))
        if sid:
            delete_schedule(commune, sid)


def test_a_bad_upload_is_refused_in_both_languages(commune, login, tmp_path):
    before = len(commune.call(lambda: commune.gw.clips.list()))
    page = login("vanhoa")
    page.goto("/broadcasts/new")
    page.check("input[name=source][value=upload]")
    page.set_input_files("#upload-file", files=[{"name": "bai-hat.mp3", "mimeType": "audio/mpeg",
                                                  "buffer": b"day khong phai am thanh\n" * 20}])
    page.click("#upload-send")
    alert = page.locator("#upload-status [role=alert]")
    alert.wait_for(timeout=30000)
    assert alert.locator("span[lang=vi]").inner_text().strip()
    assert alert.locator("span[lang=en]").inner_text().strip()
    assert len(commune.call(lambda: commune.gw.clips.list())) == before
    # a form with a mistake comes back with the message next to the field and what was typed kept
    page.fill("#title", "Thiếu khu vực")
    page.check("input[name=source][value=line]")
    page.click("#save")
    page.wait_for_load_state()
    assert page.locator("#err-zones").inner_text() == "Chọn ít nhất một khu vực"
    assert page.input_value("#title") == "Thiếu khu vực" and page.is_checked("input[name=source][value=line]")


def test_a_recording_made_in_the_browser_becomes_a_clip(commune, login):
    page = login("vanhoa")
    page.goto("/broadcasts/new")
    page.fill("#title", "Ghi âm thử")
    page.check("input[name=source][value=recording]")
    page.click("#rec-start")
    page.wait_for_function("() => document.getElementById('rec-stop').disabled === false")
    page.wait_for_timeout(1500)
    page.click("#rec-stop")
    page.wait_for_function("() => document.getElementById('clip').value.length === 64", timeout=30000)
    clip_id = page.input_value("#clip")
    try:
        row = commune.client("vanhoa").get("/api/clips/" + clip_id).json()
        assert row["source"] == "recording" and row["title"] == "Ghi âm thử" and row["duration_ms"] > 500
        assert "Ghi âm thử" in page.locator("#rec-status").inner_text()
    finally:
        commune.client("admin").delete("/api/clips/" + clip_id)


def test_a_viewer_sees_the_calendar_but_no_buttons(commune, login):
    day, _shown, at = later_today(4)
    sid = add_line_schedule(commune, "Phát thanh buổi chiều", "thon-1", day, at)
    try:
        page = login("congan")
        page.goto("/broadcasts?d=" + day)
        assert page.locator("#schedule-%s" % sid).count() == 1
        assert page.locator("#calendar li[data-schedule='%s']" % sid).count() >= 1
        assert page.get_by_role("link", name="Lịch phát mới").count() == 0
        assert page.locator("#schedule-%s button" % sid).count() == 0
        page.goto("/broadcasts/new")
        assert page.locator("h1").inner_text() == "Không được phép"
        r = commune.client("congan").post("/api/schedules/%s/approve" % sid)
        assert r.status_code == 403
    finally:
        delete_schedule(commune, sid)

"""Reports and admin in the browser: the monthly figures are the gateway's report's, the CSV downloads with
the same numbers; users are added, disabled (their session ends), given new passwords; settings refuse a
bad value beside its field. Screenshots: reports, the print view, users, a user, audit log, settings.
"""
import csv
import io
import secrets

from gateway.reports import month_bounds, monthly
from gateway.ui.web import Web

MONTH = "2025-01"  # a month of our own, long before the commune's: the rows below are its whole history


def vn(value, decimals=0):
    return Web.number(value, "vi", decimals)


def _seed(commune):
    """A month with known airings (two zones, a missed one), alerts and lamp days; removed afterwards."""
    gw = commune.gw
    start, _end = month_bounds(MONTH, gw.cfg.tz_s)
    rows = [  # node, item, category, priority, started offset (s), secs, samples, outcome, why
        ("loa-1-1", "rpt-news-1", "news", 0, 3600, 180, 180 * 16000, "aired", None),
        ("loa-1-2", "rpt-news-1", "news", 0, 3600, 180, 180 * 16000, "aired", None),
        ("loa-2-1", "rpt-health-1", "health", 1, 90000, 120, 120 * 16000, "aired", None),
        ("loa-2-2", "rpt-health-2", "health", 1, 95000, 0, None, "missed", "clip_missing"),
    ]

    def put():
        with gw.db.tx():
            for node, item, cat, prio, at, secs, samples, outcome, why in rows:
                gw.db.run("INSERT INTO airings (node_id, item_id, category, priority, source, started, secs, outcome,"
                          " samples, why) VALUES (?, ?, ?, ?, 'clip', ?, ?, ?, ?, ?)",
                          node, item, cat, prio, start + at, secs, outcome, samples, why)
            for kind, node in (("offline", "den-1-1"), ("offline", "den-2-1"), ("lamp_fault", "den-1-2")):
                gw.db.run("INSERT INTO alerts (node_id, kind, severity, message_vi, message_en, opened, closed)"
                          " VALUES (?, ?, 'warning', 'x', 'x', ?, ?)", node, kind, start + 7200, start + 9000)
            for node, day, on_s, wh in (("den-1-1", "2025-01-03", 11 * 3600, 550.0),
                                        ("den-2-1", "2025-01-04", 12 * 3600, 600.0)):
                gw.db.run("INSERT INTO lamp_days (node_id, day, wh_first, wh_last, on_s, ctr_wh) VALUES (?, ?, 0, 0, ?, ?)",
                          node, day, on_s, wh)

    def remove():
        start_, end_ = month_bounds(MONTH, gw.cfg.tz_s)
        with gw.db.tx():
            gw.db.run("DELETE FROM airings WHERE started >= ? AND started < ?", start_, end_)
            gw.db.run("DELETE FROM alerts WHERE opened >= ? AND opened < ?", start_, end_)
            gw.db.run("DELETE FROM lamp_days WHERE day LIKE '2025-01-%'")
    commune.call(put)
    return remove


def test_monthly_page_print_and_csv_show_the_gateways_figures(commune, login, shot, axe_check, tmp_path):
    remove = _seed(commune)
    try:
        report = commune.call(lambda: monthly(commune.gw.db, MONTH, commune.gw.cfg.tz_s))
        assert report["broadcasts"] == 2 and report["missed"]["count"] == 1 and report["fault_count"] == 3
        page = login("congan")  # a viewer reads reports
        page.goto("/reports?month=" + MONTH)
        assert page.locator("h1").inner_text() == "Báo cáo tháng 01/2025"
        stat = lambda key: page.locator("#s-" + key).inner_text()  # noqa: E731
        assert stat("broadcasts") == vn(report["broadcasts"]) == "2"
        assert stat("minutes") == vn(report["speaker_minutes"], 1) == "8,0"  # 3 + 3 + 2 loudspeaker minutes
        assert stat("missed") == "1" and stat("faults") == "3"
        assert stat("lamp-hours") == vn(report["lamp_hours"], 1) == "23,0"
        assert stat("energy") == vn(report["energy_kwh"], 2) == "1,15"

        def cells(table, key):
            return page.locator("#%s tr[data-key='%s'] td" % (table, key)).all_inner_texts()
        for zone, v in report["by_zone"].items():
            assert cells("t-zone", zone) == [vn(v["broadcasts"]), vn(v["speaker_minutes"], 1)]
        assert page.locator("#t-zone tr[data-key='thon-1'] th").inner_text() == "Thôn Đông"
        for cat, v in report["by_category"].items():
            assert cells("t-category", cat) == [vn(v["broadcasts"]), vn(v["minutes"], 1)]
        assert page.locator("#t-category tr[data-key='health'] th").inner_text() == "Y tế"
        for prio, v in report["by_priority"].items():
            assert cells("t-priority", prio) == [vn(v["broadcasts"]), vn(v["minutes"], 1)]
        assert cells("t-missed", "clip_missing") == ["1"]
        assert "tải được tệp âm thanh" in page.locator("#t-missed").inner_text()
        for lamp in report["lamps"]:
            assert cells("t-lamps", lamp["node"]) == [vn(lamp["on_hours"], 1), vn(lamp["energy_kwh"], 2)]
        for zone, v in report["lamp_zones"].items():
            assert cells("t-lamp-zone", zone) == [vn(v["lamps"]), vn(v["on_hours"], 1), vn(v["energy_kwh"], 2)]
        assert cells("t-faults", "offline") == ["2"] and cells("t-faults", "lamp_fault") == ["1"]
        assert page.locator(".bars").count() >= 3  # charts beside the tables
        axe_check(page, "reports")
        shot(page, "reports")

        with page.expect_download() as info:
            page.click("#csv-link")
        download = info.value
        assert download.suggested_filename == "denloa-%s.csv" % MONTH
        path = tmp_path / download.suggested_filename
        download.save_as(path)
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        assert rows[0][1] == MONTH
        assert rows[1][1] == str(report["broadcasts"]) and rows[2][1] == str(report["speaker_minutes"])
        blocks, block = [], []  # the CSV's tables, separated by empty rows; each: header -> {key: values}
        for row in rows + [[]]:
            if row:
                block.append(row)
            elif block:
                blocks.append(block)
                block = []
        tables = {}  # "Zone", "Category", ...; a second table of the same heading gets a "2"
        for b in blocks[1:]:
            head = b[0][0].split(" / ")[1]
            tables[head + ("2" if head in tables else "")] = dict((r[0], r[1:]) for r in b[1:])
        assert tables["Zone2"]["thon-1"] == ["1", "11.0", "0.55"]  # lamps by zone
        table = dict(tables["Zone"], **tables["Category"], **tables["Not aired"], **tables["Fault"], **tables["Lamp"])
        assert table["thon-1"][:2] == [str(report["by_zone"]["thon-1"]["broadcasts"]),
                                       str(report["by_zone"]["thon-1"]["speaker_minutes"])]
        assert table["health"] == [str(report["by_category"]["health"]["broadcasts"]),
                                   str(report["by_category"]["health"]["minutes"])]
        assert table["clip_missing"] == ["1"] and table["offline"] == ["2"]
        assert table["den-1-1"][1:] == ["11.0", "0.55"]

        page.click("#print-link")
        page.wait_for_url("**/reports/print?month=" + MONTH)
        text = page.locator("body").inner_text()
        for words in ("Xã An Bình".upper(), "BÁO CÁO THÁNG 01/2025", "Người lập biểu", "Chủ tịch UBND xã"):
            assert words in text
        assert page.locator("#p-broadcasts").inner_text() == "2"
        assert page.locator("header.top").count() == 0  # no menu on paper
        page.emulate_media(media="print")
        assert page.locator("#print-now").is_hidden()
        page.emulate_media(media="screen")
        axe_check(page, "print view")
        shot(page, "reports-print")
    finally:
        commune.call(remove)


def test_a_bad_month_is_said_beside_the_picker(commune, login):
    page = login("congan")
    answer = page.goto("/reports?month=2026-13")
    assert answer.status == 400
    assert page.locator("#month-error").inner_text() == "Tháng phải có dạng YYYY-MM"
    page.goto("/reports")  # this month by default
    assert page.locator("#month").input_value() == commune.call(
        lambda: __import__("gateway.reports").reports.month_of(commune.gw.clock.now(), commune.gw.cfg.tz_s))


def _login_as(browser, commune, username, password):
    context = browser.new_context(base_url=commune.url, locale="vi-VN")
    page = context.new_page()
    page.set_default_timeout(15000)
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return context, page


def test_admin_adds_a_user_disables_them_and_resets_the_password(commune, login, browser, shot, axe_check):
    name = "tn-" + secrets.token_hex(3)
    admin = login("admin")
    admin.goto("/admin")
    axe_check(admin, "users")
    shot(admin, "admin-users")
    admin.fill("#new-username", name)
    admin.fill("#new-name", "Phạm Thị Thử")
    admin.select_option("#new-role", "operator")
    admin.fill("#new-password", "ngan")  # too short: said beside the field, nothing added, typed values kept
    admin.click("#new-user button[type=submit]")
    assert admin.locator("#password-error").inner_text() == "Mật khẩu phải có ít nhất 10 ký tự"
    assert admin.locator("#new-username").input_value() == name
    assert commune.call(lambda: commune.gw.db.one("SELECT 1 FROM users WHERE username = ?", name)) is None
    admin.fill("#new-password", "mat-khau-thu-nghiem")
    admin.click("#new-user button[type=submit]")
    admin.wait_for_url("**/admin/users/%s?done=created" % name)
    assert admin.get_by_role("status").inner_text() == "Đã thêm người dùng."
    assert commune.call(lambda: commune.gw.users.get(name))["role"] == "operator"

    context, user = _login_as(browser, commune, name, "mat-khau-thu-nghiem")
    try:
        assert user.get_by_role("link", name="KHẨN CẤP").count() == 1  # an operator
        admin.click("#disable")
        admin.wait_for_url("**done=disabled")
        assert "đã khoá" in admin.locator("#account-status").inner_text()
        user.goto("/broadcasts")
        assert "/login" in user.url  # the session ended with the account
        user.fill("#username", name)
        user.fill("#password", "mat-khau-thu-nghiem")
        user.click("button[type=submit]")
        assert user.get_by_role("alert").inner_text() == "Sai tên đăng nhập hoặc mật khẩu"

        admin.click("#enable")
        admin.wait_for_url("**done=enabled")
        admin.check("#mode-generate")
        admin.click("#reset-password button[type=submit]")
        admin.wait_for_url("**done=password&once=*")
        generated = admin.locator("#generated-password").inner_text()
        assert len(generated) == 14
        axe_check(admin, "user")
        shot(admin, "admin-user")
        admin.reload()  # shown once: never again (and a reload makes no new one)
        assert admin.locator("#generated-password").count() == 0
        user.fill("#username", name)
        user.fill("#password", generated)
        user.click("button[type=submit]")
        user.wait_for_url(lambda url: "/login" not in url)
        assert user.get_by_role("link", name="Tổng quan").count() == 1

        admin.goto("/admin/users/%s" % name)
        admin.fill("#password", "mot-mat-khau-khac")  # a typed password: the user's session ends too
        admin.click("#reset-password button[type=submit]")
        admin.wait_for_url("**done=password")
        user.goto("/")
        assert "/login" in user.url
    finally:
        context.close()
        commune.call(lambda: commune.gw.users.update(name, "admin", disabled=True))

    admin.goto("/admin/users/admin")  # the only admin cannot make themself a viewer
    admin.select_option("#role", "viewer")
    admin.click("#user-details button[type=submit]")
    assert admin.locator("#role-error").inner_text() == "Xã phải còn ít nhất một quản trị viên đang hoạt động"
    assert commune.call(lambda: commune.gw.users.get("admin"))["role"] == "admin"
    assert admin.locator("#disable").count() == 0  # nor disable themself

    admin.goto("/admin/audit?user=admin&action=user.update")
    rows = admin.locator("#audit tbody tr").all_inner_texts()
    assert any(name in row and "disabled: True" in row for row in rows)
    assert all("/" in row.split("\t")[0] for row in rows)  # dd/mm/yyyy HH:MM
    axe_check(admin, "audit")
    shot(admin, "admin-audit")


def test_settings_save_and_refuse_a_bad_value(commune, login, shot, axe_check):
    before = commune.call(lambda: commune.gw.settings.all())
    page = login("admin")
    try:
        page.goto("/admin/settings")
        assert page.get_by_label("Báo mất kết nối sau (phút)").count() == 1  # labelled in the page's language
        page.fill("#s-offline_alert_min", "500")
        page.fill("#s-emergency_repeat", "3")
        page.click("#settings button[type=submit]")
        assert page.locator("#offline_alert_min-error").inner_text().endswith("số nguyên từ 1 đến 120")
        assert page.locator("#s-offline_alert_min").input_value() == "500"  # what was typed stays
        assert commune.call(lambda: commune.gw.settings.all()) == before  # nothing stored, not even the good one
        axe_check(page, "settings with an error")
        shot(page, "admin-settings")
        page.fill("#s-offline_alert_min", "7")
        page.click("#settings button[type=submit]")
        page.wait_for_url("**done=settings")
        assert page.get_by_role("status").inner_text() == "Đã lưu thiết lập."
        after = commune.call(lambda: commune.gw.settings.all())
        assert after["offline_alert_min"] == 7 and after["emergency_repeat"] == 3
    finally:
        commune.call(lambda: commune.gw.settings.update(before, "admin"))


def test_the_json_api_for_users_and_settings(commune):
    admin, operator = commune.client("admin"), commune.client("vanhoa")
    name = "api-" + secrets.token_hex(3)
    assert admin.post("/api/users", json={"username": name, "name": "Thử API", "password": "mat-khau-api-1"}).status_code == 201
    r = admin.patch("/api/users/" + name, json={"role": "operator"})
    assert r.status_code == 200 and r.json()["role"] == "operator"
    r = admin.post("/api/users/%s/password" % name, json={})
    assert r.status_code == 200 and len(r.json()["password"]) == 14
    assert admin.post("/api/users/%s/password" % name, json={"password": "short"}).status_code == 400
    assert admin.patch("/api/users/admin", json={"role": "viewer"}).status_code == 409
    assert admin.patch("/api/users/nobody-here", json={"disabled": True}).status_code == 404
    assert operator.patch("/api/users/" + name, json={"disabled": True}).status_code == 403
    assert admin.patch("/api/users/" + name, json={"disabled": True}).json()["disabled"] == 1
    audit = admin.get("/api/audit", params={"username": "admin", "action": "user."}).json()
    assert {"user.update", "user.password", "user.add"} <= {a["action"] for a in audit if a["target"] == name}
    settings = admin.get("/api/settings").json()
    assert admin.put("/api/settings", json={"offline_alert_min": 0}).status_code == 400
    assert admin.put("/api/settings", json={"nonsense": 1}).status_code == 400
    assert admin.put("/api/settings", json=settings).json() == settings
    assert operator.get("/api/settings").status_code == 403
    for c in (admin, operator):
        c.close()

"""Every GET page of the app (walked from create_app(...).routes, so pages added later are covered; path
parameters filled with real ids of the commune), rendered in Chromium as an admin: 200, html lang="vi", no
English left (Vietnamese diacritics in the text, none of the menu's English words), axe without a serious or
critical violation, and screenshots at desktop and phone width (build/ui/page-*.png). The same pages as a
viewer: no form or htmx action that changes something (other than logging out), no EMERGENCY button.
"""
import datetime
import re

import pytest

from tests.ui import routewalk
from tests.ui.conftest import logged_in

PAGES = routewalk.page_gets()
ENGLISH = ("Dashboard", "Broadcasts", "Lamp programs", "Devices", "Reports", "Admin", "Log out", "EMERGENCY",
           "Skip to content", "Coming soon", "Error", "Not allowed", "Not found")  # the layout's own English
VIETNAMESE = re.compile("[ăâđêôơưàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ]", re.I)
CHANGES = ("hx-post", "hx-put", "hx-patch", "hx-delete")


def _context(browser, commune, username):
    return logged_in(browser, commune, username)


@pytest.fixture(scope="module")
def as_admin(commune, browser):
    context, page = _context(browser, commune, "admin")
    yield page
    context.close()


@pytest.fixture(scope="module")
def as_viewer(commune, browser):
    context, page = _context(browser, commune, "congan")
    yield page
    context.close()


@pytest.fixture(scope="module")
def made(commune):
    """Things made for the pages that show one thing the commune lacks (a schedule); removed at the end."""
    created = []

    def make(kind):
        if kind == "emergency":  # a short one on one hamlet, stopped at once: its pages show a finished batch
            started = commune.call(commune.gw.emergencies.start(["thon-2"], "line", None, 10, 5, "admin"))
            commune.call(commune.gw.emergencies.stop(started["batch"], "admin"))
            return started
        assert kind == "schedule", kind
        start = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=7))) + datetime.timedelta(days=2)
        body = {"id": "tn-trang-lich", "title": "Lịch thử cho trang", "category": "news", "priority": 0,
                "zones": ["thon-1"], "source": "line", "volume": 80, "start": start.strftime("%Y-%m-%dT%H:%M"),
                "duration_s": 60}
        http = commune.client("admin")
        r = http.post("/api/schedules", json=body)
        http.close()
        assert r.status_code in (201, 409), r.text
        created.append(("schedule", body["id"]))
        return body
    yield make
    if created:
        http = commune.client("admin")
        for kind, key in created:
            http.delete("/api/schedules/" + key)
        http.close()


def _url(endpoint, commune, made):
    values = {}
    for name in endpoint.params:
        value = routewalk.real_value(name, commune, made)
        if value is None:
            pytest.skip("the commune has no %s to show on %s" % (name, endpoint.path))
        values[name] = value
    return routewalk.fill(endpoint.path, lambda name: values[name])


def _slug(path):
    return "page-" + (re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "dashboard")


@pytest.mark.parametrize("endpoint", PAGES, ids=[e.path for e in PAGES])
def test_every_page_in_vietnamese_accessible_with_screenshots(endpoint, commune, made, as_admin, axe_check, shot):
    url = _url(endpoint, commune, made)
    answer = as_admin.goto(url)
    if "text/html" not in answer.headers.get("content-type", ""):
        pytest.skip("%s is not an HTML page (%s)" % (url, answer.headers.get("content-type")))
    assert answer.status == 200, "%s answered %d" % (url, answer.status)
    fragment = "<html" not in answer.text()[:1000].lower()  # an htmx fragment, shown inside its page
    text = as_admin.locator("body").inner_text()
    assert VIETNAMESE.search(text) or (fragment and not re.search("[A-Za-z]{3}", text)), \
        "%s has no Vietnamese text" % url
    left = [w for w in ENGLISH if re.search(r"\b%s\b" % re.escape(w), text)]
    assert not left, "%s shows English: %s" % (url, left)
    assert "Traceback" not in as_admin.content()
    if fragment:
        return  # its page is checked whole (lang, axe, screenshots)
    assert as_admin.locator("html").get_attribute("lang") == "vi"
    axe_check(as_admin, url)
    shot(as_admin, _slug(url.split("?")[0]))


@pytest.mark.parametrize("endpoint", PAGES, ids=[e.path for e in PAGES])
def test_a_viewer_sees_no_operator_buttons(endpoint, commune, made, as_viewer):
    url = _url(endpoint, commune, made)
    answer = as_viewer.goto(url)
    if answer.status == 403:
        assert as_viewer.locator("h1").inner_text() == "Không được phép"
        return  # not a viewer's page: refused in plain words
    assert answer.status == 200, "%s answered %d to a viewer" % (url, answer.status)
    if "text/html" not in answer.headers.get("content-type", ""):
        return
    posting = as_viewer.eval_on_selector_all(
        "form", "fs => fs.filter(f => (f.getAttribute('method') || 'get').toLowerCase() !== 'get')"
                ".map(f => f.getAttribute('action') || location.pathname)")
    posting = [a for a in posting if a not in ("/logout",)]
    assert not posting, "%s shows a viewer forms that change things: %s" % (url, posting)
    htmx = as_viewer.locator(",".join("[%s]" % a for a in CHANGES)).count()
    assert htmx == 0, "%s shows a viewer %d htmx actions that change things" % (url, htmx)
    assert as_viewer.get_by_role("link", name="KHẨN CẤP").count() == 0

"""Browser tests: Playwright for Python driving Debian's Chromium headless (never Playwright's own browser
download, which cannot work on these machines), against `Commune` (tests/ui/commune.py): a real gateway
on a real port with real firmware nodes. One commune and one browser serve every test of
tests/ui (package scope: they are gone before any other folder's tests run, whatever the order).

Fixtures:
- `commune`: the running commune (URL, users, `truth()`, `call()`, `client(user)`).
- `browser`: Chromium.
- `login(username, phone=False)`: a new logged-in page (desktop 1280x860, or phone 390x844).
- `shot(page, name)`: a screenshot at desktop and at phone width in build/ui/<name>-{desktop,phone}.png.
- `axe_check(page)`: axe-core on the page; fails on a serious or critical violation.
"""
import os
import shutil

import pytest

from tests.ui.commune import USERS, Commune

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = os.path.join(ROOT, "build", "ui")
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def pytest_collection_modifyitems(config, items):
    if shutil.which("chromium") is None:
        skip = pytest.mark.skip(reason="Debian's chromium is not installed (make setup installs it as root)")
        for item in items:
            if "/tests/ui/" in str(item.fspath) and "catalogue" not in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="package")
def commune(tmp_path_factory):
    c = Commune(tmp_path_factory.mktemp("commune")).start()
    yield c
    c.stop()


@pytest.fixture(scope="package")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                    "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def logged_in(browser, commune, username, viewport=DESKTOP):
    """(context, page) of a new browser context logged in as `username` through the login form."""
    context = browser.new_context(viewport=viewport, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh",
                                  base_url=commune.url)
    context.grant_permissions(["microphone"], origin=commune.url)
    page = context.new_page()
    page.set_default_timeout(15000)
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", USERS[username][2])
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
    return context, page


@pytest.fixture
def login(commune, browser):
    contexts = []

    def open_as(username="admin", phone=False, lang=None):
        context, page = logged_in(browser, commune, username, PHONE if phone else DESKTOP)
        contexts.append(context)
        if lang:
            page.goto("/lang/%s?next=/" % lang)
        return page

    yield open_as
    for context in contexts:
        context.close()


@pytest.fixture
def shot():
    os.makedirs(SHOTS, exist_ok=True)

    def take(page, name):
        size = page.viewport_size
        for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            resize(page, viewport)
            page.screenshot(path=os.path.join(SHOTS, "%s-%s.png" % (name, label)), full_page=True)
        resize(page, size)
    return take


def resize(page, viewport):
    """Set the viewport and wait until the page is drawn for it: loaded, fonts ready, the charts (static/nodes.js
    redraws them on resize and marks #charts[data-drawn] after each drawing) drawn again with a uPlot canvas in
    every chart that has points, then two animation frames for layout and paint. No fixed sleep."""
    charts = page.locator("#charts").count() > 0
    changed = page.viewport_size != viewport
    if charts and changed:  # the mark goes; the redraw the resize causes puts it back
        page.evaluate("document.getElementById('charts').removeAttribute('data-drawn')")
    page.set_viewport_size(viewport)
    page.wait_for_load_state("load")
    if charts:
        page.wait_for_selector("#charts[data-drawn]", state="attached", timeout=20000)
        page.wait_for_function("""() => [...document.querySelectorAll('#charts figure.chart')].every(f =>
            !window.uPlot || f.getAttribute('data-points') === '0' || f.querySelector('.plot canvas'))""", timeout=20000)
    page.evaluate("() => document.fonts.ready.then(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))))")


@pytest.fixture
def axe_check():
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()

    def check(page, what=""):
        results = axe.run(page)
        bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
        assert not bad, "axe on %s %s: %s" % (page.url, what, "; ".join(
            "%s (%s): %s" % (v["id"], v["impact"], ", ".join(n["target"][0] if isinstance(n["target"][0], str)
                                                             else str(n["target"]) for n in v["nodes"][:5]))
            for v in bad))
        return results
    return check

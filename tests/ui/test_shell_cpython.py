"""The UI's shell: login, the layout, languages, errors in plain words (browser tests in tests/ui/README)."""
import re


def test_login_then_dashboard_in_vietnamese(commune, login, shot, axe_check):
    page = login("admin")
    assert page.url.rstrip("/") == commune.url
    assert page.locator("html").get_attribute("lang") == "vi"
    assert page.get_by_role("link", name="Tổng quan").count() == 1
    assert page.get_by_role("link", name="KHẨN CẤP").count() == 1
    axe_check(page, "dashboard")


def test_a_wrong_password_is_said_plainly(commune, browser):
    context = browser.new_context(base_url=commune.url)
    page = context.new_page()
    page.goto("/nodes")
    assert "/login?next=/nodes" in page.url
    page.fill("#username", "admin")
    page.fill("#password", "sai-mat-khau-roi")
    page.click("button[type=submit]")
    assert "/login" in page.url
    alert = page.get_by_role("alert").inner_text()
    assert alert and "Traceback" not in page.content()
    context.close()


def test_english_switch_and_back(commune, login):
    page = login("vanhoa", lang="en")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("link", name="Dashboard").count() == 1
    page.goto("/lang/vi?next=/")
    assert page.get_by_role("link", name="Tổng quan").count() == 1


def test_a_viewer_sees_no_emergency_button(commune, login):
    page = login("congan")
    assert page.get_by_role("link", name="KHẨN CẤP").count() == 0
    page.goto("/emergency")
    assert page.locator("h1").inner_text() == "Không được phép"
    assert re.search("quyền", page.content())

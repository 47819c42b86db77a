"""Every string of the UI (templates and Python, extracted with Babel) has its Vietnamese translation."""
from gateway.ui import catalogue
from gateway.ui.i18n import tr


def test_every_ui_string_is_translated():
    found = catalogue.msgids()
    assert len(found) > 20
    gaps = catalogue.missing()
    assert not gaps, "no Vietnamese for: %s" % "; ".join("%r (%s)" % (m, w[0]) for m, w in sorted(gaps.items()))


def test_the_checker_sees_a_missing_translation(monkeypatch):
    found = dict(catalogue.msgids(), **{"A string nobody translated": ["x.html:1"]})
    monkeypatch.setattr(catalogue, "msgids", lambda: found)
    assert "A string nobody translated" in catalogue.missing()


def test_placeholders_survive_translation():
    assert tr("vi", "The address or the form is not valid%(field)s.", field=" (x)").endswith("(x).")
    assert tr("en", "Log in") == "Log in" and tr("vi", "Log in") == "Đăng nhập"


def test_the_scripts_take_their_words_from_the_catalogue():
    """static/*.js asks denloa.s("key") for every word it shows; each key is in js_strings.py, whose
    English msgids the catalogue check above extracts (so each one has its Vietnamese)."""
    from gateway.ui import js_strings
    assert catalogue.js_problems() == []
    found = catalogue.msgids()
    for key, message in js_strings.STRINGS.items():
        assert message in found, key
    vi = js_strings.for_lang("vi")
    assert vi["lamp.lit"] == "sáng %(level)s %%" and vi["node.offline"] == "mất kết nối"
    assert js_strings.for_lang("en")["lamp.lit"] == "lit %(level)s %%"


def test_the_script_checker_sees_words_outside_the_catalogue(tmp_path):
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "lib.min.js").write_text('x.t("vendor text", "is not read")')
    (tmp_path / "page.js").write_text(
        '/* a comment may say denloa.t(vi, en) and denloa.s(key) */\n'
        'var a = denloa.t("Xin chào", "Hello");\n'
        'var b = d.t("Tắt", "Off");\n'
        'var c = window.denloa.s("no.such.key");\n'
        'var e = window.denloa.s(someKey);\n'
        'var f = window.denloa.s("known", { n: 1 });\n')
    problems = catalogue.js_problems(str(tmp_path), {"known": "Known", "unused": "Unused"})
    page = tmp_path.name + "/page.js"
    assert [p.split(": ", 1)[0] for p in problems] == [
        page + ":2", page + ":3", page + ":4", page + ":5", "gateway/ui/js_strings.py"], problems
    assert "no.such.key" in problems[2] and "unused" in problems[4]
    assert "vendor" not in " ".join(problems)


def test_a_page_hands_its_scripts_their_words(login):
    """base.html writes the words once per page; denloa.s() fills the placeholders like tr() does."""
    page = login("congan")
    page.goto("/nodes")
    page.wait_for_function("typeof (window.denloa || {}).s === 'function'")
    assert page.evaluate('denloa.s("lamp.lit", {level: 40})') == "sáng 40 %"
    assert page.evaluate('denloa.s("chart.drawn", {hours: 24})') == "Đã vẽ số liệu của 24 giờ qua."
    assert page.locator("script#denloa-strings").count() == 1
    page.goto("/lang/en?next=/nodes")
    page.wait_for_function("window.denloa && window.denloa.lang === 'en'")
    assert page.evaluate('denloa.s("api.failed", {status: 502})') == "Could not do that (status 502)"
    page.goto("/lang/vi?next=/nodes")

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

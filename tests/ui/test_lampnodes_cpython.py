"""Lamp programs and devices pages in a real browser, against the shared commune of real firmware nodes.

Ground truth is the simulated board's "light" record (hardware/softboard.py: [level, ramp ms left]), never
what the gateway believes. Every test leaves the commune as it found it (programs, overrides, links).
"""
import re
import time

from protocol.program import LampProgram, SunSource
from tests.ui.commune import CENTER, PROGRAM

ZONE2_LAMPS = ("den-2-1", "den-2-2", "den-2-3")
ZONE1_LAMPS = ("den-1-1", "den-1-2", "den-1-3")


def light(commune, node):
    """The lamp's light now as its board recorded it last (0 when the lamp never lit)."""
    rows = commune.truth(node, "light")
    return rows[-1][1][0] if rows else 0


def wait_light(commune, node, level, what, timeout=30):
    commune.wait(lambda: light(commune, node) == level, timeout, "%s: %s light at %s (now %s)" % (
        what, node, level, light(commune, node)))


def frame_now(commune):
    """The site's time now as minutes of the noon-to-noon night frame (720..2159)."""
    local = commune.call(lambda: commune.gw.clock.now()) + commune.cfg.tz_s
    minute = (local % 86400) / 60.0
    return minute if minute >= 720 else minute + 1440


def default_level(commune):
    """The level the commune's default PROGRAM gives a lamp now (sunset, 23:00 and sunrise move it)."""
    program = LampProgram.from_json(dict(PROGRAM, version=1))
    now = commune.call(lambda: commune.gw.clock.now())
    return program.decide(now, commune.cfg.tz_s, SunSource(CENTER[0], CENTER[1], commune.cfg.tz_s / 3600)).level


def wait_default(commune, node, what, timeout=30):
    """The lamp shows what the default program gives it at the moment of each look."""
    commune.wait(lambda: light(commune, node) == default_level(commune), timeout, "%s: %s light at the default's %s"
                 " (now %s)" % (what, node, default_level(commune), light(commune, node)))


def away_from_noon(commune):
    """A night frame runs noon to noon: a program lit 12:00-11:59 is lit at any time but the minute before noon.
    In the last minutes before it, wait until the new frame has begun (rare: 4 minutes of the day)."""
    m = frame_now(commune)
    if m > 2156:
        time.sleep((2160.5 - m) * 60)


def hhmm(frame_minute):
    m = int(frame_minute) % 1440
    return "%02d:%02d" % (m // 60, m % 60)


def test_operator_gives_a_zone_its_own_program_and_only_its_lamps_change(commune, login, shot, axe_check):
    level = 37  # neither the default's 100 / 40 nor 0: the lamps of thon-2 can only show it through this program
    away_from_noon(commune)
    on, off = 720, 2159  # 12:00 to 11:59: lit at any time of day, whatever the default does (sunset, 23:00, sunrise)
    page = login("vanhoa")
    page.goto("/lamps")
    page.click('a[href="/lamps/program?scope=zone&target=thon-2"]')
    page.wait_for_url(re.compile(r"/lamps/program\?scope=zone&target=thon-2"))
    page.check("#on-kind-clock")
    page.fill("#on-time", hhmm(on))
    page.check("#off-kind-clock")
    page.fill("#off-time", "25:99")  # wrong first: the message comes back next to the field, in Vietnamese
    page.fill("#level", str(level))
    for i in range(6):
        page.fill("#step-at-%d" % i, "")
        page.fill("#step-level-%d" % i, "")
    page.uncheck("#motion-on")
    page.click("button[type=submit].primary")
    err = page.locator("#off_time-err")
    assert "HH:MM" in err.inner_text() and "Ghi giờ" in err.inner_text()
    assert page.locator("#off-time").get_attribute("aria-invalid") == "true"
    assert page.input_value("#level") == str(level)  # what was typed is kept
    axe_check(page, "program form with an error")
    page.fill("#off-time", hhmm(off))
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r"/lamps\?done=saved"))
    card = page.locator("#program-zone-thon-2")
    assert card.count() == 1
    assert card.locator("rect.tl-lamp[data-level='%d']" % level).count() == 1
    assert ("%d %%" % level) in card.locator(".tl-text").inner_text()
    try:
        for node in ZONE2_LAMPS:
            wait_light(commune, node, level, "zone program")
        for node in ZONE1_LAMPS:  # the other zone follows the default (looked at when it is due, with a margin
            wait_default(commune, node, "the other zone", timeout=10)  # for a lamp changing at sunset or 23:00)
        page.reload()
        shot(page, "lamps")
        axe_check(page, "lamps page")
    finally:  # restore: thon-2 follows the default program again
        page.goto("/lamps")
        page.locator("#program-zone-thon-2 form button.danger").click()
        page.wait_for_url(re.compile(r"/lamps\?done=deleted"))
    assert page.locator("#program-zone-thon-2").count() == 0
    for node in ZONE2_LAMPS:
        wait_default(commune, node, "back to the default program")
    assert not [p for p in commune.call(lambda: commune.gw.plans.programs()) if p["scope"] != "default"]


def test_override_from_the_node_page_lights_the_lamp_until_cancelled(commune, login, axe_check):
    node = "den-1-2"
    level = 63  # neither the default's 100 / 40 nor 0
    page = login("vanhoa")
    page.goto("/nodes/%s" % node)
    page.fill("#ovr-level", "150")
    page.click(".override-form button[type=submit]")
    assert "0 đến 100" in page.locator("#ovr-level-err").inner_text()
    page.fill("#ovr-level", str(level))
    page.fill("#ovr-hours", "1")
    page.click(".override-form button[type=submit]")
    page.wait_for_url(re.compile(r"/nodes/%s\?done=override" % node))
    row = page.locator("#overrides tr.override")
    assert row.count() == 1 and ("%d %%" % level) in row.inner_text()
    try:
        wait_light(commune, node, level, "override")
        page.reload()
        assert "đã thực hiện" in page.locator("#overrides tr.override").inner_text()  # the node acked it
    finally:
        page.locator("#overrides tr.override button.danger").first.click()
        page.wait_for_url(re.compile(r"/nodes/%s\?done=cancelled" % node))
    assert page.locator("#no-overrides").count() == 1
    wait_default(commune, node, "override cancelled")
    assert not commune.call(lambda: commune.gw.overrides.active())


def test_nodes_list_filters_by_zone_and_offline(commune, login, shot, axe_check):
    node = "den-1-3"
    commune.host.send("%s power off" % node)  # a power cut: the broker publishes its will (offline)
    try:
        page = login("congan")  # a viewer sees, never acts
        page.goto("/nodes?zone=thon-2")
        ids = page.locator("#nodes tbody tr[data-node]").evaluate_all("rs => rs.map(r => r.dataset.node)")
        assert ids and all("-2-" in i for i in ids)
        assert len(ids) == 5
        page.goto("/nodes?kind=lamp")
        assert page.locator("#nodes tbody tr[data-node]").count() == 10  # kind both has a lamp too
        commune.wait(lambda: not commune.call(lambda: commune.gw.ingest.live(node))["online"], 60, node + " offline")
        page.goto("/nodes")
        page.select_option("#f-state", "offline")
        page.click("form.filters button[type=submit]")
        page.wait_for_url(re.compile(r"state=offline"))
        rows = page.locator("#nodes tbody tr[data-node]")
        assert rows.count() == 1 and rows.first.get_attribute("data-node") == node
        assert "mất kết nối từ" in rows.first.locator(".conn").inner_text()
        page.goto("/nodes?state=offline&offline_for=3600")  # offline for an hour or more: nobody yet
        assert page.locator("#nodes tbody tr[data-node]").count() == 0
        page.goto("/nodes?zone=thon-1")
        shot(page, "nodes-list")
        axe_check(page, "nodes list")
        assert page.locator("form[action$='/command']").count() == 0
        page.goto("/lamps")  # nor a program's or an override's controls, and the server refuses them anyway
        assert page.locator("form[action='/lamps/override'], a[href^='/lamps/program']").count() == 0
        viewer = commune.client("congan")
        refused = viewer.post("/lamps/override", data={"csrf": viewer.headers["X-CSRF-Token"], "target": "zone:thon-1",
                                                       "level": "50", "hours": "1"})
        assert refused.status_code == 403 and not commune.call(lambda: commune.gw.overrides.active())
    finally:
        commune.host.send("%s power on" % node)
    commune.wait(lambda: commune.call(lambda: commune.gw.ingest.live(node))["online"], 60, node + " online again")


def test_node_page_draws_real_telemetry_and_sends_a_self_test(commune, login, shot, axe_check):
    node = "loa-1-1"
    commune.wait(lambda: len(commune.call(lambda: commune.gw.ingest.history.series(node, 0))["t"]) >= 1, 30,
                 "a stored reading")
    http = commune.client("congan")
    data = http.get("/api/nodes/%s/telemetry?hours=24" % node).json()
    assert len(data["series"]["t"]) >= 2 and all(v is not None for v in data["series"]["rssi"])
    anonymous = commune.client("congan")
    anonymous.cookies.clear()
    assert anonymous.get("/api/nodes/%s/telemetry" % node).status_code == 401
    page = login("vanhoa")
    page.goto("/nodes/%s" % node)
    page.wait_for_selector("#charts[data-drawn]")
    assert int(page.get_attribute("#charts", "data-drawn")) >= 2
    assert int(page.get_attribute("figure[data-series='rssi']", "data-points")) >= 2
    assert page.locator("figure[data-series='rssi'] canvas").count() == 1  # uPlot drew it
    assert "dBm" in page.locator("#c-rssi-sum").inner_text()
    page.click("form[action$='/command'] input[value=self_test] ~ button")
    page.wait_for_url(re.compile(r"done=sent&cmd=c\d+"))
    cmd = re.search(r"cmd=(c\d+)", page.url).group(1)
    commune.wait(lambda: commune.call(lambda: commune.gw.commands.get(cmd))["status"] == "applied", 30, "self test acked")
    page.reload()
    page.wait_for_selector("#charts[data-drawn]")
    assert page.locator("#cmd-%s" % cmd).get_attribute("data-status") == "applied"
    shot(page, "node-detail")
    axe_check(page, "node page")


def test_program_form_round_trip_and_field_errors_without_a_browser():
    """What the form shows of a day program reads back as the same program; bad fields are named."""
    from starlette.datastructures import FormData

    from gateway.ui.pages.lamps import form_values, parse_day
    from gateway.ui.web import Ctx

    ctx = Ctx(None, None, None, "vi")
    day = {"on": "sunset-15", "off": "dawn+10", "level": 90, "steps": [{"at": "23:30", "level": 40},
                                                                       {"at": "sunrise-60", "level": 70}],
           "motion": {"level": 80, "hold": 120}}
    values = form_values(day)
    fields = [(k, "1" if v is True else str(v)) for k, v in values.items() if v is not False]
    parsed, errors, _typed = parse_day(ctx, FormData(fields))
    assert not errors and parsed == day
    bad = dict(fields, on_kind="clock", on_time="18:00", off_kind="clock", off_time="17:00", level="101",
               step_at_0="7 giờ")
    _parsed, errors, typed = parse_day(ctx, FormData(list(bad.items())))
    assert set(errors) == {"level", "step_at_0"} and "0 đến 100" in errors["level"]
    assert typed["step_at_0"] == "7 giờ"
    bad.update(level="100", step_at_0="23h30", on_time="18h")  # as people write times: 23h30, 18h, 9:15
    parsed, errors, _typed = parse_day(ctx, FormData(list(bad.items())))
    assert parsed["steps"][0]["at"] == "23:30" and parsed["on"] == "18:00" and set(errors) == {"off_time"}
    _parsed, errors, _typed = parse_day(ctx, FormData(list(bad.items())))
    assert set(errors) == {"off_time"} and "sau giờ bật" in errors["off_time"]

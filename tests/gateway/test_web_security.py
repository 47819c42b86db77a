"""The web API's security on a real gateway (tests/gateway/harness.py, embedded broker, a fake clock where time
matters): every route wants a login (walked from the app's routes), a viewer changes nothing, CSRF on every
change, the login rate limit and lockout (API and form; kept across a restart; unlocked by an admin or by time),
equal work for unknown and known users, idle and absolute session expiry, /metrics as configured, the API docs.

The browser-level walk over a whole commune is tests/ui/test_access_cpython.py (same route walker,
tests/ui/routewalk.py); this file runs without Chromium and adds what needs a fake clock or a client address.
"""
import asyncio
import re
import statistics
import time

import httpx
import pytest
from argon2 import PasswordHasher, extract_parameters

from gateway.api import create_app
from gateway.app import make_gateway
from gateway.clock import ManualClock
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.users import ADDRESS_MAX_FAILURES, FAIL_WINDOW_S, LOCK_S, SESSION_S, USER_MAX_FAILURES
from tests.gateway.harness import GatewayRig
from tests.ui import routewalk

NOV_10 = 1794243600.0  # 2026-11-10 00:00 +07
PASSWORDS = {"canbo": ("operator", "mat-khau-can-bo"), "xem": ("viewer", "mat-khau-xem-thoi")}
NOT_FOUND = {"detail": "Not Found"}


def run(coro, timeout=120):
    asyncio.run(asyncio.wait_for(coro, timeout))


def client(rig, address="127.0.0.1"):
    """A new HTTP client of the rig's app, as seen from `address`."""
    app = rig.http._transport.app
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 50000)),
                             base_url="http://gateway")


async def start(tmp_path, clock=None, http=None, cheap_hash=False, **kw):
    rig = GatewayRig(tmp_path, broker="embedded", **kw)
    rig.clock = clock
    rig.raw["http"].update(http or {})
    await rig.start()
    if cheap_hash:  # the rate-limit tests make many wrong logins: a cheap Argon2 (the real one costs ~0.1-0.2 s)
        users = rig.gw.users
        users.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        users._dummy_hash = users.hasher.hash("dummy-for-tests")
    for name, (role, password) in PASSWORDS.items():
        if not rig.gw.db.one("SELECT 1 FROM users WHERE username = ?", name):
            await rig.api("POST", "/api/users", json={"username": name, "name": name, "role": role,
                                                      "password": password}, expect=201)
    return rig


async def api_login(http, username, password=None):
    r = await http.post("/api/login", json={"username": username,
                                            "password": password or PASSWORDS[username][1]})
    if r.status_code == 200:
        http.headers["X-CSRF-Token"] = r.json()["csrf"]
    return r


async def form_login(http, username, password, next_url="/"):
    """Through the login form (its double-submit CSRF cookie first)."""
    page = await http.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return await http.post("/login", data={"csrf": token, "username": username, "password": password,
                                           "next": next_url})


def audit_actions(rig):
    return [(r["username"], r["action"], r["target"]) for r in rig.gw.users.audit_log(1000)]


# ---- every route wants a login; a viewer changes nothing; CSRF everywhere -----------------------------------
def test_every_route_needs_a_login_a_viewer_changes_nothing_and_csrf_is_checked(tmp_path):
    async def scenario():
        rig = await start(tmp_path, cheap_hash=True)
        try:
            app = rig.http._transport.app
            endpoints = sorted(set(routewalk._walk(app.routes)), key=lambda e: (e.path, e.method))
            assert len(endpoints) > 40
            private = [e for e in endpoints if not e.public]
            anon, viewer, admin_no_csrf = client(rig), client(rig), client(rig)
            await api_login(viewer, "xem")
            await api_login(admin_no_csrf, "admin", "mat-khau-quan-tri")
            del admin_no_csrf.headers["X-CSRF-Token"]
            wrong = []
            try:
                for e in private:  # 1. no session: 401 (API, node routes) or to the login form (pages)
                    r = await anon.request(e.method, routewalk.sample_path(e), **_body(e))
                    ok = r.status_code == 401 if (e.api or e.node) else (
                        (r.status_code == 303 and r.headers["location"].startswith("/login")) or r.status_code in (401, 403))
                    if not ok:
                        wrong.append("anonymous %s: %d" % (e, r.status_code))
                for e in endpoints:  # 2. a viewer: 403 on every change (but logging out)
                    if e.method not in routewalk.UNSAFE or e.node or e.path in ("/login", "/api/login", "/logout",
                                                                                "/api/logout"):
                        continue
                    extra = {"data": {"csrf": viewer.headers["X-CSRF-Token"]}} if e.page else {"json": {}}
                    r = await viewer.request(e.method, routewalk.sample_path(e), **extra)
                    if r.status_code != 403:
                        wrong.append("viewer %s: %d" % (e, r.status_code))
                before = rig.gw.db.scalar("SELECT COUNT(*) FROM audit WHERE action NOT LIKE 'login%'")
                for e in endpoints:  # 3. an admin without the CSRF token: 403 on every change
                    if e.method not in routewalk.UNSAFE or e.node or e.path in ("/login", "/api/login"):
                        continue
                    r = await admin_no_csrf.request(e.method, routewalk.sample_path(e), **_body(e))
                    if r.status_code != 403:
                        wrong.append("no CSRF token %s: %d" % (e, r.status_code))
                assert rig.gw.db.scalar("SELECT COUNT(*) FROM audit WHERE action NOT LIKE 'login%'") == before
                assert (await admin_no_csrf.get("/api/me")).status_code == 200  # not even logged out
            finally:
                for http in (anon, viewer, admin_no_csrf):
                    await http.aclose()
            assert not wrong, "\n".join(wrong)
            # the public list is short and deliberate (tests/ui/routewalk.py PUBLIC)
            assert {str(e) for e in endpoints if e.public} <= {"%s %s" % (m, p) for p, m in routewalk.PUBLIC}
        finally:
            await rig.stop()
    run(scenario())


def _body(endpoint):
    return {"data": {"username": "admin", "password": "x"}} if endpoint.page and endpoint.method != "GET" else (
        {"json": {}} if endpoint.method != "GET" else {})


# ---- rate limit and lockout ----------------------------------------------------------------------------------
def test_login_lockout_per_username_kept_across_a_restart_and_unlocked_by_an_admin_or_by_time(tmp_path):
    async def scenario():
        clock = ManualClock(NOV_10 + 14 * 3600)  # 14:00 local
        data = tmp_path / "gw"
        rig = await start(tmp_path, clock, cheap_hash=True, data_dir=data)
        try:
            http = client(rig, "192.168.1.50")
            # 4 wrong, then the right one: works, and the count starts again
            for _ in range(USER_MAX_FAILURES - 1):
                assert (await api_login(http, "canbo", "sai-mat-khau")).status_code == 401
            assert (await api_login(http, "canbo")).status_code == 200
            assert not rig.gw.db.scalar("SELECT COUNT(*) FROM login_failures WHERE username = 'canbo'")
            # 5 wrong: locked, even for the right password, with when to come back
            for _ in range(USER_MAX_FAILURES):
                assert (await api_login(http, "canbo", "sai-mat-khau")).status_code == 401
            clock.advance(60)
            r = await api_login(http, "canbo")
            assert r.status_code == 429, r.text
            body = r.json()
            assert body["error"] == "login.locked"
            assert body["message"] == "Tài khoản tạm khóa do nhập sai nhiều lần, thử lại sau 14:15"
            assert "try again after 14:15" in body["message_en"]
            assert int(r.headers["Retry-After"]) == LOCK_S - 60 == body["retry_after"]
            assert ("canbo", "login_locked", "canbo") in audit_actions(rig)
            assert ("canbo", "login_refused", None) in audit_actions(rig)
            assert rig.gw.db.scalar("SELECT COUNT(*) FROM login_failures WHERE username IS NULL"
                                    " AND address = '192.168.1.50'") == USER_MAX_FAILURES + 1  # still counted
            # the login form says the same, in plain words
            page = await form_login(client(rig, "192.168.1.51"), "canbo", PASSWORDS["canbo"][1])
            assert page.status_code == 429 and "Tài khoản tạm khóa do nhập sai nhiều lần, thử lại sau 14:15" in page.text
            # an unknown username locks the same way (a lock tells nothing about who exists)
            for _ in range(USER_MAX_FAILURES):
                assert (await api_login(http, "khong-co-ai", "sai-mat-khau")).status_code == 401
            assert (await api_login(http, "khong-co-ai", "sai-mat-khau")).json()["error"] == "login.locked"
            await http.aclose()
        finally:
            await rig.stop()

        # a restart forgets nothing
        rig = await start(tmp_path, clock, cheap_hash=True, data_dir=data)
        try:
            http = client(rig, "192.168.1.52")
            r = await api_login(http, "canbo")
            assert r.status_code == 429 and r.json()["error"] == "login.locked"
            # the admin's user page shows the lock and a button that ends it
            page = await rig.http.get("/admin/users/canbo")
            assert 'id="unlock"' in page.text and "14:15" in page.text
            csrf = rig.http.headers["X-CSRF-Token"]
            r = await rig.http.post("/admin/users/canbo/unlock", data={"csrf": csrf})
            assert r.status_code == 303 and r.headers["location"].endswith("done=unlocked")
            assert 'id="unlock"' not in (await rig.http.get("/admin/users/canbo")).text
            assert ("admin", "user.unlock", "canbo") in audit_actions(rig)
            assert (await api_login(http, "canbo")).status_code == 200
            # or the lock runs out by itself
            for _ in range(USER_MAX_FAILURES):
                await api_login(http, "canbo", "sai-mat-khau")
            assert (await api_login(http, "canbo")).status_code == 429
            clock.advance(LOCK_S - 1)
            assert (await api_login(http, "canbo")).status_code == 429
            clock.advance(2)
            assert (await api_login(http, "canbo")).status_code == 200
            # the API unlock is there too (admin only)
            for _ in range(USER_MAX_FAILURES):
                await api_login(http, "xem", "sai-mat-khau")
            assert (await api_login(http, "xem")).status_code == 429
            r = await rig.api("POST", "/api/users/xem/unlock", expect=200)
            assert r.json()["was_locked"] is True
            assert (await api_login(http, "xem")).status_code == 200
            await http.aclose()
        finally:
            await rig.stop()
    run(scenario())


def test_login_rate_limit_per_client_address(tmp_path):
    async def scenario():
        clock = ManualClock(NOV_10 + 9 * 3600)
        rig = await start(tmp_path, clock, cheap_hash=True)
        try:
            noisy, other = client(rig, "10.0.0.66"), client(rig, "10.0.0.7")
            for i in range(ADDRESS_MAX_FAILURES):  # many names, each below its own lock
                r = await api_login(noisy, "ten-%d" % (i // 2), "sai-mat-khau")
                assert r.status_code == 401, (i, r.text)
                clock.advance(10)
            r = await api_login(noisy, "canbo")  # even the right password: that address waits
            assert r.status_code == 429 and r.json()["error"] == "login.throttled", r.text
            assert "thử lại sau" in r.json()["message"] and r.json()["message_en"]
            page = await form_login(noisy, "canbo", PASSWORDS["canbo"][1])
            assert page.status_code == 429 and "Quá nhiều lần đăng nhập sai từ máy này" in page.text
            assert any(a[1] == "login_throttled" and a[2] == "10.0.0.66" for a in audit_actions(rig))
            assert (await api_login(other, "canbo")).status_code == 200  # another address is not held
            clock.advance(FAIL_WINDOW_S)  # the window moved on
            assert (await api_login(noisy, "canbo")).status_code == 200
            await noisy.aclose()
            await other.aclose()
        finally:
            await rig.stop()
    run(scenario())


# ---- equal work for unknown and known users ------------------------------------------------------------------
def test_an_unknown_user_costs_one_argon2_verification_like_a_known_one(tmp_path, capsys):
    async def scenario():
        rig = await start(tmp_path)
        users = rig.gw.users
        calls = []
        real_verify = users._verify

        def counting(hashed, password):
            calls.append(hashed)
            return real_verify(hashed, password)
        users._verify = counting
        try:
            await rig.api("PATCH", "/api/users/xem", json={"disabled": True}, expect=200)
            http = client(rig)
            cases = {"known, wrong password": ("canbo", "sai-mat-khau"), "unknown user": ("khong-co-ai", "sai-mat-khau"),
                     "disabled user": ("xem", PASSWORDS["xem"][1]), "right password": ("canbo", PASSWORDS["canbo"][1])}
            hashes = {}
            for what, (name, password) in cases.items():
                calls.clear()
                await api_login(http, name, password)
                assert len(calls) == 1, "%s: %d verifications" % (what, len(calls))
                hashes[what] = calls[0]
                users.unlock(name)
            real = rig.gw.db.scalar("SELECT password_hash FROM users WHERE username = 'canbo'")
            assert hashes["known, wrong password"] == hashes["right password"] == real
            assert hashes["unknown user"] == hashes["disabled user"] == users._dummy_hash != real
            assert extract_parameters(users._dummy_hash) == extract_parameters(real)  # the same cost
            # one figure, printed, not asserted (a timing assertion would judge the machine's load, not the
            # code): the proof of equal work is above, one verification at the same cost for every case
            took = {"known": [], "unknown": []}
            for _ in range(3):
                for kind, name in (("known", "canbo"), ("unknown", "khong-co-ai")):
                    t0 = time.perf_counter()
                    assert (await api_login(http, name, "sai-mat-khau")).status_code == 401
                    took[kind].append(time.perf_counter() - t0)
                    users.unlock(name)
            known, unknown = statistics.median(took["known"]), statistics.median(took["unknown"])
            with capsys.disabled():
                print("\nlogin timing: known user, wrong password %.1f ms; unknown user %.1f ms (median of 3)"
                      % (known * 1000, unknown * 1000))
            await http.aclose()
        finally:
            await rig.stop()
    run(scenario())


# ---- session expiry --------------------------------------------------------------------------------------------
def test_sessions_end_after_the_idle_time_and_after_12_hours(tmp_path):
    async def scenario():
        clock = ManualClock(NOV_10 + 8 * 3600)
        rig = await start(tmp_path, clock, http={"session_idle_min": 10}, cheap_hash=True)
        try:
            api = client(rig)
            assert (await api_login(api, "canbo")).status_code == 200
            for _ in range(3):  # used every 9 minutes: alive
                clock.advance(9 * 60)
                assert (await api.get("/api/me")).status_code == 200
            clock.advance(10 * 60 + 1)  # idle longer than 10 minutes: ended
            r = await api.get("/api/me")
            assert r.status_code == 401 and r.json()["error"] == "session.expired"
            assert r.json()["message"] == "Phiên đăng nhập đã hết hạn, vui lòng đăng nhập lại"
            assert r.json()["message_en"] == "Your session expired; please log in again"
            assert (await api.post("/api/zones", json={"id": "thon-9", "name": "x"})).status_code == 401
            # the server's own checks (the dashboard's event stream, every second) are no activity
            assert (await api_login(api, "canbo")).status_code == 200
            token = api.cookies.get("denloa_session")
            for _ in range(9):
                clock.advance(60)
                assert rig.gw.users.session(token, touch=False) is not None
            clock.advance(61)
            assert rig.gw.users.session(token, touch=False) is None and rig.gw.users.session_expired(token)
            # no session at all is not "expired"
            assert (await client(rig).get("/api/me")).json()["error"] == "login.required"

            # the UI: to the login form, told why, and back to the page after the login
            ui = client(rig)
            assert (await form_login(ui, "canbo", PASSWORDS["canbo"][1])).status_code == 303
            assert (await ui.get("/nodes?zone=thon-1")).status_code == 200
            clock.advance(11 * 60)
            r = await ui.get("/nodes?zone=thon-1")
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/nodes"), r.headers
            assert r.headers["location"].endswith("&expired=1")
            page = await ui.get(r.headers["location"])
            assert "Phiên đăng nhập đã hết hạn" in page.text
            token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            wanted = re.search(r'name="next" value="([^"]+)"', page.text).group(1)
            assert wanted == "/nodes?zone=thon-1"
            r = await ui.post("/login", data={"csrf": token, "username": "canbo", "password": PASSWORDS["canbo"][1],
                                              "next": wanted})
            assert r.status_code == 303 and r.headers["location"] == "/nodes?zone=thon-1"
            # a form sent on an expired session: back to the page it came from
            clock.advance(11 * 60)
            r = await ui.post("/admin/users", data={"csrf": "x"}, headers={"referer": "http://gateway/admin?x=1"})
            assert r.status_code == 303 and r.headers["location"] == "/login?next=/admin%3Fx%3D1&expired=1"

            # absolute: 12 hours after the login, however busy
            assert (await api_login(api, "canbo")).status_code == 200
            for _ in range(int(SESSION_S // 540)):
                clock.advance(540)
                assert (await api.get("/api/me")).status_code == 200
            clock.advance(SESSION_S - 540 * int(SESSION_S // 540) + 1)
            r = await api.get("/api/me")
            assert r.status_code == 401 and r.json()["error"] == "session.expired"
            for http in (api, ui):
                await http.aclose()
        finally:
            await rig.stop()
    run(scenario())


def test_the_session_idle_time_is_configured_and_checked():
    assert GatewayConfig({}).session_idle_min == 30
    assert GatewayConfig({"http": {"session_idle_min": 5}}).session_idle_min == 5
    for bad in (0, -1, "30", True, 100000):
        with pytest.raises(GatewayError):
            GatewayConfig({"http": {"session_idle_min": bad}})


# ---- /metrics and the API docs -----------------------------------------------------------------------------------
def _app(tmp_path, http):
    """An app over a gateway that is not started (no broker): enough for /metrics and the docs routes."""
    cfg = GatewayConfig({"data": {"dir": str(tmp_path / ("gw-%d" % len(list(tmp_path.iterdir()))))},
                         "broker": {"mode": "external", "host": "127.0.0.1", "port": 1}, "http": http})
    gw = make_gateway(cfg, log=lambda line: None)
    return gw, create_app(gw)


async def _get(app, path, address="127.0.0.1", **kw):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)),
                                 base_url="http://gateway") as http:
        return await http.get(path, **kw)


def test_metrics_answer_only_as_configured(tmp_path):
    async def scenario():
        token = "prometheus-" + "k" * 24
        (tmp_path / "metrics.token").write_text(token + "\n")
        _gw, default = _app(tmp_path, {})
        unknown = await _get(default, "/no-such-path", "192.168.1.9")
        assert unknown.status_code == 404 and unknown.json() == NOT_FOUND
        for address in ("127.0.0.1", "::1"):  # default: the gateway's own host
            r = await _get(default, "/metrics", address)
            assert r.status_code == 200 and "denloa_nodes" in r.text, address
        for address in ("192.168.1.9", "10.0.0.1"):  # anyone else: the same 404 as a path that does not exist
            r = await _get(default, "/metrics", address)
            assert r.status_code == 404 and r.json() == NOT_FOUND and r.content == unknown.content
        _gw, by_token = _app(tmp_path, {"metrics": "token", "metrics_token_file": str(tmp_path / "metrics.token")})
        r = await _get(by_token, "/metrics", "192.168.1.9", headers={"Authorization": "Bearer " + token})
        assert r.status_code == 200 and "denloa_nodes" in r.text
        for sent in (None, "Bearer wrong", "Bearer " + token[:-1], "Basic " + token, token):
            headers = {"Authorization": sent} if sent else {}
            for address in ("192.168.1.9", "127.0.0.1"):  # with a token configured, localhost needs it too
                r = await _get(by_token, "/metrics", address, headers=headers)
                assert r.status_code == 404 and r.json() == NOT_FOUND, (sent, address)
        _gw, opened = _app(tmp_path, {"metrics": "open"})
        assert (await _get(opened, "/metrics", "192.168.1.9")).status_code == 200
    run(scenario())
    for bad in ({"metrics": "public"}, {"metrics": "token"}, {"metrics": ""}):
        with pytest.raises(GatewayError):
            GatewayConfig({"http": bad})
    with pytest.raises(GatewayError) as refused:  # a token file that is not there stops the start, in words
        _app(tmp_path, {"metrics": "token", "metrics_token_file": str(tmp_path / "missing.token")})
    assert refused.value.code == "config.http.metrics_token_file"


def test_api_docs_are_off_by_default_and_behind_a_staff_login_when_on(tmp_path):
    async def scenario():
        gw, off = _app(tmp_path, {})
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            r = await _get(off, path)
            assert r.status_code == 404, path
        gw, on = _app(tmp_path, {"api_docs": True})
        await gw.users.add("xem", "Xem", "viewer", PASSWORDS["xem"][1])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=on), base_url="http://gateway") as http:
            for path in ("/docs", "/redoc", "/openapi.json"):
                assert (await http.get(path)).status_code == 401, path
            assert (await api_login(http, "xem")).status_code == 200
            spec = (await http.get("/openapi.json")).json()
            assert "/api/emergency" in spec["paths"] and "/metrics" not in spec["paths"]
            for path in ("/docs", "/redoc"):
                r = await http.get(path)
                assert r.status_code == 200 and "/openapi.json" in r.text, path
    run(scenario())

"""Who may do what, on EVERY route of the app (walked from create_app(...).routes by tests/ui/routewalk.py, so
pages added later are covered): a login everywhere but the allow-list; a viewer refused every change; an
operator refused admin pages; CSRF on every state-changing route; no 500 nor traceback for bad input.
"""
import hashlib
import json

import httpx
import pytest

from tests.ui import routewalk
from tests.ui.routewalk import UNSAFE, fill, sample_path

ROUTES = routewalk.routes()
PRIVATE = [e for e in ROUTES if not e.public]
VIEWER_MAY_POST = {"/logout"}               # the only change a viewer makes: ending their own session
OPERATOR_PAGES = ["/emergency"]             # GET pages a viewer may not open
ADMIN_API = ("/api/users", "/api/audit", "/api/settings")
ADMIN_API_ROUTES = {("POST", "/api/zones"), ("POST", "/api/nodes"), ("DELETE", "/api/nodes/{node_id}"),
                    ("POST", "/api/nodes/{node_id}/reprovision")}


def ids(endpoints):
    return [str(e) for e in endpoints]


def _send(http, endpoint, path=None, json_body=None, form=None, **kw):
    """One request; a GET is streamed so an event stream (/live) answers its headers and is left."""
    url = path or sample_path(endpoint)
    if endpoint.method == "GET":
        with http.stream("GET", url, **kw) as r:
            body = b"" if "event-stream" in r.headers.get("content-type", "") else r.read()
            return r.status_code, r.headers, body.decode("utf-8", "replace")
    if form is not None:
        r = http.request(endpoint.method, url, data=form, **kw)
    else:
        r = http.request(endpoint.method, url, json={} if json_body is None else json_body, **kw)
    return r.status_code, r.headers, r.text


@pytest.fixture(scope="module")
def anon(commune):
    with httpx.Client(base_url=commune.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def clients(commune):
    made = dict((user, commune.client(user)) for user in ("admin", "vanhoa", "congan"))
    yield made
    for http in made.values():
        http.close()


def csrf_of(http):
    return http.headers["X-CSRF-Token"]


# ---- 1. a login everywhere but the allow-list --------------------------------------------------------------
def test_the_public_routes_are_the_allow_list_and_answer_without_a_login(anon):
    public = sorted(str(e) for e in ROUTES if e.public)
    assert public == sorted("%s %s" % (m, p) for p, m in routewalk.PUBLIC), "allow-list and routes differ"
    for path in ("/api/health", "/api/categories", "/static/app.css", "/login", "/metrics"):  # /metrics: from here
        assert anon.get(path).status_code == 200, path
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):  # off by default ([http] api_docs)
        assert anon.get(path).status_code in (303, 404), path


@pytest.mark.parametrize("endpoint", PRIVATE, ids=ids(PRIVATE))
def test_every_other_route_needs_a_login(endpoint, anon):
    status, headers, body = _send(anon, endpoint)
    if endpoint.api or endpoint.node:
        assert status == 401, "%s answered %d without a login: %s" % (endpoint, status, body[:200])
    else:  # a page: to the login form (a POST may also be refused outright)
        assert (status == 303 and headers["location"].startswith("/login")) or status in (401, 403), \
            "%s answered %d without a login" % (endpoint, status)


# ---- 2. roles ----------------------------------------------------------------------------------------------
UNSAFE_API = [e for e in routewalk.api_unsafe() if e.path not in ("/api/login", "/api/logout")]
PAGE_POSTS = [e for e in routewalk.page_posts() if e.path not in ("/login",) and e.path not in VIEWER_MAY_POST]


@pytest.mark.parametrize("endpoint", UNSAFE_API, ids=ids(UNSAFE_API))
def test_a_viewer_changes_nothing_through_the_api(endpoint, clients):
    status, _headers, body = _send(clients["congan"], endpoint)
    assert status == 403, "%s let a viewer through: %d %s" % (endpoint, status, body[:200])
    assert json.loads(body)["error"] == "role.forbidden"


@pytest.mark.parametrize("endpoint", PAGE_POSTS, ids=ids(PAGE_POSTS))
def test_a_viewer_changes_nothing_through_a_page(endpoint, clients):
    viewer = clients["congan"]
    status, headers, body = _send(viewer, endpoint, form={"csrf": csrf_of(viewer)})
    assert status == 403 and "text/html" in headers["content-type"], "%s let a viewer through: %d" % (endpoint, status)
    assert "Không được phép" in body


def test_operator_pages_are_refused_to_a_viewer_in_html(clients):
    for path in OPERATOR_PAGES:
        r = clients["congan"].get(path)
        assert r.status_code == 403 and "text/html" in r.headers["content-type"] and "Không được phép" in r.text, path


ADMIN_PAGES = [e for e in ROUTES if e.page and e.path.startswith("/admin")]
ADMIN_APIS = [e for e in ROUTES if e.api and (e.path.startswith(ADMIN_API) or (e.method, e.path) in ADMIN_API_ROUTES)]


@pytest.mark.parametrize("endpoint", ADMIN_PAGES + ADMIN_APIS, ids=ids(ADMIN_PAGES + ADMIN_APIS))
def test_admin_routes_are_refused_to_an_operator(endpoint, clients):
    operator = clients["vanhoa"]
    form = {"csrf": csrf_of(operator)} if endpoint.page and endpoint.method in UNSAFE else None
    status, headers, body = _send(operator, endpoint, form=form)
    assert status == 403, "%s let an operator through: %d" % (endpoint, status)
    if endpoint.page:
        assert "text/html" in headers["content-type"] and "Không được phép" in body


# ---- 3. CSRF -----------------------------------------------------------------------------------------------
def fingerprint(commune):
    """What a refused request must not change (the live tables of telemetry, events and commands move alone)."""
    def take():
        db = commune.gw.db
        parts = []
        for sql in ("SELECT username, name, role, disabled, password_hash FROM users ORDER BY id",
                    "SELECT COUNT(*) FROM sessions", "SELECT * FROM schedules ORDER BY id",
                    "SELECT scope, target, body FROM programs ORDER BY scope, target",
                    "SELECT key, value FROM settings ORDER BY key", "SELECT * FROM zones ORDER BY id",
                    "SELECT id, name, zones, revoked FROM nodes ORDER BY id", "SELECT id, title FROM clips ORDER BY id",
                    "SELECT COUNT(*) FROM audit WHERE action NOT LIKE 'login%'",
                    "SELECT COUNT(DISTINCT batch) FROM commands"):
            parts.append([tuple(r) for r in db.all(sql)])
        return hashlib.sha256(repr(parts).encode()).hexdigest()
    return commune.call(take)


CSRF_ROUTES = [e for e in ROUTES if e.method in UNSAFE and e.path != "/api/login"]


def test_every_state_changing_route_wants_the_csrf_token(commune):
    admin = commune.client("admin")
    del admin.headers["X-CSRF-Token"]
    before = fingerprint(commune)
    wrong = []
    try:
        for endpoint in CSRF_ROUTES:
            form = {"username": "admin", "password": "x"} if endpoint.page else None  # a form with no token
            status, _headers, body = _send(admin, endpoint, form=form)
            if status != 403:
                wrong.append("%s: %d %s" % (endpoint, status, body[:120]))
        for endpoint in [e for e in CSRF_ROUTES if e.page]:  # a wrong token is no better than none
            status, _headers, _body = _send(admin, endpoint, form={"csrf": "not-the-token"})
            if status != 403:
                wrong.append("%s with a wrong token: %d" % (endpoint, status))
        assert admin.get("/api/me").status_code == 200  # still logged in: /logout and /api/logout refused too
    finally:
        admin.close()
    assert not wrong, "changes accepted without the CSRF token:\n" + "\n".join(wrong)
    assert fingerprint(commune) == before, "a request refused for CSRF changed something"


# ---- 4. bad input: plain answers, never a 500 nor a traceback ----------------------------------------------
BAD_IDS = ("khong-co-9", "x" * 300, "..%2F..%2Fetc", "đèn số 1", "-1", "0")
BAD_QUERY = ("abc", "-1", "", "2026-13", "<script>", "9" * 30,
             "²", "nan", "1e400", "0001-01-01", "9999-12-31")  # isdigit() but not int(); float edge; calendar ends
REAL_PARAM = {"node_id": "loa-1-1", "zone_id": "thon-1", "username": "congan", "scope": "zone", "target": "thon-1",
              "lang": "vi"}
# forms whose fields are each wrong in a way that once made a 500 (nothing in them can be stored)
BAD_FORMS = (
    {"repeat": "monthly", "date": "31/12/9999", "time": "06:00", "monthday": "²", "vol": "²", "op": "set_volume",
     "emergency_repeat": "²", "offline_alert_min": "²", "zones": "all", "source": "line", "duration_min": "nan"},
    {"repeat": "monthly", "date": "31/12/9999", "time": "06:00", "monthday": "1", "zones": "all", "source": "line",
     "duration_min": "30", "offline_alert_min": "1e400", "emergency_repeat": "nan"},
    {"repeat": "once", "date": "01/01/2030", "time": "06:00", "zones": "all", "source": "line", "duration_min": "nan",
     "title": "x", "category": "news", "priority": "0", "volume": "50"},
    {"repeat": "once", "date": "01/01/2030", "time": "06:00", "zones": "all", "source": "line", "duration_min": "1e400",
     "title": "x", "category": "news", "priority": "0", "volume": "50", "page": "²", "hours": "nan"},
    {"repeat": "days", "days": "SU", "date": "9999-12-31", "time": "06:00", "zones": "all", "source": "tts",
     "tts_text": "x", "speed": "nan", "title": "x", "category": "news", "priority": "0", "volume": "50"},
)
GETS = [e for e in PRIVATE if e.method == "GET" and not e.node and not e.mount]


def _clean(status, body, what):
    assert status < 500, "%s answered %d" % (what, status)
    assert "Traceback" not in body and 'File "/' not in body, "%s shows a traceback" % what


@pytest.mark.parametrize("endpoint", GETS, ids=ids(GETS))
def test_bad_ids_and_query_values_get_a_plain_answer(endpoint, clients):
    admin = clients["admin"]
    paths = [fill(endpoint.path, bad) for bad in BAD_IDS] if endpoint.params else [endpoint.path]
    if endpoint.params and all(name in REAL_PARAM for name in routewalk.PARAM.findall(endpoint.path)):
        paths.append(fill(endpoint.path, REAL_PARAM.get))  # a real node etc.: the query is read past the lookup
    for path in paths:
        for name in endpoint.query or (None,):
            for value in BAD_QUERY if name else (None,):
                status, _headers, body = _send(admin, endpoint, path=path, params={name: value} if name else None)
                _clean(status, body, "GET %s?%s=%r" % (path, name, value))


def test_bad_bodies_and_forms_get_a_plain_answer(commune, clients):
    """Every change route with bogus ids and junk bodies (JSON of the wrong shape, broken JSON, empty and junk
    forms), as an admin with the token. Emergencies started by a route that took an empty form are stopped."""
    admin = clients["admin"]
    batches = commune.call(lambda: {r[0] for r in commune.gw.db.all("SELECT DISTINCT batch FROM commands")})
    try:
        for endpoint in routewalk.api_unsafe():
            if endpoint.path in ("/api/login", "/api/logout"):
                continue
            for bad in BAD_IDS[:2] if endpoint.params else (None,):
                path = fill(endpoint.path, lambda name: "zone" if name == "scope" else bad) if bad else endpoint.path
                for body in ([1], "text", {"id": None, "zones": 7, "password": 5, "role": "root"}):
                    status, _h, text = _send(admin, endpoint, path=path, json_body=body)
                    _clean(status, text, "%s %s %r" % (endpoint.method, path, body))
                r = admin.request(endpoint.method, path, content=b"{broken", headers={"content-type": "application/json"})
                _clean(r.status_code, r.text, "%s %s broken JSON" % (endpoint.method, path))
        for endpoint in routewalk.page_posts():
            if endpoint.path in ("/login", "/logout"):
                continue
            for bad in BAD_IDS[:3] if endpoint.params else (None,):
                path = fill(endpoint.path, bad) if bad else endpoint.path
                for form in ({"csrf": csrf_of(admin)},
                             {"csrf": csrf_of(admin), "name": "\x00" * 3, "role": "root", "month": "2026-13",
                              "offline_alert_min": "nhiều", "password": "x", "username": "<b>"},
                             *({"csrf": csrf_of(admin)} | bad_form for bad_form in BAD_FORMS)):
                    status, _h, text = _send(admin, endpoint, path=path, form=form)
                    _clean(status, text, "POST %s %r" % (path, sorted(form)))
    finally:
        def stop_new():
            new = {r[0] for r in commune.gw.db.all("SELECT DISTINCT batch FROM commands")} - batches
            return sorted(b for b in new if b and b.startswith("e"))
        for batch in commune.call(stop_new):
            try:
                commune.call(commune.gw.emergencies.stop(batch, "admin"))
            except Exception:  # noqa: BLE001 - already ended
                pass

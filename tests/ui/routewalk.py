"""Every route of the gateway's app, found by walking create_app(...).routes (API, pages, node files, static),
so the cross-cutting UI tests cover pages added later without being told about them.

`ROUTES` is built once, at import (collection) time, from an app over a throwaway gateway (nothing started,
no broker): the same code the commune runs. Path parameters are filled by `fill()`: bogus values for the
access checks, real ids of the commune for the page renders (`real_value`). A new path parameter name with
no rule below makes the page tests fail and say so: add its rule here.
"""
import dataclasses
import functools
import re
import tempfile
import time

from gateway.ui.web import is_page

PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")

# Public without a login, by design (what is public today; anything else needs a session):
PUBLIC = {
    ("/login", "GET"), ("/login", "POST"),        # the login form (its own double-submit CSRF)
    ("/static", "GET"),                           # CSS, JS, vendored libraries
    ("/api/login", "POST"), ("/api/health", "GET"),
    ("/api/categories", "GET"),                   # the broadcast category names, no data
    ("/lang/{lang}", "GET"),                      # a language preference cookie and a redirect; no data
    ("/metrics", "GET"),                          # as `[http] metrics` says: by default the gateway's own host
}                                                 # only (a 404 to others); tests/gateway/test_web_security.py
# FastAPI's /docs, /redoc, /openapi.json do not exist unless `[http] api_docs = true` (then behind a staff login)
NODE_PREFIX = "/node/"  # the nodes' own file routes: HTTP Basic with the node's broker credentials, not staff login


@dataclasses.dataclass(frozen=True)
class Endpoint:
    path: str
    method: str
    query: tuple = ()      # names of query parameters
    mount: bool = False

    @property
    def params(self):
        return PARAM.findall(self.path)

    @property
    def api(self):
        return self.path.startswith("/api/")

    @property
    def page(self):
        return is_page(self.path) and not self.mount

    @property
    def node(self):
        return self.path.startswith(NODE_PREFIX)

    @property
    def public(self):
        return (self.path, self.method) in PUBLIC

    def __str__(self):
        return "%s %s" % (self.method, self.path)


def _walk(routes, prefix=""):
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:  # FastAPI >= 0.16x keeps an included router as one route
            context = getattr(route, "include_context", None)
            yield from _walk(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
        elif getattr(route, "app", None) is not None and not hasattr(route, "methods"):  # a Mount (static files)
            yield Endpoint(prefix + route.path, "GET", mount=True)
        elif getattr(route, "methods", None):
            dependant = getattr(route, "dependant", None)
            query = tuple(sorted({p.name for p in _all_query(dependant)})) if dependant else ()
            for method in sorted(set(route.methods) - {"HEAD"}):
                yield Endpoint(prefix + route.path, method, query)


def _all_query(dependant):
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _all_query(sub)


@functools.lru_cache(maxsize=None)
def routes():
    """Every (path, method) of the app, sorted."""
    from gateway.api import create_app
    from gateway.app import make_gateway
    from gateway.config import GatewayConfig

    data = tempfile.mkdtemp(prefix="denloa-routes-")
    cfg = GatewayConfig({"site": {"id": "xa-thu", "name": "Xã Thử", "lat": 21.0, "lon": 105.8, "utc_offset": 7},
                         "data": {"dir": data}, "broker": {"mode": "external", "host": "127.0.0.1", "port": 1}})
    app = create_app(make_gateway(cfg, log=lambda line: None))
    found = sorted(set(_walk(app.routes)), key=lambda e: (e.path, e.method))
    assert len(found) > 40, found
    return found


def page_gets():
    """GET routes that may answer an HTML page (not the login, the language switch, nor the event stream)."""
    return [e for e in routes() if e.page and e.method == "GET" and e.path not in ("/login", "/lang/{lang}", "/live")]


def page_posts():
    return [e for e in routes() if e.page and e.method in UNSAFE]


def api_unsafe():
    return [e for e in routes() if e.api and e.method in UNSAFE]


def fill(path, value="khong-co-9"):
    """The path with every parameter set to `value` (a string or a function of the parameter name)."""
    return PARAM.sub(lambda m: value(m.group(1)) if callable(value) else value, path)


def sample_path(endpoint):
    """A concrete URL for an access check (valid enumerations, so a route cannot pass by failing its path
    validation first)."""
    samples = {"lang": "vi", "scope": "zone"}  # enumerations must be valid; ids are bogus, so that a route
    # that wrongly lets the request through still touches nothing real in the shared commune
    path = fill(endpoint.path, lambda name: samples.get(name, "khong-co-9"))
    return "/static/app.css" if endpoint.mount else path


# ---- real ids of the commune, for the pages that show one thing -------------------------------------------------
def real_value(name, commune, made):
    """A real value of the commune for a path parameter, or None when the commune has none (the page is skipped
    with that reason); an unknown parameter name fails."""
    gw = commune.gw
    lowered = name.lower()
    if lowered in ("lang",):
        return "vi"
    if "node" in lowered or lowered in ("device", "device_id"):
        return "loa-1-1"
    if "zone" in lowered:
        return "thon-1"
    if "user" in lowered:
        return "congan"
    if "month" in lowered:
        return time.strftime("%Y-%m", time.gmtime(gw.clock.now() + gw.cfg.tz_s))
    if "day" in lowered or "date" in lowered:
        return time.strftime("%Y-%m-%d", time.gmtime(gw.clock.now() + gw.cfg.tz_s))
    if "schedule" in lowered or lowered in ("sid", "item_id", "item"):
        found = commune.call(lambda: gw.plans.schedules())
        if not found:
            found = [made("schedule")]
        return found[0]["id"]
    if "clip" in lowered or lowered == "sha":
        clips = commune.call(lambda: gw.clips.list())
        return clips[0]["id"] if clips else None
    if "batch" in lowered or "emergency" in lowered:
        row = commune.call(lambda: gw.db.one("SELECT batch FROM commands WHERE batch LIKE 'e%' ORDER BY created DESC"))
        return row[0] if row else made("emergency")["batch"]
    if "cmd" in lowered or "command" in lowered:
        row = commune.call(lambda: gw.db.one("SELECT id FROM commands ORDER BY created DESC"))
        return row[0] if row else None
    if "alert" in lowered:
        row = commune.call(lambda: gw.db.one("SELECT id FROM alerts ORDER BY id DESC"))
        return str(row[0]) if row else None
    if "stream" in lowered:
        return None
    if lowered in ("scope",):
        return "zone"
    if lowered in ("target",):
        return "thon-1"
    raise AssertionError("no rule for the path parameter {%s}: add one to tests/ui/routewalk.py real_value()" % name)

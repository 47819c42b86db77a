"""Login, roles, CSRF, audit (the API on a real gateway with its embedded broker)."""
import asyncio

import httpx

from tests.gateway.harness import GatewayRig


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 60))


async def _login(rig, username, password):
    client = httpx.AsyncClient(transport=rig.http._transport, base_url="http://gateway")
    r = await client.post("/api/login", json={"username": username, "password": password})
    if r.status_code == 200:
        client.headers["X-CSRF-Token"] = r.json()["csrf"]
    return client, r


def test_roles_csrf_and_audit(tmp_path):
    async def scenario():
        rig = await GatewayRig(tmp_path, broker="embedded").start()
        try:
            for name, role in (("canbo", "operator"), ("xem", "viewer")):
                await rig.api("POST", "/api/users", json={"username": name, "name": name, "role": role,
                                                          "password": "mat-khau-" + name}, expect=201)
            await rig.api("POST", "/api/zones", json={"id": "thon-1", "name": "Thôn 1"}, expect=201)
            viewer, _ = await _login(rig, "xem", "mat-khau-xem")
            operator, _ = await _login(rig, "canbo", "mat-khau-canbo")
            try:
                assert (await viewer.get("/api/zones")).status_code == 200
                r = await viewer.post("/api/emergency", json={"zones": "all"})
                assert r.status_code == 403 and r.json()["message"] and r.json()["message_en"]
                r = await operator.post("/api/nodes", json={"id": "den-01", "zones": ["thon-1"]})
                assert r.status_code == 403  # only an admin registers nodes
                r = await operator.post("/api/zones", json={"id": "thon-2", "name": "x"},
                                        headers={"X-CSRF-Token": "forged"})
                assert r.status_code == 403 and r.json()["error"] == "csrf.invalid"
                bad, r = await _login(rig, "xem", "wrong password")
                assert r.status_code == 401 and r.json()["error"] == "login.failed"
                await bad.aclose()
                anon = httpx.AsyncClient(transport=rig.http._transport, base_url="http://gateway")
                assert (await anon.get("/api/nodes")).status_code == 401
                await anon.aclose()
            finally:
                await viewer.aclose()
                await operator.aclose()
            log = (await rig.api("GET", "/api/audit", expect=200)).json()
            actions = [(e["username"], e["action"]) for e in log]
            assert ("admin", "user.add") in actions and ("admin", "zone.add") in actions
            assert ("xem", "login_failed") in actions
            spec = rig.http._transport.app.openapi()  # the schema (its /openapi.json is off by default)
            assert "/api/emergency" in spec["paths"] and "/api/schedules" in spec["paths"]
        finally:
            await rig.stop()
    run(scenario())


def test_passwords_are_argon2_hashes(tmp_path):
    async def scenario():
        rig = await GatewayRig(tmp_path, broker="embedded").start()
        try:
            row = rig.gw.db.one("SELECT password_hash FROM users WHERE username = 'admin'")
            assert row[0].startswith("$argon2id$")
        finally:
            await rig.stop()
    run(scenario())

"""The firmware page (/firmware, gateway/ui/pages/firmware.py) on a real gateway, through its forms as a
browser sends them: upload (a refused unsigned bundle said in plain Vietnamese, a signed one stored),
start a staged update, each device's step in words, pause; a viewer sees it all and no form. The node
side and real rollouts: tests/firmware/test_ota.py, tests/simulator/test_ota_sim.py."""
import asyncio
import re
import threading

import httpx

from tests.firmware.ota_kit import bundle
from tests.gateway.bundle_zip import release_key, zip_bundle
from tests.gateway.harness import GatewayRig

NEW = bundle("1.1.0")


def test_the_firmware_page_uploads_starts_and_pauses_an_update(tmp_path):
    async def scenario():
        key, pub = release_key(tmp_path)
        rig = GatewayRig(tmp_path)
        rig.raw["firmware"] = {"release_key": pub}
        await rig.start()
        try:
            for z, name in (("thon-1", "Thôn 1"), ("thon-2", "Thôn 2")):
                await rig.api("POST", "/api/zones", json={"id": z, "name": name}, expect=201)
            await rig.add_nodes([{"id": "loa-1", "zones": ["thon-1"], "kind": "speaker"},
                                 {"id": "loa-2", "zones": ["thon-2"], "kind": "speaker"}])
            http = rig.http
            r = await http.get("/firmware")
            assert r.status_code == 200 and "Cập nhật phần mềm thiết bị" in r.text and "Chưa lưu phần mềm nào" in r.text
            r = await http.post("/firmware/upload", files={"file": ("fw.zip", zip_bundle(NEW), "application/zip")})
            assert r.status_code == 400 and "chưa được ký" in r.text, r.text[:300]
            r = await http.post("/firmware/upload", files={"file": ("fw.zip", zip_bundle(NEW, key), "application/zip")})
            assert r.status_code == 303 and r.headers["location"] == "/firmware?done=uploaded"
            r = await http.get("/firmware?done=uploaded")
            assert "Phần mềm đã được kiểm tra và lưu" in r.text and 'data-version="1.1.0"' in r.text
            assert "đã ký bằng khóa phát hành" in r.text
            r = await http.post("/firmware/rollouts", data={"version": "1.1.0", "first_zone": "thon-1"})
            assert r.status_code == 303, r.text[:300]
            r = await http.get(r.headers["location"])
            assert "Cập nhật lên phiên bản 1.1.0" in r.text and "Cập nhật trước: Thôn 1" in r.text
            rows = dict(re.findall(r'data-node="(loa-\d)" data-status="(\w+)"', r.text))
            assert rows == {"loa-1": "sent", "loa-2": "pending"}
            assert "đã gửi lệnh" in r.text and "chờ đến lượt" in r.text
            rid = re.search(r'/firmware/rollouts/(\d+)/pause', r.text).group(1)
            r = await http.post("/firmware/rollouts/%s/pause" % rid, data={})
            assert r.status_code == 303
            r = await http.get(r.headers["location"])
            assert "Đợt cập nhật đang tạm dừng" in r.text and "/resume" in r.text
            r = await http.post("/firmware/rollouts", data={"version": "1.1.0", "first_zone": "thon-2"})
            assert r.status_code == 409 and "Đang có một đợt cập nhật chưa xong" in r.text
            # a viewer sees the page and no form that changes anything
            await rig.gw.users.add("xem", "Người xem", "viewer", "mat-khau-nguoi-xem")
            transport = httpx.ASGITransport(app=http._transport.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as viewer:
                r = await viewer.post("/api/login", json={"username": "xem", "password": "mat-khau-nguoi-xem"})
                assert r.status_code == 200
                r = await viewer.get("/firmware")
                assert r.status_code == 200 and "Cập nhật lên phiên bản 1.1.0" in r.text
                assert 'method="post" action="/firmware' not in r.text
                r = await viewer.post("/firmware/rollouts/%s/resume" % rid, data={})
                assert r.status_code == 403, r.status_code  # an operator's action: refused to a viewer
            actions = [a["action"] for a in (await rig.api("GET", "/api/audit", expect=200)).json()]
            assert {"firmware.refused", "firmware.add", "rollout.start", "rollout.pause"} <= set(actions)
        finally:
            await rig.stop()
    _in_own_thread(lambda: asyncio.run(asyncio.wait_for(scenario(), 60)))


def _in_own_thread(fn):
    """Playwright's sync API (the session's browser, if an earlier UI test started it) holds this
    thread's event loop: the gateway runs on a loop of its own thread."""
    errors = []

    def target():
        try:
            fn()
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]

"""Offline provisioning from the web UI (gateway/ui/pages/provision.py): an admin adds a node on the Nodes page and
gets its credentials file; that file, given to `python -m hardware provision --offline-bundle` against the pty node,
writes a config the node's own parser accepts; re-keying on the node's page gives a new file and the old MQTT password
stops working on the commune's Mosquitto. Operators and viewers get no form and a plain 403.

The node added here has no firmware running behind it; it is revoked at the end so the later tests' commune is the
one they expect.
"""
import json
import os
import subprocess
import sys
import threading

import pytest

from firmware.config import NodeConfig
from tests.hardware.pty_node import PtyNode

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = "den-moi-7"


@pytest.fixture(scope="module")
def added(commune):
    """The id of the node the tests add; revoked at the end (the commune's other tests see their own nodes)."""
    yield NODE

    def revoke():
        if commune.gw.registry.db.one("SELECT 1 FROM nodes WHERE id = ? AND revoked = 0", NODE):
            return commune.gw.provisioning.revoke(NODE)
        return None
    commune.call(revoke)


def mqtt_login(commune, user, password):
    """The CONNACK reason of a login to the commune's Mosquitto: 0 accepted, else refused."""
    import paho.mqtt.client as paho

    got = {}
    done = threading.Event()
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="%s.%s" % (commune.cfg.site, user))
    c.username_pw_set(user, password)

    def on_connect(client, userdata, flags, reason, properties):
        got["rc"] = reason.value if hasattr(reason, "value") else int(reason)
        done.set()
    c.on_connect = on_connect
    c.connect("127.0.0.1", commune.cfg.broker_port, keepalive=10)
    c.loop_start()
    try:
        assert done.wait(15), "no CONNACK from Mosquitto"
    finally:
        c.disconnect()
        c.loop_stop()
    return got["rc"]


def download(page, click):
    """(suggested file name, the file's JSON) of the download a click starts."""
    with page.expect_download() as info:
        click()
    dl = info.value
    path = dl.path()
    with open(path, encoding="utf-8") as f:
        return dl.suggested_filename, json.load(f), path


def provision_offline(tmp_path, node_id, bundle_file):
    """The technician's tool with the downloaded file against the pty node; (rc, output, the config written)."""
    with PtyNode(tmp_path / "node") as node:
        (node.root / "main.py").write_text("# the bootstrap flash writes; the tool only checks it is there\n")
        proc = subprocess.run(
            [sys.executable, "-m", "hardware", "provision", "--port", node.port, "--node", node_id,
             "--offline-bundle", str(bundle_file), "--inventory", str(tmp_path / "inventory.csv"),
             "--label-dir", str(tmp_path / "labels")],
            cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=120)
        cfg = node.root / "config.json"
        return proc.returncode, proc.stdout + proc.stderr, json.loads(cfg.read_text()) if cfg.exists() else None


def test_an_admin_adds_a_node_downloads_its_file_and_the_tool_provisions_with_it(
        commune, login, added, axe_check, shot, tmp_path):
    page = login("admin")
    page.goto("/nodes")
    form = page.locator("#add-node-form")
    assert form.is_visible()
    # form errors, in plain words beside their field; nothing registered
    page.fill("#new-id", "Đèn Mới")
    page.check("#new-zone-thon-1")
    page.click("#add-node-submit")
    assert "chữ thường không dấu" in page.locator("#id-error").inner_text()
    assert page.locator("#new-zone-thon-1").is_checked()  # what was typed comes back
    page.fill("#new-id", "den-1-1")
    page.click("#add-node-submit")
    assert "đã có" in page.locator("#form-error, #id-error").first.inner_text()
    page.fill("#new-id", added)
    page.uncheck("#new-zone-thon-1")
    page.fill("#new-lat", "21,03")
    page.click("#add-node-submit")
    assert page.locator("#zones-error").inner_text() == "Hãy chọn ít nhất một cụm."
    assert "kinh độ" in page.locator("#lon-error").inner_text()
    assert commune.call(lambda: commune.gw.registry.db.one("SELECT 1 FROM nodes WHERE id = ?", added)) is None
    axe_check(page, "the add form with errors")

    # the node is added: the credentials file downloads, the page says how to keep it
    page.fill("#new-name", "Đèn mới thôn Đông")
    page.select_option("#new-kind", "lamp")
    page.check("#new-zone-thon-1")
    page.fill("#new-lon", "105.86")
    name, exported, path = download(page, lambda: page.click("#add-node-submit"))
    assert name == added + ".json"
    assert exported["node"]["id"] == added and exported["node"]["zones"] == ["thon-1"]
    bundle = exported["provisioning"]
    assert bundle["node"] == added and bundle["site"] == commune.cfg.site and bundle["zones"] == {"thon-1": 1}
    key = commune.call(lambda: bytes(commune.gw.registry.db.one(
        "SELECT hmac_key FROM nodes WHERE id = ?", added)[0]).hex())
    assert bundle["key"] == key
    page.wait_for_selector("#credentials")
    assert "USB" in page.locator("#credentials").inner_text()
    assert commune.call(lambda: commune.gw.users.audit_log(5, 0, "admin", "node.add"))[0]["target"] == added
    axe_check(page, "the credentials page")
    shot(page, "nodes-credentials")
    # the one download is used: the page says so, the file is not served again
    page.goto("/nodes/%s/credentials" % added)
    assert "Không còn tệp" in page.locator("#download-status").inner_text()

    # the tool takes the file as it is, and the node's own parser takes what it wrote
    rc, out, raw = provision_offline(tmp_path, added, path)
    assert rc == 0, out
    cfg = NodeConfig(raw)
    assert cfg.node == added and cfg.key.hex() == key and cfg.zones == {"thon-1": 1}
    assert cfg.broker_user == added and cfg.broker_password == bundle["broker"]["password"]
    assert mqtt_login(commune, added, bundle["broker"]["password"]) == 0

    # re-key on the node's page, after a confirm step: a new file; the old password is refused by the broker
    page.goto("/nodes/%s" % added)
    page.click("#rekey-link")
    page.wait_for_selector("#rekey-confirm")
    axe_check(page, "the re-key confirm page")
    name, again, _path = download(page, lambda: page.click("#rekey-confirm"))
    assert name == added + ".json"
    new = again["provisioning"]
    assert new["key"] != bundle["key"] and new["broker"]["password"] != bundle["broker"]["password"]
    assert mqtt_login(commune, added, bundle["broker"]["password"]) != 0
    assert mqtt_login(commune, added, new["broker"]["password"]) == 0
    assert commune.call(lambda: commune.gw.users.audit_log(5, 0, "admin", "node.reprovision"))[0]["target"] == added


@pytest.mark.parametrize("username", ["vanhoa", "congan"])
def test_operators_and_viewers_get_no_form_and_a_plain_403(commune, username):
    key = commune.call(lambda: bytes(commune.gw.registry.db.one("SELECT hmac_key FROM nodes WHERE id = 'den-1-1'")[0]))
    http = commune.client(username)
    try:
        r = http.get("/nodes")
        assert r.status_code == 200 and 'id="add-node-form"' not in r.text
        r = http.get("/nodes/den-1-1")
        assert r.status_code == 200 and 'id="rekey-link"' not in r.text
        csrf = http.headers["X-CSRF-Token"]
        for method, path, form in (
                ("POST", "/nodes", {"csrf": csrf, "id": "den-cam-1", "zones": "thon-1", "kind": "lamp"}),
                ("GET", "/nodes/den-1-1/rekey", None), ("POST", "/nodes/den-1-1/rekey", {"csrf": csrf}),
                ("GET", "/nodes/den-1-1/credentials", None)):
            r = http.request(method, path, data=form)
            assert r.status_code == 403 and "text/html" in r.headers["content-type"], (method, path, r.status_code)
            assert "Không được phép" in r.text and "Traceback" not in r.text
    finally:
        http.close()
    assert commune.call(lambda: commune.gw.registry.db.one("SELECT 1 FROM nodes WHERE id = 'den-cam-1'")) is None
    assert commune.call(lambda: bytes(commune.gw.registry.db.one(
        "SELECT hmac_key FROM nodes WHERE id = 'den-1-1'")[0])) == key  # not re-keyed

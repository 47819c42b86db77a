"""No secret in the repository, none in the gateway's logs (a scan).

1. Every file git tracks (`git ls-files`): no private key (PEM block or key file), no 32-byte key written out as
   64 hex digits or 43/44 base64 characters, no password or token literal in code or config outside tests/.
   Known public test vectors are allowed by value, each with its reason (ALLOWED); tests/ may hold the made-up
   passwords of their fixture accounts (e.g. tests/gateway/harness.py), never a key.
2. A real gateway (tests/gateway/harness.py, Mosquitto when installed) provisions two nodes that run the real
   firmware, staff log in (API and form), send commands and fail logins; then no node password, node key,
   admin password, session or CSRF token, nor the gateway's own broker password, is in its log lines, in the
   Python log records of the run, in what it printed, or in any log file under its data directory.
"""
import asyncio
import base64
import logging
import math
import os
import re
import shutil
import subprocess
from collections import Counter

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PEM_PRIVATE = re.compile("-----BEGIN ([A-Z0-9]+ )*" + "PRIVATE KEY-----")  # split so this file does not match
KEY_FILES = re.compile(r"(^|/)(id_(rsa|dsa|ecdsa|ed25519)[^/]*|[^/]+\.(pem|key|p12|pfx|jks|keystore)|\.env"
                       r"|\.netrc|\.htpasswd|credentials(\.json)?)$", re.IGNORECASE)
HEX32 = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])")
B64_32 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{43}(=|(?![A-Za-z0-9+/=_-]))")
LITERAL = re.compile(r"""(?i)\b[\w.-]*(password|passwd|passphrase|secret|token|api_?key|private_?key)[\w.-]*["']?\s*[:=]\s*"""
                     r"""[bru]?["']([^"'\s]{8,})["']""")
ALLOWED = {  # public values that look like keys, and why they are here
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843": "RFC 4231 HMAC-SHA256 test case 2 (output)",
    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54": "RFC 4231 HMAC-SHA256 test case 6 (output)",
}
SKIP_DIRS = ("gateway/ui/static/vendor/",)  # third-party minified libraries, checked in as published


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def entropy(text):
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_random(text):
    """A base64 run that is a key rather than a word, a path or a line of dashes."""
    return (any(c.isdigit() for c in text) and any(c.isupper() for c in text) and any(c.islower() for c in text)
            and entropy(text) > 4.2)


def findings(path, text):
    found = []
    if PEM_PRIVATE.search(text):
        found.append("a private key (PEM)")
    for m in HEX32.finditer(text):
        if m.group(0).lower() not in ALLOWED:
            found.append("64 hex digits (a 32-byte key?) %s..." % m.group(0)[:12])
    for m in B64_32.finditer(text):
        if looks_random(m.group(0)[:43]) and m.group(0) not in ALLOWED:
            found.append("43 base64 characters (a 32-byte key?) %s..." % m.group(0)[:12])
    if not path.startswith("tests/"):
        for m in LITERAL.finditer(text):
            value = m.group(2)
            if not value.startswith(("$", "{", "%", "<")) and (looks_random(value) or len(value) >= 16):
                found.append("a %s literal %s..." % (m.group(1).lower(), value[:4]))
    return found


def test_the_scanner_finds_what_it_looks_for():
    key = os.urandom(32)
    assert findings("gateway/x.py", "KEY = '%s'" % key.hex())
    assert findings("gateway/x.py", "k = %s" % base64.b64encode(key).decode())
    assert findings("gateway/x.py", "k = '%s'" % base64.urlsafe_b64encode(key).decode().rstrip("="))
    assert findings("gateway/x.py", "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nabc")
    assert findings("gateway/x.py", 'mqtt_password = "Zq8-rT2mWx9pLk4v"')
    assert findings("docs/x.md", 'password = "a-long-made-up-password"')
    assert not findings("tests/x.py", 'ADMIN_PASSWORD = "mat-khau-quan-tri"')  # a fixture account's
    assert not findings("gateway/x.py", "-" * 43 + " and test_a_node_cannot_take_over_another_nodes_")
    assert KEY_FILES.search("deploy/site.pem") and KEY_FILES.search("home/.ssh/id_ed25519")
    assert not KEY_FILES.search("gateway/keys.py")


def test_no_secret_is_committed():
    bad = []
    for path in tracked_files():
        if KEY_FILES.search(path):
            bad.append("%s: a key or credentials file" % path)
            continue
        if path.startswith(SKIP_DIRS) or path == "tests/test_no_secrets_cpython.py":
            continue
        full = os.path.join(ROOT, path)
        if not os.path.isfile(full) or os.path.getsize(full) > 2_000_000:
            continue
        with open(full, "rb") as f:
            data = f.read()
        if b"\0" in data[:4096]:  # binary (audio samples and the like)
            continue
        bad.extend("%s: %s" % (path, what) for what in findings(path, data.decode("utf-8", "replace")))
    assert not bad, "secrets in the repository?\n" + "\n".join(bad)


# ---- 2. the logs of a running gateway ----------------------------------------------------------------------
def _strings(obj, keys=("password", "key", "secret", "token", "psk")):
    """Every string value under a key that names a secret, anywhere in a nested dict."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str) and any(word in k.lower() for word in keys) and len(v) >= 8:
                yield v
            else:
                yield from _strings(v, keys)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v, keys)


def _forms(secret):
    """The secret and the other ways a log might spell it (hex <-> base64)."""
    forms = {secret}
    if re.fullmatch(r"[0-9a-fA-F]+", secret) and len(secret) % 2 == 0:
        raw = bytes.fromhex(secret)
        forms |= {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="), repr(raw)}
    return forms


def test_no_secret_in_the_gateways_logs(tmp_path, caplog, capfd):
    from tests.gateway.harness import ADMIN_PASSWORD, GatewayRig

    caplog.set_level(logging.INFO)  # what a production gateway's logging would keep

    async def scenario():
        rig = GatewayRig(tmp_path, broker="mosquitto" if shutil.which("mosquitto") else "embedded")
        await rig.start()
        secrets = {"admin password": ADMIN_PASSWORD}
        try:
            await rig.api("POST", "/api/zones", json={"id": "thon-1", "name": "Thôn 1"}, expect=201)
            bundles = await rig.add_nodes([{"id": "den-01", "zones": ["thon-1"], "kind": "lamp"},
                                           {"id": "loa-01", "zones": ["thon-1"], "kind": "both"}])
            reprovisioned = (await rig.api("POST", "/api/nodes/den-01/reprovision", expect=200)).json()["provisioning"]
            for n, bundle in enumerate(bundles + [reprovisioned]):
                for k, value in enumerate(_strings(bundle)):
                    secrets["%s secret %d.%d" % (bundle["node"], n, k)] = value  # its broker password, its key
            secrets["gateway broker password"] = rig.gw.secrets["mqtt_password"]
            secrets["gateway session key"] = rig.gw.secrets["session_key"]
            secrets["admin session"] = rig.http.cookies.get("denloa_session")
            secrets["admin csrf"] = rig.http.headers["X-CSRF-Token"]
            rig.start_host([reprovisioned, bundles[1]])
            await rig.wait_online(["den-01", "loa-01"], timeout=60)
            for node in ("den-01", "loa-01"):
                r = await rig.api("POST", "/api/nodes/%s/commands" % node, json={"op": "self_test"}, expect=202)
                await rig.wait_command(r.json()["id"], timeout=30)
            # staff: a user added, logins right and wrong, through the API and the form
            await rig.api("POST", "/api/users", json={"username": "canbo", "name": "Cán bộ", "role": "operator",
                                                      "password": "mat-khau-can-bo-1"}, expect=201)
            secrets["operator password"] = "mat-khau-can-bo-1"
            async with httpx.AsyncClient(transport=rig.http._transport, base_url="http://gateway") as http:
                r = await http.post("/api/login", json={"username": "canbo", "password": "mat-khau-can-bo-1"})
                secrets["operator session"] = http.cookies.get("denloa_session")
                secrets["operator csrf"] = r.json()["csrf"]
                await http.post("/api/login", json={"username": "canbo", "password": "sai-mat-khau-9f"})
                await http.post("/api/login", json={"username": "mat-khau-can-bo-1", "password": "x"})  # typed in
                await http.post("/api/nodes/den-01/commands", json={"op": "reboot"})  # no CSRF header: refused
            async with httpx.AsyncClient(transport=rig.http._transport, base_url="http://gateway") as http:
                page = await http.get("/login")                                               # the wrong box
                token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
                r = await http.post("/login", data={"csrf": token, "username": "admin", "password": ADMIN_PASSWORD})
                assert r.status_code == 303
                secrets["admin form session"] = http.cookies.get("denloa_session")
        finally:
            await rig.stop()
        return rig, secrets

    rig, secrets = asyncio.run(asyncio.wait_for(scenario(), 150))
    secrets = {what: value for what, value in secrets.items() if value}
    assert len([w for w in secrets if w.startswith(("den-01", "loa-01"))]) >= 6, secrets.keys()
    captured = capfd.readouterr()
    sources = {"gateway log": "\n".join(rig.logs), "log records": "\n".join(r.getMessage() for r in caplog.records),
               "stdout": captured.out, "stderr": captured.err}
    assert sources["gateway log"], "the gateway logged nothing: the scan would prove nothing"
    for folder, _dirs, files in os.walk(rig.gw.cfg.data_dir):
        for name in files:
            if "log" in name.lower() or name.endswith((".txt", ".out", ".err")):
                with open(os.path.join(folder, name), "rb") as f:
                    sources[os.path.relpath(os.path.join(folder, name), tmp_path)] = f.read().decode("utf-8", "replace")
    leaks = ["%s in the %s" % (what, where) for what, value in secrets.items() for where, text in sources.items()
             if any(form in text for form in _forms(value))]
    assert not leaks, "secrets in the logs:\n" + "\n".join(leaks)

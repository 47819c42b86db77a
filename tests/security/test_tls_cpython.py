"""Issue 13, encrypted links: the site CA, MQTT over TLS to the gateway's own Mosquitto, HTTPS.

1. A real gateway (tests/gateway/harness.py) with `[tls] enabled` on real Mosquitto registers a node
   through the API; the bundle carries the site CA, the TLS port and the name to verify. The node
   (real firmware, MicroPython) reaches the broker through a capturing TCP proxy and comes online;
   the captured bytes hold neither its password nor a topic nor the MQTT protocol name. A plain MQTT
   client gets nothing from the TLS port; the plain listener is on 127.0.0.1 only.
2. The node's MQTT client (tests/firmware/mqtt_probe.py) given another site's CA refuses the gateway
   and says so in plain words; given the wrong name it refuses too.
3. The node's HTTP client (tests/firmware/https_probe.py) downloads over HTTPS, verifying the
   server against the site CA, and refuses a server the CA did not sign.
4. `python -m gateway` serves the staff UI over HTTPS with the site's certificate; plain HTTP gets no page.
"""
import asyncio
import hashlib
import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import types

import httpx
import pytest

from gateway.broker import mosquitto_available
from gateway.tls import SiteTls
from tests.firmware.test_mqtt_broker_cpython import MICROPYTHON, Probe
from tests.gateway.harness import GatewayRig, wait_until
from tests.mosquitto import MISSING, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HTTPS_PROBE = os.path.join(ROOT, "tests", "firmware", "https_probe.py")
SITE = "xa-an-binh"

needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason=MISSING)


class CaptureProxy:
    """A TCP proxy that keeps every byte that crosses it, both ways (what a Wi-Fi sniffer sees)."""

    def __init__(self, port):
        self.target = port
        self.up, self.down = bytearray(), bytearray()
        self.server = None

    async def start(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _client(self, reader, writer):
        try:
            r2, w2 = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pump(src, dst, keep):
            try:
                while data := await src.read(4096):
                    keep += data
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
        await asyncio.gather(pump(reader, w2, self.up), pump(r2, writer, self.down))

    def close(self):
        self.server.close()


@needs_mosquitto
def test_a_provisioned_node_talks_to_mosquitto_over_tls_only(tmp_path):
    async def main():
        rig = GatewayRig(tmp_path, broker="mosquitto")
        tls_port = free_port()
        rig.raw["tls"] = {"enabled": True, "mqtt_port": tls_port, "https": False}
        await rig.start()
        proxy = None
        try:
            conf = open(rig.gw.broker.conf_path).read()
            assert "listener %d 127.0.0.1" % rig.cfg.broker_port in conf  # plain: the gateway's own link only
            assert "listener %d 127.0.0.1\ncertfile" % tls_port in conf
            key = os.path.join(rig.cfg.data_dir, "tls", "ca.key")
            assert os.stat(key).st_mode & 0o777 == 0o600 and os.stat(os.path.dirname(key)).st_mode & 0o777 == 0o700
            await rig.api("POST", "/api/zones", json={"id": "thon-1", "name": "Thôn 1"}, expect=201)
            (bundle,) = await rig.add_nodes([{"id": "den-tls", "zones": ["thon-1"], "kind": "lamp"}])
            assert bundle["broker"]["tls"] is True and bundle["broker"]["port"] == tls_port
            assert bundle["tls"]["ca"].startswith("-----BEGIN CERTIFICATE-----")
            assert bundle["tls"]["server_name"] == "denloa-gateway." + SITE
            assert "PRIVATE" not in str(bundle)
            password = bundle["broker"]["password"].encode()

            proxy = await CaptureProxy(tls_port).start()
            bundle["broker"]["port"] = proxy.port
            await asyncio.to_thread(rig.start_host, [bundle])
            await rig.wait_online(["den-tls"], timeout=30)
            await asyncio.sleep(0.5)  # a little traffic both ways beyond the handshake
            wire = bytes(proxy.up) + bytes(proxy.down)
            assert len(proxy.up) > 300 and len(proxy.down) > 500, (len(proxy.up), len(proxy.down))
            assert proxy.up[:1] == b"\x16"  # a TLS handshake record, not an MQTT CONNECT (0x10)
            assert password not in wire
            assert b"MQTT" not in wire and b"denloa/" not in wire and b"den-tls" not in wire

            # a plain MQTT client (right password) on the TLS port: never a CONNACK
            reply = await asyncio.to_thread(_plain_mqtt, tls_port, "den-tls", bundle["broker"]["password"])
            assert not reply.startswith(b"\x20"), reply
        finally:
            if proxy is not None:
                proxy.close()
            await rig.stop()
    asyncio.run(main())


def _plain_mqtt(port, user, password):
    """Send a plain MQTT CONNECT; what came back before the server closed (b"" or a TLS alert)."""
    u, p, cid = user.encode(), password.encode(), user.encode()
    body = (b"\x00\x04MQTT\x04\xc2\x00\x1e" + len(cid).to_bytes(2, "big") + cid + len(u).to_bytes(2, "big") + u
            + len(p).to_bytes(2, "big") + p)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(bytes([0x10, len(body)]) + body)
        got = b""
        try:
            while chunk := s.recv(4096):
                got += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return got


# ---- the node's MQTT client refuses a gateway the site CA did not sign -------------------------
@needs_mosquitto
def test_the_node_refuses_a_gateway_its_site_ca_did_not_sign(tmp_path):
    from tests.mosquitto import Mosquitto

    site = SiteTls.ensure(str(tmp_path / "gw"), SITE)
    other = SiteTls.ensure(str(tmp_path / "other"), "xa-khac")
    port = free_port()
    extra = ["listener %d 127.0.0.1" % port, "certfile %s" % site.cert_path, "keyfile %s" % site.key_path]
    with Mosquitto(tmp_path / "mq", extra=extra, passwords={"den-1": "mat-khau-nut-1"}, allow_anonymous=False) as mq:
        tls_broker = types.SimpleNamespace(host="127.0.0.1", port=port)
        good = Probe(tls_broker, "den-1", "user=den-1", "password=mat-khau-nut-1", "ca=" + site.ca_path,
                     "server_name=" + site.server_name, "bmin=100", "bmax=400")
        try:
            good.expect("up", timeout=15)
        finally:
            good.kill()
        for ca, name, says in ((other.ca_path, site.server_name, "not signed by this node's site CA"),
                               (site.ca_path, "denloa-gateway.xa-khac", "not made for the name")):
            bad = Probe(tls_broker, "den-1", "user=den-1", "password=mat-khau-nut-1", "ca=" + ca,
                        "server_name=" + name, "bmin=100", "bmax=400")
            try:
                line = bad.expect("log", timeout=15)
                while "TLS:" not in line:
                    line = bad.expect("log", timeout=15)
                assert says in line, line
                lines = bad.collect(1.0)
                assert "up" not in lines, lines
            finally:
                bad.kill()


# ---- HTTPS: the node's download client, and the gateway's staff UI ---------------------------
class _Files(http.server.BaseHTTPRequestHandler):
    body = hashlib.sha256(b"denloa").digest() * 4096  # 128 KiB

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def _https_server(site):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(site.cert_path, site.key_path)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _https_probe(port, ca, name):
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=128K", HTTPS_PROBE, "127.0.0.1", str(port), "/clip",
                          ca, name], capture_output=True, text=True, timeout=60, cwd=ROOT)
    return (out.stdout + out.stderr).strip()


def test_the_node_downloads_over_https_and_verifies_the_server(tmp_path):
    site = SiteTls.ensure(str(tmp_path / "gw"), SITE)
    other = SiteTls.ensure(str(tmp_path / "other"), "xa-khac")
    server = _https_server(site)
    try:
        port = server.server_address[1]
        out = _https_probe(port, site.ca_path, site.server_name)
        assert out == "got 200 %d %s" % (len(_Files.body), hashlib.sha256(_Files.body).hexdigest()), out
        out = _https_probe(port, other.ca_path, site.server_name)
        assert out.startswith("error") and "not signed by this node's site CA" in out, out
    finally:
        server.shutdown()


def test_the_gateway_serves_https_with_the_site_certificate(tmp_path):
    http_port = free_port()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[site]\nid = "%s"\nname = "Xã An Bình"\n[data]\ndir = "%s"\n[http]\nport = %d\n'
                   '[broker]\nmode = "embedded"\nbind = "127.0.0.1"\nport = %d\n[tls]\nnames = ["gateway.local"]\n'
                   % (SITE, tmp_path / "data", http_port, free_port()))
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "--config", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        while not any("login:" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "gateway did not start:\n" + "".join(lines)
            lines.append(line)
        text = "".join(lines)
        assert "https://127.0.0.1:%d/" % http_port in text and "site CA" in text, text
        assert "MQTT stays plain" in text  # the embedded broker: said, not hidden
        ca = str(tmp_path / "data" / "tls" / "ca.pem")
        r = httpx.get("https://127.0.0.1:%d/api/health" % http_port, verify=ssl.create_default_context(cafile=ca))
        assert r.status_code == 200 and r.json()["ok"] is True
        password = text.split("admin / ")[1].split()[0]
        r = httpx.post("https://127.0.0.1:%d/api/login" % http_port, json={"username": "admin", "password": password},
                       verify=ssl.create_default_context(cafile=ca))
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower(), r.headers  # session cookie
        with pytest.raises(httpx.HTTPError):  # the default trust store does not know the site CA
            httpx.get("https://127.0.0.1:%d/api/health" % http_port, timeout=5)
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the port
            r = httpx.get("http://127.0.0.1:%d/api/health" % http_port, timeout=5)
            raise httpx.HTTPError("answered %s" % r.status_code) if r.status_code == 200 else httpx.HTTPError("no")
        # the technician's provisioning tool logs in over HTTPS with the site CA, and refuses without it
        from hardware.tools.common import ToolError
        from hardware.tools.provision import Gateway

        url = "https://127.0.0.1:%d" % http_port
        assert Gateway(url, "admin", password, ca=ca).csrf
        with pytest.raises(ToolError) as refused:
            Gateway(url, "admin", password)
        assert "--gateway-ca" in refused.value.en and "--gateway-ca" in refused.value.vi
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

"""The site's TLS: a site CA the gateway makes at first start, and the gateway's server certificate.

    site = SiteTls.ensure(data_dir, site_id, names=["192.168.1.10", "gateway.local"], log=print)
    site.ca_pem          # what every node gets at provisioning (its only trust anchor)
    site.cert_path, site.key_path   # Mosquitto's TLS listener and uvicorn's HTTPS
    site.server_name     # the name nodes verify: "denloa-gateway.<site>" (in the certificate whatever the IP)

Everything lives in `<data>/tls/` (0700): `ca.key` and `server.key` (0600, never leave the
gateway, never in the repository), `ca.pem`, `server.pem` (certificate, then the CA) and
`server.json` (the names the certificate was made for). Keys are ECDSA P-256: a smaller
certificate and a cheaper handshake on the node than RSA, and supported by the ESP32's
mbedTLS (ESP-IDF enables secp256r1 and ECDHE-ECDSA by default).

Validity starts on 1999-12-31 so that a node whose clock is not set yet (an ESP32 starts at
2000-01-01 and gets the time only over the link) still accepts the certificate; the CA runs
30 years, the server certificate 10. A server certificate whose names no longer match the
configuration, or that expires within 30 days, is made again at start from the same CA (the
nodes keep working: they trust the CA, not the certificate). A new CA (rotation) means
re-provisioning every node: see docs/security.md.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOT_BEFORE = datetime.datetime(1999, 12, 31, tzinfo=datetime.timezone.utc)
CA_YEARS = 30
SERVER_YEARS = 10
RENEW_BEFORE = datetime.timedelta(days=30)


def server_name(site: str) -> str:
    """The DNS name in the gateway's certificate that nodes verify (whatever address they dial)."""
    return "denloa-gateway.%s" % site


def _write(path: str, data: bytes, mode: int) -> None:
    """Temp then rename, with its mode from the start: after a crash the file is whole or absent."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _years(start: datetime.datetime, years: int) -> datetime.datetime:
    return start.replace(year=start.year + years)


def make_ca(site: str, now: datetime.datetime | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new site CA: (key, self-signed certificate), path length 0 (it signs only the gateway)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "denloa"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "denloa site CA %s" % site)])
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE).not_valid_after(_years(now, CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, site: str, names: Iterable[str],
                     now: datetime.datetime | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The gateway's certificate for `server_name(site)`, localhost, 127.0.0.1 and `names` (host names
    or IP addresses the gateway is reached at), signed by the site CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    dns: list[x509.GeneralName] = []
    ips: list[x509.GeneralName] = []
    for name in [server_name(site), "localhost", "127.0.0.1", "::1", *names]:
        try:
            ip: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
            if ip not in ips:
                ips.append(ip)
        except ValueError:
            entry: x509.GeneralName = x509.DNSName(name)
            if entry not in dns:
                dns.append(entry)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "denloa"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, server_name(site))]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE)
            .not_valid_after(min(_years(now, SERVER_YEARS), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(dns + ips), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


class SiteTls:
    """The files of one site's TLS in `<data>/tls`; made by `ensure()`."""

    def __init__(self, directory: str, site: str) -> None:
        self.dir = directory
        self.site = site

    ca_path = property(lambda self: os.path.join(self.dir, "ca.pem"))
    ca_key_path = property(lambda self: os.path.join(self.dir, "ca.key"))
    cert_path = property(lambda self: os.path.join(self.dir, "server.pem"))  # the certificate, then the CA
    key_path = property(lambda self: os.path.join(self.dir, "server.key"))
    names_path = property(lambda self: os.path.join(self.dir, "server.json"))

    @property
    def server_name(self) -> str:
        return server_name(self.site)

    @property
    def ca_pem(self) -> str:
        with open(self.ca_path) as f:
            return f.read()

    def ca_fingerprint(self) -> str:
        """SHA-256 of the CA certificate, as `openssl x509 -fingerprint -sha256` shows it."""
        cert = x509.load_pem_x509_certificate(self.ca_pem.encode())
        return ":".join("%02X" % b for b in cert.fingerprint(hashes.SHA256()))

    @classmethod
    def ensure(cls, data_dir: str, site: str, names: Iterable[str] = (),
               log: Callable[[str], None] | None = None) -> SiteTls:
        """The site's CA (made once, at first start) and a server certificate for `names` (made again
        when the names changed or it is near its end)."""
        say = log or (lambda text: None)
        tls = cls(os.path.join(data_dir, "tls"), site)
        os.makedirs(tls.dir, mode=0o700, exist_ok=True)
        os.chmod(tls.dir, 0o700)
        now = datetime.datetime.now(datetime.timezone.utc)
        if not (os.path.exists(tls.ca_key_path) and os.path.exists(tls.ca_path)):
            ca_key, ca_cert = make_ca(site, now)
            _write(tls.ca_key_path, _key_pem(ca_key), 0o600)
            _write(tls.ca_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
            for stale in (tls.cert_path, tls.key_path, tls.names_path):  # signed by an older CA
                if os.path.exists(stale):
                    os.remove(stale)
            say("tls: made the site CA %s (SHA-256 %s); nodes are given it at provisioning"
                % (tls.ca_path, tls.ca_fingerprint()))
        else:
            with open(tls.ca_key_path, "rb") as f:
                loaded = serialization.load_pem_private_key(f.read(), None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise ValueError("%s is not an EC key" % tls.ca_key_path)
            ca_key = loaded
            ca_cert = x509.load_pem_x509_certificate(tls.ca_pem.encode())
        wanted = sorted(set(str(n) for n in names if str(n).strip()))
        if tls._server_cert_stale(wanted, now):
            key, cert = make_server_cert(ca_key, ca_cert, site, wanted, now)
            _write(tls.key_path, _key_pem(key), 0o600)
            _write(tls.cert_path, cert.public_bytes(serialization.Encoding.PEM)
                   + ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
            _write(tls.names_path, json.dumps({"names": wanted}).encode(), 0o644)
            say("tls: made the gateway's certificate for %s" % ", ".join([tls.server_name, *wanted]))
        return tls

    def _server_cert_stale(self, wanted: list[str], now: datetime.datetime) -> bool:
        try:
            with open(self.names_path) as f:
                names = json.load(f).get("names")
            with open(self.cert_path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            if not os.path.exists(self.key_path):
                return True
        except (OSError, ValueError):
            return True
        return names != wanted or cert.not_valid_after_utc - now < RENEW_BEFORE


def node_bundle_tls(bundle: dict[str, Any], *, ca_pem: str, server: str, mqtt_port: int | None,
                    https: bool) -> dict[str, Any]:
    """The provisioning bundle with the site's TLS: the CA and the name to verify, the broker's TLS
    port (None: the broker stays plain, e.g. the embedded broker) and HTTPS for clips and bundles."""
    out = dict(bundle)
    if mqtt_port is not None:
        broker = dict(out["broker"]) if isinstance(out.get("broker"), dict) else {}
        out["broker"] = dict(broker, port=mqtt_port, tls=True)
    if https:
        files = dict(out["files"]) if isinstance(out.get("files"), dict) else {}
        out["files"] = dict(files, tls=True)
    if mqtt_port is not None or https:
        out["tls"] = {"ca": ca_pem, "server_name": server}
    return out

"""Firmware bundle zips as `python -m hardware build` makes them (the contract in docs/ota.md), and
a release key made in the test's tmp (no key is ever in the repo). CPython only (cryptography).

`zip_bundle(b, key)`: b is (manifest bytes, sha, {path: bytes}) from tests/firmware/ota_kit.py;
key an Ed25519PrivateKey (signs manifest.sig) or None (unsigned). Switching to the real build
later: call hardware's build on a source tree and read its zip instead."""
import io
import zipfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def release_key(tmp_path, pem=True):
    """(private key, path of the public key file the gateway's config names)."""
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    path = tmp_path / ("release.pub" if pem else "release.hex")
    if pem:
        path.write_bytes(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    else:
        path.write_text(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex())
    return key, str(path)


def zip_bundle(b, key=None, extra=None, replace=None):
    manifest, _sha, files = b
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", manifest)
        if key is not None:
            zf.writestr("manifest.sig", key.sign(manifest))
        for path in sorted(files):
            zf.writestr(path, (replace or {}).get(path, files[path]))
        for path, data in (extra or {}).items():
            zf.writestr(path, data)
    return buf.getvalue()

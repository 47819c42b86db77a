"""Fixtures of the tools' tests (CPython only: the portable tests use none)."""
import pytest


@pytest.fixture(scope="session")
def release_key(tmp_path_factory):
    """An Ed25519 release key made for this run (no key lives in the repository): (private, PEM file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    path = tmp_path_factory.mktemp("keys") / "release.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key, path


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, release_key):
    """One signed bundle built by `python -m hardware build`, shared by the tools' tests."""
    from tests.hardware.test_tools_cpython import tool

    out = tmp_path_factory.mktemp("bundle")
    rc, so, se = tool("build", "--out", str(out), "--sign", str(release_key[1]))
    assert rc == 0, so + se
    return out / "denloa-0.1.0.zip"

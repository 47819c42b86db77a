"""A site CA certificate for tests that only need the node's TLS context made (its memory), never a
handshake: a public certificate whose private key was discarded when it was made. Tests that talk
TLS make their own CA in a temporary directory (gateway/tls.py)."""

PEM = """-----BEGIN CERTIFICATE-----
MIIBqTCCAU6gAwIBAgIUBmSD5RfbuDI36472ir7OXbzrNnkwCgYIKoZIzj0EAwIw
SDFGMEQGA1UEAww9ZGVubG9hIHRlc3Qgc2l0ZSBDQSAocHVibGljIGNlcnQgb25s
eSwgaXRzIGtleSB3YXMgZGlzY2FyZGVkKTAeFw05OTEyMzEwMDAwMDBaFw00OTEy
MzEwMDAwMDBaMEgxRjBEBgNVBAMMPWRlbmxvYSB0ZXN0IHNpdGUgQ0EgKHB1Ymxp
YyBjZXJ0IG9ubHksIGl0cyBrZXkgd2FzIGRpc2NhcmRlZCkwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAATJnC1v/vwrmgD/rJpdpTRfRGWlCBqmtUKCNVvonYCOWpCd
u6b/tfP54m1KHRGXPE6q8TyBaYuNXVHs6Of00zhyoxYwFDASBgNVHRMBAf8ECDAG
AQH/AgEAMAoGCCqGSM49BAMCA0kAMEYCIQChs1xTjCJ9sMh1SJbyM9K6TUC9YAbA
mgnsnEOpGJH8RQIhAMYeBxdSKyomBzTMbKiWyDD2vzZ+NMNFkFKmxRvXxIEJ
-----END CERTIFICATE-----
"""

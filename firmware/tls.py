"""TLS for the node's links (MQTT and HTTPS): a client context that trusts only the site CA.

    tls = Tls(ca_pem, server_name)               # made once, at boot (NodeConfig.tls)
    reader, writer = await tls.open(open_connection, host, port)   # MQTT and HTTPS share the context
    text = explain(exc)                          # a handshake failure in plain words

MicroPython's `asyncio.open_connection(host, port, ssl=ctx, server_hostname=...)` wraps the
non-blocking socket with `do_handshake_on_connect=False`: the handshake runs inside the first
reads and writes, each step returning to the event loop while it waits for the gateway. What
does not yield is the computation in one step (verifying the gateway's certificate and key
exchange signature, the ECDHE key agreement): see docs/security.md for how long it holds the loop.
mbedTLS's buffers and handshake state are allocated by mbedTLS itself (the C heap on the unix
port, ESP-IDF's heap on the ESP32), outside the MicroPython GC heap.
The context (about 3.2 KB of MicroPython heap: mbedTLS's config, entropy, DRBG and parsed CA live
in the object) is made once when the config is read at boot, while the heap is still whole, and
shared by every connection: made per connection it needs a 3 KB contiguous block of a heap the
node's state has fragmented (measured: MemoryError under the 64 KB budget). The connection's
own buffers (the wrapped socket, ~0.5 KB here; mbedTLS's record buffers outside) go with it.
No module-level state.
"""


BEGIN = "-----BEGIN CERTIFICATE-----"
END = "-----END CERTIFICATE-----"


def ders(pem):
    """The DER bytes of each certificate in PEM text (MicroPython's mbedTLS takes `cadata` as DER)."""
    import binascii

    out = []
    at = pem.find(BEGIN)
    while at >= 0:
        stop = pem.find(END, at)
        if stop < 0:
            raise ValueError("PEM certificate without its END line")
        out.append(binascii.a2b_base64("".join(pem[at + len(BEGIN):stop].split())))
        at = pem.find(BEGIN, stop)
    if not out:
        raise ValueError("no PEM certificate")
    return out


def client_context(ca):
    """An SSLContext that verifies the server against `ca` (PEM text: one CA, or two in a rotation)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    for der in ders(ca if isinstance(ca, str) else ca.decode()):
        ctx.load_verify_locations(cadata=der)
    return ctx


class Tls:
    """The site CA's client context and the name the gateway's certificate must carry."""

    def __init__(self, ca, server_name):
        self.server_name = server_name
        self.context = client_context(ca)

    async def open(self, open_connection, host, port):
        """`open_connection(host, port, ssl=..., server_hostname=...)`: MicroPython's and CPython's asyncio."""
        return await open_connection(host, port, ssl=self.context, server_hostname=self.server_name)


def explain(exc):
    """What a TLS failure means for the technician, or None when `exc` is not one."""
    text = ("%s" % (exc,)).strip()
    upper = text.upper()
    if "COMMON NAME" in upper or "(CN)" in upper:
        return ("TLS: the gateway's certificate is not made for the name this node expects (tls.server_name) "
                "[%s]" % text[:80])
    if "VERIFY" in upper or "CERTIFICATE" in upper or "-9984" in text or "X509" in upper:
        return ("TLS: the gateway's certificate is not signed by this node's site CA (wrong CA, wrong gateway, "
                "or the CA was rotated: re-provision the node) [%s]" % text[:80])
    if "SSL" in upper or "TLS" in upper or "HANDSHAKE" in upper or "MBEDTLS" in upper:
        return "TLS: handshake with the gateway failed (is this port TLS?) [%s]" % text[:80]
    return None

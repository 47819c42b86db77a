"""The node's memory during the TLS handshake (issue 13), on the real MicroPython interpreter.

tests/firmware/tls_heap.py runs under tests/mpy_run.py with the node's 64 KB budget (as
`make test-mpy` gives the firmware tests): a node with its normal state (full program, 50-item
plan) connects its own MQTT client to a real Mosquitto, plain and then over TLS with the site's
certificate (gateway/tls.py, ECDSA P-256). Asserted: the handshake completes inside the budget
and the live heap peak is at most 48 KB. Printed: the figures, and the longest time the event
loop was held (on this machine).

mbedTLS allocates with the C library on the unix port (and from ESP-IDF's heap on the ESP32),
not in the MicroPython heap. When a C compiler is at hand, the run is repeated under a tiny
malloc counter (LD_PRELOAD, built here) that reports the most bytes malloc'd at once between a
mark set just before the connection and CONNACK: mbedTLS's buffers, contexts and handshake
state, plus whatever else the C side allocated meanwhile (getaddrinfo).
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from gateway.tls import SiteTls
from tests.mosquitto import MISSING, Mosquitto, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
BUDGET = "64K"
LIVE_PEAK_TARGET = 48 * 1024

MALLOC_COUNTER = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static long cur, peak, base;
static void add(long n) { long c = __atomic_add_fetch(&cur, n, __ATOMIC_RELAXED); if (c > peak) peak = c; }
void *malloc(size_t n) { void *p = __libc_malloc(n); if (p) add(malloc_usable_size(p)); return p; }
void *calloc(size_t a, size_t b) { void *p = __libc_calloc(a, b); if (p) add(malloc_usable_size(p)); return p; }
void free(void *p) { if (p) add(-(long)malloc_usable_size(p)); __libc_free(p); }
void *realloc(void *p, size_t n) {
  long old = p ? (long)malloc_usable_size(p) : 0; void *q = __libc_realloc(p, n);
  if (q) add((long)malloc_usable_size(q) - old); else if (!n) add(-old); return q; }
char *getenv(const char *name) {
  static char out[64]; static char *(*real)(const char *);
  if (!strcmp(name, "DENLOA_MALLOC_MARK")) { base = cur; peak = cur; return "1"; }
  if (!strcmp(name, "DENLOA_MALLOC_PEAK")) { snprintf(out, sizeof out, "%ld %ld", peak - base, cur - base); return out; }
  if (!real) real = (char *(*)(const char *))dlsym(RTLD_NEXT, "getenv");
  return real(name);
}
"""


def _malloc_counter(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, lib = tmp_path / "count.c", tmp_path / "count.so"
    src.write_text(MALLOC_COUNTER)
    done = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], capture_output=True)
    return str(lib) if done.returncode == 0 else None


def _run(env):
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=1M", "tests/mpy_run.py", "--one", "--budget=" + BUDGET,
                          "tests/firmware/tls_heap.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    text = out.stdout + out.stderr
    lines = [line for line in text.splitlines() if line.startswith("tls-heap ")]
    assert "@@result 1 0" in text and lines, text
    return json.loads(lines[-1][len("tls-heap "):])


@pytest.mark.skipif(not shutil.which("mosquitto") and not os.path.exists("/usr/sbin/mosquitto"), reason=MISSING)
def test_the_tls_handshake_fits_the_node_heap(tmp_path):
    site = SiteTls.ensure(str(tmp_path / "gw"), "xa-an-binh")
    tls_port = free_port()
    extra = ["listener %d 127.0.0.1" % tls_port, "certfile %s" % site.cert_path, "keyfile %s" % site.key_path]
    with Mosquitto(tmp_path / "mq", extra=extra, passwords={"den-1": "mat-khau-nut-1"}, allow_anonymous=False) as mq:
        env = dict(os.environ, DENLOA_TLS_PORT=str(tls_port), DENLOA_PLAIN_PORT=str(mq.port),
                   DENLOA_TLS_CA=site.ca_path, DENLOA_TLS_NAME=site.server_name, DENLOA_TLS_USER="den-1",
                   DENLOA_TLS_PASSWORD="mat-khau-nut-1")
        figures = _run(env)
        counter = _malloc_counter(tmp_path)
        if counter:
            counted = _run(dict(env, LD_PRELOAD=counter))
            for key in ("malloc_peak", "malloc_connected", "malloc_closed"):
                figures[key] = counted.get(key)
    print("\nnode heap (%s budget), live after a collection: state %d B; connect peak plain %d B, TLS %d B "
          "(target %d B); event loop held at most %d ms plain, %d ms TLS (this machine); mbedTLS + C side "
          "outside the heap: peak %s B malloc'd during connect + handshake, %s B held while connected, %s B after "
          "the link closed"
          % (BUDGET, figures["state"], figures["plain_peak"], figures["tls_peak"], LIVE_PEAK_TARGET,
             figures["plain_hold_ms"], figures["tls_hold_ms"], figures.get("malloc_peak", "n/a (no C compiler)"),
             figures.get("malloc_connected", "n/a"), figures.get("malloc_closed", "n/a")))
    assert figures["tls_peak"] <= LIVE_PEAK_TARGET, figures
    if figures.get("malloc_closed") is not None:  # a closed link gives mbedTLS's memory back (it once did not)
        assert figures["malloc_closed"] <= 1024, figures

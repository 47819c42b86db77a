"""The four fuzz targets as functions of (count, seed, derandomize): used by the bounded tests in
`make test` (test_fuzz_cpython.py) and by `make fuzz` (run.py). Each returns its Tally."""
import asyncio
import os
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hyp_seed
from hypothesis import strategies as st

from tests.fuzz import gateway_fuzz as gf
from tests.fuzz import node_fuzz as nf

BATCH = 40  # node cases per pipe round trip
STOP = {"on_failure": True}  # make fuzz sets False: count every failure (each saved), do not stop and shrink


def _settings(examples, derandomize):
    return settings(max_examples=max(1, examples), deadline=None, derandomize=derandomize, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink))


def _chunks(count, per_example, strategy, fn, tally, derandomize, seed, deadline):
    """Run `fn` as a hypothesis test of `strategy`, in chunks, until `count` cases or the deadline."""
    chunk = 0
    while tally.cases < count and time.monotonic() < deadline:
        left = count - tally.cases
        examples = max(1, min(500, left // per_example + 1))
        test = _settings(examples, derandomize)(given(strategy)(fn))
        if not derandomize:
            test = hyp_seed(seed * 1000 + chunk)(test)
        test()
        chunk += 1
        if derandomize:
            break
    return tally


def fuzz_node(count, seed=0, derandomize=False, deadline=None, budget="64K"):
    tally = nf.Tally("node")
    proc = nf.NodeProcess(budget=budget).start()

    node_commands_strategy = st.lists(nf.cases, min_size=1, max_size=BATCH)

    def node_commands(specs):
        failures = nf.run_node_batch(proc, specs, tally)
        assert not STOP["on_failure"] or not failures, "node: %d failure(s), first saved in %s: %s" % (
            len(failures), failures[0][0], failures[0][1]["answer"])
    try:
        _chunks(count, BATCH // 2, node_commands_strategy, node_commands, tally, derandomize, seed, deadline or time.monotonic() + 3600)
    finally:
        proc.stop()
    tally.restarts = proc.restarts
    return tally


def fuzz_ingest(count, seed=0, derandomize=False, deadline=None):
    tally = nf.Tally("ingest")
    with tempfile.TemporaryDirectory() as tmp:
        bench = gf.IngestBench(Path(tmp))

        ingest_payloads_strategy = st.lists(gf.ingest_cases, min_size=1, max_size=20)

        def ingest_payloads(specs):
            t0 = time.perf_counter()
            for spec in specs:
                path = gf.run_ingest_case(bench, spec, tally)
                assert not STOP["on_failure"] or path is None, "ingest: failure saved in %s: %s" % (path, tally.failures[-1])
            tally.seconds += time.perf_counter() - t0
        try:
            _chunks(count, 10, ingest_payloads_strategy, ingest_payloads, tally, derandomize, seed, deadline or time.monotonic() + 3600)
        finally:
            bench.close()
    return tally


def _gateway(tmp, fn):
    async def go():
        rig = await gf.GatewayRig(Path(tmp), broker="embedded").start()
        try:
            await rig.api("POST", "/api/zones", json={"id": "thon-3", "name": "Thôn 3"})
            await rig.api("POST", "/api/nodes", json={"id": "den-3-07", "zones": ["thon-3"]})
            return await fn(rig)
        finally:
            await rig.stop()
    return asyncio.run(go())


def fuzz_api(count, seed=0, derandomize=False, deadline=None):
    tally = nf.Tally("api")
    tally.routes = {}

    async def body(rig):
        from gateway.api import create_app  # noqa: F401  (the routes of the app the rig serves)

        app = rig.http._transport.app
        routes = gf.api_routes(app)
        loop = asyncio.get_running_loop()

        api_requests_strategy = st.lists(gf.api_cases, min_size=1, max_size=10)

        def api_requests(specs):
            t0 = time.perf_counter()
            for spec in specs:
                fut = asyncio.run_coroutine_threadsafe(gf.run_api_case(rig, routes, spec, tally, tally.routes), loop)
                path = fut.result(60)
                assert not STOP["on_failure"] or path is None, "api: failure saved in %s: %s" % (path, tally.failures[-1])
            tally.seconds += time.perf_counter() - t0
        tally.route_count = len(routes)
        for i in range(len(routes)):  # every route at least once, whatever hypothesis draws
            path = await gf.run_api_case(rig, routes, (i, ["x"] * 4, ("json", {"x": None}), {}), tally, tally.routes)
            assert not STOP["on_failure"] or path is None, "api: failure saved in %s: %s" % (path, tally.failures[-1])
        await asyncio.to_thread(_chunks, count, 5, api_requests_strategy, api_requests, tally, derandomize, seed,
                                deadline or time.monotonic() + 3600)
    with tempfile.TemporaryDirectory() as tmp:
        _gateway(tmp, body)
    return tally


def fuzz_audio(count, seed=0, derandomize=False, deadline=None, http_every=10):
    tally = nf.Tally("audio")
    with tempfile.TemporaryDirectory() as tmp:
        samples = gf.make_samples(os.path.join(tmp, "samples"))

        async def body(rig):
            loop = asyncio.get_running_loop()
            lib = rig.gw.clips

            audio_uploads_strategy = gf.audio_cases

            def audio_uploads(spec):
                t0 = time.perf_counter()
                via = rig if tally.cases % http_every == 0 else None  # every tenth through POST /api/clips
                fut = asyncio.run_coroutine_threadsafe(gf.run_audio_case(lib, samples, spec, tally, via), loop)
                path = fut.result(120)
                tally.seconds += time.perf_counter() - t0
                assert not STOP["on_failure"] or path is None, "audio: failure saved in %s: %s" % (path, tally.failures[-1])
            await asyncio.to_thread(_chunks, count, 1, audio_uploads_strategy, audio_uploads, tally, derandomize, seed,
                                    deadline or time.monotonic() + 3600)
        _gateway(os.path.join(tmp, "gw"), body)
    return tally

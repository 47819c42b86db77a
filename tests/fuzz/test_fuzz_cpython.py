"""Bounded, seeded, derandomized fuzzing of the node's command path (MicroPython, 64 KB), the gateway's
ingest, every HTTP route and the audio upload (tests/fuzz/targets.py; `make fuzz` runs 100,000+ cases).
A failure names the JSON file under build/fuzz/failures/ that holds its case."""
import os
import time

from protocol import commands
from tests.fuzz import node_fuzz as nf
from tests.fuzz import targets
from tests.protocol.samples import KEY, NODE, SITE

N = int(os.environ.get("FUZZ_TEST_CASES", "1"))  # a multiplier for a longer local run


def _check(tally, figure):
    figure("fuzz %-6s %6d cases, %d crashes, %d actuations, %d 5xx, %d other, %.0f cases/s" % tally.row())
    assert not tally.failures, tally.failures[:3]
    assert tally.cases > 0


def test_node_command_path_under_micropython(figure):
    _check(targets.fuzz_node(1200 * N, derandomize=True), figure)


def test_gateway_ingest(figure):
    _check(targets.fuzz_ingest(1000 * N, derandomize=True), figure)


def test_http_api_every_route(figure):
    tally = targets.fuzz_api(300 * N, derandomize=True)
    _check(tally, figure)
    assert tally.route_count >= 40 and len(tally.routes) >= tally.route_count * 0.9, (tally.route_count, tally.routes)


def test_audio_upload(figure):
    _check(targets.fuzz_audio(12 * N, derandomize=True, http_every=4), figure)


def test_regression_a_topic_that_is_not_utf8():
    """Found by the fuzzer: verify() raised UnicodeError (out of handle_message) for such a topic."""
    topic, payload = commands.Command(SITE, NODE, "c-9", 9, 2**31, "rebirth", {}).sign(KEY)
    assert commands.verify(payload, b"denloa/\xff", SITE, NODE, KEY, 0, None).reason == commands.WRONG_TARGET
    proc = nf.NodeProcess().start()
    try:
        tally = nf.Tally("node-regression")
        specs = [("garbage", ("topic", b"\xff\xfe")), ("garbage", ("topic", b"denloa/\xc3(")),
                 ("valid", ("rebirth", {}), 1)]
        assert not nf.run_node_batch(proc, specs, tally) and tally.cases == 3
    finally:
        proc.stop()


def test_regression_a_time_request_whose_t1_is_not_a_whole_number(tmp_path):
    """Found by `make fuzz` (seed 20261203): a time_request event with t1 false (or negative, or past
    2**31) made the gateway try to sign a time_sync it could not build, an error out of ingest. Now such
    a request is left unanswered; the event itself is stored like any other."""
    from tests.fuzz import gateway_fuzz as gf

    bench = gf.IngestBench(tmp_path)
    try:
        tally = nf.Tally("ingest-regression", save_dir=str(tmp_path / "failures"))
        for t1 in (False, True, -1, 2**31 + 1, 1.5, 12345):
            payload = ('{"v":1,"boot":"40c8ca18","seq":%d,"kind":"time_request","ts":null,"data":{"t1":%s}}'
                       % (349 + tally.cases, "false" if t1 is False else "true" if t1 is True else t1)).encode()
            gf.run_ingest_case(bench, ("topic", "denloa/%s/node/%s/evt" % (gf.SITE, gf.NODES[0]), payload), tally)
        assert not tally.failures, tally.failures
        answered = bench.gw.db.all("SELECT args FROM commands WHERE op = 'time_sync' AND args LIKE '%\"t1\": 12345%'")
        assert len(answered) == 1  # the well-formed one is answered
    finally:
        bench.close()

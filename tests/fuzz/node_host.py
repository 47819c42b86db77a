"""The node's side of the command-path fuzzer: runs under the MicroPython unix port.

    micropython -X heapsize=1M tests/fuzz/node_host.py [BUDGET]

One real firmware node (tests/firmware/rig.py: a SoftBoard, a manual clock that never moves)
takes cases from stdin and answers one line per case on stdout. After the node and this file
are loaded the heap is filled so that only BUDGET bytes (default 64K, the node's data heap as
in `make test-mpy`) plus room for one received payload stay free: the MQTT client's receive
buffer is outside the node's budget (as in tests/firmware/test_node_memory.py).

In:   b"C <topic_len> <payload_len> <b|s>\\n" + topic + payload    (topic as bytes or as text)
      b"Q\\n"                                                     (quit)
Out:  b"ready <free heap> <counter>\\n" once, then per case
      "<o|a|c|m> <counter> <ack> <detail>"  o: no output or state changed; a: something changed
      (detail says what: the driver decides whether that case was allowed to act); c: an exception
      escaped handle_message (detail: its repr); m: a MemoryError escaped. After c or m the process
      ends (a reboot wipes the RAM): the driver starts a fresh one; the rest of that batch is not run.
Nothing here catches an exception for the node: handle_message is called bare, and whatever
escapes it is the finding.
"""
import gc
import sys

ROOT = __file__[: __file__.rfind("/tests/")] if "/tests/" in __file__ else "."
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.firmware.rig import MONDAY, Rig, at  # noqa: E402

MAX_PAYLOAD = 20 * 1024  # a command is at most 16 KB; the driver cuts longer ones here
NAMES = ("relay", "dim", "amp", "zones", "source", "volume", "counter", "overrides", "override", "lamp_prog",
         "plan", "master_vol", "commanded", "reboot", "rebirth", "clock")


TRACE_HEAP = False  # True: every answer ends with the free heap after the case (a leak shows as a trend)


def _trace(argv, exc):
    """--trace=FILE: append the traceback of a crash there (stdout carries only the answers)."""
    for a in argv:
        if a.startswith("--trace="):
            with open(a[8:], "a") as f:
                sys.print_exception(exc, f)


def _size(text):
    text = text.upper()
    if text.endswith("K"):
        return int(text[:-1]) * 1024
    if text.endswith("M"):
        return int(text[:-1]) * 1024 * 1024
    return int(text)


def snapshot(rig):
    """The ground truth: the board's outputs and the node's stored effects."""
    b, n = rig.board, rig.node
    sp = n.speaker
    last = n.overrides[-1] if n.overrides else None
    return (b.lamp_relay_state(), b.lamp_dim_level(), b.amp_power_state(), b.zone_relays_state(),
            b.audio_source_state(), b.audio_volume_state(), n.counter.value, len(n.overrides),
            (last.level, last.until) if last is not None else None, n.program.version,
            n.plan.version if n.plan is not None else 0, sp.master_volume if sp else None,
            len(sp.commanded) if sp else 0, n.reboot_pending, n._birth_due, n.clock.state)


def settle(rig):
    """What the link would do with the node's output (acks and events published), then ticks at the
    same instant until nothing moves (a transition may take a tick)."""
    n = rig.node
    n.outbox = []
    while n.events.pending:
        n.events.done(n.events.peek())
    n.reboot_pending = None
    n._birth_due = False
    for _ in range(3):
        n.tick()
    return snapshot(rig)


def ack_text(rig, before):
    """"applied", the rejection reason, or "-" when the node said nothing."""
    out = rig.node.outbox
    if len(out) <= before:
        return "-"
    p = out[-1][1]
    if p.find(b'"result":"applied"') >= 0:
        return "applied"
    i = p.find(b'"reason":"')
    if i < 0:
        return "rejected"
    j = p.find(b'"', i + 10)
    return p[i + 10:j].decode() if j > 0 else "rejected"


def diff(a, b):
    """What changed, as name:before>after (no spaces)."""
    return ",".join("%s:%s>%s" % (NAMES[i], a[i], b[i]) for i in range(len(a)) if a[i] != b[i]).replace(" ", "")


def _read_into(stream, view):
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            raise EOFError
        got += n


def main(argv):
    global TRACE_HEAP
    budget = _size(argv[0]) if argv else 64 * 1024
    TRACE_HEAP = "--trace-heap" in argv
    # The MQTT client reads each PUBLISH into a bytearray and hands the node a view of the payload
    # (firmware/mqtt_packets.parse_publish): here one such buffer, allocated before the budget.
    packet = bytearray(MAX_PAYLOAD)
    window = memoryview(packet)
    topic_buf = bytearray(1024)
    rig = Rig(at(MONDAY, 21))
    rig.boot()
    inp = sys.stdin.buffer
    out = sys.stdout
    state = settle(rig)
    # leave only the budget free, in one contiguous region (as tests/mpy_run.py --budget does)
    gc.collect()
    reserve = bytearray(budget - 64)
    blockers = [None] * 2048
    size = gc.mem_free()
    k = 0
    while size >= 16 and k < len(blockers):
        try:
            blockers[k] = bytearray(size)
            k += 1
        except MemoryError:
            size //= 2
    reserve = None
    gc.collect()
    out.write("ready %d %d\n" % (gc.mem_free(), rig.node.counter.value))
    while True:
        line = inp.readline()
        if not line or line.startswith(b"Q"):
            break
        _, tlen, plen, how = line.split()
        tlen, plen = int(tlen), int(plen)
        _read_into(inp, memoryview(topic_buf)[:tlen])
        _read_into(inp, window[:plen])
        topic = bytes(topic_buf[:tlen])
        if how == b"s":  # the client hands topics over as text (it refuses a PUBLISH whose topic is not UTF-8)
            topic = topic.decode()
        payload = window[:plen]
        line = None
        before = len(rig.node.outbox)
        try:
            rig.node.handle_message(topic, payload)
        except MemoryError as exc:
            topic = payload = None
            _trace(argv, exc)
            exc = None
            gc.collect()
            out.write("m %d - MemoryError\n" % rig.node.counter.value)
            break  # a reboot wipes the RAM: the driver starts a fresh process (a reboot here would reuse this heap)
        except Exception as exc:  # the finding: something escaped handle_message
            topic = payload = None
            text = repr(exc).replace("\n", " ")[:300]
            _trace(argv, exc)
            exc = None  # its traceback holds the old node's frames
            out.write("c %d - %s\n" % (rig.node.counter.value, text))
            break
        topic = payload = None
        ack = ack_text(rig, before)
        after = settle(rig)
        changed = diff(state, after)
        state = after
        if changed and rig.node._reload_due:
            changed += ",reload_due"
        gc.collect()
        out.write("%s %d %s %s%s\n" % ("a" if changed else "o", rig.node.counter.value, ack, changed or "-",
                                        " heap=%d" % gc.mem_free() if TRACE_HEAP else ""))
    out.write("bye %d\n" % gc.mem_free())
    rig.close()


main(sys.argv[1:])

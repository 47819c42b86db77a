"""A node that takes hundreds of large commands keeps its heap usable (portable; under MicroPython the
runner leaves the node 64 KB, see tests/mpy_run.py). Found by `make fuzz` (issue 13): after some
20,000 commands a long-lived node's heap was in small holes (49 KB free, no 1.6 KB piece), a valid
program was refused with "storage", and a rejected large command left the node without its plan.

Each command is a template signed before the budget is set, its counter and id patched in place and
its signature recomputed for each use (as the MQTT client hands the node a view of one receive buffer):
plans of 10 to 64 items with and without a lamp program, between them large commands that must change
nothing (addressed to another node, expired) and small ones that leave entries in the command log."""
from protocol import auth, commands
from tests.firmware.full_day import full_program
from tests.firmware.rig import MONDAY, Rig, at
from tests.protocol.samples import KEY, SITE, item, plan

START = at(MONDAY, 21)
BASE = 1000000000  # counters and ids are patched in place: 10 digits
ROUNDS = 25


def _items(n, shift):
    return [item("i-%d" % i, START + 600 + i * 700, START + 1200 + i * 700,
                 zones=["thon-1", "thon-2"] if (i + shift) % 3 else ["thon-1"],
                 src="line" if (i + shift) % 4 == 0 else "clip") for i in range(n)]


def _template(signer, op, args, node=None, expires=None):
    """(bytearray payload, offset of the counter digits, offset of the id digits)."""
    kw = {"node": node} if node else {}
    _topic, payload = signer.command(op, args, counter=BASE, cmd_id="m-%d" % BASE, expires=expires, **kw)
    buf = bytearray(payload)
    return buf, bytes(buf).find(b'"ctr":%d' % BASE) + 6, bytes(buf).find(b'"id":"m-%d' % BASE) + 8


_signer = Rig(START, program=None)
TOPIC = _signer.command("rebirth")[0]
VALID = []
for _k, (_n, _lamp) in enumerate(((64, True), (10, False), (50, False), (30, True), (60, False))):
    _args = {"plan": plan(_items(_n, _k), version=100 + _k)}
    if _lamp:
        _args["lamp"] = dict(full_program(), version=200 + _k)
    VALID.append(_template(_signer, "set_program", _args))
INVALID = (_template(_signer, "set_program", {"plan": plan(_items(60, 1), version=9)}, node="den-khac"),
           _template(_signer, "set_program", {"plan": plan(_items(40, 2), version=8)}, expires=START - 5))
SMALL = (_template(_signer, "set_volume", {"vol": 70}),
         _template(_signer, "lamp_override", {"level": 30, "until": START + 600}))
_signer.close()
del _signer


def _patch(t, n):
    """The template's bytes with counter and id BASE + n, signed again for this node's topic."""
    buf, at_ctr, at_id = t
    digits = b"%d" % (BASE + n)
    buf[at_ctr:at_ctr + 10] = digits
    buf[at_id:at_id + 10] = digits
    cut = len(buf) - commands.SIG_LEN - 1
    sig = auth.to_hex(commands.signature(KEY, TOPIC, memoryview(buf)[:cut])).encode()
    buf[cut + 1:] = sig
    return memoryview(buf)


def test_hundreds_of_large_commands_leave_the_heap_usable_and_the_plan_in_ram():
    rig = Rig(START, program=None)
    try:
        node = rig.boot()
        n = 0
        for r in range(ROUNDS):
            for t in (VALID[r % len(VALID)], INVALID[r % 2], SMALL[r % 2], INVALID[(r + 1) % 2]):
                n += 1
                before = node.plan.version if node.plan is not None else None
                node.handle_message(TOPIC, _patch(t, n))
                ack = rig.last_ack()
                if t[0] is VALID[r % len(VALID)][0] or t in SMALL:
                    assert ack.applied, (r, n, ack.reason, ack.detail)  # never a false "storage"
                else:
                    assert not ack.applied and ack.reason in (commands.WRONG_TARGET, commands.EXPIRED), (r, n, ack)
                    assert node.plan is not None and node.plan.version == before, (r, n)  # unchanged, in RAM
                assert not node._reload_due, (r, n)
                node.outbox = []
                while node.events.peek() is not None:
                    node.events.done(node.events.peek())
        assert node.plan.version == 100 + (ROUNDS - 1) % len(VALID)
    finally:
        rig.close()

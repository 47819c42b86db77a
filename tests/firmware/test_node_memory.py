"""A day with a full program and a 50-item plan fits the node's heap (portable; under
MicroPython the runner leaves the node only 64 KB of heap, see tests/mpy_run.py)."""
from tests.firmware.full_day import program_command, run_full_day
from tests.firmware.rig import MONDAY, Rig

# Signed at import, like the bytes the MQTT client hands over: the node's budget starts after.
_signer = Rig(MONDAY, program=None)
COMMAND = program_command(_signer)
_signer.close()
del _signer


def test_a_full_day_with_a_50_item_plan_fits():
    rig, peak, ticks, kinds = run_full_day(COMMAND)
    try:
        assert ticks == 8640
        assert rig.node.plan.version == 30 and rig.node.program.version == 12
        # every item aired to its end, none dropped, none cut short
        assert kinds.get("broadcast_started") == 50 and kinds.get("broadcast_ended") == 50, kinds
        assert "broadcast_interrupted" not in kinds and "events_dropped" not in kinds
        print("node live heap, peak over a simulated day: %d bytes (50-item plan, full program)" % peak)
    finally:
        rig.close()

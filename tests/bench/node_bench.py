"""Node benchmark on the MicroPython unix port: heap and control-tick cost.

Run by `make bench` as .mpy (see Makefile); prints one JSON line.
"""
import gc
import json
import time

from tests.firmware.full_day import heap_used, program_command, run_full_day
from tests.firmware.rig import MONDAY, Rig


def main():
    signer = Rig(MONDAY, program=None)
    command = program_command(signer)
    signer.close()
    signer = None
    base = heap_used()
    code_bytes = base

    t0 = time.ticks_us()
    rig, peak, ticks, kinds = run_full_day(command)
    day_us = time.ticks_diff(time.ticks_us(), t0)
    rig.close()
    rig = None

    # one control tick, steady state, a node with a full program and 50-item plan
    rig2, _, _, _ = run_full_day(command, step=3600.0)
    node, clock = rig2.node, rig2.clock
    clock.advance(-86400 + 17 * 3600)  # back to an evening with broadcasts and dimming
    n = 2000
    gc.collect()
    t0 = time.ticks_us()
    for _ in range(n):
        clock.advance(1.0)
        node.tick()
    tick_us = time.ticks_diff(time.ticks_us(), t0) / n

    t0 = time.ticks_us()
    rig2.node.handle_message(command[0], command[1])  # a replay: full verify, no effect
    verify_us = time.ticks_diff(time.ticks_us(), t0)
    rig2.close()
    print(json.dumps({
        "node_peak_live_heap_bytes": peak,
        "node_tick_us": round(tick_us, 1),
        "node_day_ticks": ticks,
        "node_day_wall_ms": day_us // 1000,
        "set_program_verify_us": verify_us,
        "code_and_test_resident_bytes": code_bytes,
        "port": "unix (64-bit pointers: objects ~1.6-2x the ESP32's)",
    }))


main()

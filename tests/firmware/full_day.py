"""A heavy but realistic node: full lamp program and a 50-item broadcast plan (shared by test and bench)."""
from tests.firmware.rig import MONDAY, PROGRAM, Rig

# Ten different clips: campaigns repeat through a plan, news changes every day.
CLIPS = ["%064x" % (0xC0FFEE * (k + 1)) for k in range(10)]


def full_program():
    days = {
        "normal": PROGRAM["days"]["normal"],
        "weekend": {"on": "dusk", "off": "dawn", "level": 90,
                    "steps": [{"at": "22:30", "level": 60}, {"at": "00:30", "level": 30}, {"at": "04:00", "level": 60}],
                    "motion": {"level": 100, "hold": 300}},
        "tet": {"on": "sunset-15", "off": "sunrise+15", "level": 100},
        "festival": {"on": "17:30", "off": "06:30", "level": 100, "steps": [{"at": "01:00", "level": 50}]},
    }
    calendar = [
        {"day": "tet", "from": "2027-02-04", "to": "2027-02-12"},
        {"day": "festival", "from": "09-01", "to": "09-03"},
        {"day": "festival", "from": "12-31", "to": "01-01"},
        {"day": "weekend", "weekdays": [5, 6]},
        {"day": "normal"},
    ]
    return {"version": 12, "days": days, "calendar": calendar}


def fifty_items(day_start, src="line"):
    """50 items from 05:00, every 20 minutes. By default on the line input (relay-switched: the whole window
    airs with no download); with src="clip" they name ten clips (test_clips_memory serves them)."""
    items = []
    for i in range(50):
        start = day_start + 5 * 3600 + i * 1200  # from 05:00, every 20 minutes
        item = ["b-%04d" % i, start, 600, i % 3, src, CLIPS[i % 10] if src == "clip" else None,
                ["thon-1", "thon-2"] if i % 3 else ["thon-1"],
                70 + i % 30, ("news", "security", "campaign", "health")[i % 4]]
        items.append(item)
    return items


def heap_used():
    import gc

    gc.collect()
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0


def program_command(rig):
    """(topic, payload) of the signed set_program: the gateway's work, done before the node's heap is measured."""
    return rig.command("set_program", {"lamp": full_program(), "plan": {"version": 30, "items": fifty_items(MONDAY)}})


def run_full_day(command, step=10.0):
    """Boot, receive program + plan by the signed `command`, run 24 h.

    Returns (rig, peak live bytes, ticks, {event kind: count}); the peak is the node's
    heap after a collection, right after the command and then every simulated hour
    (MicroPython only; 0 on CPython).
    """
    import gc

    from protocol.messages import Event

    base = heap_used()
    truth = {}

    def count(t, what, value):  # ground truth is counted, not kept: it is not the node's memory
        truth[what] = truth.get(what, 0) + 1

    rig = Rig(MONDAY, program=None, truth=count)
    rig.boot()
    # the MQTT client reads the packet into one bytearray in the node's heap and hands
    # out a view of its payload: count it
    rig.node.handle_message(command[0], memoryview(bytearray(command[1])))
    ack = rig.last_ack()
    assert ack.applied, ack
    peak = heap_used() - base
    ticks = 0
    kinds = {}
    mem = hasattr(gc, "mem_alloc")
    while rig.clock.now() < MONDAY + 86400:
        rig.clock.advance(step)
        if ticks % 60 == 0:
            rig.board.trigger_motion()
        rig.node.tick()
        ticks += 1
        if len(rig.node.events.pending) > 20 or rig.clock.now() >= MONDAY + 86400:
            while rig.node.events.peek() is not None:  # what the outbox does when the broker acks
                payload = rig.node.events.peek()
                kind = Event.decode(payload).kind
                kinds[kind] = kinds.get(kind, 0) + 1
                rig.node.events.done(payload)
        if mem and ticks % 360 == 0:
            peak = max(peak, heap_used() - base)
    return rig, peak, ticks, kinds

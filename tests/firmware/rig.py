"""A node on a software board with a manual clock, for portable firmware tests."""
import os

from firmware.config import NodeConfig
from firmware.node import Node
from firmware.store import PersistentCounter, Store
from hardware.flashfs import DirFS
from hardware.softboard import SimClock, SoftBoard
from protocol.commands import Command

from tests.protocol.samples import KEY, MONDAY, NODE, SITE, TZ  # noqa: F401  (re-exported)

KEY_HEX = "".join("%02x" % b for b in KEY)

PROGRAM = {
    "version": 3,
    "days": {
        "normal": {
            "on": "sunset", "off": "sunrise", "level": 100,
            "steps": [{"at": "23:00", "level": 40}, {"at": "04:30", "level": 0}],
            "motion": {"level": 80, "hold": 120},
        },
    },
    "calendar": [{"day": "normal"}],
}


def config(**over):
    cfg = {
        "site": SITE, "node": NODE, "key": KEY_HEX,
        "broker": {"host": "127.0.0.1", "port": 1883},
        "zones": {"thon-1": 1, "thon-2": 2},
        "location": {"lat": 21.0285, "lon": 105.8542, "tz": 7},
        "lamp": {"rated_w": 60, "ramp_ms": 2000, "fault_s": 10},
        "pa": {"warmup_s": 3, "cooldown_s": 10},
    }
    cfg.update(over)
    return cfg


def temp_dir():
    path = "/tmp/denloa-test-" + "".join("%02x" % b for b in os.urandom(6))
    os.mkdir(path)
    return path


def remove_dir(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)


class Rig:
    """Board + clock + storage directory + node; reboot() keeps the flash."""

    def __init__(self, start, program=PROGRAM, plan=None, cfg=None, path=None, **board):
        self.clock = SimClock(start)
        self.path = path or temp_dir()
        self.cfg = NodeConfig(cfg or config())
        self.counter = 0
        if program is not None or plan is not None:  # as if a set_program had been applied earlier
            args = {"lamp": program} if plan is None else {"plan": plan} if program is None else {"lamp": program, "plan": plan}
            cmd = Command(SITE, NODE, "c-0", 1, 0, "set_program", args)
            store = Store(DirFS(self.path))
            store.save("prog-both", cmd.encode())
            PersistentCounter(store, "counter").advance(1)
            self.counter = 1
        board.setdefault("seed", 7)
        self.board = SoftBoard(self.clock, DirFS(self.path), **board)
        self.node = None

    def boot(self, cause="power_on"):
        import gc

        self.node = None  # a reboot wipes the RAM: the old node's memory is free before the new one starts
        gc.collect()
        self.board.power_on(cause)
        self.node = Node(self.board, self.cfg)
        self.node.boot()
        return self.node

    def reboot(self, cause="power_on"):
        self.board.power_cut()
        return self.boot(cause)

    def run(self, seconds, step=1.0):
        """Advance time, ticking the node every `step` seconds."""
        t = 0.0
        while t < seconds:
            self.clock.advance(step)
            t += step
            self.node.tick()

    def command(self, op, args=None, counter=None, expires=None, cmd_id=None, node=NODE, key=KEY):
        if counter is None:
            self.counter += 1
            counter = self.counter
        now = int(self.clock.now())
        cmd = Command(SITE, node, cmd_id or "c-%d" % counter, counter, expires or now + 60, op,
                      args if args is not None else {}, issued=now)
        return cmd.sign(key)

    def send(self, op, args=None, **kw):
        topic, payload = self.command(op, args, **kw)
        self.node.handle_message(topic, payload)
        return self.last_ack()

    def last_ack(self):
        from protocol.messages import Ack

        return Ack.decode(self.node.outbox[-1][1]) if self.node.outbox else None

    def event_kinds(self):
        from protocol.messages import Event

        return [Event.decode(e[1]).kind for e in self.node.events.pending]

    def events(self, kind):
        from protocol.messages import Event

        return [e for e in (Event.decode(e[1]) for e in self.node.events.pending) if e.kind == kind]

    def close(self):
        remove_dir(self.path)


def at(day, hh, mm=0, ss=0):
    return day + hh * 3600 + mm * 60 + ss

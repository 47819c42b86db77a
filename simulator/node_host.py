"""A node host: one MicroPython process running K nodes on software boards.

    micropython simulator/node_host.py SPEC.json

SPEC: {"speed": 1, "start": null (host clock) or Unix seconds, "epoch": the host wall
       time at which the simulated clock reads `start` (shared by every process of a run),
       "nodes": [{"dir": storage dir, "config": NodeConfig dict,
                  "board": SoftBoard options (zones, rtc, rated_w, seed, ticks_offset, ...)
                  and boot_crash: N (the first N boots crash)}]}

Each node runs the unmodified firmware (firmware.node.Node) with its own
board, storage directory and MQTT connection. Ground truth from each board
goes to stdout as `truth NODE T WHAT VALUE` lines; sensors and faults come
in on stdin, one command a line:

    NODE burnt 1|0        NODE stuck open|closed|none    NODE dark 1|0
    NODE motion           NODE power off|on              NODE pir_dead 1|0
    NODE rtc_dead 1|0     NODE link 1|0                  NODE clock_jump SECONDS
    NODE boot_crash N     stats                          quit

A node really reboots when it asks to (hal.reset(): the board's on_reset
hook, cause "soft") and when its board's watchdog expires (checked every
100 ms real time; cause "watchdog"; see HostedNode.check_watchdog for
the real-time floor at high speed): the old Node's tasks are stopped and
its MQTT link dropped without DISCONNECT (as a power cut), the outputs drop
to off, RAM is lost (a new Node object), the flash is kept; each reboot
prints `reboot NODE CAUSE T` (T: simulated time). A node whose run() died with an exception (a
crash at boot: `boot_crash N`) stays dead until its watchdog expires: the
firmware arms it before booting.

`stats` prints `stats {"nodes", "p50_ms", "p99_ms", "max_ms", "heap_used", "heap_free", "gc_us",
"ticks", "tick_p50_sim_ms", "tick_p99_sim_ms", "tick_max_sim_ms"[, "sleeps"]}`: how late this
host's event loop wakes (real ms, a 100 ms sleep, over the last samples), its heap in use and
what one collection took; and, since the last `stats`, how many control ticks its nodes made and
how late they came on the simulated clock (the gap between two ticks of a node minus its tick_ms:
the firmware calls hal.service() once per tick). With "count_sleeps" in the spec, "sleeps" counts
the nodes' sleeps by length (simulated ms): how often each firmware loop woke.

End of stdin quits, so a host never outlives the process that started it.
"""
import sys

_here = __file__.replace("\\", "/")
_root = _here[:_here.rfind("/simulator/")] if "/simulator/" in _here else "."
if _root not in sys.path:
    sys.path.insert(0, _root)

import asyncio  # noqa: E402
import json  # noqa: E402

from firmware.config import NodeConfig  # noqa: E402
from firmware.node import MAX_RESTARTS, Node  # noqa: E402
from hardware.flashfs import DirFS  # noqa: E402
from hardware.softboard import RealClock, SoftBoard  # noqa: E402


WDT_REAL_FLOOR_MS = 25000  # longer than the firmware's longest real-time network wait (~15 s)


class HostedNode:
    def __init__(self, spec, clock):
        self.cfg = NodeConfig(spec["config"])
        self.name = self.cfg.node
        options = dict(spec.get("board", {}))
        boot_crash = int(options.pop("boot_crash", 0))  # a fault present from the first power-on
        self.board = SoftBoard(clock, DirFS(spec["dir"]), truth=self.truth, **options)
        self.board.boot_crash = boot_crash
        self.board.on_reset = self._on_reset
        self._last_tick = None
        self._watch_ticks()
        self.node = None
        self.task = None
        self.powered = False
        self.reboots = 0

    def truth(self, t, what, value):
        print("truth", self.name, "%.3f" % t, what, json.dumps(value))

    def _watch_ticks(self):
        """Time each control tick on the simulated clock: the firmware calls hal.service() once per
        tick (Node.tick), so the gap between two calls is tick_ms plus the tick's lateness."""
        service = self.board.service
        clock = self.board.clock
        tick_ms = self.cfg.tick_ms

        def timed_service():
            t = clock.ticks_ms()
            last = self._last_tick
            self._last_tick = t
            if last is not None:
                TICKS.add(t - last - tick_ms)
            return service()

        self.board.service = timed_service

    def _start(self):
        self.node = Node(self.board, self.cfg)
        self.task = asyncio.create_task(self.node.run())

    def _drop(self):
        """The running firmware stops at once, as the chip losing power would stop it."""
        self._last_tick = None  # the gap of a reboot or a power cut is not a late tick
        if self.node is not None:
            self.node.power_cut()  # the link drops without DISCONNECT: the broker publishes the will
            self.node = None
        if self.task is not None:
            self.task.cancel()
            self.task = None

    def power_on(self):
        if self.powered:
            return
        self.powered = True
        self.board.power_on()
        self._start()

    def power_off(self):
        self.powered = False
        self._drop()
        self.board.power_cut()

    def reboot(self, cause):
        """A reset (not a power cut): RAM lost, flash and RTC kept, outputs off, boot with `cause`."""
        if not self.powered:
            return
        self._drop()
        self.board.reboot(cause)
        self.reboots += 1
        print("reboot", self.name, cause, "%.3f" % self.board.clock.now())
        self._start()

    def _on_reset(self):
        # called from inside the firmware's own task: reboot from a fresh one
        asyncio.create_task(self._soft_reset())

    async def _soft_reset(self):
        self.reboot("soft")

    def check_watchdog(self):
        """Reset the node if its watchdog expired.

        The firmware's network waits (MQTT publish and receive timeouts) are real
        time while its task heartbeats are board time, so at high speed a healthy
        node may go unfed for many simulated seconds while it waits on a socket.
        A node whose firmware is alive is therefore reset only when it also went
        unfed for WDT_REAL_FLOOR_MS of real time; a node whose run() died (a crash)
        is reset when its watchdog expires in simulated time, like the chip."""
        b = self.board
        if not self.powered or not b.wdt_expired():
            return
        dead = self.task is None or self.task.done()
        speed = getattr(b.clock, "speed", 1.0) or 1.0
        if dead or (b.wdt_unfed_ms() / speed > WDT_REAL_FLOOR_MS and self._hung(speed)):
            self.reboot("watchdog")

    def _hung(self, speed):
        """Is one of the firmware's tasks silent for WDT_REAL_FLOOR_MS of real time (or has it given up)?

        The firmware feeds its watchdog only while every task beat within BEAT_MS (20 s) of board time. A
        task that waits on the network (real time, up to 10 s) beats once per wait: at 100x that is 1,000
        board seconds, so at high speed the beats of a busy node seldom all fall within 20 board seconds of
        each other, and the watchdog went unfed although every task was looping (the 200-node soak reset
        whole hosts of healthy nodes). The floor is therefore judged per task heartbeat, in real time."""
        node = self.node
        if node is None or speed <= 1.0:
            return True
        now = node.uptime.ms()
        if any((now - at) / speed > WDT_REAL_FLOOR_MS for at in node._beats.values()):
            return True
        return node.restarts >= MAX_RESTARTS and not node.stable  # its tasks kept dying: it gave up (healthy())

    def control(self, words):
        b = self.board
        what = words[0]
        arg = words[1] if len(words) > 1 else ""
        if what == "burnt":
            b.burnt = arg == "1"
        elif what == "stuck":
            b.relay_stuck = None if arg == "none" else arg
        elif what == "dark":
            b.set_dark(arg == "1")
        elif what == "motion":
            b.trigger_motion()
        elif what == "power":
            self.power_on() if arg == "on" else self.power_off()
        elif what == "pir_dead":
            b.pir_dead = arg == "1"
        elif what == "rtc_dead":
            b.rtc_battery_dead = arg == "1"
        elif what == "link":
            b.link = arg == "1"
        elif what == "clock_jump":
            b.clock_jump(float(arg))
        elif what == "boot_crash":
            b.boot_crash = int(arg or 1)
        else:
            print("error unknown command", what)


async def watchdogs(nodes):
    """Every 100 ms of real time: a board whose watchdog expired resets its node."""
    while True:
        await asyncio.sleep_ms(100)
        for hosted in nodes.values():
            try:
                hosted.check_watchdog()
            except Exception as exc:  # one node's trouble must not stop the others' watchdogs
                print("error watchdog", hosted.name, repr(exc))


class TickLateness:
    """How late the nodes' control ticks come, in simulated ms (the gap between two ticks of a node
    minus its tick_ms), every node of this host together, as a histogram: 10 ms buckets below 1 s,
    1 s buckets above (up to 2 min). Cleared by each report."""

    def __init__(self):
        self.clear()

    def clear(self):
        self.hist = [0] * 220
        self.count = 0
        self.max = 0

    def add(self, late):
        if late < 0:  # a tick a command or a reboot brought forward
            late = 0
        self.count += 1
        if late > self.max:
            self.max = late
        self.hist[late // 10 if late < 1000 else min(219, 99 + late // 1000)] += 1

    def pick(self, q):
        """Upper bound of the q-quantile (ms)."""
        want = q * self.count
        seen = 0
        for i, n in enumerate(self.hist):
            seen += n
            if n and seen >= want:
                return (i + 1) * 10 if i < 100 else (i - 98) * 1000
        return 0

    def report(self):
        out = {"ticks": self.count, "tick_p50_sim_ms": self.pick(0.5), "tick_p99_sim_ms": self.pick(0.99),
               "tick_max_sim_ms": self.max}
        self.clear()
        return out


TICKS = TickLateness()
SLEEPS = {}  # simulated ms -> how many times a firmware task slept that long (spec "count_sleeps")


def count_sleeps(clock):
    """Count every sleep the nodes' tasks take, by its length: how often each loop wakes."""
    sleep_ms = clock.sleep_ms

    def counted(ms):
        SLEEPS[ms] = SLEEPS.get(ms, 0) + 1
        return sleep_ms(ms)

    clock.sleep_ms = counted


class Lateness:
    """How late a 100 ms sleep wakes up: what every node's tick on this host suffers."""

    def __init__(self):
        self.samples = []

    async def run(self):
        import time

        while True:
            t0 = time.ticks_ms()
            await asyncio.sleep_ms(100)
            late = time.ticks_diff(time.ticks_ms(), t0) - 100
            self.samples.append(late)
            if len(self.samples) > 600:
                self.samples.pop(0)

    def report(self, nodes):
        import gc

        import time

        s = sorted(self.samples) or [0]
        pick = lambda q: s[min(len(s) - 1, int(len(s) * q))]
        t0 = time.ticks_us()
        gc.collect()
        gc_us = time.ticks_diff(time.ticks_us(), t0)
        out = {"nodes": nodes, "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": s[-1],
               "heap_used": gc.mem_alloc(), "heap_free": gc.mem_free(), "gc_us": gc_us, "samples": len(self.samples)}
        out.update(TICKS.report())
        if SLEEPS:
            out["sleeps"] = dict((str(k), n) for k, n in SLEEPS.items())
            SLEEPS.clear()
        return json.dumps(out)


async def main(path):
    with open(path) as f:
        spec = json.load(f)
    clock = RealClock(spec.get("start"), spec.get("speed", 1), spec.get("epoch"))
    if spec.get("count_sleeps"):
        count_sleeps(clock)
    if spec.get("epoch"):
        import time

        while time.time() < spec["epoch"]:  # every node of a run powers on at the same simulated instant
            await asyncio.sleep_ms(2)
    nodes = {}
    for node_spec in spec["nodes"]:
        hosted = HostedNode(node_spec, clock)
        nodes[hosted.name] = hosted
        hosted.power_on()
    print("ready", len(nodes))
    lateness = Lateness()
    asyncio.create_task(lateness.run())
    asyncio.create_task(watchdogs(nodes))
    stdin = asyncio.StreamReader(sys.stdin)
    while True:
        line = (await stdin.readline()).decode().strip()
        if not line or line == "quit":
            break
        if line == "stats":
            print("stats", lateness.report(len(nodes)))
            continue
        words = line.split()
        hosted = nodes.get(words[0])
        if hosted is None:
            print("error unknown node", words[0])
        else:
            hosted.control(words[1:])
    for hosted in nodes.values():
        if hosted.node is not None:
            hosted.node.stop()
    await asyncio.sleep_ms(300)


asyncio.run(main(sys.argv[1]))

"""Run a simulated commune in this process for a benchmark, and measure how faithfully it ran.

The commune is tests/bench/day200.toml's (its site, program, zones and daily news), with the
nodes, speed, duration and nodes per host of the caller. After `warm_s` of simulated time every
node host is asked for its statistics once (simulator/node_host.py `stats`), which clears them:
the run's final statistics (the runner's `metrics.hosts`) then cover the rest of the run only,
without the boot storm. Meanwhile the CPU time of every process of the run is sampled (psutil):
the node hosts, Mosquitto, and this process (the gateway and the runner).

Figures (simulated ms for tick lateness: the gap between two control ticks of a node minus its
1 s; real ms for the hosts' event-loop lateness):

    tick_p50_sim_ms, tick_p99_sim_ms, tick_max_sim_ms   worst host's quantile (conservative)
    ticks_per_node_s    control ticks per node per simulated second after the warm-up (1.0: every tick)
    loop_p99_ms         worst host's event-loop lateness (a 100 ms sleep), real ms
    cpu_s               {"hosts", "gateway", "mosquitto"} CPU seconds over the whole run
    cpu_us_per_node_sim_s   the same over the measured window only, per node per simulated second
"""
import asyncio
import os
import pathlib
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

DAY200 = os.path.join(ROOT, "tests", "bench", "day200.toml")


def scenario_text(nodes, speed, duration_s, per_host, kind_mix=True, start="2026-11-23T17:00"):
    """day200.toml's commune with `nodes` nodes (in its proportions: 1 loudspeaker+lamp for 4 lamps
    when kind_mix, else every node both), no assertion but `no_event_gap`."""
    with open(DAY200) as f:
        text = f.read()
    head = text[:text.index("[[nodes]]")]
    lines = []
    for line in head.splitlines():
        if line.startswith("speed ="):
            line = "speed = %g" % speed
        elif line.startswith("duration ="):
            line = 'duration = "%ds"' % duration_s
        elif line.startswith("nodes_per_host ="):
            line = "nodes_per_host = %d" % per_host
        elif line.startswith("start ="):
            line = 'start = "%s"' % start
        elif line.startswith("name ="):
            line = 'name = "bench-%d-%g"' % (nodes, speed)
        lines.append(line)
    out = "\n".join(lines) + "\n"
    zones = ["thon-1", "thon-2", "thon-3", "thon-4"]
    per_zone = [nodes // 4 + (1 if z < nodes % 4 else 0) for z in range(4)]
    for z, count in enumerate(per_zone):
        both = count // 5 if kind_mix else count
        for prefix, n, kind in (("loa", both, "both"), ("den", count - both, "lamp")):
            if n:
                out += '\n[[nodes]]\nzone = "%s"\nprefix = "%s-%d"\ncount = %d\nkind = "%s"\n' % (
                    zones[z], prefix, z + 1, n, kind)
    out += '\n[[assert]]\nkind = "no_event_gap"\n'
    return out


class CpuSampler(threading.Thread):
    """CPU seconds of this process and its children, by kind, sampled every second until stop()."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen = {}  # pid -> (kind, cpu seconds)
        self.done = threading.Event()

    def _kind(self, proc):
        try:
            cmd = " ".join(proc.cmdline())
        except Exception:  # noqa: BLE001 - gone
            return None
        if "node_host" in cmd:
            return "hosts"
        if "mosquitto" in cmd:
            return "mosquitto"
        return "other"

    def sample(self):
        import psutil

        me = psutil.Process()
        for proc in [me] + me.children(recursive=True):
            try:
                t = proc.cpu_times()
                kind = "gateway" if proc.pid == me.pid else self._kind(proc)
                self.seen[proc.pid] = (kind, t.user + t.system)
            except Exception:  # noqa: BLE001 - it ended meanwhile: its last sample stays
                pass

    def run(self):
        while not self.done.wait(1.0):
            self.sample()

    def totals(self):
        out = {}
        for kind, cpu in list(self.seen.values()):
            if kind:
                out[kind] = round(out.get(kind, 0) + cpu, 2)
        return out

    def stop(self):
        self.sample()
        self.done.set()
        return self.totals()


def run_commune(tmp, nodes, speed, duration_s, per_host, warm_s, kind_mix=True, count_sleeps=False):
    """Run it; returns the figures above (and the runner's record under "record"). count_sleeps: the
    hosts also count their nodes' sleeps by length ("wakes_per_node_s": {ms: wakes per node per
    simulated second}; it costs the hosts a little)."""
    os.environ["DENLOA_SIM_COUNT_SLEEPS"] = "1" if count_sleeps else ""
    from simulator.runner import Run
    from simulator.scenario import Scenario

    path = pathlib.Path(tmp) / ("bench-%d-%g.toml" % (nodes, speed))
    path.write_text(scenario_text(nodes, speed, duration_s, per_host, kind_mix))
    sc = Scenario.load(str(path))
    out_dir = pathlib.Path(tmp) / ("run-%d-%g" % (nodes, speed))
    run = Run(sc, str(out_dir), log=lambda line: None)
    sampler = CpuSampler()
    sampler.start()

    marks = {}

    async def clear_after_warmup():
        while run.clock.epoch == float("inf") or run.sim_elapsed() < warm_s:
            await asyncio.sleep(0.05)
        for host in list(dict.fromkeys(run.hosts.values())):
            host.send("stats")
        await asyncio.to_thread(sampler.sample)
        marks["warm"] = (run.sim_elapsed(), sampler.totals())
        while run.sim_elapsed() < duration_s - 0.5 * speed:  # half a real second before the end
            await asyncio.sleep(0.05)
        await asyncio.to_thread(sampler.sample)
        marks["end"] = (run.sim_elapsed(), sampler.totals())

    async def main():
        clear = asyncio.create_task(clear_after_warmup())
        try:
            return await run.run()
        finally:
            clear.cancel()

    t0 = time.time()
    record = asyncio.run(main())
    wall = time.time() - t0
    cpu = sampler.stop()
    m = record["metrics"]
    hosts = m.get("hosts") or []
    measured_s = max(1.0, duration_s - warm_s)
    window = {}
    if "warm" in marks and "end" in marks:  # CPU of the measured window: each kind's CPU per node per simulated s
        (s0, c0), (s1, c1) = marks["warm"], marks["end"]
        window = {k: round((c1.get(k, 0) - c0.get(k, 0)) * 1e6 / nodes / max(1e-9, s1 - s0)) for k in c1}
    wakes = {}
    for h in hosts:
        for ms, n in (h.get("sleeps") or {}).items():
            wakes[ms] = wakes.get(ms, 0) + n
    wakes = {ms: round(n / float(nodes) / measured_s, 2) for ms, n in sorted(wakes.items(), key=lambda kv: -kv[1])}
    return {
        "wakes_per_node_s": wakes, "nodes": nodes, "speed": speed, "per_host": per_host, "hosts": len(hosts), "wall_s": round(wall, 1),
        "tick_p50_sim_ms": max((h.get("tick_p50_sim_ms", 0) for h in hosts), default=None),
        "tick_p99_sim_ms": max((h.get("tick_p99_sim_ms", 0) for h in hosts), default=None),
        "tick_max_sim_ms": max((h.get("tick_max_sim_ms", 0) for h in hosts), default=None),
        "ticks_per_node_s": round(sum(h.get("ticks", 0) for h in hosts) / float(nodes) / measured_s, 3),
        "loop_p99_ms": max((h.get("p99_ms", 0) for h in hosts), default=None),
        "host_heap_bytes": max((h.get("heap_used", 0) for h in hosts), default=None),
        "cpu_s": cpu, "cpu_us_per_node_sim_s": window, "event_gaps": m.get("event_gaps"), "online_at_end": m.get("nodes_online_at_end"),
        "record": record,
    }

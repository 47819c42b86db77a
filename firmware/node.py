"""The node: lamps and loudspeakers from the stored program, on any HAL.

A `Node` is built from a HAL and a NodeConfig and holds all its state: no
module-level state, so one interpreter can host many (the simulator does).

- `boot()` loads program, plan, overrides and counters from flash and runs
  the first control tick before any network activity.
- `tick()` is the level-triggered control step: it computes the desired
  outputs from program, plan, overrides, sensors and clock and drives the
  HAL to match. Missing a minute, a reboot or a power cut cannot make it wrong.
- `handle_message(topic, payload)` verifies and applies one command.
- `run()` is the asyncio main: control loop, MQTT link, command inbox,
  event/ack outbox, telemetry, under a supervisor that restarts a dead task
  and feeds the watchdog only while every task is alive.
"""
import gc

from firmware.clock import REFINE_EVERY_MS, STEP_EVENT_S, NodeClock
from firmware.cmdlog import SKIPPED, CommandLog
from firmware.events import EventLog
from firmware.lamp import LampControl
from firmware.media import Media
from firmware.speaker import Loudspeaker
from firmware.store import BatchedValue, NoMemory, Store, StoreError
from firmware.uptime import Uptime
from firmware.version import VERSION
from protocol import commands, topics
from protocol.auth import to_hex
from protocol.errors import NoMemory as ParseNoMemory
from protocol.errors import ProtocolError
from protocol.messages import REJECTED, APPLIED, Ack, State, Telemetry
from protocol.plan import BroadcastPlan
from protocol.program import LampProgram, Override, SunSource, default_program, live_override

# Programs are stored as the exact command bodies that delivered them (no re-encoding,
# one atomic write); at boot the newest body (highest counter) carrying each part wins.
PROGRAM_FILES = ("prog-both", "prog-lamp", "prog-plan")
STATE_FILE = "state.json"  # overrides and master volume, and the command that last changed them
BOOTS_FILE = "boots.json"
ABNORMAL = ("watchdog", "panic", "brownout")
SAFE_AFTER = 3  # abnormal resets in a row (each within STABLE_MS of boot) -> safe mode
STABLE_MS = 10 * 60 * 1000  # this long up without a reset: the count starts again and safe mode ends
WDT_MS = 30000
BEAT_MS = 20000  # a task silent for longer is considered dead
MAX_OUTBOX = 8
MAX_RESTARTS = 5
BIG_COMMAND = 2048
PACK_ABOVE = 1024  # a command this large (a plan, a program) is parsed with collections on the way:
GC_EVERY = 4096  # one each time this many bytes were allocated (its new objects packed, not spread)
_MICROPYTHON = hasattr(gc, "threshold")  # (CPython's heap does not fragment like this; the simulator's nodes skip it)
PENDING_MS = 120000  # a time request unanswered for this long is given up (a valid clock waits for its answer)
PENDING_MAX_MS = 960000  # ... doubling while none is answered (4 kept answerable: half an hour)
HOLD_MS = 20000  # with no valid clock a command waits this long for the time before it is refused
MAX_HELD = 4
STORED_OPS = (commands.SET_PROGRAM, commands.LAMP_OVERRIDE, commands.SET_VOLUME, commands.OTA)  # effects kept on flash


class Node:
    def __init__(self, hal, cfg):
        self.hal = hal
        self.cfg = cfg
        self.store = Store(hal.fs, log=hal.log)
        self.uptime = Uptime(hal)
        self.counter = CommandLog(self.store, cfg.key)  # the counter and the applied cmd_ids
        self.energy = BatchedValue(self.store, "energy", min_interval_s=600, min_delta=10.0)
        self.lit = BatchedValue(self.store, "lit_s", min_interval_s=600, min_delta=3600)
        self.boot_id = to_hex(hal.random_bytes(4))
        self.events = EventLog(self.boot_id)
        self.clock = NodeClock(hal, self.uptime)
        self.lamp = LampControl(hal, cfg, self.energy, self.lit, self.emit, self.uptime) if cfg.has_lamp else None
        # clips and streams for the loudspeaker (fetched from the gateway, verified, cached on flash)
        self.media = Media(hal, cfg, self.clip_wants, self.emit, self.clock.now,
                           getattr(hal, "open_connection", None)) if hal.zone_count() else None
        self.speaker = Loudspeaker(hal, cfg, self.emit, self.uptime, self.media, self.clock,
                                   self.store) if hal.zone_count() else None
        self.sun = SunSource(cfg.lat, cfg.lon, cfg.tz_hours)
        # over-the-air update (firmware/ota.py): needs the filesystem from its root (hal.root_fs)
        root_fs = getattr(hal, "root_fs", None)
        if root_fs is not None:
            from firmware.ota import Ota

            self.ota = Ota(self, root_fs)
        else:
            self.ota = None
        self.program = default_program()
        self.plan = None
        self.overrides = []
        self.outbox = []  # [(topic, payload)] acks waiting for the link
        self.held = []  # [(topic, payload bytes, uptime ms, counter then)]: commands waiting for a valid clock
        self.safe_mode = False
        self.motion_at = None
        self.booted = False
        self.stable = False
        self._day = None  # local day number of the last tick (lamp counters at midnight)
        self.mqtt = None
        self.running = False
        # asyncio Events made by run() (its loop's): the idle tasks wait on them instead of polling
        self._stopped = None  # set when running ends: run() returns
        self._outbox_wake = None  # set by every ack and event queued, and by each tick
        self._audio_wake = None  # set by each tick (which arms and starts items): the idle player wakes
        self.reboot_pending = None
        self.restarts = 0
        self._beats = {}
        self._last_tele = None
        self._birth_due = False
        self._last_time_request = None
        self._pending_ms = PENDING_MS  # how long an unanswered request is waited for: doubles while none come
        self._time_wanted = False  # ask for the time at once, synced or not
        self._reload_due = False  # the plan is on flash but could not be read back into RAM yet
        self._lamp_decision = None
        t = self.topic = {}
        for kind in topics.NODE_KINDS:
            t[kind] = topics.node_topic(cfg.site, cfg.node, kind)

    # ---- boot --------------------------------------------------------------
    def boot(self):
        hal = self.hal
        self.booted = True
        cause = hal.reset_cause()
        count = self._count_boot(cause)
        found = self._load()
        try:
            found = self._load_programs() or found
        except MemoryError:  # the default program meanwhile; the next ticks try again (_reload_due)
            self._reload_due = True
        if self.ota is not None:
            self.ota.boot()
            found = found or (self.counter.pending is not None and self.ota.names(self.counter.pending[0]))
        self.counter.resolve(found, self.clock.now())
        if self.media is not None:
            self.media.need()  # the stored plan's clips: fetch what is missing
        self.tick()  # lamps right from flash and RTC alone, before any network
        if self.counter.lost == SKIPPED:
            self.emit("storage_error", {"file": "counter", "error": "command log unreadable: counter moved past older commands"})
        elif self.counter.lost:  # old commands could be replayed until they expire: say so
            self.emit("storage_error", {"file": "counter", "error": "command counter lost; re-provision the key"})
        self.emit("boot", {"cause": cause, "safe": self.safe_mode, "clock": self.clock.state,
                           "lamp": self.program.version, "plan": self.plan.version if self.plan else 0})
        if self.safe_mode:
            self.emit("safe_mode", {"abnormal_resets": count, "cause": cause})

    def _count_boot(self, cause):
        boots = self.store.load_json(BOOTS_FILE) or {}
        count = boots.get("abnormal", 0) + 1 if cause in ABNORMAL else 0
        self.safe_mode = count >= SAFE_AFTER
        self._save_json(BOOTS_FILE, {"abnormal": count, "cause": cause})
        return count

    def _load_programs(self):
        """Program and plan from the stored command bodies: the newest carrying each part wins.
        True if one of them was made by the command log's pending cmd_id."""
        lamp_ctr = plan_ctr = -1
        program = plan = None
        found = False
        for name in PROGRAM_FILES:
            body = self.store.load(name)
            if body is None:
                continue
            try:
                cmd = commands.Command.decode(memoryview(body), body)  # a large plan item by item
            except ProtocolError as exc:
                if isinstance(exc, ParseNoMemory):  # the body is fine: the heap is not, now
                    raise MemoryError(str(exc))
                self.emit("storage_error", {"file": name, "error": str(exc)[:100]})
                continue
            body = None
            args = cmd.args
            if args.get("lamp") is not None and cmd.counter > lamp_ctr:
                program, lamp_ctr = args["lamp"], cmd.counter
            if args.get("plan") is not None and cmd.counter > plan_ctr:
                plan, plan_ctr = args["plan"], cmd.counter
            if self.counter.pending is not None and cmd.cmd_id == self.counter.pending[0]:
                found = True  # a power cut came after this program was stored, before the log said so
            cmd = args = None
        # all or nothing (found by tests/fuzz): a MemoryError part way must not leave an older plan in force
        if program is not None:
            self.program = program
        if plan is not None:
            self.plan = plan
        return found

    def _load(self):
        """Overrides, volume, the command log's loose ends."""
        state = self.store.load_json(STATE_FILE) or {}
        try:
            self.overrides = [Override.from_json(o) for o in state.get("overrides", [])]
        except (ProtocolError, TypeError):
            self.overrides = []
        if self.speaker is not None:
            vol = state.get("volume", 100)
            self.speaker.master_volume = vol if isinstance(vol, int) and 0 <= vol <= 100 else 100
        return self.counter.pending is not None and state.get("cmd") == self.counter.pending[0]

    def _save_json(self, name, obj):
        """None when stored, else the reason ("storage", or "no_memory": the heap, not the flash)."""
        try:
            self.store.save_json(name, obj)
            return None
        except StoreError as exc:
            return self._store_failed(name, exc)

    def _store_failed(self, name, exc):
        """A write that did not happen: its refusal reason; the flash's failures are reported."""
        if isinstance(exc, NoMemory):  # nothing wrong with the flash: a true reason, not "storage"
            return "no_memory"
        self.emit("storage_error", {"file": name, "error": str(exc)[:100]})
        return "storage"

    def clip_wants(self):
        """(start, end, clip sha) of every clip the node will air: plan items in its zones, then
        commanded broadcasts (start 0, no end: at once). The clip cache asks; nothing is copied.
        None while the stored plan is not back in RAM (the cache then evicts nothing)."""
        if self._reload_due:
            return None
        return self._clip_wants()

    def _clip_wants(self):
        speaker = self.speaker
        plan = self.plan
        if plan is not None:
            zones = speaker.zone_ids if speaker is not None else ()
            for item in plan.items:
                if item.src == "clip" and item.airs_in(zones):
                    yield item.start, item.end, item.ref
        if speaker is not None:
            for c in speaker.commanded:
                clip = getattr(c, "clip", None)
                if clip:
                    yield 0, None, clip

    # ---- the control step --------------------------------------------------
    def tick(self):
        hal = self.hal
        hal.service()
        now = self.clock.now()
        if self._reload_due:
            self._reload_programs()
        if self.held:
            self._release_held(now)
        if hal.motion_since_last():
            self.motion_at = now
        if self.lamp is not None:
            level, reason = self.lamp_level(now)
            self.lamp.drive(level, reason)
            self.lamp.check()
        if self.speaker is not None:
            self.speaker.update(now, self.plan, self.safe_mode)
        if not self.stable and self.uptime.ms() >= STABLE_MS:
            self._stable()
        if self.ota is not None:
            self.ota.tick()
        if now is not None and self.overrides and self.overrides[0].until <= now:
            self.overrides = [o for o in self.overrides if o.until > now]
        if now is not None and self.lamp is not None:
            day = (now + self.cfg.tz_s) // 86400
            if self._day is not None and day != self._day:  # local midnight: the day's counters, reliably
                self.emit("lamp_counters", {"on_s": int(self.lit.value), "wh": round(self.energy.value, 1)})
            self._day = day

    def _stable(self):
        """Up for STABLE_MS: the boot-loop count starts again, and safe mode ends."""
        self.stable = True
        self._save_json(BOOTS_FILE, {"abnormal": 0, "cause": "stable"})
        if self.safe_mode:
            self.safe_mode = False
            self.emit("safe_mode_ended", {"up_s": self.uptime.seconds()})
            self._birth_due = True  # the retained state must say safe: false
            self.tick()

    def lamp_level(self, now):
        """(level, reason): program by the clock, else the photocell."""
        if now is None or self.safe_mode:
            dark = self.hal.photocell_dark()
            if dark is None:
                dark = True  # no clock, no photocell: light the road rather than leave it dark
            return self.program.fallback_level(dark), "photocell"
        d = self.program.decide(now, self.cfg.tz_s, self.sun, self.motion_at, self.overrides)
        self._lamp_decision = d
        return d.level, d.reason

    # ---- events and acks ---------------------------------------------------
    def emit(self, kind, data=None):
        self.events.emit(kind, data, self._ts())
        if self._outbox_wake is not None:
            self._outbox_wake.set()

    def _ts(self):
        return self.clock.now()

    def _ack(self, cmd_id, result, reason=None, detail=None, ctr=None):
        payload = Ack(cmd_id, result, reason, detail[:200] if detail else None, self._ts(), ctr).encode()
        self.outbox.append((self.topic[topics.ACK], payload))
        if len(self.outbox) > MAX_OUTBOX:
            self.outbox.pop(0)
        if self._outbox_wake is not None:
            self._outbox_wake.set()

    def _reject(self, cmd_id, reason, detail, **more):
        """Rejected (no effect, nothing remembered: a retry is judged again), acked and reported."""
        ctr = self.counter.value if reason == commands.REPLAY else None
        self._ack(cmd_id, REJECTED, reason, detail, ctr)
        data = {"id": cmd_id, "reason": reason, "detail": (detail or "")[:100]}
        if ctr is not None:
            data["ctr"] = ctr
        data.update(more)
        self.emit("cmd_rejected", data)

    # ---- commands ----------------------------------------------------------
    def handle_message(self, topic, payload):
        """One message from the broker; only our cmd topic is subscribed."""
        self._handle(topic, payload, self.clock.now())
        self.tick()  # the effect is visible at once, not at the next tick

    def _handle(self, topic, payload, now, last_counter=None):
        big = len(payload) > BIG_COMMAND
        if len(payload) <= PACK_ABOVE or not _MICROPYTHON:
            self._verify_and_apply(topic, payload, now, big, last_counter)
            return
        # A large command (a plan) is parsed beside the plan in force, which stays until the new one is
        # built and stored (found by tests/fuzz: dropping it first left a node without its plan when
        # the command turned out invalid and the reload from flash failed). Its parse makes many small
        # temporaries between the new plan's objects: collected every GC_EVERY bytes allocated, they
        # leave the plan packed instead of spread over the heap in small holes (a heap fragmented like
        # that refused valid commands with "storage" after some 20,000 commands).
        gc.collect()
        limit = gc.threshold()
        gc.threshold(GC_EVERY)
        try:
            self._verify_and_apply(topic, payload, now, big, last_counter)
        finally:
            gc.threshold(limit)
            gc.collect()

    def _reload_programs(self):
        """The stored plan back into RAM; if the heap is too fragmented now, again at the next tick."""
        gc.collect()
        try:
            self._load_programs()
            self._reload_due = False
        except MemoryError:
            self._reload_due = True

    def _verify_and_apply(self, topic, payload, now, big, last_counter):
        cfg = self.cfg
        log = self.counter
        # a held command is judged against the counter it arrived above (a time sync may have passed it)
        v = commands.verify(payload, topic, cfg.site, cfg.node, cfg.key,
                            log.value if last_counter is None else last_counter, now)
        cmd = v.command
        if cmd is not None and log.find(v.cmd_id) is not None:
            # a gateway retry (maybe re-signed with a newer counter): the same answer, no second effect
            entry = log.find(v.cmd_id)
            self._ack(v.cmd_id, entry[2], entry[3], "duplicate")
            return
        if not v.ok:
            more = {"got": cmd.counter} if cmd is not None and v.reason == commands.REPLAY else {}
            self._reject(v.cmd_id, v.reason, v.detail, **more)
            return
        if cmd.op == commands.TIME_SYNC:
            ok, why = self.clock.acceptable(cmd.args["t1"], cmd.expires)
            if not ok:  # a stale or unjudgeable sync moves nothing; ask for the time properly instead
                self._ack(v.cmd_id, REJECTED, commands.EXPIRED, "time sync " + why)  # acked, not an alarm
                # an unsolicited sync judged expired may mean our clock is wrong: ask properly. (An answer
                # overtaken by a newer request of ours is no reason to ask again, once synced: that would
                # never end where answers take longer than the request interval, as in a fast simulation.)
                if self.clock.synced_at is None or cmd.args["t1"] is None:
                    self._time_wanted = True
                return
        elif now is None:
            self._hold(topic, payload, v, big)
            return
        if cmd.op in STORED_OPS:
            self._apply_stored(v, now)
            return
        try:
            v.accept(lambda ctr: log.record(ctr, cmd.cmd_id, cmd.expires, now))
        except StoreError as exc:
            self._ack(v.cmd_id, REJECTED, self._store_failed("cmdlog", exc), str(exc))
            return
        error = self.apply(cmd)
        if error is None:
            self._ack(cmd.cmd_id, APPLIED)
        else:  # refused after it was recorded (e.g. no loudspeaker): it stays refused on a retry
            self._ack(cmd.cmd_id, REJECTED, error[0], error[1])
            try:
                log.record(log.value, cmd.cmd_id, cmd.expires, now, REJECTED, error[0])
            except StoreError:
                pass

    def _apply_stored(self, v, now):
        """Program, override, volume: begin in the log, the effect's own write, finish in the log."""
        log = self.counter
        cmd = v.command
        try:
            v.accept(lambda ctr: log.begin(ctr, cmd.cmd_id, cmd.expires))
        except StoreError as exc:
            self._ack(v.cmd_id, REJECTED, self._store_failed("cmdlog", exc), str(exc))
            return
        error = self.apply(cmd, v.body)
        v = None
        try:
            if error is None:
                log.finish(now)
            else:
                log.cancel()
        except StoreError as exc:  # the effect is on flash and names the cmd_id: the next boot finishes it
            self._store_failed("cmdlog", exc)
        if error is None:
            self._ack(cmd.cmd_id, APPLIED)
        else:
            self._ack(cmd.cmd_id, REJECTED, error[0], error[1])

    def _hold(self, topic, payload, v, big):
        """No valid clock: the expiry cannot be judged. Wait (bounded) for the time, then judge."""
        if big or len(self.held) >= MAX_HELD:
            self._reject(v.cmd_id, "clock_invalid", "no valid time to judge the expiry yet; retry later")
            return
        self.held.append((topic, bytes(payload), self.uptime.ms(), self.counter.value))
        self._time_wanted = True  # ask for the time now

    def _release_held(self, now):
        """Judge held commands once the clock is valid; refuse those that waited HOLD_MS in vain."""
        up = self.uptime.ms()
        while self.held:
            topic, payload, since, ctr = self.held[0]
            if now is None and up - since < HOLD_MS:
                return
            self.held.pop(0)
            if now is None:
                v = commands.verify(payload, topic, self.cfg.site, self.cfg.node, self.cfg.key, 0, None)
                self._reject(v.cmd_id, "clock_invalid", "no valid time within %d s to judge the expiry" % (HOLD_MS // 1000))
            else:
                self._handle(topic, payload, now, ctr)

    def apply(self, cmd, body=None):
        """Carry out an authenticated command; None, or (reason, detail) when it cannot be done."""
        op, args = cmd.op, cmd.args
        if op == commands.SET_PROGRAM:
            lamp, plan = args["lamp"], args["plan"]
            name = PROGRAM_FILES[0] if lamp and plan else PROGRAM_FILES[1] if lamp else PROGRAM_FILES[2]
            try:
                self.store.save(name, body if body is not None else cmd.encode())
            except StoreError as exc:
                return self._store_failed(name, exc), "could not store the program: " + str(exc)
            if lamp is not None:
                self.program = lamp
            if plan is not None:
                self.plan = plan
                if self.media is not None:
                    self.media.need()
            self.emit("program_applied", {"lamp": self.program.version, "plan": self.plan.version if self.plan else 0})
        elif op == commands.LAMP_OVERRIDE:
            now = self.clock.now()
            if now is None:
                return "clock_invalid", "an override needs valid time"
            if args["level"] is None:
                overrides = []
            else:
                overrides = [o for o in self.overrides if o.until > now][-3:]
                overrides.append(Override(args["level"], args["until"], now))
            why = self._save_state(cmd, overrides=overrides)
            if why is not None:
                return why, "could not store the override"
            self.overrides = overrides
        elif op == commands.BROADCAST_NOW:
            if self.speaker is None:
                return "unsupported", "this node has no loudspeaker"
            self.speaker.broadcast_now(args)
            if self.media is not None and args.get("clip"):
                self.media.need()  # a commanded clip is fetched at once
        elif op == commands.STOP_BROADCAST:
            if self.speaker is None:
                return "unsupported", "this node has no loudspeaker"
            self.speaker.stop(args["id"])
        elif op == commands.SET_VOLUME:
            if self.speaker is None:
                return "unsupported", "this node has no loudspeaker"
            why = self._save_state(cmd, volume=args["vol"])
            if why is not None:
                return why, "could not store the volume"
            self.speaker.master_volume = args["vol"]
        elif op == commands.TIME_SYNC:
            step, rtt = self.clock.apply_sync(args["t1"], args["t2"], args["t3"])
            if step is None or abs(step) >= STEP_EVENT_S:
                self.emit("clock_set", {"step": step, "rtt_ms": rtt, "drift_ppm": self.clock.drift_ppm})
        elif op == commands.REBIRTH:
            self._birth_due = True
        elif op == commands.REBOOT:
            self.reboot_pending = self.uptime.ms()
        elif op == commands.SELF_TEST:
            self.emit("self_test", self.self_test())
        elif op == commands.OTA:
            if self.ota is None:
                return "unsupported", "this node cannot update over the air (no slots)"
            return self.ota.start(cmd)
        return None

    def _save_state(self, cmd, overrides=None, volume=None):
        state = {
            "overrides": [o.to_json() for o in (self.overrides if overrides is None else overrides)],
            "volume": self.speaker.master_volume if volume is None and self.speaker else (volume or 0),
            "cmd": cmd.cmd_id,  # the command that made this version (the command log's boot check)
        }
        return self._save_json(STATE_FILE, state)

    def self_test(self):
        """Quick check of relay feedback and current (a few ms); results as event data."""
        hal = self.hal
        out = {}
        if self.lamp is not None:
            feedback = hal.lamp_relay_state()
            out["relay_ok"] = feedback is None or feedback == ((self.lamp.level or 0) > 0)
            out["lamp_ma"] = hal.lamp_current_ma()
            out["lamp_fault"] = self.lamp.fault
        if self.speaker is not None:
            out["amp"] = hal.amp_power_state()
            out["zones"] = hal.zone_count()
        out["clock"] = self.clock.state
        out["rtc"] = hal.rtc_kind()
        out["heap"] = hal.free_heap()
        out["failed"] = hal.failed_parts()[:8]
        return out

    # ---- what the node says ------------------------------------------------
    def caps(self):
        hal = self.hal
        caps = []
        if self.lamp is not None:
            caps.extend(["lamp", "dim"])
            if hal.lamp_current_ma() is not None:
                caps.append("current")
        if hal.photocell_dark() is not None:
            caps.append("photocell")
        if self.speaker is not None:
            caps.extend(["amp", "zones:%d" % hal.zone_count(), "line", "i2s"])
        if hal.rtc_kind():
            caps.append("rtc:" + hal.rtc_kind())
        return caps

    def birth(self):
        return State(True, self.boot_id, VERSION, self.program.version,
                     self.plan.version if self.plan else 0, self.caps(), self._ts(),
                     self.safe_mode, self.clock.state, self.hal.failed_parts()[:16]).encode()

    def will(self):
        return State(False, self.boot_id).encode()

    def telemetry(self):
        hal = self.hal
        return Telemetry(
            self.boot_id, self._ts(), self.uptime.seconds(), self.clock.state,
            lamp=self.lamp.telemetry() if self.lamp is not None else None,
            amp=self.speaker.telemetry() if self.speaker is not None else None,
            rssi=hal.rssi(), heap=hal.free_heap(),
        ).encode()

    # ---- asyncio main ------------------------------------------------------
    def make_client(self):
        from firmware.mqtt import MqttClient

        cfg = self.cfg
        return MqttClient(
            cfg.broker_host, cfg.broker_port, cfg.site + "." + cfg.node,
            user=cfg.broker_user, password=cfg.broker_password, keepalive=cfg.keepalive,
            will=(self.topic[topics.STATE], self.will(), 1, True), clean=False,
            backoff_min_ms=min(500, cfg.backoff_max_ms), backoff_max_ms=cfg.backoff_max_ms,
            rand=self.hal.random_bytes, log=self.hal.log,
            tls=cfg.tls if cfg.broker_tls else None,  # MQTT over TLS (firmware/tls.py)
        )

    async def run(self):
        import asyncio

        self.hal.wdt_start(WDT_MS)  # before boot: a crash while booting ends in a watchdog reset
        if not self.booted:
            self.boot()
        self.running = True
        self._stopped = asyncio.Event()
        self.mqtt = self.make_client()
        self.mqtt.subscribe(self.topic[topics.CMD], 1)
        loops = (("control", self._control_loop), ("link", self._link_loop),
                 ("inbox", self._inbox_loop), ("outbox", self._outbox_loop))
        if self.speaker is not None:
            loops += (("audio", self._audio_loop),)
        tasks = [asyncio.create_task(self._guard(name, fn)) for name, fn in loops]
        tasks.append(asyncio.create_task(self._guard("mqtt", self.mqtt.run, beat=False)))
        if self.media is not None:  # downloads take their time: no heartbeat, they time out by themselves
            tasks.append(asyncio.create_task(self._guard("media", self.media.run, beat=False)))
        if self.ota is not None:
            tasks.append(asyncio.create_task(self._guard("ota", self.ota.run, beat=False)))
        try:
            if self.running:
                await self._stopped.wait()  # stop(), power_cut(), a reset, or the control tick seeing running end
        finally:
            await self.mqtt.close()  # a clean DISCONNECT while the link is still up: no will
            for task in tasks:
                task.cancel()

    def stop(self):
        """Stop cleanly: run() ends with a DISCONNECT (no will)."""
        self.running = False
        self._wake_all()

    def _wake_all(self):
        """running has ended: run() and the waiting tasks see it now."""
        for event in (self._stopped, self._outbox_wake, self._audio_wake):
            if event is not None:
                event.set()

    def power_cut(self):
        """Stop as a power cut would: the link just drops, the broker publishes the will."""
        self.running = False
        self._wake_all()
        if self.mqtt is not None:
            self.mqtt.abort()

    async def _guard(self, name, fn, beat=True):
        """Run a task forever; if it dies, report it and start it again."""
        while self.running:
            if beat:
                self._beats[name] = self.uptime.ms()
            try:
                await fn()
            except Exception as exc:  # a bug in one task must not stop the lamps
                self.restarts += 1
                self.emit("task_restarted", {"task": name, "error": repr(exc)[:100], "n": self.restarts})
                await self.hal.sleep_ms(1000)
            else:
                return

    def _beat(self, name):
        self._beats[name] = self.uptime.ms()

    def healthy(self):
        now = self.uptime.ms()
        for name, at in self._beats.items():
            if now - at > BEAT_MS:
                return False
        return self.restarts < MAX_RESTARTS or self.stable

    async def _control_loop(self):
        hal = self.hal
        while self.running:
            self._beat("control")
            self.tick()
            if self.healthy():
                hal.wdt_feed()
            if self.reboot_pending is not None and (
                    not self.outbox or self.uptime.ms() - self.reboot_pending > 5000):
                self.energy.flush()
                hal.reset()
                self.running = False
            # the idle outbox and player wake once a tick (their heartbeat; the tick may have armed an item);
            # running ended by a plain assignment is seen here, within a tick
            if not self.running:
                break
            for event in (self._outbox_wake, self._audio_wake):
                if event is not None:
                    event.set()
            await hal.sleep_ms(self.cfg.tick_ms)
        self._wake_all()

    async def _audio_loop(self):
        """The player's task: feeds I2S and starts items at their instant, never blocking the tick."""
        import asyncio

        speaker = self.speaker
        self._audio_wake = wake = asyncio.Event()  # this task's own (its loop's; a restarted task makes a new one)
        while self.running:
            self._beat("audio")
            wait = speaker.pump()
            if speaker.idle():  # nothing playing, nothing armed: until the next tick, which may arm one
                wake.clear()
                await wake.wait()
            else:
                await self.hal.sleep_ms(wait)

    async def _link_loop(self):
        """Birth on every connect, time requests, telemetry."""
        hal, mqtt = self.hal, self.mqtt
        while self.running:
            self._beat("link")
            if mqtt.up.is_set():
                mqtt.up.clear()
                self._birth_due = True
            if self._birth_due and mqtt.is_up():
                self._birth_due = False
                await mqtt.publish(self.topic[topics.STATE], self.birth(), qos=1, retain=True, timeout_ms=10000)
            now = self.uptime.ms()
            if self.time_request_due(now) and hal.net_up() and (mqtt.is_up() or self.cfg.ntp):
                self._last_time_request = now  # a request made, not merely due: before the link is up
                self._time_wanted = False  # it would wait the whole minute for nothing
                if mqtt.is_up():
                    # unanswered before: the link is slow, so wait longer for this one (its answer,
                    # and those of the last few, are still taken when they come: firmware/clock.py)
                    unanswered = self.clock.pending_t1 is not None
                    self._pending_ms = min(self._pending_ms * 2, PENDING_MAX_MS) if unanswered else PENDING_MS
                    self.emit("time_request", {"t1": self.clock.request()})
                if self.cfg.ntp:
                    await self.sync_ntp()
            if mqtt.is_up() and self.telemetry_due(now):
                self._last_tele = now
                await mqtt.publish(self.topic[topics.TELE], self.telemetry(), qos=0, timeout_ms=5000)
            await hal.sleep_ms(500)

    def time_request_due(self, now_ms):
        if self.events.queued("time_request"):
            return False  # still in the queue, so still our latest: its round trip counts from when it leaves
        if (self.clock.pending_t1 is not None and self._last_time_request is not None
                and now_ms - self._last_time_request < self._pending_ms and self.clock.now() is not None):
            return False  # our last request is still on its way: a newer one would make its answer stale
        if self.clock.refining():  # the ms clock stands on a slow answer: a few more, seconds apart
            return self._last_time_request is None or now_ms - self._last_time_request > REFINE_EVERY_MS
        if not (self._time_wanted or self.clock.needs_sync()):
            return False
        return self._last_time_request is None or now_ms - self._last_time_request > 60000

    def telemetry_due(self, now_ms):
        return self._last_tele is None or now_ms - self._last_tele >= self.cfg.tele_s * 1000

    async def sync_ntp(self):
        """Ask the configured NTP server; True if the clock was set."""
        from firmware import sntp

        answer = await sntp.query(self.hal, self.cfg.ntp)
        if answer is None:
            return False
        step, rtt = self.clock.apply_sync(*answer)
        if step is None or abs(step) >= STEP_EVENT_S:
            self.emit("clock_set", {"step": step, "rtt_ms": rtt, "drift_ppm": self.clock.drift_ppm, "src": "ntp"})
        return True

    async def _inbox_loop(self):
        while self.running:
            self._beat("inbox")
            msg = await self.mqtt.next_message(timeout_ms=5000)
            if msg is not None:
                topic, payload, _retained = msg
                if topic == self.topic[topics.CMD]:
                    self.handle_message(topic, payload)

    async def _outbox_loop(self):
        """Acks, then events in order; each removed only once the broker has it."""
        import asyncio

        hal, mqtt = self.hal, self.mqtt
        self._outbox_wake = wake = asyncio.Event()  # this task's own, set by _ack, emit and each tick
        while self.running:
            self._beat("outbox")
            if not mqtt.is_up():
                await hal.sleep_ms(200)  # (reconnects are rare: no need to wait on the link's event)
                continue
            if self.outbox:
                topic, payload = self.outbox[0]
                if await mqtt.publish(topic, payload, qos=1, timeout_ms=10000):
                    if self.outbox and self.outbox[0][1] is payload:
                        self.outbox.pop(0)
                continue
            payload = self.events.peek()
            if payload is None:  # nothing to send: until an ack or event is queued, or the next tick
                wake.clear()
                await wake.wait()
                continue
            if b'"time_request"' in payload:
                self.clock.request_sent()
            if await mqtt.publish(self.topic[topics.EVT], payload, qos=1, timeout_ms=10000):
                self.events.done(payload)

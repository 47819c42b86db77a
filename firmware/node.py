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

from firmware.clock import STEP_EVENT_S, NodeClock
from firmware.events import EventLog
from firmware.lamp import LampControl
from firmware.speaker import Loudspeaker
from firmware.store import BatchedValue, PersistentCounter, Store, StoreError
from protocol import commands, topics
from protocol.auth import to_hex
from protocol.errors import ProtocolError
from protocol.messages import REJECTED, APPLIED, Ack, State, Telemetry
from protocol.plan import BroadcastPlan
from protocol.program import LampProgram, Override, SunSource, default_program, live_override

# Programs are stored as the exact command bodies that delivered them (no re-encoding,
# one atomic write); at boot the newest body (highest counter) carrying each part wins.
PROGRAM_FILES = ("prog-both", "prog-lamp", "prog-plan")
STATE_FILE = "state.json"  # overrides and master volume
ACKS_FILE = "acks.json"
BOOTS_FILE = "boots.json"
ABNORMAL = ("watchdog", "panic", "brownout")
SAFE_AFTER = 3  # abnormal resets in a row (each within STABLE_MS of boot) -> safe mode
STABLE_MS = 10 * 60 * 1000
WDT_MS = 30000
BEAT_MS = 20000  # a task silent for longer is considered dead
MAX_ACKS = 8
MAX_RESTARTS = 5
BIG_COMMAND = 2048


class Node:
    def __init__(self, hal, cfg):
        self.hal = hal
        self.cfg = cfg
        self.store = Store(hal.fs, log=hal.log)
        self.counter = PersistentCounter(self.store, "counter")
        self.energy = BatchedValue(self.store, "energy", min_interval_s=600, min_delta=10.0)
        self.boot_id = to_hex(hal.random_bytes(4))
        self.events = EventLog(self.boot_id)
        self.clock = NodeClock(hal)
        self.lamp = LampControl(hal, cfg, self.energy, self.emit) if cfg.has_lamp else None
        self.speaker = Loudspeaker(hal, cfg, self.emit) if hal.zone_count() else None
        self.sun = SunSource(cfg.lat, cfg.lon, cfg.tz_hours)
        self.program = default_program()
        self.plan = None
        self.overrides = []
        self.recent_acks = []  # [[cmd_id, result, reason]] of applied commands, newest last
        self.outbox = []  # [(topic, payload)] acks waiting for the link
        self.safe_mode = False
        self.motion_at = None
        self.booted_at = 0
        self.stable = False
        self.mqtt = None
        self.running = False
        self.reboot_pending = None
        self.restarts = 0
        self._beats = {}
        self._last_tele = None
        self._birth_due = False
        self._last_time_request = None
        self._lamp_decision = None
        t = self.topic = {}
        for kind in topics.NODE_KINDS:
            t[kind] = topics.node_topic(cfg.site, cfg.node, kind)

    # ---- boot --------------------------------------------------------------
    def boot(self):
        hal = self.hal
        self.booted_at = hal.ticks_ms()
        cause = hal.reset_cause()
        self._count_boot(cause)
        self._load()
        self.tick()  # lamps right from flash and RTC alone, before any network
        if self.counter.lost:  # old commands could be replayed until they expire: say so
            self.emit("storage_error", {"file": "counter", "error": "command counter lost; re-provision the key"})
        self.emit("boot", {"cause": cause, "safe": self.safe_mode, "clock": self.clock.state,
                           "lamp": self.program.version, "plan": self.plan.version if self.plan else 0})
        if self.safe_mode:
            self.emit("safe_mode", {"abnormal_resets": SAFE_AFTER})

    def _count_boot(self, cause):
        boots = self.store.load_json(BOOTS_FILE) or {}
        count = boots.get("abnormal", 0) + 1 if cause in ABNORMAL else 0
        self.safe_mode = count >= SAFE_AFTER
        self._save_json(BOOTS_FILE, {"abnormal": count, "cause": cause})

    def _load(self):
        lamp_ctr = plan_ctr = -1
        for name in PROGRAM_FILES:
            body = self.store.load(name)
            if body is None:
                continue
            try:
                cmd = commands.Command.decode(body)
            except ProtocolError as exc:
                self.emit("storage_error", {"file": name, "error": str(exc)[:100]})
                continue
            body = None
            args = cmd.args
            if args.get("lamp") is not None and cmd.counter > lamp_ctr:
                self.program, lamp_ctr = args["lamp"], cmd.counter
            if args.get("plan") is not None and cmd.counter > plan_ctr:
                self.plan, plan_ctr = args["plan"], cmd.counter
        state = self.store.load_json(STATE_FILE) or {}
        try:
            self.overrides = [Override.from_json(o) for o in state.get("overrides", [])]
        except (ProtocolError, TypeError):
            self.overrides = []
        if self.speaker is not None:
            vol = state.get("volume", 100)
            self.speaker.master_volume = vol if isinstance(vol, int) and 0 <= vol <= 100 else 100
        acks = self.store.load_json(ACKS_FILE)
        self.recent_acks = acks if isinstance(acks, list) else []

    def _save_json(self, name, obj):
        try:
            self.store.save_json(name, obj)
            return True
        except StoreError as exc:
            self.emit("storage_error", {"file": name, "error": str(exc)[:100]})
            return False

    # ---- the control step --------------------------------------------------
    def tick(self):
        hal = self.hal
        hal.service()
        now = self.clock.now()
        if hal.motion_since_last():
            self.motion_at = now
        if self.lamp is not None:
            level, reason = self.lamp_level(now)
            self.lamp.drive(level, reason)
            self.lamp.check()
        if self.speaker is not None:
            self.speaker.update(now, self.plan, self.safe_mode)
        if not self.stable and hal.ticks_diff(hal.ticks_ms(), self.booted_at) >= STABLE_MS:
            self.stable = True  # up long enough: the boot-loop count starts again
            self._save_json(BOOTS_FILE, {"abnormal": 0, "cause": "stable"})
        if now is not None and self.overrides and self.overrides[0].until <= now:
            self.overrides = [o for o in self.overrides if o.until > now]

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

    def _ts(self):
        return self.clock.now()

    def _ack(self, cmd_id, result, reason=None, detail=None, remember=True):
        # Only applied commands are remembered: a rejected one had no effect and may be
        # retried (re-signed, after a sync, once the flash has room) and judged again.
        if remember and cmd_id is not None and result == APPLIED:
            self.recent_acks = [a for a in self.recent_acks if a[0] != cmd_id][-(MAX_ACKS - 1):]
            self.recent_acks.append([cmd_id, result, reason])
            self._save_json(ACKS_FILE, self.recent_acks)
        payload = Ack(cmd_id, result, reason, detail[:200] if detail else None, self._ts()).encode()
        self.outbox.append((self.topic[topics.ACK], payload))
        if len(self.outbox) > MAX_ACKS:
            self.outbox.pop(0)

    # ---- commands ----------------------------------------------------------
    def handle_message(self, topic, payload):
        """One message from the broker; only our cmd topic is subscribed."""
        cfg = self.cfg
        big = len(payload) > BIG_COMMAND
        if big:  # likely a new plan: make room to parse it (the old one is on flash)
            self.plan = None
            gc.collect()
        v = commands.verify(payload, topic, cfg.site, cfg.node, cfg.key, self.counter.value, self.clock.now())
        if big and not (v.ok and v.command.op == commands.SET_PROGRAM and v.command.args["plan"]):
            self._load()
        if v.command is not None:  # authentic: a cmd_id we already answered gets that answer again
            for cmd_id, result, reason in self.recent_acks:
                if cmd_id == v.cmd_id:  # a gateway retry (maybe re-signed with a newer counter): no second effect
                    self._ack(cmd_id, result, reason, "duplicate", remember=False)
                    return
        if not v.ok:
            self._ack(v.cmd_id, REJECTED, v.reason, v.detail)
            self.emit("cmd_rejected", {"id": v.cmd_id, "reason": v.reason, "detail": v.detail[:100]})
            return
        try:
            cmd = v.accept(self.counter.advance)
        except StoreError as exc:
            self._ack(v.cmd_id, REJECTED, "storage", str(exc))
            self.emit("storage_error", {"file": "counter", "error": str(exc)[:100]})
            return
        error = self.apply(cmd, v.body)
        v = None
        if error is None:
            self._ack(cmd.cmd_id, APPLIED)
        else:
            self._ack(cmd.cmd_id, REJECTED, error[0], error[1])
        self.tick()  # the effect is visible at once, not at the next tick

    def apply(self, cmd, body=None):
        """Carry out an authenticated command; None, or (reason, detail) when it cannot be done."""
        op, args = cmd.op, cmd.args
        if op == commands.SET_PROGRAM:
            lamp, plan = args["lamp"], args["plan"]
            name = PROGRAM_FILES[0] if lamp and plan else PROGRAM_FILES[1] if lamp else PROGRAM_FILES[2]
            try:
                self.store.save(name, body if body is not None else cmd.encode())
            except StoreError as exc:
                self.emit("storage_error", {"file": name, "error": str(exc)[:100]})
                return "storage", "could not store the program: " + str(exc)
            if lamp is not None:
                self.program = lamp
            if plan is not None:
                self.plan = plan
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
            if not self._save_state(overrides=overrides):
                return "storage", "could not store the override"
            self.overrides = overrides
        elif op == commands.BROADCAST_NOW:
            if self.speaker is None:
                return "unsupported", "this node has no loudspeaker"
            self.speaker.broadcast_now(args)
        elif op == commands.STOP_BROADCAST:
            if self.speaker is None:
                return "unsupported", "this node has no loudspeaker"
            self.speaker.stop(args["id"])
        elif op == commands.SET_VOLUME:
            if self.speaker is None:
                return "unsupported", "this node has no loudspeaker"
            if not self._save_state(volume=args["vol"]):
                return "storage", "could not store the volume"
            self.speaker.master_volume = args["vol"]
        elif op == commands.TIME_SYNC:
            step, rtt = self.clock.apply_sync(args["t1"], args["t2"], args["t3"])
            if step is None or abs(step) >= STEP_EVENT_S:
                self.emit("clock_set", {"step": step, "rtt_ms": rtt, "drift_ppm": self.clock.drift_ppm})
        elif op == commands.REBIRTH:
            self._birth_due = True
        elif op == commands.REBOOT:
            self.reboot_pending = self.hal.ticks_ms()
        elif op == commands.SELF_TEST:
            self.emit("self_test", self.self_test())
        return None

    def _save_state(self, overrides=None, volume=None):
        state = {
            "overrides": [o.to_json() for o in (self.overrides if overrides is None else overrides)],
            "volume": self.speaker.master_volume if volume is None and self.speaker else (volume or 0),
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
        return State(True, self.boot_id, self.cfg.firmware, self.program.version,
                     self.plan.version if self.plan else 0, self.caps(), self._ts(),
                     self.safe_mode, self.clock.state).encode()

    def will(self):
        return State(False, self.boot_id).encode()

    def telemetry(self):
        hal = self.hal
        return Telemetry(
            self.boot_id, self._ts(), int(hal.ticks_diff(hal.ticks_ms(), self.booted_at) // 1000),
            self.clock.state,
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
        )

    async def run(self):
        import asyncio

        if not self.booted_at:
            self.boot()
        self.running = True
        self.mqtt = self.make_client()
        self.mqtt.subscribe(self.topic[topics.CMD], 1)
        self.hal.wdt_start(WDT_MS)
        loops = (("control", self._control_loop), ("link", self._link_loop),
                 ("inbox", self._inbox_loop), ("outbox", self._outbox_loop))
        tasks = [asyncio.create_task(self._guard(name, fn)) for name, fn in loops]
        tasks.append(asyncio.create_task(self._guard("mqtt", self.mqtt.run, beat=False)))
        try:
            while self.running:
                await self.hal.sleep_ms(200)
        finally:
            await self.mqtt.close()  # a clean DISCONNECT while the link is still up: no will
            for task in tasks:
                task.cancel()

    def stop(self):
        """Stop cleanly: run() ends with a DISCONNECT (no will)."""
        self.running = False

    def power_cut(self):
        """Stop as a power cut would: the link just drops, the broker publishes the will."""
        self.running = False
        if self.mqtt is not None:
            self.mqtt.abort()

    async def _guard(self, name, fn, beat=True):
        """Run a task forever; if it dies, report it and start it again."""
        while self.running:
            if beat:
                self._beats[name] = self.hal.ticks_ms()
            try:
                await fn()
            except Exception as exc:  # a bug in one task must not stop the lamps
                self.restarts += 1
                self.emit("task_restarted", {"task": name, "error": repr(exc)[:100], "n": self.restarts})
                await self.hal.sleep_ms(1000)
            else:
                return

    def _beat(self, name):
        self._beats[name] = self.hal.ticks_ms()

    def healthy(self):
        now = self.hal.ticks_ms()
        for name, at in self._beats.items():
            if self.hal.ticks_diff(now, at) > BEAT_MS:
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
                    not self.outbox or hal.ticks_diff(hal.ticks_ms(), self.reboot_pending) > 5000):
                self.energy.flush()
                hal.reset()
                self.running = False
            await hal.sleep_ms(self.cfg.tick_ms)

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
            now = hal.ticks_ms()
            if self.clock.needs_sync() and hal.net_up() and (
                    self._last_time_request is None or hal.ticks_diff(now, self._last_time_request) > 60000):
                self._last_time_request = now
                if mqtt.is_up():
                    self.emit("time_request", {"t1": now})
                if self.cfg.ntp:
                    await self.sync_ntp()
            if mqtt.is_up() and (self._last_tele is None or
                                 hal.ticks_diff(now, self._last_tele) >= self.cfg.tele_s * 1000):
                self._last_tele = now
                await mqtt.publish(self.topic[topics.TELE], self.telemetry(), qos=0, timeout_ms=5000)
            await hal.sleep_ms(500)

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
        hal, mqtt = self.hal, self.mqtt
        while self.running:
            self._beat("outbox")
            if not mqtt.is_up():
                await hal.sleep_ms(200)
                continue
            if self.outbox:
                topic, payload = self.outbox[0]
                if await mqtt.publish(topic, payload, qos=1, timeout_ms=10000):
                    if self.outbox and self.outbox[0][1] is payload:
                        self.outbox.pop(0)
                continue
            payload = self.events.peek()
            if payload is None:
                await hal.sleep_ms(100)
                continue
            if await mqtt.publish(self.topic[topics.EVT], payload, qos=1, timeout_ms=10000):
                self.events.done(payload)

"""Loudspeaker (PA) output: what airs now, on which zone relays, from which source.

Each tick the node hands over the plan, the commanded broadcasts and the
clock; the highest-priority active item airs (emergency preempts at once).
The amplifier is powered `warmup_s` before audio is routed (plan items are
anticipated by that lead) and switched off `cooldown_s` after the last item.
Started / ended / interrupted are reported as events with what really aired.

An item is the same broadcast when its id, start, end, source, reference
and zones are the same (`same_item`): a plan push or a reload from flash
gives new objects for the items, and the one on air must go on untouched.
All timing is on the node's Uptime (ms since boot, never wraps).
"""
from protocol.plan import EMERGENCY


class Commanded:
    """A broadcast_now item: timed by the node's monotonic clock (works with no valid time)."""

    def __init__(self, args, ms_now, dur_ms):
        self.id = args["id"]
        self.prio = args["prio"]
        self.src = args["src"]
        self.clip = args.get("clip")
        self.stream = args.get("stream")
        self.zones = args["zones"]
        self.vol = args["vol"]
        self.cat = "emergency" if self.prio >= EMERGENCY else "other"
        self.received = ms_now
        self.deadline = ms_now + dur_ms


def same_item(a, b):
    """True when a and b are the same broadcast (not merely equal-looking objects)."""
    if a is b:
        return True
    if a is None or b is None or a.id != b.id or a.src != b.src or a.clip != b.clip or a.stream != b.stream:
        return False
    if list(a.zones) != list(b.zones):
        return False
    if isinstance(a, Commanded) or isinstance(b, Commanded):
        return isinstance(a, Commanded) and isinstance(b, Commanded) and a.prio == b.prio
    return a.start == b.start and a.end == b.end


class Loudspeaker:
    def __init__(self, hal, cfg, emit, uptime):
        self.hal = hal
        self.uptime = uptime
        self.zone_relays = cfg.zones  # zone id -> relay number
        self.zone_ids = list(cfg.zones)
        self.warmup_ms = cfg.warmup_s * 1000
        self.cooldown_ms = cfg.cooldown_s * 1000
        self.emit = emit
        self.master_volume = 100
        self.commanded = []  # [Commanded]
        self.skipped = []  # plan item ids stopped by staff
        self.airing = None  # the item whose audio is routed now
        self._airing_since = 0
        self._airing_start_unix = None
        self._amp_on_at = None
        self._idle_since = None

    # ---- commands ---------------------------------------------------------
    def broadcast_now(self, args):
        now = self.uptime.ms()
        self.commanded = [c for c in self.commanded if c.id != args["id"]]
        self.commanded.append(Commanded(args, now, args["dur"] * 1000))
        if len(self.commanded) > 8:
            self.commanded.pop(0)

    def stop(self, item_id=None):
        """Stop one broadcast (commanded or planned), or everything airing now."""
        before = len(self.commanded)
        if item_id is None:
            self.commanded = []
            if self.airing is not None and self.airing.id not in self.skipped:
                self.skipped.append(self.airing.id)
        else:
            self.commanded = [c for c in self.commanded if c.id != item_id]
            if len(self.commanded) == before and item_id not in self.skipped:
                self.skipped.append(item_id)
        self.skipped = self.skipped[-16:]

    # ---- the level-triggered part -----------------------------------------
    def choose(self, now, plan, safe_mode):
        """The item that should air now, and whether one is about to start (for warm-up)."""
        ticks = self.uptime.ms()
        self.commanded = [c for c in self.commanded if c.deadline > ticks]
        best = None
        for c in self.commanded:
            if safe_mode and c.prio < EMERGENCY:
                continue
            if best is None or c.prio > best.prio or (c.prio == best.prio and c.received > best.received):
                best = c
        soon = False
        if now is not None and plan is not None and not safe_mode:
            item = plan.active(now, self.zone_ids)
            if item is not None and item.id in self.skipped:
                item = self._next_unskipped(plan, now)
            item = self._keep_on_air(plan, now, item)
            if item is not None and (best is None or item.prio > best.prio):
                best = item
            if best is None and self.warmup_ms:
                upcoming = plan.active(now, self.zone_ids, lead=self.warmup_ms / 1000)
                soon = upcoming is not None and upcoming.id not in self.skipped
        return best, soon

    def _keep_on_air(self, plan, now, item):
        """A plan item that started plays to its end: a clock stepped back a few seconds by a
        time sync (to before its start) must not cut it and start it again."""
        on = self.airing
        if on is None or isinstance(on, Commanded) or on.id in self.skipped or not on.start - 120 <= now < on.end:
            return item
        if item is not None and (same_item(item, on) or item.prio > on.prio):
            return item
        for candidate in plan.items:
            if same_item(candidate, on):
                return candidate if item is None or candidate.prio >= item.prio else item
        return item

    def _next_unskipped(self, plan, now):
        best = None
        for item in plan.items:
            if item.id in self.skipped or not (item.start <= now < item.end) or not item.airs_in(self.zone_ids):
                continue
            if best is None or item.prio > best.prio or (item.prio == best.prio and item.start > best.start):
                best = item
        return best

    def update(self, now, plan, safe_mode=False):
        """Drive amplifier, zone relays, source and volume to match the wanted item."""
        hal = self.hal
        ticks = self.uptime.ms()
        item, soon = self.choose(now, plan, safe_mode)
        if item is not None or soon:
            self._idle_since = None
            if not hal.amp_power_state():
                hal.amp_power(True)
                self._amp_on_at = ticks
        warm = self._amp_on_at is not None and ticks - self._amp_on_at >= self.warmup_ms
        if same_item(item, self.airing):
            self.airing = item  # the same broadcast in a new plan: it goes on untouched
        elif item is None or warm:
            self._switch(item, now, ticks)
        if item is not None and warm:
            self._route(item)
        if item is None and not soon:
            self._route(None)
            if hal.amp_power_state():
                if self._idle_since is None:
                    self._idle_since = ticks
                if ticks - self._idle_since >= self.cooldown_ms:
                    hal.amp_power(False)
                    self._amp_on_at = None

    def _route(self, item):
        hal = self.hal
        if item is None:
            hal.audio_source(None)
            hal.zone_relays(0)
            return
        mask = 0
        for zone in item.zones:
            relay = self.zone_relays.get(zone)
            if relay is not None and relay <= hal.zone_count():
                mask |= 1 << (relay - 1)
        hal.zone_relays(mask)
        hal.audio_source(item.src)
        hal.audio_volume(item.vol * self.master_volume // 100)

    def _switch(self, item, now, ticks):
        old = self.airing
        if old is not None:
            secs = int((ticks - self._airing_since) // 1000)
            ended = self._has_ended(old, now, ticks)
            data = {"id": old.id, "prio": old.prio, "cat": old.cat, "src": old.src, "secs": secs}
            if self._airing_start_unix is not None:
                data["start"] = int(self._airing_start_unix)
            if not ended and item is not None:
                data["by"] = item.id
            self.emit("broadcast_ended" if ended else "broadcast_interrupted", data)
        self.airing = item
        if item is not None:
            self._airing_since = ticks
            self._airing_start_unix = now
            self.emit("broadcast_started", {"id": item.id, "prio": item.prio, "cat": item.cat, "src": item.src,
                                            "zones": list(item.zones[:8])})

    def _has_ended(self, item, now, ticks):
        if isinstance(item, Commanded):
            return item.deadline <= ticks
        return now is not None and now >= item.end

    def telemetry(self):
        hal = self.hal
        mask = hal.zone_relays_state()
        return {
            "on": bool(hal.amp_power_state()),
            "zones": [i + 1 for i in range(16) if mask & (1 << i)],
            "src": hal.audio_source_state(),
            "vol": hal.audio_volume_state(),
            "item": self.airing.id if self.airing is not None else None,
        }


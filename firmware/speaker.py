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

Audio (docs/audio.md sections 5, 6): with a `media` object (the clip cache
and stream client) the "clip" and "stream" items play through the Player
(firmware/audio.py); "line" stays relay-only, and so does everything when
media is None. A plan clip's first sample leaves the DAC at its start
instant (the wall ms of NodeClock.now_ms: the audio task's pump() starts
it). A cut clip resumes where it was cut while its window is open; a
complete clip is not replayed in its window; a checkpoint on flash
(PLAY_FILE: at a segment's start, every CHECKPOINT_MS, at its end) lets a
power cut be reported at the next boot ("power_cut") and the clip resume
from it. A clip not ready at its start is reported once (broadcast_missed)
and airs if it becomes ready while its window is open; a lost stream is
reported and reopened within the window (backoff 1..5 s).
"""
from firmware.audio import BLOCK_SAMPLES, QUEUE_MS, START_EARLY_MS, Player, gain256
from protocol.plan import EMERGENCY, BroadcastPlan

PLAY_FILE = "play.json"
CHECKPOINT_MS = 30000
ARM_S = 2  # a plan clip starting within this many seconds is armed for the audio task's exact start
RETRY_MIN_MS = 1000
RETRY_MAX_MS = 5000
MAX_PROGRESS = 8
AUDIO_SRCS = ("clip", "stream")


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


def item_key(item):
    """What identifies a broadcast for the resume rule (and on flash): a list of JSON values."""
    if isinstance(item, Commanded):
        return ["now", item.id, item.received]
    return [item.id, item.start]


def _ref(item):
    return item.clip if item.src == "clip" else item.stream


class Segment:
    """One stretch of audio of the airing item: from `at` (samples into the clip)."""

    def __init__(self, item, at, of, start_unix):
        self.item = item
        self.at = at
        self.of = of  # the clip's total samples (None for a stream)
        self.start_unix = start_unix
        self.checkpoint_ms = 0
        self.announced = False  # broadcast_started is sent when the first sample is written


class Loudspeaker:
    def __init__(self, hal, cfg, emit, uptime, media=None, clock=None, store=None):
        self.hal = hal
        self.media = media  # clip cache + stream client (docs/audio.md 5-7), or None: relay-only
        self.clock = clock  # NodeClock: now_ms() for exact starts, broadcast_near for resyncs
        self.store = store  # for the play checkpoint (PLAY_FILE)
        self.player = Player(hal, self._now_ms) if media is not None else None  # buffers made once
        self.segment = None  # the airing item's audio now (Segment), or None
        self.progress = []  # [[key, samples done, complete]] of clips aired in their windows
        self.missed = []  # keys reported as broadcast_missed
        self._retry_at = None  # uptime ms: reopen the airing stream then
        self._retry_ms = RETRY_MIN_MS
        self._armed = None  # a plan item the audio task starts at its exact instant
        self._safe = False
        self._restored = False
        self._no_clock_since = None  # uptime ms since when the clock has been invalid
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
            if self._blocked(c, now):
                continue
            if best is None or c.prio > best.prio or (c.prio == best.prio and c.received > best.received):
                best = c
        soon = False
        if now is not None and plan is not None and not safe_mode:
            item = plan.active(now, self.zone_ids)
            if item is not None and self._blocked(item, now):
                item = self._next_unskipped(plan, now)
            item = self._keep_on_air(plan, now, item)
            if item is not None and (best is None or item.prio > best.prio):
                best = item
            if best is None and self.warmup_ms:
                warm = self.warmup_ms / 1000
                lead = warm + (ARM_S if self.media is not None else 0)  # warm before the player is armed
                upcoming = plan.active(now, self.zone_ids, lead=lead)
                if upcoming is not None and upcoming.start > now:  # the line input needs no arming
                    soon = not self._done(upcoming) and (upcoming.src != "line" or upcoming.start - now <= warm)
                if upcoming is not None and not soon:  # the best is done or blocked: any other one?
                    for p in plan.items:
                        if p.start - lead <= now < p.end and p.airs_in(self.zone_ids) and (
                                p.src != "line" or p.start - now <= warm) and (
                                not self._done(p) if p.start > now else not self._blocked(p, now)):
                            soon = True
                            break
        return best, soon

    def _keep_on_air(self, plan, now, item):
        """A plan item that started plays to its end: a clock stepped back a few seconds by a
        time sync (to before its start) must not cut it and start it again."""
        on = self.airing
        if on is None or isinstance(on, Commanded) or self._blocked(on, now) or not on.start - 120 <= now < on.end:
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
            if not (item.start <= now < item.end) or not item.airs_in(self.zone_ids) or self._blocked(item, now):
                continue
            if best is None or item.prio > best.prio or (item.prio == best.prio and item.start > best.start):
                best = item
        return best

    def _blocked(self, item, now):
        """True when `item` may not air now: stopped by staff, its clip complete in this
        window, or its clip not ready (reported once as broadcast_missed)."""
        if item.id in self.skipped:
            return True
        if self.media is None or item.src not in AUDIO_SRCS:
            return False
        key = item_key(item)
        entry = self._progress(key)
        if entry is not None and entry[2]:
            return True  # complete: not again in this window
        if item.src != "clip" or (self.segment is not None and same_item(self.segment.item, item)):
            return False
        try:
            state = self.media.clip_state(item.clip)
        except Exception:
            state = "missing"
        if state == "ready":
            return False
        if key not in self.missed:
            self.missed.append(key)
            self.missed = self.missed[-MAX_PROGRESS:]
            self._missed(item, "clip_bad" if state == "bad" else "clip_missing", state)
        return True

    def _done(self, item):
        """Stopped by staff, or its clip complete in this window."""
        if item.id in self.skipped:
            return True
        entry = self._progress(item_key(item)) if self.media is not None else None
        return entry is not None and entry[2]

    def _clock_gap(self, now, plan, ticks):
        """Items whose whole window passed while the node had no valid clock: broadcast_missed
        "no_clock" once the time is back (those still open air, late)."""
        if now is None:
            if self._no_clock_since is None:
                self._no_clock_since = ticks
            return
        since = self._no_clock_since
        if since is None:
            return
        self._no_clock_since = None
        if plan is None:
            return
        begin = now - (ticks - since) // 1000 - 1
        for item in plan.items:
            if begin <= item.start and item.end <= now and item.airs_in(self.zone_ids) and item.id not in self.skipped:
                key = item_key(item)
                if key not in self.missed:
                    self.missed.append(key)
                    self.missed = self.missed[-MAX_PROGRESS:]
                    self._missed(item, "no_clock", "")

    def _missed(self, item, why, detail=""):
        self.emit("broadcast_missed", {"id": item.id, "prio": item.prio, "cat": item.cat, "src": item.src,
                                       "why": why, "detail": detail})

    def _progress(self, key):
        for entry in self.progress:
            if entry[0] == key:
                return entry
        return None

    def _set_progress(self, key, done, complete):
        entry = self._progress(key)
        if entry is None:
            self.progress.append([key, done, complete])
            if len(self.progress) > MAX_PROGRESS:
                self.progress.pop(0)
        else:
            entry[1] = done
            entry[2] = complete

    def update(self, now, plan, safe_mode=False, full=True):
        """Drive amplifier, zone relays, source and volume to match the wanted item.
        full=False: the audio task's update between ticks, with only the items that matter."""
        hal = self.hal
        ticks = self.uptime.ms()
        self._safe = safe_mode  # (the plan is not kept: the node drops it to parse a big command)
        if self.media is not None:
            if not self._restored:
                self._restored = True
                self._restore()
            self._audio_check(now, ticks)
            if full:
                self._clock_gap(now, plan, ticks)
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
        if self.media is not None:
            self._audio_follow(now, plan, item, warm, ticks, full)
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
            ended = self._has_ended(old, now, ticks)
            if self.segment is not None:
                seg_why = "by" if item is not None else "stopped"
                if ended:
                    seg_why = "end" if old.src == "stream" else "window"
                self._end_segment(seg_why, item, now, ticks)
            elif self.media is None or old.src not in AUDIO_SRCS:
                secs = int((ticks - self._airing_since) // 1000)
                data = {"id": old.id, "prio": old.prio, "cat": old.cat, "src": old.src, "secs": secs}
                if self._airing_start_unix is not None:
                    data["start"] = int(self._airing_start_unix)
                if not ended and item is not None:
                    data["by"] = item.id
                data["why"] = "end" if ended else "by" if item is not None else "stopped"
                self.emit("broadcast_ended" if ended else "broadcast_interrupted", data)
        self.airing = item
        self._retry_at = None
        self._retry_ms = RETRY_MIN_MS
        if item is not None:
            self._airing_since = ticks
            self._airing_start_unix = now
            if self.media is None or item.src not in AUDIO_SRCS:
                self.emit("broadcast_started", {"id": item.id, "prio": item.prio, "cat": item.cat, "src": item.src,
                                                "zones": list(item.zones[:8])})

    # ---- audio --------------------------------------------------------------
    def _now_ms(self):
        if self.clock is not None:
            return self.clock.now_ms()
        t = self.hal.time()
        return None if t is None else int(t * 1000)

    def _gain(self, item):
        return gain256(item.vol, self.master_volume)

    def _audio_follow(self, now, plan, item, warm, ticks, full=True):
        """Open the airing item's audio when it has none; arm an item about to start; the
        resync hint for the clock."""
        if item is not None and warm and self.segment is None and item.src in AUDIO_SRCS and same_item(item, self.airing):
            now_ms = self._now_ms()
            closed = not isinstance(item, Commanded) and now_ms is not None and now_ms >= item.end * 1000
            if not closed and (self._retry_at is None or ticks >= self._retry_at):
                self._start_segment(item, now, ticks)
        if self.segment is not None and self.player is not None:
            self.player.set_gain(self._gain(self.segment.item))
        if full:
            self._armed = None
        if full and now is not None and plan is not None and not self._safe:
            nxt = None  # the best item starting within ARM_S s that is not done
            for p in plan.items:
                if now < p.start <= now + ARM_S and p.airs_in(self.zone_ids) and not self._done(p):
                    if nxt is None or p.prio > nxt.prio or (p.prio == nxt.prio and p.start > nxt.start):
                        nxt = p
            if (nxt is not None and nxt.src in AUDIO_SRCS and not same_item(nxt, self.airing)
                    and self._will_win(nxt, item)):
                self._armed = nxt
        if self.clock is not None and full:
            near = False
            if now is not None and plan is not None:
                for p in plan.items:
                    if p.src in AUDIO_SRCS and now - 5 <= p.start <= now + 900 and p.airs_in(self.zone_ids):
                        near = True
                        break
            self.clock.broadcast_near = near

    def _will_win(self, nxt, item):
        """At its start, will the plan item `nxt` take over from `item` (what airs now)?"""
        if item is None:
            return True
        if isinstance(item, Commanded):
            return nxt.prio > item.prio
        return nxt.prio > item.prio or item.end <= nxt.start  # an airing plan item keeps the air at equal rank

    def _start_segment(self, item, now, ticks):
        media = self.media
        key = item_key(item)
        entry = self._progress(key)
        at = entry[1] if entry is not None else 0
        at_ms = None
        try:
            if item.src == "clip":
                source = media.open_clip(item.clip)
                if source is None:
                    if key not in self.missed:
                        self.missed.append(key)
                        self._missed(item, "clip_missing", "not in the cache")
                    self._retry_at = ticks + RETRY_MAX_MS
                    return
                of = source.samples
                if at:
                    source.seek(at)
                elif not isinstance(item, Commanded):
                    at_ms = item.start * 1000  # the first sample leaves at the start instant
            else:
                source = media.open_stream(item.stream)
                of = None
        except Exception as exc:
            self._retry_at = ticks + self._retry_ms
            self._retry_ms = min(RETRY_MAX_MS, self._retry_ms * 2)
            if item.src == "stream" and key not in self.missed:
                self.missed.append(key)
                self._missed(item, "stream_unavailable", repr(exc)[:60])
            return
        if self.player is None:
            self.player = Player(self.hal, self._now_ms)
        skip = at % BLOCK_SAMPLES if at else 0
        limit = of - at if of is not None else None
        until_ms = None if isinstance(item, Commanded) else item.end * 1000
        self.player.start(source, self._gain(item), at_ms, skip, limit, until_ms)
        seg = Segment(item, at, of, now)
        seg.checkpoint_ms = ticks
        self.segment = seg
        self._airing_since = ticks
        self.pump()  # at (or past) the instant: the first samples go out now

    def _announce(self):
        """The segment's first sample is out: broadcast_started, and the checkpoint."""
        seg = self.segment
        seg.announced = True
        item = seg.item
        self._airing_since = self.uptime.ms()
        seg.start_unix = self._unix()
        data = {"id": item.id, "prio": item.prio, "cat": item.cat, "src": item.src, "zones": list(item.zones[:8])}
        if item.src == "clip":
            data["at"] = seg.at
        self.emit("broadcast_started", data)
        self._checkpoint(True)

    def _end_segment(self, why, by, now, ticks):
        """Close the airing segment and report it (every written sample plays: the tail plays out)."""
        seg = self.segment
        player = self.player
        self.segment = None
        played = player.written if player is not None else 0
        if player is not None:
            player.stop()
        item = seg.item
        if not seg.announced:  # not one sample went out: nothing aired; say why once
            key = item_key(item)
            if why in ("stream_lost", "no_audio") and key not in self.missed:
                self.missed.append(key)
                self.missed = self.missed[-MAX_PROGRESS:]
                if why == "no_audio":
                    self._missed(item, "no_audio", (player.error or "") if player is not None else "")
                else:
                    self._missed(item, "stream_unavailable", "no audio came")
            return
        data = {"id": item.id, "prio": item.prio, "cat": item.cat, "src": item.src,
                "secs": int((ticks - self._airing_since) // 1000), "samples": played, "why": why}
        if seg.start_unix is not None:
            data["start"] = int(seg.start_unix)
        complete = False
        if seg.of is not None:
            done = seg.at + played
            complete = done >= seg.of
            data["of"] = seg.of
            data["complete"] = complete
            if item.src == "clip":
                self._set_progress(item_key(item), done, complete)
        if by is not None and why == "by":
            data["by"] = by.id
        ended = why in ("end", "stream_ended") or complete
        if complete:
            data["why"] = "end"
        self.emit("broadcast_ended" if ended else "broadcast_interrupted", data)
        self._checkpoint(False)

    def _audio_check(self, now, ticks):
        """The airing segment's source ran out (clip end, stream lost or ended) or I2S failed."""
        seg = self.segment
        player = self.player
        if seg is None or player is None:
            return
        if player.active:
            if ticks - seg.checkpoint_ms >= CHECKPOINT_MS:
                seg.checkpoint_ms = ticks
                self._checkpoint(True)
            return
        src = player.source
        item = seg.item
        if player.failed:
            why = "no_audio"
        elif player.cut:
            why = "end" if item.src == "stream" else "window"
        elif player.bad:
            why = "clip_bad" if item.src == "clip" else "stream_lost"
        elif item.src == "stream":
            why = "stream_lost" if src is None or getattr(src, "lost", False) else "stream_ended"
        else:
            why = "end" if seg.of is None or seg.at + player.written >= seg.of else "clip_bad"
        self._end_segment(why, None, now, ticks)
        if why == "stream_lost" or why == "no_audio":
            self._retry_at = ticks + self._retry_ms
            self._retry_ms = min(RETRY_MAX_MS, self._retry_ms * 2)
        elif why == "stream_ended":
            self._set_progress(item_key(item), 0, True)  # the live broadcast is over: not reopened
        elif why == "clip_bad":
            self._set_progress(item_key(item), 0, True)
            try:
                self.media.clip_state(item.clip)  # the cache learns on read; nothing more to do here
            except Exception:
                pass
        if isinstance(item, Commanded) and why in ("end", "stream_ended", "clip_bad"):
            self.commanded = [c for c in self.commanded if c is not item]

    def idle(self):
        """Nothing armed and nothing playing: the audio task may wait for the next tick (which arms items)."""
        return self._armed is None and (self.player is None or self.segment is None)

    def pump(self):
        """The audio task's step (every few ms): feed I2S, start an armed item at its instant,
        notice the end of a segment at once. Returns the ms the task may sleep."""
        player = self.player
        armed = self._armed
        wait = 200
        starve = False
        if armed is not None:
            now_ms = self._now_ms()
            if now_ms is not None:
                lead = armed.start * 1000 - START_EARLY_MS - now_ms
                if lead <= 0:
                    self._armed = None
                    self.update(armed.start, self._mini_plan(armed), self._safe, False)  # as the tick at the instant would
                    player = self.player
                else:
                    wait = lead
                    # the airing segment gets nothing more: its queue has played out by the instant
                    starve = lead + START_EARLY_MS <= QUEUE_MS and self.segment is not None
        if player is None or self.segment is None:
            return max(1, min(wait, 200))
        if not starve:
            going = player.step()
            if not self.segment.announced and player.written:
                self._announce()
            if not going and not player.active:  # the segment is over: report it and free the relays now
                self.update(self._unix(), self._mini_plan(None), self._safe, False)
        return max(1, min(wait, player.wait_ms() if player.active else 200))

    def _mini_plan(self, armed):
        """The plan items that matter between two ticks: the armed one and the airing one."""
        items = [armed] if armed is not None else []
        on = self.airing
        if on is not None and not isinstance(on, Commanded):
            items.append(on)
        return BroadcastPlan(0, items)

    def _unix(self):
        if self.clock is not None:
            return self.clock.now()
        t = self.hal.time()
        return None if t is None else int(t)

    # ---- the checkpoint on flash --------------------------------------------
    def _checkpoint(self, open_):
        if self.store is None:
            return
        seg = self.segment
        try:
            if open_ and seg is not None and seg.item.src == "clip":
                item = seg.item
                done = seg.at + (self.player.written if self.player is not None else 0)
                self.store.save_json(PLAY_FILE, {"key": item_key(item), "id": item.id, "prio": item.prio,
                                                 "cat": item.cat, "src": item.src, "at": seg.at, "done": done,
                                                 "of": seg.of, "start": seg.start_unix,
                                                 "end": getattr(item, "end", None)})
            else:
                self.store.delete(PLAY_FILE)
        except Exception:
            pass  # a failed checkpoint costs only the resume point after a power cut

    def _restore(self):
        """At boot: a clip that was airing when the power went is reported, and resumes."""
        if self.store is None:
            return
        try:
            cp = self.store.load_json(PLAY_FILE)
        except Exception:
            cp = None
        if not cp:
            return
        try:
            data = {"id": cp["id"], "prio": cp["prio"], "cat": cp["cat"], "src": cp["src"],
                    "samples": cp["done"] - cp["at"], "of": cp["of"], "complete": False, "why": "power_cut"}
            if cp.get("start") is not None:
                data["start"] = int(cp["start"])
                data["secs"] = (cp["done"] - cp["at"]) // 16000
            self.emit("broadcast_interrupted", data)
            key = cp["key"]
            if key and key[0] != "now":
                self._set_progress(key, cp["done"], False)
        except (KeyError, TypeError, ValueError):
            pass
        try:
            self.store.delete(PLAY_FILE)
        except Exception:
            pass

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


"""The node's idea of the wall clock: valid or not, synced or not, and its drift.

States (reported in birth and telemetry):
  synced  - set by the gateway's time service (or NTP) since boot
  rtc     - running on the RTC (DS3231 keeps time through power cuts), not synced yet
  invalid - no trustworthy time: lamps follow the photocell, loudspeakers stay
            silent unless commanded, expiry of commands cannot be judged

Sync is NTP-shaped: the node sends its monotonic ms `t1` in a time request;
the gateway answers with t1, its receive time t2 and send time t3; at t4 the
node knows the round trip and sets time to t3 + half of it.

Which syncs may move the clock (`acceptable`): an answer to the node's own
outstanding request (its t1 echoed, round trip under a minute), or an
unsolicited one that a valid clock judges unexpired. A stale sync (queued
by the broker for hours) or an unsolicited one with no valid clock to
judge it changes nothing; the node then asks for the time itself.
"""
from protocol.messages import CLOCK_INVALID, CLOCK_RTC, CLOCK_SYNCED, VALID_TIME_MAX, VALID_TIME_MIN

RESYNC_S = 6 * 3600
NEAR_RESYNC_S = 600  # with a broadcast near (`broadcast_near`), a sync older than this is renewed
STEP_EVENT_S = 2  # steps larger than this are reported as events
# The ms clock keeps the best sample, as NTP's clock filter does: an answer's error is at most half its
# round trip (the two ways may differ), so a sample only replaces the kept one when its half round trip
# is smaller than the kept one's plus what the crystal may have drifted since (DRIFT_PPM).
DRIFT_PPM = 40
REFINE_RTT_MS = 12  # a kept sample with a longer round trip is refined: another request soon
REFINE_EVERY_MS = 4000
REFINE_MAX = 6  # requests in a row for one refinement
REFINE_LIMIT_MS = 3000
ASKED_KEPT = 4  # recent requests whose answers are still taken
SLOW_RTT_MS = 2000  # a longer round trip only bounds the time: a valid clock within the bounds stays


class NodeClock:
    def __init__(self, hal, uptime):
        self.hal = hal
        self.uptime = uptime
        self.synced_at = None  # uptime ms of the last sync
        self.pending_t1 = None  # ticks of our outstanding time request (echoed as t1 in the answer)
        self.last_step = None
        self.drift_ppm = None
        self._sync_ms = None  # exact Unix ms of the last sync ...
        self._sync_up = None  # ... at this uptime ms
        self.broadcast_near = False  # set by the loudspeaker: an item starts within 15 min
        self._sent = None  # ticks when the pending request left the node (its event waited before)
        self._asked = []  # [[t1, sent ticks or None], ...] of the last ASKED_KEPT requests, oldest first
        self.best_rtt = None  # round trip (ms) of the sample now_ms() stands on; None: to the second only
        self.refines = 0  # requests made to refine it

    def refining(self):
        """True while the ms clock stands on a slow sample (or none) and a few more requests may help."""
        if self.synced_at is None or self.refines >= REFINE_MAX:
            return False
        # (a round trip of seconds is a congested link, or a simulation run many times faster than
        # real time: more requests would only queue behind each other)
        return self.best_rtt is None or REFINE_RTT_MS < self.best_rtt < REFINE_LIMIT_MS

    def _uncertain_ms(self):
        """How far now_ms() may be off: half the kept sample's round trip plus the drift since."""
        if self.best_rtt is None:
            return None
        return self.best_rtt // 2 + (self.uptime.ms() - self._sync_up) * DRIFT_PPM // 1000000

    def now_ms(self):
        """Unix ms, precise to the sync (not rounded to the second like the RTC), or None.

        After a sync: the sync's exact time + uptime elapsed (the crystal, ~20 ppm: 0.4 s in
        6 h, which the resync before a broadcast keeps to a few ms). Before any sync: the RTC."""
        if self._sync_ms is not None:
            return self._sync_ms + (self.uptime.ms() - self._sync_up)
        t = self.hal.time()
        if t is None or not VALID_TIME_MIN <= t <= VALID_TIME_MAX:
            return None
        return int(t * 1000)

    def now(self):
        """Unix seconds as an int, or None when the clock is not valid.

        Always an int: the ESP32's single-precision floats would be 128 s coarse.
        """
        t = self.hal.time()
        if t is None or not VALID_TIME_MIN <= t <= VALID_TIME_MAX:
            return None
        return int(t)

    @property
    def state(self):
        if self.now() is None:
            return CLOCK_INVALID
        return CLOCK_SYNCED if self.synced_at is not None else CLOCK_RTC

    def needs_sync(self):
        if self.synced_at is None:
            return True
        age = self.uptime.ms() - self.synced_at
        if self.broadcast_near and age > NEAR_RESYNC_S * 1000:
            return True
        return age > RESYNC_S * 1000

    def request(self):
        """t1 for a new time request: the ticks now (MicroPython small int, wraps at 2**30)."""
        if self.refining():
            self.refines += 1  # bounded by requests made, not answers got: an answer may never come
        self.pending_t1 = t1 = self.hal.ticks_ms()
        self._sent = None
        # the last few requests stay answerable: on a slow link an answer may come after the next
        # request was made, and its round trip (from its own request) still bounds the time
        asked = self._asked
        asked.append([t1, None])
        if len(asked) > ASKED_KEPT:
            asked.pop(0)
        return t1

    def request_sent(self):
        """The request is going out now (it waited in the event queue since t1): the round trip
        counts from here, so the wait does not skew the two ways apart."""
        if self.pending_t1 is not None and self._sent is None:
            self._sent = self.hal.ticks_ms()
            if self._asked and self._asked[-1][0] == self.pending_t1:
                self._asked[-1][1] = self._sent

    def _answered(self, t1):
        """The [t1, sent] of one of our recent requests, or None."""
        for entry in self._asked:
            if entry[0] == t1:
                return entry
        return None

    def acceptable(self, t1, expires):
        """(ok, why): may a time_sync with this echo and expiry set the clock?"""
        if t1 is not None:
            if self._answered(t1) is None:
                return False, "answers no request of ours (stale or from before a reboot)"
            return True, ""  # one of our recent requests: a slow answer only bounds the time
        now = self.now()
        if now is None:
            return False, "unsolicited, and there is no valid clock to judge its expiry"
        if now > expires:
            return False, "unsolicited and expired %d s ago" % (now - expires)
        return True, ""

    def apply_sync(self, t1, t2, t3):
        """Set the clock from a time_sync answer (t2, t3 in Unix ms; t1 our ticks echo).

        Returns (step in seconds or None, round trip in ms or None). Integer
        arithmetic throughout; the RTC is set to the nearest second (it keeps the
        time through power cuts), now_ms() keeps the exact ms.
        """
        t4 = self.hal.ticks_ms()
        sent = t1
        entry = None if t1 is None else self._answered(t1)
        if entry is not None:
            if entry[1] is not None:
                sent = entry[1]
            # answered: a second answer to it, or an answer to an older request, is stale
            while self._asked and self._asked[0] is not entry:
                self._asked.pop(0)
            self._asked.pop(0)
            if t1 == self.pending_t1:
                self.pending_t1 = None
        rtt = None
        true_ms = t3
        slow = None  # a round trip so long (ms) that the answer only bounds the time: [t3, t3 + slow]
        if t1 is not None:
            total = self.hal.ticks_diff(t4, sent) - (t3 - t2)
            if 0 <= total < SLOW_RTT_MS:
                rtt = total
                true_ms = t3 + rtt // 2
            elif 0 <= total < 86400000:
                slow = total
                if total < 60000:
                    rtt = total
                true_ms = t3 + total // 2  # the best guess, +- half the round trip
            # (else an echo from before a reboot or a wrapped tick: the round trip is unknown)
        before = self.now()
        if slow is not None and before is not None:
            # a valid clock inside the answer's bounds is as good as the answer can tell: left alone
            # (a congested link or a starved simulation delivers answers minutes late; setting the
            # clock to t3, or even to the middle, would step it back and forth by that much)
            cur = before * 1000  # the RTC's second, which the lamps and the plan follow
            if t3 - 1500 <= cur <= t3 + slow + 1500:
                return 0, rtt
            true_ms = t3 if cur < t3 else t3 + slow  # outside them: the smallest step back within
        if t1 is None and before is not None and self.synced_at is not None and before * 1000 >= t3 - 1500:
            return 0, None  # unsolicited: it took an unknown time to come, so it never sets a synced clock back
        true_s = (true_ms + 500) // 1000
        step = None if before is None else true_s - before
        # the filter only judges an answer that agrees with the RTC to the second: a clock that jumped
        # (a failing RTC, a wrong set) is set by the answer whatever its round trip
        kept = self._uncertain_ms() if self.synced_at is not None and before is not None and -1 <= step <= 1 else None
        if kept is not None:
            cur = self.now_ms()  # the true time now is within [t3, t3 + rtt] by this answer
            if rtt is None and abs(cur - t3) <= kept + 2000:
                return 0, None  # unsolicited (no round trip): consistent with the measured clock, which is better
            if rtt is not None and rtt // 2 >= kept and t3 - kept <= cur <= t3 + rtt + kept:
                self.synced_at = self.uptime.ms()  # the kept sample is confirmed: no resync due for a while
                return 0, rtt  # no better than the sample we keep, and consistent with it
        if rtt is not None:
            self.best_rtt = rtt
        else:
            self.best_rtt = None  # the ms are unknown now: refine with requests of our own
            self.refines = 0
        if step is not None and self.synced_at is not None:
            elapsed = (self.uptime.ms() - self.synced_at) // 1000
            if elapsed > 600:
                self.drift_ppm = -step * 1000000 // elapsed
        self.hal.set_time(true_s)
        self.synced_at = self.uptime.ms()
        self._sync_ms = true_ms
        self._sync_up = self.synced_at
        self.last_step = step
        return step, rtt

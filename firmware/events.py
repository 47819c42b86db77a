"""Events numbered (boot_id, seq), buffered while offline, never lost silently.

The queue is bounded; when it is full the oldest event is dropped and
counted, and an `events_dropped` event carrying the count is queued (in
seq order, in a slot kept for it) when publishing resumes, so the gateway
sees the gap and knows why.
"""
from protocol.messages import Event


class EventLog:
    def __init__(self, boot_id, capacity=32):
        self.boot_id = boot_id
        self.capacity = capacity
        self.next_seq = 0
        self.pending = []  # [(seq, encoded bytes, kind)], oldest first
        self.dropped = 0  # dropped since the last report
        self.dropped_total = 0

    def emit(self, kind, data=None, ts=None):
        """Number and queue an event; returns its seq."""
        seq = self.next_seq
        self.next_seq += 1
        payload = Event(self.boot_id, seq, kind, data, ts).encode()
        if len(self.pending) >= self.capacity and kind != "events_dropped":
            self.pending.pop(0)
            self.dropped += 1
            self.dropped_total += 1
        self.pending.append((seq, payload, kind))
        return seq

    def peek(self):
        """The next payload to publish, or None. Reports drops first."""
        if self.dropped:
            count, self.dropped = self.dropped, 0
            self.emit("events_dropped", {"count": count, "total": self.dropped_total})
        return self.pending[0][1] if self.pending else None

    def done(self, payload):
        """`payload` from peek() was acknowledged by the broker (unless it was dropped meanwhile)."""
        if self.pending and self.pending[0][1] is payload:
            self.pending.pop(0)

    def queued(self, kind):
        """Is an event of this kind still waiting, not yet handed to the broker?"""
        for entry in self.pending:
            if entry[2] == kind:
                return True
        return False

    def __len__(self):
        return len(self.pending)

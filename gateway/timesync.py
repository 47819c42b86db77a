"""The gateway's time service: signed time_sync commands answering nodes' requests, after every birth,
and when a node's telemetry shows its clock off (a jumped or drifting RTC)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.clock import Clock
from gateway.commands import CommandService
from protocol import commands as ops

TIME_SYNC_EXPIRY_S = 30  # a time answer older than this is worthless to the node


class TimeService:
    def __init__(self, *, clock: Clock, commands: CommandService, log: Callable[[str], None]) -> None:
        self.clock = clock
        self.commands = commands
        self.log = log

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def answer(self, node_id: str, t1: int, received_ms: int) -> None:
        """A node asked (t1: its monotonic ms): NTP-shaped answer, t2 received, t3 sent."""
        self.commands.create(node_id, ops.TIME_SYNC, {"t1": t1, "t2": received_ms, "t3": self._now_ms()},
                             expires_s=TIME_SYNC_EXPIRY_S)

    def push(self, node_id: str) -> None:
        """Unsolicited: the node judges it by its expiry."""
        now_ms = self._now_ms()
        self.commands.create(node_id, ops.TIME_SYNC, {"t1": None, "t2": now_ms, "t3": now_ms},
                             expires_s=TIME_SYNC_EXPIRY_S)

    def on_birth(self, node_id: str, _state: Any) -> None:
        self.push(node_id)

    def on_clock_skew(self, node_id: str, skew_s: float) -> None:
        self.log("clock of %s is %+.0f s off: sending the time" % (node_id, skew_s))
        self.push(node_id)

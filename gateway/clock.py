"""The gateway's wall clock, injectable so the simulator can run it faster than real time."""
from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What the gateway needs of a clock: Unix seconds now, and how fast it runs against real time."""

    speed: float

    def now(self) -> float: ...


class SystemClock:
    speed = 1.0

    def now(self) -> float:
        """Unix seconds (float)."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        await asyncio.sleep(seconds)


class ScaledClock:
    """Starts at `start` and runs `speed` times faster than real time (the simulator's)."""

    def __init__(self, start: float, speed: float = 1.0, epoch: float | None = None) -> None:
        self.start = float(start)
        self.speed = float(speed)
        self.epoch = time.time() if epoch is None else epoch  # wall time at `start`: shared with node hosts

    def now(self) -> float:
        return self.start + (time.time() - self.epoch) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)


class ManualClock:
    """Moves only when told (tests)."""

    speed = 1.0

    def __init__(self, start: float) -> None:
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(min(seconds, 0.01))  # time moves by advance(); just let others run

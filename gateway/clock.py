"""The gateway's wall clock, injectable so the simulator can run it faster than real time."""
import asyncio
import time


class SystemClock:
    speed = 1.0

    def now(self):
        """Unix seconds (float)."""
        return time.time()

    async def sleep(self, seconds):
        """Wait `seconds` of this clock's time."""
        await asyncio.sleep(seconds)


class ScaledClock:
    """Starts at `start` and runs `speed` times faster than real time (the simulator's)."""

    def __init__(self, start, speed=1.0, epoch=None):
        self.start = float(start)
        self.speed = float(speed)
        self.epoch = time.time() if epoch is None else epoch  # wall time at `start`: shared with node hosts

    def now(self):
        return self.start + (time.time() - self.epoch) * self.speed

    async def sleep(self, seconds):
        await asyncio.sleep(seconds / self.speed)


class ManualClock:
    """Moves only when told (tests)."""

    def __init__(self, start):
        self.t = float(start)

    def now(self):
        return self.t

    speed = 1.0

    def advance(self, seconds):
        self.t += seconds

    async def sleep(self, seconds):
        await asyncio.sleep(min(seconds, 0.01))  # time moves by advance(); just let others run

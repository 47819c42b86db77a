"""The chip's part of the bootstrap: `python -m hardware build` appends this to firmware/boot.py's
source (the bundle's bootstrap.py, which `flash` writes to /main.py), with the line that starts it:

    if __name__ == "__main__":
        run("/", Esp32Boot())

Kept apart so that firmware/ reaches the chip only through hardware/; never imported on its own.
"""


class Esp32Boot:
    """A one-shot timer and a reset, from `machine` (imported when used: the unix port has none)."""

    def one_shot(self, ms, fn):
        from machine import Timer

        timer = Timer(0)
        timer.init(mode=Timer.ONE_SHOT, period=ms, callback=lambda _t: fn())
        return timer

    def reset(self):
        import machine

        machine.reset()

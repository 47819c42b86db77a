"""SoftBoard's scan for the first loud sample, as viper (MicroPython only; see softboard._first_loud)."""
import micropython


@micropython.viper
def first_loud(buf: ptr8, n: int) -> int:
    """Index of the first int16 LE sample of buf[0:2n] with |x| >= 4096, or -1."""
    i = 0
    while i < n:
        h = int(buf[2 * i + 1])
        if (h >= 16 and h <= 239) or (h == 240 and int(buf[2 * i]) == 0):
            return i
        i += 1
    return -1

"""The node's fast IMA-ADPCM block decoder (MicroPython only: `@micropython.viper`).

Imported by firmware/audio.py only where `micropython.viper` exists; the
same samples as protocol/ima.py (tests/firmware/test_audio_decoder.py).
`steps` is the step table as uint16 LE, `adjust` the index table + 8.
"""
import micropython


@micropython.viper
def decode(buf: ptr8, boff: int, nbytes: int, out: ptr16, first: int, gain: int, steps: ptr16, adjust: ptr8) -> int:
    sample = buf[boff] | (buf[boff + 1] << 8)
    if sample >= 32768:
        sample -= 65536
    index = int(buf[boff + 2])
    if index > 88:
        index = 88
    o = first
    out[o] = (sample * gain) >> 8
    o += 1
    i = boff + 4
    end = boff + nbytes
    while i < end:
        byte = int(buf[i])
        k = 0
        while k < 2:
            code = byte & 15
            byte = byte >> 4
            diff = ((2 * (code & 7) + 1) * int(steps[index])) >> 3
            if code & 8:
                sample -= diff
                if sample < -32768:
                    sample = -32768
            else:
                sample += diff
                if sample > 32767:
                    sample = 32767
            index += int(adjust[code]) - 8
            if index < 0:
                index = 0
            elif index > 88:
                index = 88
            out[o] = (sample * gain) >> 8
            o += 1
            k += 1
        i += 1
    return o - first

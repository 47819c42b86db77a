"""The node's audio player: IMA-ADPCM blocks from a source, decoded into PCM, out through I2S.

Decoder: `Decoder().decode(buf, boff, nbytes, out, offset, gain)` expands one block
(docs/audio.md section 1: 4-byte header, low nibble first) into int16 LE at
`out[offset:]` with the volume applied as it goes (`sample * gain >> 8`,
section 2). Under MicroPython it is `@micropython.viper` (ptr8/ptr16
loops, ~50x faster than bytecode); under CPython the plain path gives the
same samples (both are checked against protocol/ima.py).

Player: one I2S session per segment. `start(source, gain, at_ms, skip)`
arms it; `step()` (called every few ms by the node's audio task, never
blocks) waits for the instant `at_ms` (wall ms), then keeps QUEUE_MS of
audio queued in the HAL's DMA queue, decoding BLOCKS blocks at a time into
preallocated buffers. `stop()` closes the session (the HAL plays the
queued tail out, so every written sample plays); `written` is then the
segment's exact sample count. Memory: 2 blocks in (512 B) + 1010 samples
out (2020 B), allocated once per Player.
"""
import struct

from protocol.ima import BLOCK_BYTES, BLOCK_SAMPLES, INDEX_TABLE, STEP_TABLE

RATE = 16000
BLOCKS = 2  # blocks read and decoded per chunk
QUEUE_MS = 250  # audio kept queued in the DMA queue
START_EARLY_MS = 150  # a timed start opens the I2S this early with that much silence ahead (hal audio_open
# delay_ms): the first sample leaves the DAC at the instant whenever the audio task gets to run in between

# step table as uint16 LE, index table as bytes offset by 8 (viper reads them through ptr16 / ptr8)
_STEPS = struct.pack("<89H", *STEP_TABLE)
_INDEX = bytes([v + 8 for v in INDEX_TABLE])


def gain256(item_vol, master_vol):
    """docs/audio.md section 2: 256 at 100 % x 100 %."""
    return item_vol * master_vol * 256 // 10000


def samples_in(nbytes):
    """Samples a block of nbytes holds (a short last block holds fewer)."""
    return 1 + 2 * (nbytes - 4) if nbytes >= 4 else 0


def decode_plain(buf, boff, nbytes, out, offset, gain):
    """Pure-Python decode of the block at buf[boff:boff + nbytes] into out (int16 LE) at byte
    offset; returns the samples written."""
    sample = buf[boff] | (buf[boff + 1] << 8)
    if sample >= 32768:
        sample -= 65536
    index = buf[boff + 2]
    if index > 88:
        index = 88
    steps = STEP_TABLE
    adjust = INDEX_TABLE
    v = (sample * gain) >> 8
    out[offset] = v & 255
    out[offset + 1] = (v >> 8) & 255
    o = offset + 2
    for i in range(boff + 4, boff + nbytes):
        byte = buf[i]
        for code in (byte & 15, byte >> 4):
            diff = ((2 * (code & 7) + 1) * steps[index]) >> 3
            if code & 8:
                sample -= diff
                if sample < -32768:
                    sample = -32768
            else:
                sample += diff
                if sample > 32767:
                    sample = 32767
            index += adjust[code]
            if index < 0:
                index = 0
            elif index > 88:
                index = 88
            v = (sample * gain) >> 8
            out[o] = v & 255
            out[o + 1] = (v >> 8) & 255
            o += 2
    return (o - offset) >> 1


def _viper_decoder():
    """firmware/ima_viper.decode under MicroPython with viper; None elsewhere."""
    try:
        from firmware import ima_viper
    except Exception:  # CPython (no micropython module), or a port built without viper
        return None
    return ima_viper.decode


class Decoder:
    """decode(buf, boff, nbytes, out, offset, gain) with the fastest path this interpreter has."""

    def __init__(self, fast=True):
        self._viper = _viper_decoder() if fast else None
        self.fast = self._viper is not None

    def decode(self, buf, boff, nbytes, out, offset, gain):
        """The block at buf[boff:boff + nbytes] into out at byte offset (even); returns samples."""
        if nbytes < 4:
            return 0
        if self._viper is not None:
            return self._viper(buf, boff, nbytes, out, offset >> 1, gain, _STEPS, _INDEX)
        return decode_plain(buf, boff, nbytes, out, offset, gain)


# player states
IDLE = 0
WAITING = 1  # armed: the first sample goes out at at_ms
PLAYING = 2
DONE = 3  # the source gave all it will and the queue has played out (or I2S failed)


class Player:
    """One I2S segment at a time; see the module doc. All times are wall ms from `now_ms()`."""

    def __init__(self, hal, now_ms, decoder=None):
        self.hal = hal
        self.now_ms = now_ms  # () -> wall ms (the synced clock), or None
        self.decoder = decoder or Decoder()
        self.inbuf = bytearray(BLOCKS * BLOCK_BYTES)
        self.pcm = bytearray(BLOCKS * BLOCK_SAMPLES * 2)
        self._pcm_len = 0  # bytes of pcm decoded
        self._pcm_pos = 0  # bytes of them already accepted by the HAL
        self.source = None
        self.state = IDLE
        self.gain = 256
        self.at_ms = None
        self.skip = 0  # samples still to drop (resume inside a block)
        self.limit = None  # samples this segment may still write (the clip's end)
        self.written = 0  # samples accepted by the HAL this segment
        self._eof = False  # the source has no more: what is queued plays out, then DONE
        self.opened = False
        self.failed = False  # audio_open raised: "no_audio"
        self.error = None
        self.bad = False  # the source failed to read or decode: "clip_bad"
        self.started_ms = None  # wall ms when the first sample was written
        self.until_ms = None
        self.cut = False  # the window closed before the source ended

    # ---- control -----------------------------------------------------------
    def start(self, source, gain, at_ms=None, skip=0, limit=None, until_ms=None):
        """Arm a segment: `source` (readinto/ended/lost/close), first sample at wall `at_ms`
        (None: at once), `skip` samples dropped first, at most `limit` samples written, and
        none that would leave the DAC after wall `until_ms` (the item's window end)."""
        self.stop()
        self.until_ms = until_ms
        self.cut = False
        self.source = source
        self.gain = gain
        self.at_ms = at_ms
        self.skip = skip
        self.limit = limit
        self.written = 0
        self._pcm_len = self._pcm_pos = 0
        self._eof = False
        self.failed = self.bad = False
        self.started_ms = None
        self.state = WAITING

    def stop(self):
        """End the segment: the queued tail plays out (HAL), the source is closed."""
        if self.opened:
            self.opened = False
            try:
                self.hal.audio_close()
            except Exception:
                pass
        if self.source is not None:
            try:
                self.source.close()
            except Exception:
                pass
            self.source = None
        self.state = IDLE

    def set_gain(self, gain):
        self.gain = gain  # applies from the next decoded chunk

    @property
    def active(self):
        return self.state in (WAITING, PLAYING)

    @property
    def finished(self):
        """The source gave all it will and every written sample has played."""
        return self.state == DONE

    def wait_ms(self):
        """How long the audio task may sleep before the next step."""
        if self.state == WAITING and self.at_ms is not None:
            now = self.now_ms()
            if now is not None and self.at_ms - now > START_EARLY_MS:
                return min(1000, self.at_ms - now - START_EARLY_MS)
            return 1
        if self.state == PLAYING:
            return 20
        return 100

    # ---- the audio task's step --------------------------------------------
    def step(self):
        """Feed the DMA queue; never blocks. Returns True while the segment goes on."""
        if self.state == WAITING:
            if not self._begin():
                return self.state == WAITING
        if self.state != PLAYING:
            return False
        hal = self.hal
        while True:
            queued = hal.audio_queued_ms()
            if queued >= QUEUE_MS:
                break
            if self._pcm_pos >= self._pcm_len:
                if self._eof:
                    break
                try:
                    if not self._fill():
                        break
                except Exception as exc:  # a read error or a corrupt block: the segment ends here
                    self.error = repr(exc)[:60]
                    self.bad = self._eof = True
                    break
            end = self._pcm_len
            if self.until_ms is not None:
                now = self.now_ms()
                room = ((self.until_ms - now - queued) * (RATE // 1000)) * 2 if now is not None else end
                if room <= 0:
                    self._eof = self.cut = True
                    self._pcm_pos = self._pcm_len
                    break
                end = min(end, self._pcm_pos + room)
            n = hal.audio_write(memoryview(self.pcm)[self._pcm_pos:end])
            if not n:
                break
            self._pcm_pos += n
            self.written += n >> 1
        if self._eof and self._pcm_pos >= self._pcm_len and hal.audio_queued_ms() == 0:
            self.state = DONE
        return self.state == PLAYING

    def _begin(self):
        hal = self.hal
        delay = 0
        if self.at_ms is not None:
            now = self.now_ms()
            if now is not None and now < self.at_ms - START_EARLY_MS:
                return False
            if now is not None and now < self.at_ms:
                delay = self.at_ms - now  # silence first: the first sample leaves at at_ms exactly
        if hal.audio_queued_ms() > 0:
            return False  # the previous segment's tail is still playing
        try:
            if delay:
                hal.audio_open(RATE, 16, 1, delay)
            else:
                hal.audio_open(RATE, 16, 1)
        except Exception as exc:
            self.error = repr(exc)[:60]
            self.failed = True
            self.state = DONE
            return False
        self.opened = True
        self.state = PLAYING
        self.started_ms = self.now_ms() + delay if delay else self.now_ms()
        return True

    def _fill(self):
        """Read and decode the next chunk into pcm; False when nothing is available now."""
        src = self.source
        while True:
            if self.limit is not None and self.limit <= 0:
                self._eof = True
                return False
            n = src.readinto(self.inbuf)
            if not n:
                if src.ended or getattr(src, "lost", False):
                    self._eof = True
                return False
            out = 0
            pos = 0
            while pos < n:
                size = min(BLOCK_BYTES, n - pos)
                out += self.decoder.decode(self.inbuf, pos, size, self.pcm, out * 2, self.gain)
                pos += size
            start = 0
            if self.skip:
                start = min(self.skip, out)
                self.skip -= start
            if self.limit is not None:
                if out - start > self.limit:
                    out = start + self.limit
                self.limit -= out - start
            if out > start:
                self._pcm_pos = start * 2
                self._pcm_len = out * 2
                return True

"""IMA-ADPCM: the node playback format's codec, reference implementation.

Pure and portable (MicroPython and CPython): the gateway uses it to know
what PCM a clip decodes to (ground truth checks), tests use `encode` to
make clips without ffmpeg. The node decodes with its fast version in
firmware/audio.py, which must give the very same samples.

Format (docs/audio.md): 16 kHz mono, blocks of BLOCK_BYTES = 256 bytes,
each a 4-byte header (first sample int16 LE, step index, reserved byte)
and 252 bytes of 4-bit codes, low nibble first: 1 + 504 = 505 samples.
A WAV file of the format is RIFF / "fmt " (tag 0x11) / "fact" / "data".
"""
import struct

RATE = 16000
BLOCK_BYTES = 256
BLOCK_SAMPLES = 505
WAVE_FORMAT_IMA_ADPCM = 0x11

INDEX_TABLE = (-1, -1, -1, -1, 2, 4, 6, 8, -1, -1, -1, -1, 2, 4, 6, 8)
STEP_TABLE = (
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45,
    50, 55, 60, 66, 73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230,
    253, 279, 307, 337, 371, 408, 449, 494, 544, 598, 658, 724, 796, 876, 963,
    1060, 1166, 1282, 1411, 1552, 1707, 1878, 2066, 2272, 2499, 2749, 3024, 3327,
    3660, 4026, 4428, 4871, 5358, 5894, 6484, 7132, 7845, 8630, 9493, 10442,
    11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385, 24623, 27086, 29794,
    32767,
)


class FormatError(ValueError):
    """Not a clip of the node playback format; the message says why."""


def _step(code, sample, index):
    # ffmpeg's expansion ((2d + 1) * step / 8): its encoder predicts with it, so clips decode exactly
    diff = ((2 * (code & 7) + 1) * STEP_TABLE[index]) >> 3
    if code & 8:
        sample -= diff
    else:
        sample += diff
    if sample > 32767:
        sample = 32767
    elif sample < -32768:
        sample = -32768
    index += INDEX_TABLE[code]
    if index < 0:
        index = 0
    elif index > 88:
        index = 88
    return sample, index


def decode_block(block, out=None):
    """One block (bytes-like, BLOCK_BYTES or a shorter last block) -> list of int samples."""
    if len(block) < 4:
        raise FormatError("an IMA-ADPCM block needs its 4-byte header")
    sample = block[0] | (block[1] << 8)
    if sample >= 32768:
        sample -= 65536
    index = block[2]
    if index > 88:
        raise FormatError("bad step index %d in a block header" % index)
    if out is None:
        out = []
    out.append(sample)
    for i in range(4, len(block)):
        byte = block[i]
        sample, index = _step(byte & 15, sample, index)
        out.append(sample)
        sample, index = _step(byte >> 4, sample, index)
        out.append(sample)
    return out


def decode(data):
    """All blocks of `data` (the bytes of a clip's data chunk) -> list of int samples."""
    out = []
    for pos in range(0, len(data), BLOCK_BYTES):
        decode_block(data[pos:pos + BLOCK_BYTES], out)
    return out


def pcm_bytes(samples, gain256=256):
    """int16 LE bytes of `samples` scaled by gain256 / 256 (the node's volume rule)."""
    out = bytearray(2 * len(samples))
    for i, s in enumerate(samples):
        if gain256 != 256:
            s = (s * gain256) >> 8
        struct.pack_into("<h", out, 2 * i, s)
    return bytes(out)


def encode(samples):
    """int samples (16 kHz mono) -> the data chunk bytes; the last block padded with zeros."""
    out = bytearray()
    index = 0
    n = len(samples)
    for start in range(0, max(n, 1), BLOCK_SAMPLES):
        chunk = list(samples[start:start + BLOCK_SAMPLES])
        chunk += [0] * (BLOCK_SAMPLES - len(chunk))
        predicted = max(-32768, min(32767, int(chunk[0])))
        out += struct.pack("<hBB", predicted, index, 0)
        codes = []
        for s in chunk[1:]:
            diff = int(s) - predicted
            code = min(7, (abs(diff) * 4) // STEP_TABLE[index])
            if diff < 0:
                code |= 8
            predicted, index = _step(code, predicted, index)
            codes.append(code)
        for i in range(0, len(codes), 2):
            out.append(codes[i] | (codes[i + 1] << 4))
    return bytes(out)


def wav(data, samples=None):
    """A complete clip file (the node format) around a data chunk of blocks."""
    if samples is None:
        samples = (len(data) // BLOCK_BYTES) * BLOCK_SAMPLES
    fmt = struct.pack("<HHIIHHHH", WAVE_FORMAT_IMA_ADPCM, 1, RATE, RATE * BLOCK_BYTES // BLOCK_SAMPLES,
                      BLOCK_BYTES, 4, 2, BLOCK_SAMPLES)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"fact" + struct.pack("<II", 4, samples)
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def parse_header(head):
    """(data offset, data length, samples) from the first bytes of a clip file (>= 512 of them
    or the whole file); FormatError when it is not the node format."""
    if len(head) < 12 or head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise FormatError("not a WAV (RIFF/WAVE) file")
    pos = 12
    fmt_ok = False
    samples = None
    while pos + 8 <= len(head):
        cid = bytes(head[pos:pos + 4])
        size = struct.unpack("<I", head[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(head):
                raise FormatError("fmt chunk too short")
            tag, channels, rate = struct.unpack("<HHI", head[body:body + 8])
            align = struct.unpack("<H", head[body + 12:body + 14])[0]
            if tag != WAVE_FORMAT_IMA_ADPCM or channels != 1 or rate != RATE or align != BLOCK_BYTES:
                raise FormatError("not IMA-ADPCM 16 kHz mono with 256-byte blocks")
            fmt_ok = True
        elif cid == b"fact" and size >= 4 and body + 4 <= len(head):
            samples = struct.unpack("<I", head[body:body + 4])[0]
        elif cid == b"data":
            if not fmt_ok:
                raise FormatError("data before fmt")
            blocks = (size + BLOCK_BYTES - 1) // BLOCK_BYTES
            if samples is None or samples > blocks * BLOCK_SAMPLES:
                samples = blocks * BLOCK_SAMPLES
            return body, size, samples
        pos = body + size + (size & 1)
    raise FormatError("no data chunk in the first %d bytes" % len(head))

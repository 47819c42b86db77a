"""The node's IMA-ADPCM decoder (firmware/audio.py) gives exactly protocol/ima.py's samples,
with the volume rule of docs/audio.md section 2 (portable: viper under MicroPython)."""
import struct

from firmware.audio import Decoder, decode_plain, gain256, samples_in
from protocol import ima


def _rng(seed):
    x = [seed or 1]

    def byte():
        v = x[0]
        v ^= (v << 13) & 0xFFFFFFFF
        v ^= v >> 17
        v ^= (v << 5) & 0xFFFFFFFF
        x[0] = v
        return v & 255

    return byte


def _random_blocks(count, seed):
    rnd = _rng(seed)
    out = bytearray()
    for k in range(count):
        block = bytearray(rnd() for _ in range(ima.BLOCK_BYTES))
        block[2] = block[2] % 89  # a valid step index
        out += block
    return bytes(out)


def _expected(block, gain):
    return ima.pcm_bytes(ima.decode_block(block), gain)


def _decode_all(decoder, data, gain):
    out = bytearray(ima.BLOCK_SAMPLES * 2)
    got = bytearray()
    for pos in range(0, len(data), ima.BLOCK_BYTES):
        size = min(ima.BLOCK_BYTES, len(data) - pos)
        n = decoder(data, pos, size, out, 0, gain)
        assert n == samples_in(size)
        got += out[:2 * n]
    return bytes(got)


def _decoders():
    fast = Decoder()
    return [("plain", decode_plain), ("fast" if fast.fast else "fallback", fast.decode)]


def test_random_blocks_decode_exactly_at_every_gain():
    data = _random_blocks(12, 12345)
    out = bytearray(1010)
    for gain in (256, 255, 200, 128, 65, 1, 0):
        for pos in range(0, len(data), 256):
            want = _expected(data[pos:pos + 256], gain)
            for name, dec in _decoders():
                assert dec(data, pos, 256, out, 0, gain) == 505
                assert out == want, (name, gain, pos)


def test_edge_values_clamp_like_the_reference():
    blocks = []
    # full-scale positive start, largest steps climbing: clamps at 32767
    blocks.append(struct.pack("<hBB", 32767, 88, 0) + bytes([0x77] * 252))
    # full-scale negative start, largest negative codes: clamps at -32768
    blocks.append(struct.pack("<hBB", -32768, 88, 0) + bytes([0xFF] * 252))
    # index at 0 going down, alternating signs, a bad header index (> 88 is clamped)
    blocks.append(struct.pack("<hBB", 0, 0, 0) + bytes([0x08, 0x80] * 126))
    blocks.append(struct.pack("<hBB", -1, 88, 0) + bytes([0x70, 0x07] * 126))
    for block in blocks:
        for gain in (256, 131):
            want = _expected(block, gain)
            for name, dec in _decoders():
                out = bytearray(1010)
                assert dec(block, 0, 256, out, 0, gain) == 505
                assert bytes(out) == want, (name, gain)


def test_short_last_block_and_offsets():
    samples = [((i * 37) % 2000) - 1000 for i in range(700)]
    data = ima.encode(samples)[:256 + 100]  # one whole block and a 100-byte tail
    want = ima.pcm_bytes(ima.decode(data))
    for name, dec in _decoders():
        assert _decode_all(dec, data, 256) == want, name
        # decoding into the middle of a buffer leaves the rest untouched
        out = bytearray(b"\x55" * 1100)
        assert dec(data, 256, 100, out, 40, 256) == samples_in(100)
        assert out[:40] == b"\x55" * 40 and bytes(out[40:40 + 2 * samples_in(100)]) == want[1010:]
        assert out[40 + 2 * samples_in(100):] == b"\x55" * (1100 - 40 - 2 * samples_in(100))


def test_the_fast_path_is_viper_under_micropython():
    import sys

    assert Decoder().fast == (sys.implementation.name == "micropython")


def test_gain_rule():
    assert gain256(100, 100) == 256 and gain256(80, 100) == 204 and gain256(50, 50) == 64 and gain256(0, 90) == 0

"""The audio tests' expected-PCM helper agrees with the reference decoder (CPython: it holds
whole clips in memory)."""
from tests.firmware.test_node_audio import NEWS, _rig
from tests.firmware.audio_rig import pcm_sha


def test_the_expected_hash_helper_agrees_with_the_reference_decoder():
    import hashlib
    from binascii import hexlify

    from protocol import ima

    rig = _rig(NEWS - 5, [], clips=(("ee" * 32, 1300),))
    try:
        name = "c-" + "ee" * 8 + ".ima"
        with rig.board.fs.open(name, "rb") as f:
            data = f.read()
        pcm = ima.pcm_bytes(ima.decode(data)[:1300], 100)
        assert pcm_sha(rig.board.fs, name, 1300, gain=100) == hexlify(hashlib.sha256(pcm).digest()).decode()
        part = pcm[2 * 600:2 * 1100]
        assert pcm_sha(rig.board.fs, name, 1300, gain=100, first=600, count=500) == hexlify(
            hashlib.sha256(part).digest()).decode()
    finally:
        rig.close()

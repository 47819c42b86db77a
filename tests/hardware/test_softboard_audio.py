"""SoftBoard's I2S model (docs/audio.md section 3): a DMA queue draining at the sample rate on
the board's clock, and the `pcm` ground truth of what really left the DAC (portable)."""
import hashlib
from binascii import hexlify

from hardware.softboard import AUDIO_QUEUE_BYTES, SimClock, SoftBoard

T0 = 1_780_000_000


def _board():
    records = []
    clock = SimClock(T0)
    board = SoftBoard(clock, truth=lambda t, what, value: records.append((t, what, value)))
    return board, clock, records


def _pcm(records):
    return [v for _, what, v in records if what == "pcm"]


def _samples(n, start=0, loud_at=None):
    out = bytearray(2 * n)
    for i in range(n):
        v = ((start + i) * 7) % 1000 - 500
        if loud_at is not None and i == loud_at:
            v = -4096
        out[2 * i] = v & 255
        out[2 * i + 1] = (v >> 8) & 255
    return bytes(out)


def _sha(data):
    return hexlify(hashlib.sha256(data).digest()).decode()


def test_the_queue_takes_its_room_only_and_drains_at_the_rate():
    board, clock, records = _board()
    board.audio_open(16000, 16, 1)
    data = _samples(8000)  # 16000 bytes: twice the queue
    assert board.audio_write(data) == AUDIO_QUEUE_BYTES
    assert board.audio_write(data) == 0  # full: nothing more, no blocking
    assert board.audio_queued_ms() == 256
    clock.advance(0.1)  # 1600 samples left the DAC
    assert board.audio_queued_ms() == 156
    assert board.audio_write(data[AUDIO_QUEUE_BYTES:]) == 3200
    clock.advance(1.0)
    assert board.audio_queued_ms() == 0
    assert _pcm(records) == []  # still open: the session's record comes at close
    board.audio_close()
    (rec,) = _pcm(records)
    played = data[:AUDIO_QUEUE_BYTES + 3200]
    assert rec["samples"] == len(played) // 2 and rec["sha256"] == _sha(played)
    assert rec["start"] == T0 and abs(rec["end"] - (T0 + len(played) / 2 / 16000)) < 1e-6
    assert rec["underruns"] == 0 and rec["gap_ms"] == 0 and rec["rate"] == 16000 and rec["first_loud"] is None


def test_close_lets_the_tail_play_out_then_records():
    board, clock, records = _board()
    board.audio_open(16000, 16, 1)
    data = _samples(3200)
    assert board.audio_write(data) == 6400
    clock.advance(0.05)
    board.audio_close()
    assert _pcm(records) == [] and board.audio_queued_ms() == 150
    assert board.audio_write(data) == 0  # closed: takes nothing
    clock.advance(0.2)
    board.service()
    (rec,) = _pcm(records)
    assert rec["samples"] == 3200 and rec["sha256"] == _sha(data) and abs(rec["end"] - rec["start"] - 0.2) < 1e-6


def test_underruns_and_gap_and_first_loud():
    board, clock, records = _board()
    board.audio_open(16000, 16, 1)
    a, b = _samples(1600), _samples(1600, 1600, loud_at=400)
    board.audio_write(a)  # 100 ms
    clock.advance(0.35)  # ran dry at 0.1: 250 ms of silence
    board.audio_write(b)
    clock.advance(0.2)
    board.audio_close()
    (rec,) = _pcm(records)
    assert rec["underruns"] == 1 and rec["gap_ms"] == 250
    assert rec["samples"] == 3200 and rec["sha256"] == _sha(a + b)
    assert abs(rec["first_loud"] - (T0 + 0.35 + 400 / 16000)) < 1e-6
    assert abs(rec["end"] - (T0 + 0.45)) < 1e-6


def test_a_power_cut_records_only_what_played():
    board, clock, records = _board()
    board.audio_open(16000, 16, 1)
    data = _samples(4000)
    board.audio_write(data)
    clock.advance(0.125)  # 2000 samples played; 2000 still queued
    board.power_cut()
    (rec,) = _pcm(records)
    assert rec["samples"] == 2000 and rec["sha256"] == _sha(data[:4000])
    clock.advance(1.0)
    board.power_on()
    assert len(_pcm(records)) == 1 and board.audio_queued_ms() == 0


def test_a_session_that_played_nothing_leaves_no_record_and_wrap_around_is_exact():
    board, clock, records = _board()
    board.audio_open(16000, 16, 1)
    board.audio_close()
    assert _pcm(records) == []
    board.audio_open(16000, 16, 1)
    sent = hashlib.sha256()
    total = 0
    pos = 0
    for _ in range(40):  # 3000-byte writes every 90 ms (96 ms of audio): the ring wraps many times
        chunk = _samples(1500, pos)
        n = board.audio_write(chunk)
        sent.update(chunk[:n])
        total += n
        pos += n // 2
        clock.advance(0.09)
    clock.advance(1.0)
    board.audio_close()
    (rec,) = _pcm(records)
    assert rec["samples"] == total // 2 and rec["sha256"] == hexlify(sent.digest()).decode() and rec["underruns"] == 0


def test_an_opening_silence_places_the_first_sample_whenever_it_is_written():
    """audio_open(delay_ms): the DAC plays that much silence first (zeros the driver queued, taking room),
    so the first sample leaves at open + delay whether it was written at once or just before."""
    for write_after in (0.0, 0.09, 0.149):
        board, clock, records = _board()
        board.audio_open(16000, 16, 1, 150)
        assert board.audio_queued_ms() == 150  # the silence is queued
        clock.advance(write_after)
        data = _samples(1600)
        room = AUDIO_QUEUE_BYTES - int((0.150 - write_after) * 16000) * 2
        assert board.audio_write(data) == min(len(data), room)
        written = min(len(data), room)
        clock.advance(1.0)
        board.audio_close()
        clock.advance(0.1)
        (pcm,) = _pcm(records)
        assert abs(pcm["start"] - (T0 + 0.150)) < 1e-6  # the silence is not part of the session
        assert pcm["samples"] == written // 2 and pcm["sha256"] == _sha(data[:written])
        assert pcm["underruns"] == 0

"""Vietnamese text as read aloud (gateway/audio/vi_text.py): golden pairs, read by hand.

tests/gateway/data/vi_text_golden.jsonl holds [written, spoken] pairs; each
spoken line was checked by a reader: commune abbreviations, hours and hour
ranges, emergency numbers digit by digit, dates, money, phone numbers, units.
"""
import json
from pathlib import Path

import pytest

from gateway.audio import vi_text
from gateway.audio.vi_text import commune_rules, normalize_vi

GOLDEN = [tuple(json.loads(line)) for line in
          (Path(__file__).parent / "data" / "vi_text_golden.jsonl").read_text(encoding="utf-8").splitlines() if line]


def test_the_golden_file_covers_the_issue():
    assert len(GOLDEN) >= 25
    assert ("Lúc 17h30 ngày 2/9, UBND xã...",
            "Lúc mười bảy giờ ba mươi ngày hai tháng chín, ủy ban nhân dân xã...") in GOLDEN


@pytest.mark.parametrize("written,spoken", GOLDEN, ids=[w[:40] for w, _ in GOLDEN])
def test_golden(written, spoken):
    out, used_g2p = normalize_vi(written)
    assert used_g2p, "g2p-hamster is a dependency (pyproject.toml): it must take part"
    assert out == spoken


def test_lines_stay_lines_and_each_ends_with_a_pause():
    out, _ = normalize_vi("Thông báo khẩn\r\n\r\nCắt điện 7h-9h\nGọi 115 nếu cần")
    assert out.split("\n") == ["Thông báo khẩn.", "Cắt điện bảy giờ đến chín giờ.", "Gọi một một năm nếu cần."]


def test_without_g2p_hamster_the_commune_rules_still_apply(monkeypatch):
    monkeypatch.setattr(vi_text, "_g2p", lambda: None)
    out, used = normalize_vi("Lúc 17h30, UBND và BCH QS xã họp về ANTT; gọi 113.")
    assert used is False
    assert out == "Lúc mười bảy giờ ba mươi, ủy ban nhân dân và ban chỉ huy quân sự xã họp về an ninh trật tự; " \
                  "gọi một một ba."


def test_rules_leave_what_is_not_theirs():
    # not an hour (25h, 20g of salt), not an emergency number (inside a phone number, 1130), not an abbreviation
    assert commune_rules("25h, 0243.113.456, 1130, Ca sĩ, UBNDX") == "25h, 0243.113.456, 1130, Ca sĩ, UBNDX"
    assert commune_rules("7h45-9h") == "bảy giờ bốn mươi lăm đến chín giờ"
    assert commune_rules("24h") == "hai mươi bốn giờ" and commune_rules("21h05") == "hai mươi mốt giờ năm phút"

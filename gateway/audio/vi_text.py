"""Vietnamese text as it should be read aloud, before text-to-speech.

espeak-ng alone spells "UBND" as English letters and says "h" inside "17h30".
Two stages:

1. Our own rules, first, for what a commune writes and the general normaliser
   gets wrong: commune abbreviations (ABBREVIATIONS: ANTT, UBND, PCCC, BCH QS,
   ...), road names before a number (ĐT 395 = đường tỉnh, QL1A = quốc lộ),
   hours ("17h30", "7h") and hour ranges ("7h-11h" -> "bảy giờ đến mười một
   giờ"; g2p-hamster 0.2.8 gives "bảy h-11 h"), and the emergency numbers
   111-115 read digit by digit ("một một ba"; the general reader says "một
   trăm mười ba").
2. g2p-hamster 0.2.8 (pinned; its rule layer `t0.pipeline.normalize`, stdlib
   only, deterministic) for the general part: dates, numbers, money, phone
   numbers, units, its own list of abbreviations. It keeps case and
   punctuation as written (it only lowercases what it expands itself, which
   is why our table runs first). If it is missing or fails on a text, stage 1's
   text goes on as it is (logged by the caller through `normalize_vi`'s
   `used_g2p` flag).

Line breaks are kept: each line is read on its own, and a line without an end
mark gets a full stop so that the voice pauses there.
"""
from __future__ import annotations

import re
from collections.abc import Callable

# Written form -> spoken form. Matched as whole words, case as written (these are written in capitals).
ABBREVIATIONS: dict[str, str] = {
    "BCH QS": "ban chỉ huy quân sự",
    "BCHQS": "ban chỉ huy quân sự",
    "BCH": "ban chỉ huy",
    "UBND": "ủy ban nhân dân",
    "HĐND": "hội đồng nhân dân",
    "MTTQ": "mặt trận tổ quốc",
    "ANTT": "an ninh trật tự",
    "TTATGT": "trật tự an toàn giao thông",
    "ATGT": "an toàn giao thông",
    "PCCC": "phòng cháy chữa cháy",
    "PCTT": "phòng chống thiên tai",
    "PCTT-TKCN": "phòng chống thiên tai và tìm kiếm cứu nạn",
    "TKCN": "tìm kiếm cứu nạn",
    "CAX": "công an xã",
    "CA": "công an",
    "QS": "quân sự",
    "DQTV": "dân quân tự vệ",
    "THCS": "trung học cơ sở",
    "THPT": "trung học phổ thông",
    "BHYT": "bảo hiểm y tế",
    "BHXH": "bảo hiểm xã hội",
    "TYT": "trạm y tế",
    "HTX": "hợp tác xã",
    "KDC": "khu dân cư",
    "NVH": "nhà văn hóa",
    "HND": "hội nông dân",
    "HLHPN": "hội liên hiệp phụ nữ",
    "HPN": "hội phụ nữ",
    "HCCB": "hội cựu chiến binh",
    "CCB": "cựu chiến binh",
    "ĐTN": "đoàn thanh niên",
    "TNCS": "thanh niên cộng sản",
    "CSGT": "cảnh sát giao thông",
    "CMND": "chứng minh nhân dân",
    "CCCD": "căn cước công dân",
    "NTM": "nông thôn mới",
    "GPMB": "giải phóng mặt bằng",
    "VSATTP": "vệ sinh an toàn thực phẩm",
    "ATTP": "an toàn thực phẩm",
    "TDP": "tổ dân phố",
    "KP": "khu phố",
    "COVID-19": "cô vít mười chín",
    "COVID": "cô vít",
}
ROADS = {"ĐT": "đường tỉnh", "QL": "quốc lộ", "ĐH": "đường huyện", "TL": "tỉnh lộ", "HL": "hương lộ"}
EMERGENCY_NUMBERS = ("111", "112", "113", "114", "115")

_ABBR = re.compile(r"(?<!\w)(%s)(?!\w)" % "|".join(
    re.escape(k).replace(r"\ ", r"\s+") for k in sorted(ABBREVIATIONS, key=len, reverse=True)))
_ROAD = re.compile(r"(?<!\w)([Đđ]ường\s+)?(%s)\s*\.?\s*(\d+[A-Z]?)(?!\w)" % "|".join(ROADS))
_GRAMS = re.compile(r"(?<![\w.,])(\d+(?:[.,]\d+)?)\s*g(?!\w)")
_SPEED = re.compile(r"(?<=\d)\s*km/h(?!\w)")
_H = r"(\d{1,2})\s*(?:h(?:\s*(\d{2}))?|g\s*(\d{2}))"  # 17h30, 17h, 17g30 ("20g" alone is grams)
_RANGE = re.compile(r"(?<![\w.,:])%s\s*(?:-|–|—|đến)\s*%s(?![\w])" % (_H, _H))
_RANGE_BARE = re.compile(r"(?<![\w.,:/])(\d{1,2})\s*(?:-|–)\s*(\d{1,2})\s*h(?![\w])")  # 7-11h
_TIME = re.compile(r"(?<![\w.,:/])%s(?![\w])" % _H)
_EMERGENCY = re.compile(r"(?<![\w.,/-])(%s)(?![\w]|[.,]\d)" % "|".join(EMERGENCY_NUMBERS))
_DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")


def cardinal(n: int) -> str:
    """0..99 as Vietnamese words (hours and minutes)."""
    if n < 10:
        return _DIGITS[n]
    tens, unit = divmod(n, 10)
    head = "mười" if tens == 1 else _DIGITS[tens] + " mươi"
    if unit == 0:
        return head
    if unit == 5:
        return head + " lăm"
    if unit == 1 and tens > 1:
        return head + " mốt"
    return head + " " + _DIGITS[unit]


def _clock(hour: str, minute: str | None) -> str | None:
    h, m = int(hour), int(minute) if minute else 0
    if h > 24 or m > 59 or (h == 24 and m):
        return None
    text = cardinal(h) + " giờ"
    if minute and m:
        text += " " + cardinal(m) + (" phút" if m < 10 else "")  # 17h05: "mười bảy giờ năm phút"
    return text


def _range(m: re.Match[str]) -> str:
    a, b = _clock(m.group(1), m.group(2) or m.group(3)), _clock(m.group(4), m.group(5) or m.group(6))
    return m.group(0) if a is None or b is None else "%s đến %s" % (a, b)


def _range_bare(m: re.Match[str]) -> str:
    a, b = int(m.group(1)), int(m.group(2))
    if a > 24 or b > 24:
        return m.group(0)
    return "%s đến %s giờ" % (cardinal(a), cardinal(b))


def _time(m: re.Match[str]) -> str:
    spoken = _clock(m.group(1), m.group(2) or m.group(3))
    return m.group(0) if spoken is None else spoken


def _road(m: re.Match[str]) -> str:
    number = m.group(3)
    digits, letter = (number[:-1], number[-1]) if number[-1].isalpha() else (number, "")
    name = ROADS[m.group(2)]
    if m.group(1):  # "Đường ĐT 395": the road word once, as written
        name = m.group(1).strip() + name[len("đường"):] if name.startswith("đường") else m.group(1) + name
    return "%s %s%s" % (name, digits, (" " + letter) if letter else "")


def commune_rules(text: str) -> str:
    """Stage 1 alone: abbreviations, roads, hours and hour ranges, emergency numbers."""
    text = _ROAD.sub(_road, text)
    text = _ABBR.sub(lambda m: ABBREVIATIONS[re.sub(r"\s+", " ", m.group(1))], text)
    text = _RANGE.sub(_range, text)
    text = _RANGE_BARE.sub(_range_bare, text)
    text = _TIME.sub(_time, text)
    text = _GRAMS.sub(lambda m: m.group(1) + " gam", text)
    text = _SPEED.sub(" ki lô mét một giờ", text)
    text = _EMERGENCY.sub(lambda m: " ".join(_DIGITS[int(d)] for d in m.group(1)), text)
    return text


def _g2p() -> Callable[[str], str] | None:
    try:
        from g2p_hamster.t0.pipeline import normalize
    except Exception:  # not installed, or broken: stage 1 alone
        return None

    def read(text: str) -> str:
        return str(normalize(text)["read_string"])
    return read


def normalize_vi(text: str) -> tuple[str, bool]:
    """(text as it should be read, whether g2p-hamster took part). Pure: safe in a worker thread."""
    general = _g2p()
    used = general is not None
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = " ".join(line.split())
        if not line:
            continue
        spoken = commune_rules(line)
        if general is not None:
            try:
                spoken = general(spoken) or spoken
            except Exception:  # its failure on one line must not lose the line
                used = False
        spoken = spoken.replace("…", "...")
        if spoken and line[0].isupper() and spoken[0].islower():  # "HĐND xã ..." -> "Hội đồng nhân dân xã ..."
            spoken = spoken[0].upper() + spoken[1:]
        if spoken and spoken[-1] not in ".!?;:,":
            spoken += "."
        lines.append(spoken)
    return "\n".join(lines), used

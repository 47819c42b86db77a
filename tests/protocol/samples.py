"""Valid sample objects shared by the protocol tests (portable)."""

SITE = "xa-an-binh"
NODE = "den-thon1-07"
KEY = b"k" * 32
HANOI = (21.0285, 105.8542, 7)
TZ = 7 * 3600
# Monday 2026-11-23 00:00 in Hanoi (UTC+7) as Unix time.
MONDAY = 1795366800

PROGRAM = {
    "version": 3,
    "days": {
        "normal": {
            "on": "sunset",
            "off": "sunrise",
            "level": 100,
            "steps": [{"at": "23:00", "level": 40}, {"at": "04:30", "level": 0}],
            "motion": {"level": 80, "hold": 120},
        },
        "tet": {"on": "sunset-15", "off": "sunrise+15", "level": 100},
        "weekend": {"on": "dusk", "off": "dawn", "level": 70, "steps": [{"at": "00:00", "level": 30}]},
    },
    "calendar": [
        {"day": "tet", "from": "2027-02-04", "to": "2027-02-12"},
        {"day": "weekend", "weekdays": [5, 6]},
        {"day": "normal"},
    ],
}

CLIP = "ab" * 32


def item(item_id, start, end, prio=0, zones=None, src="clip", vol=80, cat="news"):
    """A plan item in its wire form [id, start, dur, prio, src, ref, zones, vol, cat]."""
    ref = CLIP if src == "clip" else "live-1" if src == "stream" else None
    return [item_id, start, end - start, prio, src, ref, zones or ["thon-1"], vol, cat]


def plan(items, version=5):
    return {"version": version, "items": items}

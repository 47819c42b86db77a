"""Alerts staff must see: open while the condition holds, closed when it clears.

Messages are in Vietnamese (and English), in plain words, with the node's
name and the local time: "Loa cụm 3 mất kết nối từ 17:02".
"""
from __future__ import annotations

import builtins
import json
import re
import string
import time
from collections.abc import Callable, Collection
from typing import Any

from gateway.clock import Clock
from gateway.db import Database

# kind -> (severity, Vietnamese template, English template); {name} {since} (and {part_vi} {part_en}) are
# ours; other placeholders take the alert data's value of that key, as plain text, never as a template
KINDS = {
    "part_failed": ("warning", "{part_vi} của {name} không phản hồi (từ {since})",
                    "{part_en} of {name} is not responding (since {since})"),
    "offline": ("warning", "{name} mất kết nối từ {since}", "{name} offline since {since}"),
    "lamp_fault": ("warning", "Đèn {name} hỏng (bật nhưng không có dòng điện) từ {since}",
                   "Lamp {name} failed (on, no current) since {since}"),
    "day_burner": ("warning", "Đèn {name} sáng ban ngày (tắt nhưng vẫn có dòng điện) từ {since}",
                   "Lamp {name} burns by day (off, current flows) since {since}"),
    "clock_invalid": ("warning", "{name} không có giờ chính xác từ {since}", "{name} has no valid time since {since}"),
    "broadcast_failed": ("warning", "{name} không phát được bản tin {item} lúc {since}",
                         "{name} could not air {item} at {since}"),
    "broadcast_missed": ("warning", "{name} không phát bản tin {item} theo lịch lúc {since}",
                         "{name} did not air scheduled {item} at {since}"),
    "broadcast_not_aired": ("warning", "{name} không phát được bản tin {item} lúc {since}: {why_vi}",
                            "{name} could not air {item} at {since}: {why_en}"),
    "aired_after_cancel": ("warning", "{name} vẫn phát bản tin {item} lúc {since} dù lịch đã bị hủy lúc {cancelled}"
                           " (lệnh hủy đến loa quá muộn)", "{name} aired {item} at {since} although it was cancelled"
                           " at {cancelled} (the cancel reached the loudspeaker too late)"),
    "cmd_rejected": ("critical", "{name} từ chối một lệnh ({reason}) lúc {since}: có thể bị giả mạo",
                     "{name} rejected a command ({reason}) at {since}: possible attack"),
    "command_expired": ("warning", "Lệnh {op} tới {name} hết hạn lúc {since} mà chưa được xác nhận",
                        "Command {op} to {name} expired at {since} unanswered"),
    "event_gap": ("info", "Thiếu {missing} sự kiện của {name} (lúc {since})", "{missing} events of {name} missing ({since})"),
    "safe_mode": ("critical", "{name} khởi động lại nhiều lần, đang ở chế độ an toàn từ {since}",
                  "{name} keeps resetting: safe mode since {since}"),
    "events_dropped": ("info", "{name} mất {count} sự kiện do mất mạng lâu (lúc {since})",
                       "{name} dropped {count} events while offline ({since})"),
    "storage_error": ("warning", "Bộ nhớ của {name} bị lỗi ({error}) lúc {since}", "{name} storage error ({error}) at {since}"),
    "bad_messages": ("info", "Nhận tin nhắn hỏng từ {name} lúc {since}", "Malformed messages from {name} at {since}"),
    "plan_truncated": ("warning", "Lịch phát của {name} quá dài, bỏ {dropped} mục (lúc {since})",
                       "Plan of {name} too long: {dropped} items left out ({since})"),
}
# kinds that describe a state (one open alert at a time, closed when it clears); the rest are one-off notices
STATEFUL = ("offline", "lamp_fault", "day_burner", "clock_invalid", "safe_mode", "part_failed")
MAX_VALUE = 60  # a node-supplied value in a message is cut to this many characters

# HAL part names a node reports in State.failed -> (Vietnamese, English), in plain words
PARTS = {
    "ds3231": ("Đồng hồ DS3231", "DS3231 clock"),
    "dimmer": ("Bộ điều chỉnh độ sáng", "dimmer"),
    "lamp_ct": ("Cảm biến dòng đèn", "lamp current sensor"),
    "photocell": ("Cảm biến ánh sáng", "photocell"),
    "pir": ("Cảm biến chuyển động", "motion sensor"),
    "i2s": ("Bộ phát âm thanh I2S", "I2S audio output"),
    "amp_relay": ("Rơ-le bộ khuếch đại loa", "amplifier relay"),
    "line_relay": ("Rơ-le đường truyền thanh", "line input relay"),
    "lamp_relay": ("Rơ-le đèn", "lamp relay"),
}
ZONE_RELAY = re.compile(r"^zone (\d{1,2}) relay$")


def part_names(part: object) -> tuple[str, str]:
    """A failed part's (Vietnamese, English) name; an unknown one is shown as the node named it."""
    part = _value(part)
    if part in PARTS:
        return PARTS[part]
    m = ZONE_RELAY.match(part)
    if m:
        return "Rơ-le vùng loa %s" % m.group(1), "speaker zone relay %s" % m.group(1)
    return part, part


def _value(v: object) -> str:
    text = str(v)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"


def _fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


class Alerts:
    def __init__(self, db: Database, clock: Clock, tz_s: int, names: Callable[[str], str]) -> None:
        self.db = db
        self.clock = clock
        self.tz_s = tz_s
        self.names = names  # node_id -> display name

    def _hhmm(self, t: float) -> str:
        return time.strftime("%H:%M %d/%m", time.gmtime(t + self.tz_s))

    def open(self, kind: str, node_id: str | None, data: dict[str, Any] | None = None, at: float | None = None,
             subject: str | None = None) -> int | None:
        """Open an alert (a stateful kind only once per node and subject while open); returns its id or None."""
        at = self.clock.now() if at is None else at
        if kind in STATEFUL and self.db.one(
                "SELECT 1 FROM alerts WHERE kind = ? AND node_id IS ? AND subject IS ? AND closed IS NULL",
                kind, node_id, subject):
            return None
        severity, vi, en = KINDS[kind]
        data = data or {}
        fill = {}
        for field in _fields(vi) | _fields(en):  # only what a template uses, as plain values
            v = data.get(field)
            fill[field] = _value(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) else "?"
        fill["name"] = self.names(node_id) if node_id else ""  # always ours, whatever the data says
        fill["since"] = self._hhmm(at)
        if kind == "part_failed":
            part = _value(subject if subject is not None else data.get("part", "?"))
            part_vi, part_en = part_names(part)
            if part in PARTS or ZONE_RELAY.match(part):  # a known part's English name starts the sentence; a raw name stays as it is
                part_en = part_en[:1].upper() + part_en[1:]
            fill["part_vi"], fill["part_en"] = part_vi, part_en
        cur = self.db.run(
            "INSERT INTO alerts (node_id, kind, severity, message_vi, message_en, data, opened, closed, subject)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            node_id, kind, severity, vi.format_map(fill), en.format_map(fill),
            json.dumps(data), at, None if kind in STATEFUL else at, subject)
        return cur.lastrowid

    def close(self, kind: str, node_id: str | None, subject: str | None = None,
              keep: Collection[str] | None = None) -> None:
        """Close open alerts of this kind for the node: all of them, or one subject's, or all but `keep`'s."""
        sql, args = "UPDATE alerts SET closed = ? WHERE kind = ? AND node_id IS ? AND closed IS NULL", [
            self.clock.now(), kind, node_id]
        if subject is not None:
            sql += " AND subject IS ?"
            args.append(subject)
        if keep:
            sql += " AND (subject IS NULL OR subject NOT IN (%s))" % ",".join("?" * len(keep))
            args.extend(keep)
        self.db.run(sql, *args)

    def list(self, open_only: bool = True, limit: int = 200) -> builtins.list[dict[str, Any]]:
        sql = "SELECT * FROM alerts" + (" WHERE closed IS NULL" if open_only else "") + " ORDER BY opened DESC LIMIT ?"
        return [dict(r) | {"data": json.loads(r["data"])} for r in self.db.all(sql, limit)]

    def recent(self, since: float, limit: int = 200) -> builtins.list[dict[str, Any]]:
        rows = self.db.all("SELECT * FROM alerts WHERE opened >= ? ORDER BY opened DESC LIMIT ?", since, limit)
        return [dict(r) | {"data": json.loads(r["data"])} for r in rows]

    def opened_for(self, kind: str, node_id: str, key: str, value: Any) -> bool:
        """Was an alert of this kind ever opened for this node with data[key] == value?"""
        return self.db.one("SELECT 1 FROM alerts WHERE node_id = ? AND kind = ? AND json_extract(data, ?) = ?",
                           node_id, kind, "$." + key, value) is not None

    def messages_for(self, node_id: str) -> builtins.list[str]:
        """The open alerts of one node, newest first, in Vietnamese."""
        rows = self.db.all("SELECT message_vi FROM alerts WHERE closed IS NULL AND node_id = ? ORDER BY opened DESC",
                           node_id)
        return [r[0] for r in rows]

    def count_open(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM alerts WHERE closed IS NULL"))


"""Alerts staff must see: open while the condition holds, closed when it clears.

Messages are in Vietnamese (and English), in plain words, with the node's
name and the local time: "Loa cụm 3 mất kết nối từ 17:02".
"""
import json
import time

# kind -> (severity, Vietnamese template, English template); {name} {since} and data keys are filled in
KINDS = {
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
STATEFUL = ("offline", "lamp_fault", "day_burner", "clock_invalid", "safe_mode")


class Alerts:
    def __init__(self, db, clock, tz_s, names):
        self.db = db
        self.clock = clock
        self.tz_s = tz_s
        self.names = names  # node_id -> display name

    def _hhmm(self, t):
        return time.strftime("%H:%M %d/%m", time.gmtime(t + self.tz_s))

    def open(self, kind, node_id, data=None, at=None):
        """Open an alert (a stateful kind only once while open); returns its id or None."""
        at = self.clock.now() if at is None else at
        if kind in STATEFUL and self.db.one(
                "SELECT 1 FROM alerts WHERE kind = ? AND node_id IS ? AND closed IS NULL", kind, node_id):
            return None
        severity, vi, en = KINDS[kind]
        fill = {"name": self.names(node_id) if node_id else "", "since": self._hhmm(at)}
        fill.update({k: v for k, v in (data or {}).items() if isinstance(v, (str, int, float))})
        fill = _Defaults(fill)
        cur = self.db.run(
            "INSERT INTO alerts (node_id, kind, severity, message_vi, message_en, data, opened, closed)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            node_id, kind, severity, vi.format_map(fill), en.format_map(fill), json.dumps(data or {}), at,
            None if kind in STATEFUL else at)
        return cur.lastrowid

    def close(self, kind, node_id):
        self.db.run("UPDATE alerts SET closed = ? WHERE kind = ? AND node_id IS ? AND closed IS NULL",
                    self.clock.now(), kind, node_id)

    def list(self, open_only=True, limit=200):
        sql = "SELECT * FROM alerts" + (" WHERE closed IS NULL" if open_only else "") + " ORDER BY opened DESC LIMIT ?"
        return [dict(r) | {"data": json.loads(r["data"])} for r in self.db.all(sql, limit)]

    def recent(self, since, limit=200):
        rows = self.db.all("SELECT * FROM alerts WHERE opened >= ? ORDER BY opened DESC LIMIT ?", since, limit)
        return [dict(r) | {"data": json.loads(r["data"])} for r in rows]

    def count_open(self):
        return self.db.one("SELECT COUNT(*) FROM alerts WHERE closed IS NULL")[0]


class _Defaults(dict):
    def __missing__(self, key):
        return "?"

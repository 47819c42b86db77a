"""Site settings staff change in the web UI (Admin → Settings), kept in the `settings` table.

Each setting has a type and a default here; an unknown key or a value of
the wrong type is refused with a bilingual message, and nothing is stored.
Owner: the event loop's thread, like every table (gateway/db.py).
"""
from __future__ import annotations

import json
from typing import Any

from gateway.clock import Clock
from gateway.db import Database
from gateway.emergency import MAX_REPEATS
from gateway.errors import GatewayError

# key: (default, vi label, en label). The labels here are for the API's error messages; the web UI
# labels each setting from its own catalogue (gateway/ui/pages/admin.py LABELS).
# emergency_repeat: the emergency form's preset number of readings (gateway/ui/pages/emergency.py);
# offline_alert_min: a node offline this long gets its `offline` alert (Ingest.open_offline_alerts).
SETTINGS: dict[str, tuple[Any, str, str]] = {
    "approval_required": (False, "Lịch phát của người vận hành phải được duyệt trước khi phát",
                          "An operator's new broadcast waits for an approver before it airs"),
    "default_lang": ("vi", "Ngôn ngữ mặc định của giao diện", "Default language of the UI"),
    "emergency_repeat": (1, "Số lần đọc mặc định của bản tin khẩn cấp", "Default number of readings of an emergency broadcast"),
    "offline_alert_min": (5, "Báo mất kết nối sau (phút)", "Report a node offline after (minutes)"),
}
CHOICES: dict[str, tuple[Any, ...]] = {"default_lang": ("vi", "en")}
RANGES: dict[str, tuple[int, int]] = {"emergency_repeat": (1, MAX_REPEATS), "offline_alert_min": (1, 120)}


class Settings:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def get(self, key: str) -> Any:
        default = SETTINGS[key][0]
        row = self.db.one("SELECT value FROM settings WHERE key = ?", key)
        return default if row is None else json.loads(row["value"])

    def all(self) -> dict[str, Any]:
        return dict((key, self.get(key)) for key in SETTINGS)

    def check(self, key: str, value: Any) -> Any:
        if key not in SETTINGS:
            raise GatewayError("setting.unknown", "Không có thiết lập %s" % key, "No setting %s" % key, key)
        default = SETTINGS[key][0]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise GatewayError("setting.invalid", "%s: chọn có hoặc không" % SETTINGS[key][1],
                                   "%s: yes or no" % SETTINGS[key][2], key)
        elif isinstance(default, int):
            low, high = RANGES[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise GatewayError("setting.invalid", "%s: số nguyên từ %d đến %d" % (SETTINGS[key][1], low, high),
                                   "%s: a whole number from %d to %d" % (SETTINGS[key][2], low, high), key)
        elif key in CHOICES and value not in CHOICES[key]:
            raise GatewayError("setting.invalid", "%s: chọn một trong %s" % (SETTINGS[key][1], ", ".join(CHOICES[key])),
                               "%s: one of %s" % (SETTINGS[key][2], ", ".join(CHOICES[key])), key)
        return value

    def update(self, values: dict[str, Any], user: str | None) -> dict[str, Any]:
        """Check every value first, then store them all in one transaction (all or nothing)."""
        checked = dict((key, self.check(key, value)) for key, value in values.items())
        with self.db.tx():
            for key, value in checked.items():
                self.db.run("INSERT INTO settings (key, value, updated, updated_by) VALUES (?, ?, ?, ?)"
                            " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated,"
                            " updated_by = excluded.updated_by", key, json.dumps(value), self.clock.now(), user)
        return self.all()

"""Errors staff can read: every one carries a code and a message in Vietnamese and English.

Raised anywhere in the gateway for bad input; the API turns them into a 4xx
JSON answer {"error": code, "message": vi, "message_en": en, "field": ...}
and nothing is half-applied.
"""
from __future__ import annotations


class GatewayError(Exception):
    status = 400

    def __init__(self, code: str, vi: str, en: str, field: str | None = None, status: int | None = None) -> None:
        super().__init__(en)
        self.code = code
        self.vi = vi
        self.en = en
        self.field = field
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, str]:
        out = {"error": self.code, "message": self.vi, "message_en": self.en}
        if self.field:
            out["field"] = self.field
        return out


class NotFound(GatewayError):
    status = 404


class Conflict(GatewayError):
    status = 409


class Forbidden(GatewayError):
    status = 403

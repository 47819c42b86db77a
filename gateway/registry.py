"""Zones (thôn / xóm / khu) and nodes, with each node's credentials and key.

A node's MQTT password and command key are made here at registration and
handed out once, in the provisioning bundle; the database keeps the key
(to sign commands) and only a hash of the password (for the broker).
"""
from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Collection, Iterable
from typing import Any

from gateway.clock import Clock
from gateway.db import Database
from gateway.errors import Conflict, GatewayError, NotFound
from protocol.topics import TopicError, check_id

ZONE_KINDS = ("thon", "xom", "khu", "ap", "other")
NODE_KINDS = ("lamp", "speaker", "both")


def _id(value: object, what_vi: str, what_en: str, field: str) -> str:
    try:
        return check_id(value, what_en)
    except TopicError:
        raise GatewayError(field + ".invalid",
                           "%s chỉ gồm chữ thường không dấu, số và '-', tối đa 32 ký tự" % what_vi,
                           "%s may contain only a-z, 0-9 and '-', at most 32 characters" % what_en, field)


def check_not_reserved(node_id: str, reserved: Collection[str]) -> str:
    """Refuse a node id that is a broker username the gateway itself uses (a node logs in as its id)."""
    if node_id in reserved:
        raise Conflict("id.reserved",
                       "Mã thiết bị '%s' đã được gateway dùng làm tên đăng nhập MQTT; hãy chọn mã khác" % node_id,
                       "Node id '%s' is the gateway's own MQTT login name; choose another id" % node_id, "id")
    return node_id


def _text(obj: dict[str, Any], key: str, max_len: int, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise GatewayError(key + ".invalid", "'%s' phải là chữ, từ 1 đến %d ký tự" % (key, max_len),
                           "'%s' must be text of 1 to %d characters" % (key, max_len), key)
    return value.strip()


class Registry:
    def __init__(self, db: Database, clock: Clock, hash_password: Callable[[str], str],
                 files_port: int = 8080,
                 tls: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        """`tls`: adds the site CA, the broker's TLS port and HTTPS to each bundle (gateway/app.py node_tls)."""
        self.db = db
        self.tls = tls
        self.clock = clock
        self.hash_password = hash_password
        self.files_port = files_port  # the gateway's HTTP port: nodes fetch clips and streams there

    # ---- zones ---------------------------------------------------------------
    def add_zone(self, obj: dict[str, Any]) -> dict[str, Any]:
        zone_id = _id(obj.get("id"), "Mã cụm", "Zone id", "id")
        name = _text(obj, "name", 80)
        kind = obj.get("kind", "thon")
        if kind not in ZONE_KINDS:
            raise GatewayError("kind.invalid", "Loại cụm phải là một trong: %s" % ", ".join(ZONE_KINDS),
                               "Zone kind must be one of: %s" % ", ".join(ZONE_KINDS), "kind")
        with self.db.tx():
            if self.db.one("SELECT 1 FROM zones WHERE id = ?", zone_id):
                raise Conflict("zone.exists", "Cụm %s đã có" % zone_id, "Zone %s already exists" % zone_id, "id")
            self.db.run("INSERT INTO zones (id, name, kind, created) VALUES (?, ?, ?, ?)",
                        zone_id, name, kind, self.clock.now())
        return self.zone(zone_id)

    def zone(self, zone_id: str) -> dict[str, Any]:
        row = self.db.one("SELECT id, name, kind FROM zones WHERE id = ?", zone_id)
        if row is None:
            raise NotFound("zone.unknown", "Không có cụm %s" % zone_id, "No zone %s" % zone_id, "zone")
        return dict(row)

    def zones(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.all("SELECT id, name, kind FROM zones ORDER BY id")]

    def zone_ids(self) -> set[str]:
        return {r[0] for r in self.db.all("SELECT id FROM zones")}

    # ---- nodes ---------------------------------------------------------------
    def add_node(self, obj: dict[str, Any], site: str, broker_host: str, broker_port: int,
                 location: dict[str, Any], reserved: Collection[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
        """Register a node; returns (node, provisioning bundle with its secrets, shown once).

        `reserved`: ids that may not be used (the gateway's own broker users)."""
        node_id = check_not_reserved(_id(obj.get("id"), "Mã thiết bị", "Node id", "id"), reserved)
        name = _text(obj, "name", 80, node_id)
        zones = obj.get("zones", [])
        known = self.zone_ids()
        if not isinstance(zones, list) or not zones or len(zones) > 8:
            raise GatewayError("zones.invalid", "Thiết bị phải thuộc từ 1 đến 8 cụm", "A node belongs to 1 to 8 zones", "zones")
        for zone in zones:
            if zone not in known:
                raise GatewayError("zones.unknown", "Không có cụm %s" % zone, "No zone %s" % zone, "zones")
        relays = obj.get("relays") or {zone: i + 1 for i, zone in enumerate(zones)}
        if (not isinstance(relays, dict) or set(relays) - set(zones)
                or any(not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= 16 for r in relays.values())):
            raise GatewayError("relays.invalid", "Rơ-le cụm: mỗi cụm của thiết bị một số từ 1 đến 16",
                               "Zone relays: a number 1-16 for zones of this node", "relays")
        kind = obj.get("kind", "both")
        if kind not in NODE_KINDS:
            raise GatewayError("kind.invalid", "Loại thiết bị phải là lamp, speaker hoặc both",
                               "Node kind must be lamp, speaker or both", "kind")
        lat, lon = obj.get("lat"), obj.get("lon")
        for coord, value, lo, hi in (("lat", lat, -90, 90), ("lon", lon, -180, 180)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi):
                raise GatewayError(coord + ".invalid", "Tọa độ %s không hợp lệ" % coord, "Invalid %s" % coord, coord)
        board = obj.get("board", "denloa-v1")
        password = secrets.token_urlsafe(18)
        key = secrets.token_bytes(32)
        with self.db.tx():
            if self.db.one("SELECT 1 FROM nodes WHERE id = ?", node_id):
                raise Conflict("node.exists", "Thiết bị %s đã có" % node_id, "Node %s already exists" % node_id, "id")
            self.db.run(
                "INSERT INTO nodes (id, name, zones, relays, lat, lon, board, kind, mqtt_hash, hmac_key, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                node_id, name, json.dumps(zones), json.dumps(relays), lat, lon, board, kind,
                self.hash_password(password), key, self.clock.now())
            self.db.run("INSERT INTO node_state (node_id) VALUES (?)", node_id)
        bundle: dict[str, Any] = {
            "site": site, "node": node_id, "key": key.hex(),
            "broker": {"host": broker_host, "port": broker_port, "user": node_id, "password": password},
            "files": {"host": broker_host, "port": self.files_port},
            "zones": relays, "location": location, "board": board,
        }
        if kind == "speaker":
            bundle["lamp"] = {"fitted": False}
        if self.tls is not None:
            bundle = self.tls(bundle)
        return self.node(node_id), bundle

    def reprovision(self, node_id: str, site: str, broker_host: str, broker_port: int,
                    location: dict[str, Any]) -> dict[str, Any]:
        """New password and key for a node (a lost or replaced board); the old ones stop working."""
        node = self.node(node_id)
        password = secrets.token_urlsafe(18)
        key = secrets.token_bytes(32)
        with self.db.tx():
            self.db.run("UPDATE nodes SET mqtt_hash = ?, hmac_key = ?, counter = 0, revoked = 0 WHERE id = ?",
                        self.hash_password(password), key, node_id)
        bundle = {"site": site, "node": node_id, "key": key.hex(),
                  "broker": {"host": broker_host, "port": broker_port, "user": node_id, "password": password},
                  "files": {"host": broker_host, "port": self.files_port},
                  "zones": node["relays"], "location": location, "board": node["board"]}
        return bundle if self.tls is None else self.tls(bundle)

    def revoke(self, node_id: str) -> None:
        self.node(node_id)
        with self.db.tx():
            self.db.run("UPDATE nodes SET revoked = 1 WHERE id = ?", node_id)

    def node(self, node_id: str) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM nodes WHERE id = ?", node_id)
        if row is None:
            raise NotFound("node.unknown", "Không có thiết bị %s" % node_id, "No node %s" % node_id, "node")
        return self._node(row)

    def nodes(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        sql = "SELECT * FROM nodes" + ("" if include_revoked else " WHERE revoked = 0") + " ORDER BY id"
        return [self._node(r) for r in self.db.all(sql)]

    def key(self, node_id: str) -> bytes | None:
        row = self.db.one("SELECT hmac_key FROM nodes WHERE id = ? AND revoked = 0", node_id)
        return bytes(row[0]) if row else None

    def keys(self, node_ids: list[str]) -> dict[str, bytes]:
        """The command keys of those of `node_ids` that are registered and not revoked."""
        out: dict[str, bytes] = {}
        for start in range(0, len(node_ids), 500):
            chunk = node_ids[start:start + 500]
            rows = self.db.all("SELECT id, hmac_key FROM nodes WHERE revoked = 0 AND id IN (%s)"
                               % ",".join("?" * len(chunk)), *chunk)
            out.update((r[0], bytes(r[1])) for r in rows)
        return out

    def known(self, node_id: str) -> bool:
        return self.db.one("SELECT 1 FROM nodes WHERE id = ? AND revoked = 0", node_id) is not None

    def nodes_in_zones(self, zones: Iterable[str]) -> list[dict[str, Any]]:
        wanted = set(zones)
        return [n for n in self.nodes() if wanted & set(n["zones"])]

    @staticmethod
    def _node(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"], "name": row["name"], "zones": json.loads(row["zones"]),
            "relays": json.loads(row["relays"]), "lat": row["lat"], "lon": row["lon"], "board": row["board"],
            "kind": row["kind"], "revoked": bool(row["revoked"]),
        }

    def snapshot(self, node_id: str) -> sqlite3.Row | None:
        """A node's registry row as it is (None if there is none), for `restore`."""
        return self.db.one("SELECT * FROM nodes WHERE id = ?", node_id)

    def restore(self, node_id: str, row: sqlite3.Row | None) -> None:
        """Put a node's registry row back as `snapshot` saw it (None: the node did not exist)."""
        with self.db.tx():
            if row is None:  # it was added: take it away again
                self.db.run("DELETE FROM node_state WHERE node_id = ?", node_id)
                self.db.run("DELETE FROM nodes WHERE id = ?", node_id)
                return
            columns = [c for c in row.keys() if c != "id"]
            self.db.run("UPDATE nodes SET %s WHERE id = ?" % ", ".join("%s = ?" % c for c in columns),
                        *[row[c] for c in columns], node_id)

    def name(self, node_id: str) -> str:
        """A node's display name (its id when unknown)."""
        row = self.db.one("SELECT name FROM nodes WHERE id = ?", node_id)
        return row[0] if row else node_id

    def count(self) -> int:
        count: int = self.db.scalar("SELECT COUNT(*) FROM nodes WHERE revoked = 0")
        return count

    def broker_users(self) -> list[tuple[str, str, str]]:
        """(username, password hash, node id) of every node that may connect."""
        return [(r[0], r[1], r[0]) for r in self.db.all("SELECT id, mqtt_hash FROM nodes WHERE revoked = 0")]


def has_speaker(node: dict[str, Any]) -> bool:
    """Does this node drive a loudspeaker (kind speaker or both)?"""
    return node["kind"] in ("speaker", "both")


def has_lamp(node: dict[str, Any]) -> bool:
    """Does this node drive a lamp (kind lamp or both)?"""
    return node["kind"] in ("lamp", "both")

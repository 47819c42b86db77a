"""Firmware bundles and staged over-the-air rollouts (docs/ota.md).

Bundles: the zip `python -m hardware build` makes (manifest.json, the files at their node paths,
and manifest.sig: Ed25519 over the exact manifest.json bytes, by the release key). On upload the
gateway checks the signature against the release public key of its config (`[firmware]
release_key`, a PEM or 64-hex-digit file; `allow_unsigned = true` accepts unsigned bundles, for a
lab only; a signature that does not verify is refused whatever the setting), then every file's
SHA-256 and size against the manifest, and stores the files content-addressed in
`<data_dir>/firmware/<sha256>` (the manifest too, as its exact bytes).

Nodes fetch `/node/v1/firmware/<sha256>` with their own credentials, only while a rollout has
sent them the bundle and they have not finished it, and only files of that bundle.

Rollouts: one open at a time. Stage 1 is the nodes in the first zone(s), stage 2 the rest; each
node gets an `ota` command (signed with its own key like every command; it carries the
manifest's SHA-256, which is what the node checks everything against). A stage is done when
every node in it confirmed the new version (or already ran it); then the next stage starts.
The operator starts, pauses, resumes and cancels; all audited by the API. The node's events
move its row: pending -> sent -> downloading -> switched -> confirmed, or rolled_back / failed
(with the reason), and a rollback, a refusal or a rejected command halts the rollout by itself
(running nodes finish what they started; nothing new is sent until an operator resumes).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

from gateway.clock import Clock
from gateway.commands import CommandService
from gateway.db import Database
from gateway.errors import GatewayError, NotFound
from gateway.registry import Registry
from protocol import commands as ops
from protocol.messages import Event

SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
VERSION_RE = re.compile(r"[0-9A-Za-z.+-]{1,32}\Z")
PATH_PART = re.compile(r"[0-9A-Za-z_.-]{1,64}\Z")
MAX_BUNDLE = 8 * 1024 * 1024
MAX_MANIFEST = 16384  # the node's limit (firmware/ota.py)
ENTRY = "main.py"

# rollout states
RUNNING, PAUSED, HALTED, DONE, CANCELLED = "running", "paused", "halted", "done", "cancelled"
OPEN = (RUNNING, PAUSED, HALTED)
# a node's progress
PENDING, SENT, DOWNLOADING, SWITCHED, CONFIRMED, ROLLED_BACK, FAILED, UNREACHABLE = (
    "pending", "sent", "downloading", "switched", "confirmed", "rolled_back", "failed", "unreachable")
IN_FLIGHT = (SENT, DOWNLOADING, SWITCHED)  # the node may fetch the bundle's files
NODE_STATES = (PENDING, SENT, DOWNLOADING, SWITCHED, CONFIRMED, ROLLED_BACK, FAILED, UNREACHABLE)


def _bad(code: str, vi: str, en: str) -> GatewayError:
    return GatewayError("firmware." + code, vi, en, "file")


def load_public_key(path: str) -> Any:
    """An Ed25519 public key from a PEM file or a file of 64 hex digits (the raw 32 bytes)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    with open(path, "rb") as f:
        data = f.read()
    text = data.strip()
    if re.fullmatch(rb"[0-9a-fA-F]{64}", text):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode()))
    key = load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("%s is not an Ed25519 public key" % path)
    return key


def check_path(path: Any) -> str:
    if not isinstance(path, str) or not path or len(path) > 80 or path.startswith("/"):
        raise _bad("path", "Tệp không hợp lệ trong gói: %r" % (path,), "Bad file path in the bundle: %r" % (path,))
    for part in path.split("/"):
        if part in (".", "..") or not PATH_PART.match(part) or part.endswith(".part"):
            raise _bad("path", "Tệp không hợp lệ trong gói: %r" % path, "Bad file path in the bundle: %r" % path)
    if path in ("manifest.json", "manifest.new", "manifest.sig"):
        raise _bad("path", "Tệp không hợp lệ trong gói: %r" % path, "Bad file path in the bundle: %r" % path)
    return path


def parse_manifest(raw: bytes) -> dict[str, Any]:
    """The manifest, checked as the node checks it (and a little more: sorted, no duplicates)."""
    if len(raw) > MAX_MANIFEST:
        raise _bad("manifest", "manifest.json quá lớn", "manifest.json is too large (over %d bytes)" % MAX_MANIFEST)
    try:
        m = json.loads(raw)
    except ValueError:
        raise _bad("manifest", "manifest.json không phải JSON", "manifest.json is not JSON")
    if not isinstance(m, dict) or m.get("format") != 1:
        raise _bad("manifest", "manifest.json sai định dạng", "manifest.json: format must be 1")
    if not isinstance(m.get("version"), str) or not VERSION_RE.match(m["version"]):
        raise _bad("manifest", "Phiên bản không hợp lệ", "manifest.json: bad version")
    mpy = m.get("min_micropython", "0")
    if not isinstance(mpy, str) or not re.fullmatch(r"\d+(\.\d+){0,3}", mpy):
        raise _bad("manifest", "min_micropython không hợp lệ", "manifest.json: bad min_micropython")
    if m.get("boot", ENTRY) != ENTRY:
        raise _bad("manifest", "Tệp khởi động phải là main.py", "manifest.json: boot must be main.py")
    built = m.get("built", 0)
    if not isinstance(built, int) or isinstance(built, bool) or not 0 <= built < 2 ** 40:
        raise _bad("manifest", "Thời điểm build không hợp lệ", "manifest.json: bad built time")
    files = m.get("files")
    if not isinstance(files, list) or not files or len(files) > 200:
        raise _bad("manifest", "manifest.json không có tệp", "manifest.json: no files (or over 200)")
    paths = []
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("sha256"), str) or not SHA256_HEX.match(f["sha256"]) \
                or not isinstance(f.get("size"), int) or f["size"] < 0:
            raise _bad("manifest", "Mục tệp không hợp lệ trong manifest.json", "manifest.json: bad file entry")
        paths.append(check_path(f.get("path")))
    if paths != sorted(set(paths)):
        raise _bad("manifest", "Danh sách tệp phải được sắp xếp, không trùng", "manifest.json: files not sorted or repeated")
    if ENTRY not in paths:
        raise _bad("manifest", "Gói thiếu main.py", "the bundle has no main.py")
    return m


class Firmware:
    """Bundles, rollouts and their progress; every method runs on the loop that owns `db`."""

    def __init__(self, *, db: Database, clock: Clock, registry: Registry, commands: CommandService,
                 data_dir: str, release_key: str = "", allow_unsigned: bool = False,
                 log: Callable[[str], None] = print) -> None:
        self.db = db
        self.clock = clock
        self.registry = registry
        self.commands = commands
        self.dir = os.path.join(data_dir, "firmware")
        self.release_key = release_key
        self.allow_unsigned = allow_unsigned
        self.log = log
        self.on_change: list[Callable[[int], None]] = []  # a rollout moved (id): the UI may refresh

    # ---- bundles ---------------------------------------------------------------
    def verify_signature(self, manifest: bytes, sig: bytes | None) -> bool:
        """True if signed by the release key; False if unsigned and that is allowed; else GatewayError."""
        from cryptography.exceptions import InvalidSignature

        if sig is None:
            if self.allow_unsigned:
                return False
            raise _bad("unsigned", "Gói phần mềm chưa được ký (thiếu manifest.sig)",
                       "The bundle is not signed (no manifest.sig); sign it with the release key")
        if not self.release_key:
            if self.allow_unsigned:
                return False
            raise _bad("no_key", "Chưa cấu hình khóa phát hành ([firmware] release_key)",
                       "No release key configured ([firmware] release_key): cannot check the signature")
        try:
            key = load_public_key(self.release_key)
        except (OSError, ValueError) as exc:
            raise _bad("no_key", "Không đọc được khóa phát hành", "Cannot read the release key: %s" % exc)
        try:
            key.verify(sig, manifest)
        except InvalidSignature:
            raise _bad("signature", "Chữ ký của gói không đúng: gói có thể đã bị sửa",
                       "The bundle's signature does not verify: it may have been tampered with")
        return True

    def add(self, data: bytes, user: str | None = None) -> dict[str, Any]:
        """Check and store an uploaded bundle zip; its row. GatewayError when it is refused."""
        if len(data) > MAX_BUNDLE:
            raise _bad("too_big", "Gói quá lớn", "The bundle is too large")
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            names = set(zf.namelist())
            manifest = zf.read("manifest.json")
            sig = zf.read("manifest.sig") if "manifest.sig" in names else None
        except (zipfile.BadZipFile, KeyError, OSError, ValueError):
            raise _bad("zip", "Tệp không phải gói phần mềm (zip có manifest.json)",
                       "Not a firmware bundle (a zip with manifest.json)")
        signed = self.verify_signature(manifest, sig)
        m = parse_manifest(manifest)
        version = m["version"]
        manifest_sha = hashlib.sha256(manifest).hexdigest()
        extra = names - {f["path"] for f in m["files"]} - {"manifest.json", "manifest.sig"}
        extra = {n for n in extra if not n.endswith("/")}
        if extra:
            raise _bad("extra", "Gói có tệp không nằm trong manifest: %s" % sorted(extra)[0],
                       "The zip holds a file the manifest does not list: %s" % sorted(extra)[0])
        old = self.db.one("SELECT manifest_sha FROM firmware WHERE version = ?", version)
        if old is not None:
            if old[0] == manifest_sha:
                return self.get(version)
            raise _bad("exists", "Đã có phiên bản %s khác" % version,
                       "Another bundle of version %s is stored; delete it first" % version)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        total = 0
        for f in m["files"]:
            try:
                body = zf.read(f["path"])
            except KeyError:
                raise _bad("missing", "Gói thiếu tệp %s" % f["path"], "The zip lacks %s" % f["path"])
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError):  # its compressed bytes were altered
                raise _bad("hash", "Tệp %s trong gói bị hỏng hoặc đã bị sửa" % f["path"],
                           "%s is damaged or was altered in the zip" % f["path"])
            if len(body) != f["size"] or hashlib.sha256(body).hexdigest() != f["sha256"]:
                raise _bad("hash", "Tệp %s không khớp mã băm trong manifest" % f["path"],
                           "%s does not match its hash or size in the manifest" % f["path"])
            self._store(f["sha256"], body)
            total += len(body)
        self._store(manifest_sha, manifest)
        now = self.clock.now()
        with self.db.tx():
            self.db.run("INSERT INTO firmware (version, manifest_sha, size, files, signed, min_micropython, built,"
                        " uploaded, uploaded_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", version, manifest_sha, total,
                        len(m["files"]), int(signed), m.get("min_micropython"), m.get("built"), now, user)
            self.db.run_many("INSERT OR IGNORE INTO firmware_files (version, sha) VALUES (?, ?)",
                             [(version, f["sha256"]) for f in m["files"]] + [(version, manifest_sha)])
        return self.get(version)

    def _store(self, sha: str, body: bytes) -> None:
        path = os.path.join(self.dir, sha)
        if os.path.exists(path):
            return
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def get(self, version: str) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM firmware WHERE version = ?", version)
        if row is None:
            raise NotFound("firmware.unknown", "Không có phiên bản %s" % version, "No bundle %s" % version, "version")
        return dict(row)

    def bundles(self) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT * FROM firmware ORDER BY uploaded DESC")
        counts = self.versions()
        return [dict(r, nodes=counts.get(r["version"], 0)) for r in rows]

    def versions(self) -> dict[str, int]:
        """How many (registered) nodes report each firmware version."""
        rows = self.db.all("SELECT s.firmware, COUNT(*) FROM node_state s JOIN nodes n ON n.id = s.node_id"
                           " WHERE n.revoked = 0 AND s.firmware IS NOT NULL GROUP BY s.firmware")
        return {r[0]: r[1] for r in rows}

    def delete(self, version: str) -> None:
        self.get(version)
        if self.db.one("SELECT 1 FROM rollouts WHERE version = ? AND state IN (%s)" % ",".join("?" * len(OPEN)),
                       version, *OPEN):
            raise GatewayError("firmware.in_use", "Phiên bản đang được cập nhật cho thiết bị",
                               "A rollout of this version is open: cancel it first", "version", status=409)
        shas = [r[0] for r in self.db.all("SELECT sha FROM firmware_files WHERE version = ?", version)]
        with self.db.tx():
            self.db.run("DELETE FROM firmware_files WHERE version = ?", version)
            self.db.run("DELETE FROM firmware WHERE version = ?", version)
        for sha in shas:
            if self.db.one("SELECT 1 FROM firmware_files WHERE sha = ?", sha) is None:
                try:
                    os.remove(os.path.join(self.dir, sha))
                except OSError:
                    pass

    # ---- serving to nodes ------------------------------------------------------
    def path_for(self, node_id: str, sha: str) -> str | None:
        """The file a node may fetch now (a file of the bundle an open rollout sent it), else None."""
        if not SHA256_HEX.match(sha):
            return None
        row = self.db.one(
            "SELECT 1 FROM rollout_nodes rn JOIN rollouts r ON r.id = rn.rollout"
            " JOIN firmware_files ff ON ff.version = r.version"
            " WHERE rn.node_id = ? AND rn.status IN (?, ?, ?) AND r.state IN (?, ?, ?) AND ff.sha = ?",
            node_id, *IN_FLIGHT, *OPEN, sha)
        if row is None:
            return None
        path = os.path.join(self.dir, sha)
        return path if os.path.exists(path) else None

    # ---- rollouts ----------------------------------------------------------------
    def start(self, version: str, first_zones: list[str], user: str | None = None,
              nodes: list[str] | None = None) -> dict[str, Any]:
        """A staged rollout of `version`: the nodes of `first_zones`, then every other (or `nodes`)."""
        bundle = self.get(version)
        if self.db.one("SELECT 1 FROM rollouts WHERE state IN (%s)" % ",".join("?" * len(OPEN)), *OPEN):
            raise GatewayError("rollout.open", "Đang có một đợt cập nhật chưa xong",
                               "Another rollout is open: finish or cancel it first", status=409)
        if not first_zones:
            raise GatewayError("rollout.zones", "Chọn ít nhất một thôn cập nhật trước",
                               "Name the zone(s) to update first", "first_zones")
        targets = self.registry.nodes()
        if nodes is not None:
            wanted = set(nodes)
            targets = [n for n in targets if n["id"] in wanted]
        if not targets:
            raise GatewayError("rollout.empty", "Không có thiết bị nào để cập nhật", "No node to update", "nodes")
        first = set(first_zones)
        if not any(first & set(n["zones"]) for n in targets):  # else stage 1 is empty: everything at once
            raise GatewayError("rollout.zones", "Thôn cập nhật trước không có thiết bị nào",
                               "No node to update is in the zone(s) to update first", "first_zones")
        now = self.clock.now()
        with self.db.tx():
            cur = self.db.run("INSERT INTO rollouts (version, first_zones, state, stage, created, created_by, updated)"
                              " VALUES (?, ?, ?, 1, ?, ?, ?)", version, json.dumps(sorted(first)), RUNNING, now,
                              user, now)
            rid = int(cur.lastrowid or 0)
            self.db.run_many("INSERT INTO rollout_nodes (rollout, node_id, stage, status, updated)"
                             " VALUES (?, ?, ?, ?, ?)",
                             [(rid, n["id"], 1 if first & set(n["zones"]) else 2, PENDING, now) for n in targets])
        self.log("rollout %d of %s started (%d nodes)" % (rid, bundle["version"], len(targets)))
        self.advance(rid)
        return self.rollout(rid)

    def _set_state(self, rid: int, state: str, reason: str | None = None) -> None:
        self.db.run("UPDATE rollouts SET state = ?, reason = ?, updated = ? WHERE id = ?", state, reason,
                    self.clock.now(), rid)
        for fn in self.on_change:
            fn(rid)

    def pause(self, rid: int) -> dict[str, Any]:
        r = self.rollout(rid)
        if r["state"] != RUNNING:
            raise GatewayError("rollout.state", "Đợt cập nhật không đang chạy", "The rollout is not running",
                               status=409)
        self._set_state(rid, PAUSED)
        return self.rollout(rid)

    def resume(self, rid: int) -> dict[str, Any]:
        """Paused or halted -> running. Nodes that could not be reached, that refused the bundle or that
        rolled back are sent it again (a stage moves on only when every node in it is confirmed; one
        that rolls back again halts the rollout again: to go on without it, cancel and start a rollout
        of the others)."""
        r = self.rollout(rid)
        if r["state"] not in (PAUSED, HALTED):
            raise GatewayError("rollout.state", "Đợt cập nhật không tạm dừng", "The rollout is not paused or halted",
                               status=409)
        self.db.run("UPDATE rollout_nodes SET status = ?, reason = NULL WHERE rollout = ? AND status IN (?, ?, ?)",
                    PENDING, rid, UNREACHABLE, FAILED, ROLLED_BACK)
        self._set_state(rid, RUNNING)
        self.advance(rid)
        return self.rollout(rid)

    def cancel(self, rid: int) -> dict[str, Any]:
        r = self.rollout(rid)
        if r["state"] not in OPEN:
            raise GatewayError("rollout.state", "Đợt cập nhật đã kết thúc", "The rollout is over", status=409)
        self._set_state(rid, CANCELLED)
        return self.rollout(rid)

    def halt(self, rid: int, reason: str) -> None:
        row = self.db.one("SELECT state FROM rollouts WHERE id = ?", rid)
        if row is not None and row[0] in (RUNNING, PAUSED):
            self.log("rollout %d halted: %s" % (rid, reason))
            self._set_state(rid, HALTED, reason[:200])

    def advance(self, rid: int) -> None:
        """Send the current stage's pending nodes their command; move to the next stage when it is done."""
        while True:
            r = self.db.one("SELECT * FROM rollouts WHERE id = ?", rid)
            if r is None or r["state"] != RUNNING:
                return
            stage = r["stage"]
            rows = self.db.all("SELECT node_id, status FROM rollout_nodes WHERE rollout = ? AND stage = ?", rid, stage)
            pending = [x["node_id"] for x in rows if x["status"] == PENDING]
            if pending:
                self._send(rid, r["version"], pending)
                rows = self.db.all("SELECT node_id, status FROM rollout_nodes WHERE rollout = ? AND stage = ?",
                                   rid, stage)
            if any(x["status"] != CONFIRMED for x in rows):
                return
            more = self.db.scalar("SELECT MIN(stage) FROM rollout_nodes WHERE rollout = ? AND stage > ?", rid, stage)
            if more is None:
                self._set_state(rid, DONE)
                self.log("rollout %d done" % rid)
                return
            self.db.run("UPDATE rollouts SET stage = ?, updated = ? WHERE id = ?", more, self.clock.now(), rid)

    def _send(self, rid: int, version: str, node_ids: list[str]) -> None:
        bundle = self.get(version)
        now = self.clock.now()
        running = {r[0]: r[1] for r in self.db.all(
            "SELECT node_id, firmware FROM node_state WHERE node_id IN (%s)" % ",".join("?" * len(node_ids)),
            *node_ids)}
        todo = []
        for node_id in node_ids:
            if running.get(node_id) == version:
                self._node(rid, node_id, CONFIRMED, "already", now)
            else:
                todo.append(node_id)
        if not todo:
            return
        args = {"version": version, "manifest": bundle["manifest_sha"], "path": ops.OTA_PATH}
        ids = self.commands.create_many([(n, ops.OTA, args) for n in todo], batch="ota-%d" % rid)
        with self.db.tx():
            for node_id, cmd_id in zip(todo, ids):
                self.db.run("UPDATE rollout_nodes SET status = ?, cmd_id = ?, reason = NULL, updated = ?"
                            " WHERE rollout = ? AND node_id = ?", SENT, cmd_id, now, rid, node_id)

    def _node(self, rid: int, node_id: str, status: str, reason: str | None, now: float) -> None:
        self.db.run("UPDATE rollout_nodes SET status = ?, reason = ?, updated = ? WHERE rollout = ? AND node_id = ?",
                    status, reason, now, rid, node_id)

    def _open_row(self, node_id: str) -> Any:
        return self.db.one(
            "SELECT rn.rollout, rn.status, rn.cmd_id, r.version, r.state FROM rollout_nodes rn"
            " JOIN rollouts r ON r.id = rn.rollout WHERE rn.node_id = ? AND r.state IN (?, ?, ?)"
            " ORDER BY rn.rollout DESC LIMIT 1", node_id, *OPEN)

    # ---- what the nodes say -------------------------------------------------------
    def on_event(self, node_id: str, evt: Event) -> None:
        """A node's ota_* event moves its row (a rollback or a refusal halts the rollout)."""
        if not evt.kind.startswith("ota_"):
            return
        row = self._open_row(node_id)
        if row is None:
            return
        data = evt.data if isinstance(evt.data, dict) else {}
        if data.get("version") != row["version"]:
            return
        rid, now, kind = row["rollout"], self.clock.now(), evt.kind
        if kind == "ota_progress" and row["status"] == SENT:
            self._node(rid, node_id, DOWNLOADING, None, now)
        elif kind == "ota_switched" and row["status"] in (SENT, DOWNLOADING):
            self._node(rid, node_id, SWITCHED, None, now)
        elif kind == "ota_confirmed":
            self._node(rid, node_id, CONFIRMED, "already" if data.get("already") else None, now)
            self.advance(rid)
        elif kind == "ota_rolled_back":
            why = str(data.get("why") or "?")[:120]
            self._node(rid, node_id, ROLLED_BACK, why, now)
            self.halt(rid, "%s rolled back: %s" % (node_id, why))
        elif kind == "ota_failed":
            why = str(data.get("reason") or "?")[:120]
            self._node(rid, node_id, FAILED, why, now)
            self.halt(rid, "%s refused the update: %s" % (node_id, why))
        for fn in self.on_change:
            fn(rid)

    def on_command_result(self, cmd: dict[str, Any]) -> None:
        """An ota command answered or expired: a refusal halts; an expiry marks the node unreachable."""
        if cmd.get("op") != ops.OTA:
            return
        row = self._open_row(cmd["node_id"])
        if row is None or row["cmd_id"] != cmd.get("id") or row["status"] != SENT:
            return
        rid, now = row["rollout"], self.clock.now()
        if cmd.get("status") == "rejected":
            why = "%s: %s" % (cmd.get("reason"), cmd.get("detail") or "")
            self._node(rid, cmd["node_id"], FAILED, why[:120], now)
            self.halt(rid, "%s refused the command: %s" % (cmd["node_id"], why[:120]))
        elif cmd.get("status") == "expired":
            self._node(rid, cmd["node_id"], UNREACHABLE, "the command expired unanswered", now)

    # ---- read models ----------------------------------------------------------------
    def rollout(self, rid: int) -> dict[str, Any]:
        r = self.db.one("SELECT * FROM rollouts WHERE id = ?", rid) if 0 < rid < 2 ** 62 else None
        if r is None:
            raise NotFound("rollout.unknown", "Không có đợt cập nhật %s" % rid, "No rollout %s" % rid, "rollout")
        nodes = [dict(x) for x in self.db.all(
            "SELECT rn.node_id, rn.stage, rn.status, rn.reason, rn.cmd_id, rn.updated, s.firmware, s.online"
            " FROM rollout_nodes rn LEFT JOIN node_state s ON s.node_id = rn.node_id"
            " WHERE rn.rollout = ? ORDER BY rn.stage, rn.node_id", rid)]
        progress = {s: 0 for s in NODE_STATES}
        for n in nodes:
            progress[n["status"]] += 1
        return dict(r, first_zones=json.loads(r["first_zones"]), nodes=nodes, progress=progress)

    def rollouts(self, limit: int = 50) -> list[dict[str, Any]]:
        out = []
        for r in self.db.all("SELECT id FROM rollouts ORDER BY id DESC LIMIT ?", limit):
            full = self.rollout(r[0])
            full.pop("nodes")
            out.append(full)
        return out

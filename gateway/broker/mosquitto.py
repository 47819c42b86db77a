"""Mosquitto as a child process of the gateway: its files, its process, reloads, the bridge.

`MosquittoBroker` writes mosquitto.conf, the password file and the ACL file
(mode 0600, temp-then-rename) into its data directory, starts `mosquitto -c`,
forwards its log lines, reloads users and rules with SIGHUP (returning only once
Mosquitto applied them) and stops it with SIGTERM. `bridge_text()` writes the
optional bridge section to a province broker; `password_file_text()` the
`username:hash` lines. Mosquitto enforces the ACL itself; what it does and does
not check is listed in the package docstring.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pwd
import re
import shutil
import signal
from collections.abc import Callable, Iterable
from typing import Any

from gateway.broker.errors import BrokerConfigError, BrokerError
from gateway.broker.rules import NODE_REPORTS, BrokerUser, _check_users, _site, acl_text
from protocol import topics

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})\Z")
_PRINTABLE = re.compile(r"[!-~]{1,256}\Z")  # printable ASCII, no space: safe on one config line
_PREFIX = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/\Z")


def password_file_text(users: Iterable[BrokerUser]) -> str:
    """Mosquitto password file content: `username:hash` lines."""
    return "".join("%s:%s\n" % (u.username, u.password_hash) for u in _check_users(users))


def _bridge_settings(site: str, bridge: object
                     ) -> tuple[str, int, str | None, str | None, str | os.PathLike[str] | None, str]:
    known = {"host", "port", "username", "password", "tls_ca", "remote_prefix"}
    if not isinstance(bridge, dict):
        raise BrokerConfigError("bridge must be a dict with host, port, username, password, tls_ca, remote_prefix")
    unknown = set(bridge) - known
    if unknown:
        raise BrokerConfigError("unknown bridge setting(s): %s" % ", ".join(sorted(unknown)))
    host = bridge.get("host")
    if not isinstance(host, str) or not _HOST.match(host):
        raise BrokerConfigError("bridge host %r is not a host name or IPv4 address" % (host,))
    tls_ca = bridge.get("tls_ca") or None  # "" or None: not set
    if tls_ca is not None and (not isinstance(tls_ca, (str, os.PathLike)) or "\n" in os.fspath(tls_ca)):
        raise BrokerConfigError("bridge tls_ca must be a file path")
    port = bridge.get("port", 8883 if tls_ca else 1883)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise BrokerConfigError("bridge port %r is not 1..65535" % (port,))
    username, password = bridge.get("username") or None, bridge.get("password") or None
    for what, value in (("username", username), ("password", password)):
        if value is not None and (not isinstance(value, str) or not _PRINTABLE.match(value)):
            raise BrokerConfigError("bridge %s must be 1-256 printable ASCII characters without spaces" % what)
    if password is not None and username is None:
        raise BrokerConfigError("bridge password given without a username")
    prefix = bridge.get("remote_prefix") or ""
    if prefix and (not isinstance(prefix, str) or not _PREFIX.match(prefix)):
        raise BrokerConfigError("bridge remote_prefix %r must be topic levels ending in '/', e.g. 'province/'"
                                % (prefix,))
    return host, port, username, password, tls_ca, prefix


def bridge_text(site: str, bridge: dict[str, Any] | None) -> str:
    """Mosquitto bridge section to a province broker ("" when `bridge` is None or empty).

    `bridge`: {"host", "port", "username", "password", "tls_ca" (optional CA file),
    "remote_prefix" (e.g. "province/": site topics appear upstream as
    "province/denloa/<site>/...")}. Optional settings may be absent, None or "".
    """
    site = _site(site)
    if not bridge:
        return ""
    host, port, username, password, tls_ca, prefix = _bridge_settings(site, bridge)
    root = "%s/%s" % (topics.ROOT, site)
    lines = [
        "# Bridge to the province broker. Directions, and why:",
        "#  out: node state/tele/evt/ack and gateway/state, so the province sees the commune.",
        "#       Never in: these reports are not signed, and nobody upstream may pose as a",
        "#       node or as this gateway to the gateway and staff here.",
        "#  in:  node cmd only. Commands are signed end to end with each node's key (HMAC over",
        "#       topic and body, with a counter and an expiry), so one that came through the",
        "#       province is exactly as safe as one from this gateway: a forged, replayed or",
        "#       misaddressed command is refused by the node and reported. This lets a",
        "#       province operator holding node keys reach the nodes (e.g. a province-wide",
        "#       emergency warning) while the gateway still sees every command (it reads the",
        "#       whole site). The gateway's own commands do not go out (not `both`): the",
        "#       province sees their results on ack.",
        "#  The bridge's own link state is published by Mosquitto on both brokers as",
        "#  $SYS/broker/connection/denloa-%s-gateway/state (1 up, 0 down)." % site,
        "connection denloa-%s" % site,
        "address %s:%d" % (host, port),
        "remote_clientid denloa-%s-gateway" % site,
        "bridge_protocol_version mqttv311",
        "try_private true",
        "cleansession false",  # QoS 1 reports queue while the uplink is down
        "restart_timeout 2 60",
        "keepalive_interval 60",
        "start_type automatic",
    ]
    if username is not None:
        lines.append("remote_username %s" % username)
    if password is not None:
        lines.append("remote_password %s" % password)
    if tls_ca is not None:
        lines.append("bridge_cafile %s" % os.fspath(tls_ca))
    prefixes = ' "" %s' % prefix if prefix else ""
    for kind in NODE_REPORTS:
        lines.append("topic %s/node/+/%s out 1%s" % (root, kind, prefixes))
    lines.append("topic %s/gateway/state out 1%s" % (root, prefixes))
    lines.append("topic %s/node/+/%s in 1%s" % (root, topics.CMD, prefixes))
    return "\n".join(lines) + "\n"


def _write_private(path: str, text: str) -> None:
    """Write temp-then-rename, mode 0600: after a crash the file is old or new, never half."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _probe_host(host: str) -> str:
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host or "", host)


async def _accepts(host: str, port: int, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except (OSError, asyncio.TimeoutError):
        pass
    return True


# An MQTT 3.1.1 CONNECT with no credentials, clean session, client id "denloa-probe".
_PROBE_CONNECT = bytes([0x10, 24, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 10, 0, 12]) + b"denloa-probe"


def find_mosquitto(exe: str | None = None) -> str | None:
    """Path of the mosquitto executable, or None."""
    candidates = [exe] if exe else [shutil.which("mosquitto"), *MOSQUITTO_PATHS]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def mosquitto_available(exe: str | None = None) -> bool:
    return find_mosquitto(exe) is not None


def _default_log() -> Callable[[str], None]:
    return logging.getLogger(__name__).info


class MosquittoBroker:
    """Mosquitto as a child process, configured from the gateway's users.

    Everything lives in `data_dir` (mode 0700): mosquitto.conf, passwd, acl
    (0600), the persistence file and mosquitto.log. Mosquitto's own log lines
    also go to `log`.
    """

    kind = "mosquitto"

    def __init__(self, data_dir: str | os.PathLike[str], site: str, *, host: str = "127.0.0.1", port: int = 1883,
                 bridge: dict[str, Any] | None = None, log: Callable[[str], None] | None = None,
                 exe: str | None = None, tls: dict[str, Any] | None = None) -> None:
        """`tls`: {"port", "cert", "key", "plain_host"}: a TLS listener for nodes on `host`:`port` of
        tls, with the certificate chain and key files; the plain listener (`port`) then listens on
        `plain_host` only ("127.0.0.1": the gateway's own link). None: one plain listener on `host`."""
        self.data_dir = os.path.abspath(os.fspath(data_dir))
        if "\n" in self.data_dir:
            raise BrokerConfigError("data_dir must not contain a newline")
        self.site = _site(site)
        self.tls = dict(tls) if tls else None
        if self.tls is not None:
            for key in ("cert", "key"):
                if "\n" in str(self.tls[key]):
                    raise BrokerConfigError("tls %s path must not contain a newline" % key)
            self.tls_host, self.tls_port = host, int(self.tls["port"])
            host = str(self.tls.get("plain_host") or "127.0.0.1")
        self.host, self.port = host, int(port)
        self.bridge = bridge or None
        self._bridge_text = bridge_text(self.site, bridge)  # refuse a bad bridge now, not at start
        self._log = log or _default_log()
        self._exe_wanted = exe
        self.exe = find_mosquitto(exe)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tail: list[str] = []  # last lines Mosquitto printed, for error messages
        self._reloads_seen = 0
        self._reload_line: asyncio.Event | None = None

    conf_path = property(lambda self: os.path.join(self.data_dir, "mosquitto.conf"))
    passwd_path = property(lambda self: os.path.join(self.data_dir, "passwd"))
    acl_path = property(lambda self: os.path.join(self.data_dir, "acl"))
    log_path = property(lambda self: os.path.join(self.data_dir, "mosquitto.log"))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def config_text(self) -> str:
        listener = "listener %d %s" % (self.port, self.host) if self.host else "listener %d" % self.port
        tls_lines = []
        if self.tls is not None:
            # Nodes reach the broker only through this listener: their password and every report are
            # encrypted on the Wi-Fi; they verify this certificate against the site CA (gateway/tls.py).
            tls_lines = [
                "# The nodes' listener: MQTT over TLS with the site's certificate (gateway/tls.py).",
                "listener %d %s" % (self.tls_port, self.tls_host) if self.tls_host else "listener %d" % self.tls_port,
                "certfile %s" % self.tls["cert"],
                "keyfile %s" % self.tls["key"],
                "tls_version tlsv1.2",
                "require_certificate false",  # nodes log in with their password, inside the encrypted link
            ]
        lines = [
            "# denloa broker for site %s. Generated by gateway/broker at every start." % self.site,
            "per_listener_settings false",
            "# Plain MQTT%s." % (" for the gateway's own link" if self.tls is not None else ""),
            listener,
            *tls_lines,
            "allow_anonymous false",
            # The client id is the username, whatever the client sends: one node can never take
            # over another's connection or session with its client id (rules.bound_client_id).
            "use_username_as_clientid true",
            "password_file %s" % self.passwd_path,
            "acl_file %s" % self.acl_path,
            "persistence true",
            "persistence_location %s/" % self.data_dir,
            "autosave_interval 300",  # a power cut loses at most 5 min of queued QoS 1; SD cards wear
            # Mosquitto silently DROPS QoS 1 messages for a client beyond 1,000 queued (its default):
            # a burst from 1,000 nodes reconnecting (each with up to 32 buffered events) must reach the
            # gateway whole. Bounded, and a node's own queue (its commands) never comes near it.
            "max_queued_messages 100000",
            "max_inflight_messages 100",  # per client in flight: the gateway's link is the busy one
            "log_dest stderr",
            "log_dest file %s" % self.log_path,
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        try:
            # As root Mosquitto would switch to user `mosquitto`, who cannot read our 0600 files.
            lines.append("user %s" % pwd.getpwuid(os.geteuid()).pw_name)
        except KeyError:  # a uid with no name (some containers): Mosquitto keeps it anyway unless root
            pass
        return "\n".join(lines) + "\n" + ("\n" + self._bridge_text if self._bridge_text else "")

    def _write_security(self, users: list[BrokerUser]) -> None:
        passwd, acl = password_file_text(users), acl_text(self.site, users)  # both valid, or neither written
        _write_private(self.passwd_path, passwd)
        _write_private(self.acl_path, acl)

    async def start(self, users: Iterable[BrokerUser], *, timeout: float = 10.0) -> None:
        """Write the files, start Mosquitto and return once its port accepts connections."""
        users = list(users)
        if self.running:
            raise BrokerError("Mosquitto is already running for site %s on port %d" % (self.site, self.port))
        if self.exe is None:
            looked = self._exe_wanted or "mosquitto on PATH, " + ", ".join(MOSQUITTO_PATHS)
            raise BrokerError("Mosquitto is not installed (looked for %s): apt-get install mosquitto, "
                              "or use the embedded broker" % looked)
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        probe = _probe_host(self.host)
        for port in [self.port] + ([self.tls_port] if self.tls is not None else []):
            if await _accepts(probe if port == self.port else _probe_host(self.tls_host), port, 0.5):
                raise BrokerError("port %d is already in use: stop the other broker or choose another port" % port)
        self._write_security(users)
        _write_private(self.conf_path, self.config_text())
        self._tail = []
        self._reloads_seen = 0
        self._reload_line = asyncio.Event()
        self._proc = await asyncio.create_subprocess_exec(
            self.exe, "-c", self.conf_path, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert self._proc.stdout is not None  # stdout=PIPE
        self._reader = asyncio.create_task(self._read_output(self._proc.stdout))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._proc.returncode is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._reader), 2.0)  # its last words
                except asyncio.TimeoutError:
                    pass
                raise BrokerError("Mosquitto exited with status %s:\n%s"
                                  % (self._proc.returncode, "\n".join(self._tail[-20:])))
            if await _accepts(probe, self.port, 0.5) and (
                    self.tls is None or await _accepts(_probe_host(self.tls_host), self.tls_port, 0.5)):
                self._log("broker: Mosquitto %d running on %s:%d%s for site %s"
                          % (self._proc.pid, self.host or "*", self.port,
                             "" if self.tls is None else " and TLS on %s:%d" % (self.tls_host or "*", self.tls_port),
                             self.site))
                return
            if loop.time() > deadline:
                await self.stop()
                raise BrokerError("Mosquitto did not accept connections on port %d within %.0f s:\n%s"
                                  % (self.port, timeout, "\n".join(self._tail[-20:])))
            await asyncio.sleep(0.05)

    async def _read_output(self, stream: asyncio.StreamReader) -> None:
        while True:
            raw = await stream.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip()
            self._tail = self._tail[-49:] + [line]
            if "Reloading config" in line and self._reload_line is not None:  # set before the process starts
                self._reloads_seen += 1
                self._reload_line.set()
            try:
                self._log("mosquitto: " + line)
            except Exception:  # a failing log must not stop the draining: a full pipe would freeze Mosquitto
                pass

    async def reload(self, users: Iterable[BrokerUser], *, timeout: float = 5.0) -> None:
        """Rewrite passwd and acl, SIGHUP, and return once Mosquitto applied them.

        Mosquitto disconnects every client whose login no longer passes (user
        removed, password changed). Returns after the reload: it waits for
        Mosquitto's "Reloading config." line (printed before the reload, in the
        same loop turn) and then for the CONNACK of an anonymous probe, which
        Mosquitto can only send after that turn.
        """
        users = list(users)
        if not self.running or self._proc is None or self._reload_line is None:  # running: neither is None
            raise BrokerError("Mosquitto is not running; start it first")
        self._write_security(users)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = self._reloads_seen
        self._reload_line.clear()
        self._proc.send_signal(signal.SIGHUP)
        while self._reloads_seen == seen:
            left = deadline - loop.time()
            if left <= 0 or not self.running:
                raise BrokerError("Mosquitto did not reload within %.0f s:\n%s"
                                  % (timeout, "\n".join(self._tail[-20:])))
            try:
                await asyncio.wait_for(self._reload_line.wait(), left)
            except asyncio.TimeoutError:
                pass
            self._reload_line.clear()
        await self._barrier(max(0.5, deadline - loop.time()))
        self._log("broker: Mosquitto reloaded %d user(s) for site %s" % (len(users), self.site))

    async def _barrier(self, timeout: float) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(_probe_host(self.host), self.port), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise BrokerError("Mosquitto does not answer on port %d after reload: %s" % (self.port, e)) from None
        try:
            writer.write(_PROBE_CONNECT)
            await asyncio.wait_for(writer.drain(), timeout)
            await asyncio.wait_for(reader.readexactly(4), timeout)  # CONNACK (refused: no credentials)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            raise BrokerError("Mosquitto did not answer a probe after reload: %r" % (e,)) from None
        finally:
            writer.close()

    async def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM (Mosquitto saves persistence), SIGKILL after `timeout`."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                self._log("broker: Mosquitto did not stop within %.0f s; killing it" % timeout)
                proc.kill()
                await asyncio.wait_for(proc.wait(), 5.0)
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 2.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
            self._reader = None

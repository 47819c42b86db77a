"""The MQTT broker the gateway runs: Mosquitto as a child process, or amqtt in-process.

    users = [BrokerUser("gw", hash_password(gw_pw), "gateway"),
             BrokerUser("den-01", hash_password(node_pw), "node", "den-01")]
    broker = make_broker("auto", data_dir, "xa-an-binh", port=1883)   # Mosquitto if installed
    await broker.start(users)
    await broker.reload(users_without_a_revoked_node)
    await broker.stop()

Security model (DESIGN.md): no anonymous client. Each node logs in as its own
id and may publish only its own state/tele/evt/ack and read only its own cmd;
the gateway user reads and writes the whole site; an optional bridge user
mirrors the province bridge below. Only hashes are stored (Mosquitto's `$7$`
PBKDF2-SHA512 format, so one password file serves both brokers).

One rule table, `_rules()`, produces both the Mosquitto ACL file and
`allowed()`:

| role    | publish                                     | receive (and subscribe)                         |
| ------- | ------------------------------------------- | ----------------------------------------------- |
| gateway | `denloa/<site>/#`                           | `denloa/<site>/#`                               |
| node n  | `denloa/<site>/node/n/{state,tele,evt,ack}` | `denloa/<site>/node/n/cmd`                      |
| bridge  | `denloa/<site>/node/+/cmd`                  | `denloa/<site>/node/+/{state,tele,evt,ack}` and |
|         |                                             | `denloa/<site>/gateway/state`                   |

`allowed(..., "subscribe")` grants a filter only when every topic it can
match is readable, so a node may subscribe to its own cmd topic and to no
wildcard at all.

How each broker enforces it (checked by tests/gateway/test_broker_acl.py):

- Mosquitto 2.0 (`acl_file`): publish and delivery are checked per message
  (live, queued for an offline session, retained). Subscriptions are not
  checked: the default ACL check returns success for SUBSCRIBE ("FIXME -
  implement ACL subscription strings", src/security_default.c), so a node
  that subscribes to `denloa/<site>/#` gets a granted SUBACK and then receives
  only its own cmd. A denied publish is dropped silently (MQTT 3.1.1 has no
  way to say so; QoS 1 is still acknowledged, so a node does not resend it).
  A will on a topic the client may not write is accepted at CONNECT and
  dropped when it would be sent.
  Revocation: SIGHUP re-reads the password and ACL files and re-checks
  every connected client (`mosquitto_security_apply_default`): a client whose
  user was removed, or whose password no longer matches, is disconnected at
  once; its will is not sent, since it may no longer write anywhere.
- Embedded amqtt 0.12: a password plugin checks our hashes; a topic plugin
  runs `allowed()` for publish, subscribe (refused with SUBACK 0x80) and
  receive (amqtt checks it for every live delivery and for messages queued
  for an offline session). What amqtt does not check, this module adds:
  a will topic is checked at CONNECT (a forbidden one refuses the
  connection, since amqtt would send it unchecked); retained messages are
  filtered through `allowed(receive)` (amqtt 0.12.1 sends, on every connect,
  the retained messages matching *any* client's subscriptions, unchecked:
  `_SiteBroker` fixes that); a persistent session taken over by another user
  keeps no queued message the new user may not read (as Mosquitto does);
  `reload()` re-checks every connected client like Mosquitto and closes the
  ones that fail, without their will.
  Not done by the embedded broker: persistence (amqtt's session store needs
  SQLAlchemy; after a restart nodes send their birth again on reconnect and
  the gateway its state, so nothing retained is lost for long, and commands
  live in the gateway's SQLite until acknowledged); bridging (use Mosquitto).
  The retained-message fix overrides a private method of amqtt 0.12.1: keep
  amqtt pinned to 0.12.x (the tests fail if a new version changes it).
"""
import asyncio
import base64
import dataclasses
import hashlib
import hmac
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import typing

from protocol import topics
from protocol.errors import TopicError

try:  # only the embedded broker needs amqtt
    from amqtt.broker import Broker as _AmqttBroker
    from amqtt.contexts import Action as _AmqttAction
    from amqtt.plugins.base import BaseAuthPlugin as _BaseAuthPlugin
    from amqtt.plugins.base import BaseTopicPlugin as _BaseTopicPlugin
except ImportError:  # pragma: no cover - depends on the install
    _AmqttBroker = None

ROLES = ("gateway", "node", "bridge")
ACTIONS = ("publish", "subscribe", "receive")
NODE_REPORTS = (topics.STATE, topics.TELE, topics.EVT, topics.ACK)  # what a node sends
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
PBKDF2_SALT_LEN = 12  # what mosquitto_passwd uses
MAX_ITERATIONS = 1_000_000  # refuse absurd counts in a file rather than hang on them

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_B64 = r"[A-Za-z0-9+/]+={0,2}"
_HASH7 = re.compile(r"\$7\$(\d{1,7})\$(%s)\$(%s)\Z" % (_B64, _B64))
_HASH6 = re.compile(r"\$6\$(%s)\$(%s)\Z" % (_B64, _B64))
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})\Z")
_PRINTABLE = re.compile(r"[!-~]{1,256}\Z")  # printable ASCII, no space: safe on one config line
_PREFIX = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/\Z")


class BrokerError(Exception):
    """The broker cannot be started, reloaded or reached; the message says what to do."""


class BrokerConfigError(BrokerError, ValueError):
    """A user, site or bridge setting cannot be turned into a broker configuration."""


# ---- passwords -----------------------------------------------------------------


def hash_password(password: str, *, iterations: int = 101, salt: bytes | None = None) -> str:
    """A Mosquitto 2.0 password-file hash, as mosquitto_passwd writes it.

    `$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt)>`,
    with a random 12-byte salt unless one is given.
    """
    if not isinstance(password, str):
        raise BrokerConfigError("password must be text")
    if "\0" in password:
        raise BrokerConfigError("a password must not contain NUL: Mosquitto stops reading it there")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise BrokerConfigError("iterations must be 1..%d, got %r" % (MAX_ITERATIONS, iterations))
    try:
        secret = password.encode()
    except UnicodeEncodeError:
        raise BrokerConfigError("a password must be valid Unicode text (no lone surrogates)") from None
    salt = os.urandom(PBKDF2_SALT_LEN) if salt is None else bytes(salt)
    if not salt:
        raise BrokerConfigError("salt must not be empty")
    digest = hashlib.pbkdf2_hmac("sha512", secret, salt, iterations)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def verify_password(password: str, hashed: str) -> bool:
    """True if `password` matches a `$7$` (PBKDF2-SHA512) or `$6$` (salted SHA-512) hash.

    Constant-time compare; a malformed hash is simply False.
    """
    if isinstance(password, (bytes, bytearray)):
        secret = bytes(password)
    elif isinstance(password, str):
        try:
            secret = password.encode()
        except UnicodeEncodeError:
            return False
    else:
        return False
    if not isinstance(hashed, str):
        return False
    try:
        m = _HASH7.match(hashed)
        if m:
            iterations = int(m.group(1))
            if not 1 <= iterations <= MAX_ITERATIONS:
                return False
            salt, want = base64.b64decode(m.group(2), validate=True), base64.b64decode(m.group(3), validate=True)
            got = hashlib.pbkdf2_hmac("sha512", secret, salt, iterations)
            return hmac.compare_digest(got, want)
        m = _HASH6.match(hashed)
        if m:
            salt, want = base64.b64decode(m.group(1), validate=True), base64.b64decode(m.group(2), validate=True)
            return hmac.compare_digest(hashlib.sha512(secret + salt).digest(), want)
    except ValueError:  # bad base64
        return False
    return False


def new_password(nbytes: int = 18) -> str:
    """A fresh random password for a node or the gateway (URL-safe, no spaces)."""
    return secrets.token_urlsafe(nbytes)


def _is_hash(text):
    return isinstance(text, str) and bool(_HASH7.match(text) or _HASH6.match(text))


# ---- users and rules -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BrokerUser:
    """One MQTT login. A node's username is its node id; only the hash is kept."""

    username: str
    password_hash: str = dataclasses.field(repr=False)
    role: str = "node"
    node_id: str | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise BrokerConfigError("role must be one of %s, got %r" % ("/".join(ROLES), self.role))
        if self.role == "node":
            node_id = self.username if self.node_id is None else self.node_id
            try:
                topics.check_id(node_id, "node id")
            except TopicError as e:
                raise BrokerConfigError(str(e)) from None
            if node_id != self.username:
                raise BrokerConfigError("a node logs in with its node id: username %r != node id %r"
                                        % (self.username, node_id))
            object.__setattr__(self, "node_id", node_id)
        else:
            if self.node_id is not None:
                raise BrokerConfigError("only a node user has a node id (%s user %r)" % (self.role, self.username))
            if not isinstance(self.username, str) or not _USERNAME.match(self.username):
                raise BrokerConfigError("username %r: use 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)"
                                        % (self.username,))
        if not _is_hash(self.password_hash):
            raise BrokerConfigError("user %r: password_hash is not a $7$ or $6$ Mosquitto hash (never store the "
                                    "password itself; use hash_password())" % (self.username,))

    @classmethod
    def with_password(cls, username, password, role="node", node_id=None):
        return cls(username, hash_password(password), role, node_id)


def _site(site):
    try:
        return topics.check_id(site, "site id")
    except TopicError as e:
        raise BrokerConfigError(str(e)) from None


def _rules(site, user):
    """(access, filter) pairs for one user; access is "read", "write" or "readwrite"."""
    root = "%s/%s" % (topics.ROOT, site)
    if user.role == "gateway":
        # The gateway state topic is inside the site; listed so the file says it on purpose.
        return (("readwrite", root + "/#"), ("readwrite", root + "/gateway/state"))
    if user.role == "node":
        own = "%s/node/%s/" % (root, user.node_id)
        return tuple(("write", own + kind) for kind in NODE_REPORTS) + (("read", own + topics.CMD),)
    # The bridge user may do exactly what the province bridge (bridge_text) does.
    return (tuple(("read", "%s/node/+/%s" % (root, kind)) for kind in NODE_REPORTS)
            + (("read", root + "/gateway/state"), ("write", "%s/node/+/%s" % (root, topics.CMD))))


def _check_users(users):
    seen = set()
    for user in users:
        if not isinstance(user, BrokerUser):
            raise BrokerConfigError("expected BrokerUser, got %r" % (type(user).__name__,))
        if user.username in seen:
            raise BrokerConfigError("username %r appears twice" % user.username)
        seen.add(user.username)
    return list(users)


def _valid_topic(topic):
    return (isinstance(topic, str) and 0 < len(topic.encode()) <= 65535
            and not any(c in topic for c in "+#\0"))


def _valid_filter(text):
    if not isinstance(text, str) or not 0 < len(text.encode()) <= 65535 or "\0" in text:
        return False
    levels = text.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _matches(filt, topic):
    """MQTT 3.1.1 matching of a concrete topic against a filter (4.7)."""
    if topic.startswith("$") and filt[:1] in ("+", "#"):
        return False
    f, t = filt.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True  # also matches the parent level ("a/#" matches "a")
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def _covers(rule, filt):
    """True if every topic that `filt` can match is matched by `rule`."""
    if filt.startswith("$") and not rule.startswith("$"):
        return False  # a rule starting with a wildcard does not match $ topics
    r, f = rule.split("/"), filt.split("/")
    for i, level in enumerate(r):
        if level == "#":
            return True
        if i >= len(f):
            return False  # filt ends earlier: it matches a topic `rule` cannot
        if f[i] == "#":
            return False  # filt matches deeper topics, and the parent, that `rule` does not
        if level != "+" and level != f[i]:
            return False  # a literal in rule must be the same literal in filt ("+" in filt is wider)
    return len(r) == len(f)


def allowed(site: str, user: BrokerUser, topic: str, action: str) -> bool:
    """The rules above as pure Python: may `user` publish / subscribe / receive `topic`?

    For "subscribe", `topic` is a filter and is allowed only if every topic it
    can match is readable. Malformed topics and filters are never allowed.
    """
    site = _site(site)
    if action not in ACTIONS:
        raise ValueError("action must be one of %s, got %r" % ("/".join(ACTIONS), action))
    rules = _rules(site, user)
    if action == "subscribe":
        if not _valid_filter(topic):
            return False
        return any("read" in access and _covers(rule, topic) for access, rule in rules)
    if not _valid_topic(topic):
        return False
    need = "write" if action == "publish" else "read"
    return any(need in access and _matches(rule, topic) for access, rule in rules)


# ---- Mosquitto files -----------------------------------------------------------


def acl_text(site: str, users: list[BrokerUser]) -> str:
    """Mosquitto ACL file content: one `user` block per user, no pattern rules.

    Explicit blocks rather than `pattern ... %u` so that a user removed from
    the file keeps no access at all, even while still connected.
    """
    site = _site(site)
    lines = ["# denloa broker ACL for site %s. Generated by gateway/broker.py; edits are overwritten." % site,
             "# No rule before the first `user` line: anonymous clients get nothing."]
    for user in _check_users(users):
        lines.append("")
        lines.append("# %s%s" % (user.role, "" if user.role != "node" else " " + user.node_id))
        lines.append("user %s" % user.username)
        lines.extend("topic %s %s" % rule for rule in _rules(site, user))
    return "\n".join(lines) + "\n"


def password_file_text(users) -> str:
    """Mosquitto password file content: `username:hash` lines."""
    return "".join("%s:%s\n" % (u.username, u.password_hash) for u in _check_users(users))


def _bridge_settings(site, bridge):
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


def bridge_text(site: str, bridge: dict | None) -> str:
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


def _write_private(path, text):
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


def _probe_host(host):
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host or "", host)


async def _accepts(host, port, timeout):
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


def find_mosquitto(exe=None):
    """Path of the mosquitto executable, or None."""
    candidates = [exe] if exe else [shutil.which("mosquitto"), *MOSQUITTO_PATHS]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def mosquitto_available(exe=None) -> bool:
    return find_mosquitto(exe) is not None


def _default_log():
    return logging.getLogger(__name__).info


class MosquittoBroker:
    """Mosquitto as a child process, configured from the gateway's users.

    Everything lives in `data_dir` (mode 0700): mosquitto.conf, passwd, acl
    (0600), the persistence file and mosquitto.log. Mosquitto's own log lines
    also go to `log`.
    """

    kind = "mosquitto"

    def __init__(self, data_dir, site, *, host="127.0.0.1", port=1883, bridge=None, log=None, exe=None):
        self.data_dir = os.path.abspath(os.fspath(data_dir))
        if "\n" in self.data_dir:
            raise BrokerConfigError("data_dir must not contain a newline")
        self.site = _site(site)
        self.host, self.port = host, int(port)
        self.bridge = bridge or None
        self._bridge_text = bridge_text(self.site, bridge)  # refuse a bad bridge now, not at start
        self._log = log or _default_log()
        self._exe_wanted = exe
        self.exe = find_mosquitto(exe)
        self._proc = None
        self._reader = None
        self._tail = []  # last lines Mosquitto printed, for error messages
        self._reloads_seen = 0
        self._reload_line = None

    conf_path = property(lambda self: os.path.join(self.data_dir, "mosquitto.conf"))
    passwd_path = property(lambda self: os.path.join(self.data_dir, "passwd"))
    acl_path = property(lambda self: os.path.join(self.data_dir, "acl"))
    log_path = property(lambda self: os.path.join(self.data_dir, "mosquitto.log"))

    @property
    def running(self):
        return self._proc is not None and self._proc.returncode is None

    def config_text(self):
        listener = "listener %d %s" % (self.port, self.host) if self.host else "listener %d" % self.port
        lines = [
            "# denloa broker for site %s. Generated by gateway/broker.py at every start." % self.site,
            "per_listener_settings false",
            listener,
            "allow_anonymous false",
            "password_file %s" % self.passwd_path,
            "acl_file %s" % self.acl_path,
            "persistence true",
            "persistence_location %s/" % self.data_dir,
            "autosave_interval 300",  # a power cut loses at most 5 min of queued QoS 1; SD cards wear
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

    def _write_security(self, users):
        passwd, acl = password_file_text(users), acl_text(self.site, users)  # both valid, or neither written
        _write_private(self.passwd_path, passwd)
        _write_private(self.acl_path, acl)

    async def start(self, users, *, timeout=10.0):
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
        if await _accepts(probe, self.port, 0.5):
            raise BrokerError("port %d on %s is already in use: stop the other broker or choose another port"
                              % (self.port, probe))
        self._write_security(users)
        _write_private(self.conf_path, self.config_text())
        self._tail = []
        self._reloads_seen = 0
        self._reload_line = asyncio.Event()
        self._proc = await asyncio.create_subprocess_exec(
            self.exe, "-c", self.conf_path, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
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
            if await _accepts(probe, self.port, 0.5):
                self._log("broker: Mosquitto %d running on %s:%d for site %s"
                          % (self._proc.pid, self.host or "*", self.port, self.site))
                return
            if loop.time() > deadline:
                await self.stop()
                raise BrokerError("Mosquitto did not accept connections on port %d within %.0f s:\n%s"
                                  % (self.port, timeout, "\n".join(self._tail[-20:])))
            await asyncio.sleep(0.05)

    async def _read_output(self, stream):
        while True:
            raw = await stream.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip()
            self._tail = self._tail[-49:] + [line]
            if "Reloading config" in line:
                self._reloads_seen += 1
                self._reload_line.set()
            try:
                self._log("mosquitto: " + line)
            except Exception:  # a failing log must not stop the draining: a full pipe would freeze Mosquitto
                pass

    async def reload(self, users, *, timeout=5.0):
        """Rewrite passwd and acl, SIGHUP, and return once Mosquitto applied them.

        Mosquitto disconnects every client whose login no longer passes (user
        removed, password changed). Returns after the reload: it waits for
        Mosquitto's "Reloading config." line (printed before the reload, in the
        same loop turn) and then for the CONNACK of an anonymous probe, which
        Mosquitto can only send after that turn.
        """
        users = list(users)
        if not self.running:
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

    async def _barrier(self, timeout):
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

    async def stop(self, *, timeout=10.0):
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


# ---- embedded amqtt broker -----------------------------------------------------


class _Logins:
    """The current users of one embedded broker; `reload()` swaps `users` in one assignment."""

    def __init__(self, site, users, log):
        self.site = site
        self.users = {u.username: u for u in _check_users(users)}
        self.log = log
        self._decoy = hash_password(secrets.token_hex(8))  # unknown users cost as much as known ones

    def login(self, username, password):
        user = self.users.get(username) if isinstance(username, str) else None
        ok = verify_password(password if password is not None else "", user.password_hash if user else self._decoy)
        return user if ok and user is not None else None

    def may(self, username, topic, action):
        user = self.users.get(username) if isinstance(username, str) else None
        return user is not None and allowed(self.site, user, topic, action)


if _AmqttBroker is not None:

    class SiteAuthPlugin(_BaseAuthPlugin):
        """amqtt auth plugin: our password hashes, no anonymous, will topic checked."""

        @dataclasses.dataclass
        class Config:
            logins: typing.Any = None

        async def authenticate(self, *, session):
            logins = self.config.logins
            user = logins.login(session.username, session.password)
            if user is None:
                logins.log("broker: refused login %r from client %r" % (session.username, session.client_id))
                return False
            if session.will_flag and not allowed(logins.site, user, session.will_topic or "", "publish"):
                # amqtt would publish the will without any check: refuse the connection instead.
                logins.log("broker: refused %r: will topic %r is not its own" % (user.username, session.will_topic))
                return False
            _drop_unreadable(session, logins)
            return True

    def _drop_unreadable(session, logins):
        """Forget what a persistent session queued that the user now logging in may not read."""
        kept = []
        while not session.retained_messages.empty():
            message = session.retained_messages.get_nowait()
            if logins.may(session.username, message.topic, "receive"):
                kept.append(message)
        for message in kept:
            session.retained_messages.put_nowait(message)
        for packet_id, message in list(session.inflight_out.items()):
            if not logins.may(session.username, message.topic, "receive"):
                del session.inflight_out[packet_id]

    class SiteAclPlugin(_BaseTopicPlugin):
        """amqtt topic plugin: `allowed()` for publish, subscribe and receive."""

        @dataclasses.dataclass
        class Config:
            logins: typing.Any = None

        async def topic_filtering(self, *, session=None, topic=None, action=None):
            if session is None or topic is None or action is None:
                return False
            return self.config.logins.may(session.username, topic, str(action.value))

    class _Snapshot(dict):
        """amqtt 0.12.1 iterates its subscriptions while awaiting inside the loop; another client
        subscribing meanwhile raised 'dictionary changed size during iteration' and the message
        was lost for the remaining subscribers. Iterate over a copy instead."""

        def items(self):
            return [(k, list(v)) for k, v in super().items()]

    class _SiteBroker(_AmqttBroker):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._subscriptions = _Snapshot(self._subscriptions)

        async def _publish_retained_messages_for_subscription(self, subscription, session):
            # amqtt 0.12.1 calls this on every connect with *every* client's filters, and
            # sends what matches unchecked: keep the session's own filters and what it may read.
            topic_filter, qos = subscription
            if not any(s.client_id == session.client_id for s, _ in self._subscriptions.get(topic_filter, ())):
                return
            handler = self._get_handler(session)
            if handler is None:
                return
            sends = []
            for topic, retained in list(self._retained_messages.items()):
                if self._matches(topic, topic_filter) and await self._topic_filtering(
                        session, topic, _AmqttAction.RECEIVE):
                    sends.append(asyncio.ensure_future(handler.mqtt_publish(
                        retained.topic, retained.data, min(qos, retained.qos or qos), retain=True)))
            if sends:
                await asyncio.wait(sends)


class EmbeddedBroker:
    """amqtt in this process: the zero-install default. Same API as MosquittoBroker.

    See the module docstring for what it enforces beyond amqtt, and what it does not do.
    """

    kind = "embedded"

    def __init__(self, data_dir, site, *, host="127.0.0.1", port=1883, bridge=None, log=None):
        if bridge:
            raise BrokerConfigError("the embedded broker cannot bridge to a province broker: install Mosquitto "
                                    "(apt-get install mosquitto) and use the mosquitto broker")
        self.data_dir = os.path.abspath(os.fspath(data_dir))
        self.site = _site(site)
        self.host, self.port = host, int(port)
        self.bridge = None
        self._log = log or _default_log()
        self._broker = None
        self._logins = None

    @property
    def running(self):
        return self._broker is not None

    async def start(self, users, *, timeout=10.0):
        if _AmqttBroker is None:
            raise BrokerError("the embedded broker needs amqtt: pip install 'amqtt>=0.12.1,<0.13', "
                              "or install Mosquitto")
        if self.running:
            raise BrokerError("the embedded broker is already running for site %s on port %d" % (self.site, self.port))
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        self._logins = _Logins(self.site, users, self._log)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": "%s:%d" % (self.host or "", self.port)}},
            "plugins": {
                "%s.SiteAuthPlugin" % __name__: {"logins": self._logins},
                "%s.SiteAclPlugin" % __name__: {"logins": self._logins},
            },
        }
        broker = _SiteBroker(config)
        try:
            await asyncio.wait_for(broker.start(), timeout)
        except Exception as e:  # amqtt wraps bind errors in BrokerError; a timeout is ours
            raise BrokerError("the embedded broker could not listen on %s:%d: %s"
                              % (self.host or "*", self.port, e)) from None
        self._broker = broker
        self._log("broker: embedded amqtt broker on %s:%d for site %s" % (self.host or "*", self.port, self.site))

    async def reload(self, users, *, timeout=5.0):
        """Swap the users, then close every connection whose login no longer passes (no will)."""
        users = list(users)
        if not self.running:
            raise BrokerError("the embedded broker is not running; start it first")
        logins = _Logins(self.site, users, self._log)
        self._logins.users = logins.users  # the plugins hold self._logins: one assignment switches them
        closing = []
        for client_id, (session, handler) in list(self._broker.sessions.items()):
            if session.transitions.state != "connected":
                continue
            if self._logins.login(session.username, session.password) is None:
                self._log("broker: closing %r (user %r revoked)" % (client_id, session.username))
                session.will_flag = False  # as Mosquitto: a revoked user may write nowhere, not even its will
                closing.append(handler.handle_connection_closed())
        if closing:
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout)
        self._log("broker: embedded broker reloaded %d user(s) for site %s" % (len(users), self.site))

    async def stop(self, *, timeout=10.0):
        broker, self._broker = self._broker, None
        if broker is not None:
            await asyncio.wait_for(broker.shutdown(), timeout)


def make_broker(kind, data_dir, site, **kw):
    """"mosquitto", "embedded", or "auto" (Mosquitto when installed, else embedded)."""
    if kind == "auto":
        kind = "mosquitto" if mosquitto_available(kw.get("exe")) else "embedded"
    if kind == "mosquitto":
        return MosquittoBroker(data_dir, site, **kw)
    if kind == "embedded":
        kw.pop("exe", None)
        return EmbeddedBroker(data_dir, site, **kw)
    raise BrokerConfigError("broker kind must be auto, mosquitto or embedded, got %r" % (kind,))

"""Who may do what: the broker users and the one rule table both brokers enforce.

A `BrokerUser` is one MQTT login (role gateway, node or bridge; a node's
username is its node id; only a password hash is kept). `_rules()` is the table
(see the package docstring) from which come both `acl_text()`, the Mosquitto ACL
file, and `allowed()`, the same rules as pure Python for the embedded broker and
the tests: may this user publish, subscribe to or receive this topic? A
subscription is granted only when every topic its filter can match is readable.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from gateway.broker.errors import BrokerConfigError
from gateway.broker.passwords import _is_hash, hash_password
from protocol import topics
from protocol.errors import TopicError

ROLES = ("gateway", "node", "bridge")
ACTIONS = ("publish", "subscribe", "receive")
NODE_REPORTS = (topics.STATE, topics.TELE, topics.EVT, topics.ACK)  # what a node sends

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


@dataclasses.dataclass(frozen=True)
class BrokerUser:
    """One MQTT login. A node's username is its node id; only the hash is kept."""

    username: str
    password_hash: str = dataclasses.field(repr=False)
    role: str = "node"
    node_id: str | None = None

    def __post_init__(self) -> None:
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
    def with_password(cls, username: str, password: str, role: str = "node",
                      node_id: str | None = None) -> BrokerUser:
        return cls(username, hash_password(password), role, node_id)


def bound_client_id(user: BrokerUser) -> str:
    """The one MQTT client id a user's connections get, whatever id the client sends: its username.

    Both brokers replace the client id with this (Mosquitto: `use_username_as_clientid`),
    so a client logged in as one user can never take over, or be handed, the session of
    another user (a node's firmware sends `<site>.<node>`; it gets `<node>`).
    """
    return user.username


def _site(site: str) -> str:
    try:
        return topics.check_id(site, "site id")
    except TopicError as e:
        raise BrokerConfigError(str(e)) from None


def _rules(site: str, user: BrokerUser) -> tuple[tuple[str, str], ...]:
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


def _check_users(users: Iterable[BrokerUser]) -> list[BrokerUser]:
    seen = set()
    for user in users:
        if not isinstance(user, BrokerUser):
            raise BrokerConfigError("expected BrokerUser, got %r" % (type(user).__name__,))
        if user.username in seen:
            raise BrokerConfigError("username %r appears twice" % user.username)
        seen.add(user.username)
    return list(users)


def _valid_topic(topic: object) -> bool:
    return (isinstance(topic, str) and 0 < len(topic.encode()) <= 65535
            and not any(c in topic for c in "+#\0"))


def _valid_filter(text: object) -> bool:
    if not isinstance(text, str) or not 0 < len(text.encode()) <= 65535 or "\0" in text:
        return False
    levels = text.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _matches(filt: str, topic: str) -> bool:
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


def _covers(rule: str, filt: str) -> bool:
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



def acl_text(site: str, users: list[BrokerUser]) -> str:
    """Mosquitto ACL file content: one `user` block per user, no pattern rules.

    Explicit blocks rather than `pattern ... %u` so that a user removed from
    the file keeps no access at all, even while still connected.
    """
    site = _site(site)
    lines = ["# denloa broker ACL for site %s. Generated by gateway/broker; edits are overwritten." % site,
             "# No rule before the first `user` line: anonymous clients get nothing."]
    for user in _check_users(users):
        lines.append("")
        # node_id is set for every node user (__post_init__)
        lines.append("# %s%s" % (user.role, "" if user.role != "node" else " %s" % user.node_id))
        lines.append("user %s" % user.username)
        lines.extend("topic %s %s" % rule for rule in _rules(site, user))
    return "\n".join(lines) + "\n"

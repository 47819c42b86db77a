"""The MQTT broker the gateway runs: Mosquitto as a child process, or amqtt in-process.

    users = [BrokerUser("gw", hash_password(gw_pw), "gateway"),
             BrokerUser("den-01", hash_password(node_pw), "node", "den-01")]
    broker = make_broker("auto", data_dir, "xa-an-binh", port=1883)   # Mosquitto if installed
    await broker.start(users)
    await broker.reload(users_without_a_revoked_node)
    await broker.stop()

Security model (docs/design.md): no anonymous client. Each node logs in as its own
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

- Both: the MQTT client id is the username, whatever the client sends
  (`bound_client_id()`), so no login can take over another user's connection or
  persistent session. Mosquitto: `use_username_as_clientid true`. Embedded:
  `_SiteBroker` checks the login and rewrites the id before amqtt touches any
  session (amqtt 0.12.1 alone takes over the named id even for a failed login).

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

Layout: `errors` (BrokerError, BrokerConfigError), `passwords` (the `$7$` hash),
`rules` (BrokerUser, the rule table, `allowed()`, the ACL file), `mosquitto`
(MosquittoBroker, its files and the bridge), `embedded` (EmbeddedBroker on amqtt).
Import from `gateway.broker`; the names below are its interface.
"""
from __future__ import annotations

import os
from typing import Any

from gateway.broker.embedded import EmbeddedBroker
from gateway.broker.errors import BrokerConfigError, BrokerError
from gateway.broker.mosquitto import (
    MOSQUITTO_PATHS, MosquittoBroker, bridge_text, find_mosquitto, mosquitto_available, password_file_text,
)
from gateway.broker.passwords import MAX_ITERATIONS, PBKDF2_SALT_LEN, hash_password, new_password, verify_password
from gateway.broker.rules import ACTIONS, NODE_REPORTS, ROLES, BrokerUser, acl_text, allowed

__all__ = [
    "ACTIONS", "MAX_ITERATIONS", "MOSQUITTO_PATHS", "NODE_REPORTS", "PBKDF2_SALT_LEN", "ROLES",
    "BrokerConfigError", "BrokerError", "BrokerUser", "EmbeddedBroker", "MosquittoBroker",
    "acl_text", "allowed", "bridge_text", "find_mosquitto", "hash_password", "make_broker",
    "mosquitto_available", "new_password", "password_file_text", "verify_password",
]


def make_broker(kind: str, data_dir: str | os.PathLike[str], site: str,
                **kw: Any) -> MosquittoBroker | EmbeddedBroker:
    """"mosquitto", "embedded", or "auto" (Mosquitto when installed, else embedded)."""
    if kind == "auto":
        kind = "mosquitto" if mosquitto_available(kw.get("exe")) else "embedded"
    if kind == "mosquitto":
        return MosquittoBroker(data_dir, site, **kw)
    if kind == "embedded":
        kw.pop("exe", None)
        return EmbeddedBroker(data_dir, site, **kw)
    raise BrokerConfigError("broker kind must be auto, mosquitto or embedded, got %r" % (kind,))

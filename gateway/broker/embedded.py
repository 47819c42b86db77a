"""The embedded MQTT broker: amqtt 0.12 in the gateway's own event loop, the zero-install default.

`EmbeddedBroker` has the same API as `MosquittoBroker` (start / reload / stop)
and enforces the same rules: a password plugin checks our `$7$` hashes, a topic
plugin runs `allowed()` for publish, subscribe and receive, and `_SiteBroker`
patches what amqtt 0.12.1 leaves unchecked (will topics, retained messages,
sessions taken over by another user, clients of a revoked user). It keeps
nothing on disk and cannot bridge. It overrides private amqtt methods, so amqtt
stays pinned to 0.12.x (the tests fail if a new version changes them).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import typing
from collections.abc import Callable, Iterable
from typing import Any

from gateway.broker.errors import BrokerConfigError, BrokerError
from gateway.broker.passwords import hash_password, verify_password
from gateway.broker.rules import BrokerUser, _check_users, _site, allowed, bound_client_id

try:  # only the embedded broker needs amqtt
    from amqtt.broker import Broker as _AmqttBroker
    from amqtt.contexts import Action as _AmqttAction
    from amqtt.errors import AMQTTError as _AMQTTError
    from amqtt.errors import MQTTError as _MQTTError
    from amqtt.errors import NoDataError as _NoDataError
    from amqtt.mqtt.connack import NOT_AUTHORIZED as _NOT_AUTHORIZED
    from amqtt.mqtt.connack import ConnackPacket as _ConnackPacket
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler as _BrokerProtocolHandler
    from amqtt.plugins.base import BaseAuthPlugin as _BaseAuthPlugin
    from amqtt.plugins.base import BaseTopicPlugin as _BaseTopicPlugin
except ImportError:  # pragma: no cover - depends on the install
    _AmqttBroker = None


def _default_log() -> Callable[[str], None]:
    return logging.getLogger(__name__).info


class _Logins:
    """The current users of one embedded broker; `reload()` swaps `users` in one assignment."""

    def __init__(self, site: str, users: Iterable[BrokerUser], log: Callable[[str], None]) -> None:
        self.site = site
        self.users = {u.username: u for u in _check_users(users)}
        self.log = log
        self._decoy = hash_password(secrets.token_hex(8))  # unknown users cost as much as known ones

    def login(self, username: object, password: str | None) -> BrokerUser | None:
        user = self.users.get(username) if isinstance(username, str) else None
        ok = verify_password(password if password is not None else "", user.password_hash if user else self._decoy)
        return user if ok and user is not None else None

    def may(self, username: object, topic: str, action: str) -> bool:
        user = self.users.get(username) if isinstance(username, str) else None
        return user is not None and allowed(self.site, user, topic, action)

    def check(self, session: Any) -> BrokerUser | None:
        """The user a CONNECT logs in as, or None (logged) for a bad login or a will topic not its own."""
        user = self.login(session.username, session.password)
        if user is None:
            self.log("broker: refused login %r from client %r" % (session.username, session.client_id))
            return None
        if session.will_flag and not allowed(self.site, user, session.will_topic or "", "publish"):
            # amqtt would publish the will without any check: refuse the connection instead.
            self.log("broker: refused %r: will topic %r is not its own" % (user.username, session.will_topic))
            return None
        return user

    def bind(self, session: Any, user: BrokerUser) -> None:
        """Give the session its user's own client id, whatever the client sent (as Mosquitto's
        use_username_as_clientid does); say so when the id sent names another user."""
        sent, own = session.client_id, bound_client_id(user)
        if sent != own:
            for other in self.users:
                if other != user.username and sent in (other, "%s.%s" % (self.site, other)):
                    self.log("broker: %r connected with the client id %r of user %r; it gets its own id %r"
                             % (user.username, sent, other, own))
                    break
        session.client_id = own


if _AmqttBroker is not None:

    class SiteAuthPlugin(_BaseAuthPlugin):
        """amqtt auth plugin: our password hashes, no anonymous, will topic checked."""

        @dataclasses.dataclass
        class Config:
            logins: typing.Any = None

        async def authenticate(self, *, session: Any) -> bool:
            # _SiteBroker already refused a bad login before amqtt touched any session; this is
            # the second line, and what amqtt itself asks.
            logins = self.config.logins
            if logins.check(session) is None:
                return False
            _drop_unreadable(session, logins)
            return True

    def _drop_unreadable(session: Any, logins: _Logins) -> None:
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

        async def topic_filtering(self, *, session: Any = None, topic: str | None = None,
                                  action: Any = None) -> bool:
            if session is None or topic is None or action is None:
                return False
            return self.config.logins.may(session.username, topic, str(action.value))

    class _Snapshot(dict[str, Any]):
        """amqtt 0.12.1 iterates its subscriptions while awaiting inside the loop; another client
        subscribing meanwhile raised 'dictionary changed size during iteration' and the message
        was lost for the remaining subscribers. Iterate over a copy instead."""

        def items(self) -> list[tuple[str, list[Any]]]:  # type: ignore[override]  # a list, not a view
            return [(k, list(v)) for k, v in super().items()]

    class _SiteBroker(_AmqttBroker):
        def __init__(self, *args: Any, logins: _Logins, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._subscriptions: dict[str, Any] = _Snapshot(self._subscriptions)
            self._logins = logins

        async def _initialize_client_session(self, reader: Any, writer: Any, remote_address: str,
                                             remote_port: int) -> tuple[Any, Any]:
            # amqtt 0.12.1's own method, with one change: the login is checked and the client id
            # bound to the user *before* any session is looked up. amqtt alone deletes (clean
            # session) or reuses (persistent) the session of whatever client id a CONNECT names
            # before it authenticates, then takes over its connection even when the login fails:
            # any client, even without a password, could knock any node off and take its session.
            try:
                handler, client_session = await _BrokerProtocolHandler.init_from_connect(
                    reader, writer, self.plugins_manager)
            except _AMQTTError as exc:
                self.logger.warning("[MQTT-3.1.0-1] %s:%s: Can't read first packet as CONNECT: %s"
                                    % (remote_address, remote_port, exc))
                raise _AMQTTError(exc) from exc
            except _MQTTError as exc:
                self.logger.warning("Invalid connection from %s:%s" % (remote_address, remote_port))
                await writer.close()
                raise _MQTTError(exc) from exc
            except _NoDataError as exc:
                self.logger.error("No data from %s:%s : %s" % (remote_address, remote_port, exc))
                raise _AMQTTError(exc) from exc

            user = self._logins.check(client_session)
            if user is None:  # refused here, with the CONNACK amqtt sends for a failed login
                await _ConnackPacket.build(0, _NOT_AUTHORIZED).to_stream(writer)
                await writer.close()
                raise _MQTTError("refused login %r" % (client_session.username,))
            self._logins.bind(client_session, user)

            if client_session.clean_session:
                await self._delete_session(client_session.client_id)  # the user's own, never another's
                client_session.parent = 0
            elif client_session.client_id in self._sessions:
                # The user's own persistent session: the new connection brings its will and credentials.
                existing_client_session, _ = self._sessions[client_session.client_id]
                existing_client_session.will_flag = client_session.will_flag
                existing_client_session.will_message = client_session.will_message
                existing_client_session.will_topic = client_session.will_topic
                existing_client_session.will_qos = client_session.will_qos
                existing_client_session.keep_alive = client_session.keep_alive
                existing_client_session.username = client_session.username
                existing_client_session.password = client_session.password
                client_session = existing_client_session
                client_session.parent = 1
            else:
                client_session.parent = 0

            timeout_disconnect_delay = self.config.get("timeout-disconnect-delay", 0)
            if client_session.keep_alive > 0 and isinstance(timeout_disconnect_delay, int):
                client_session.keep_alive += timeout_disconnect_delay
            return handler, client_session

        async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                              session: Any) -> None:
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

    def __init__(self, data_dir: str | os.PathLike[str], site: str, *, host: str = "127.0.0.1", port: int = 1883,
                 bridge: dict[str, Any] | None = None, log: Callable[[str], None] | None = None) -> None:
        if bridge:
            raise BrokerConfigError("the embedded broker cannot bridge to a province broker: install Mosquitto "
                                    "(apt-get install mosquitto) and use the mosquitto broker")
        self.data_dir = os.path.abspath(os.fspath(data_dir))
        self.site = _site(site)
        self.host, self.port = host, int(port)
        self.bridge = None
        self._log = log or _default_log()
        self._broker: Any = None  # a _SiteBroker while running
        self._logins: _Logins | None = None

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self, users: Iterable[BrokerUser], *, timeout: float = 10.0) -> None:
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
        broker = _SiteBroker(config, logins=self._logins)
        try:
            await asyncio.wait_for(broker.start(), timeout)
        except Exception as e:  # amqtt wraps bind errors in BrokerError; a timeout is ours
            raise BrokerError("the embedded broker could not listen on %s:%d: %s"
                              % (self.host or "*", self.port, e)) from None
        self._broker = broker
        self._log("broker: embedded amqtt broker on %s:%d for site %s" % (self.host or "*", self.port, self.site))

    async def reload(self, users: Iterable[BrokerUser], *, timeout: float = 5.0) -> None:
        """Swap the users, then close every connection whose login no longer passes (no will)."""
        users = list(users)
        if not self.running or self._logins is None:  # running: _logins is set
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

    async def stop(self, *, timeout: float = 10.0) -> None:
        """Close every client at once (amqtt's shutdown closes them one by one, each waiting for its
        writer: tens of seconds with many nodes on a busy host), then shut down. A shutdown that
        still overruns is logged and left: stopping never fails."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        handlers = [h for _s, h in list(broker.sessions.values()) if h is not None]
        try:
            if handlers:
                await asyncio.wait_for(asyncio.gather(*(h.stop() for h in handlers), return_exceptions=True),
                                       timeout / 2)
            await asyncio.wait_for(broker.shutdown(), timeout)
        except asyncio.TimeoutError:
            self._log("broker: the embedded broker did not shut down within %g s; left to the process exit"
                      % timeout)

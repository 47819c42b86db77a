"""Adding, re-provisioning and revoking a node: the registry change and the broker reload as one unit.

    prov = Provisioning(registry, reload, gateway_user, log)   # reload: async (users) -> None
    node, bundle = await prov.add_node(obj, site, broker_host, broker_port, location)
    bundle = await prov.reprovision(node_id, site, broker_host, broker_port, location)
    await prov.revoke(node_id)
    users = prov.broker_users()                                 # for the broker's start

Each operation commits the registry change, then reloads the broker with the
new user list. If the reload fails, the node's registry rows are put back
exactly as they were, the broker is reloaded with the users the registry now
holds, and a GatewayError (503, Vietnamese and English) says nothing was
changed: a node is never in the registry without being in the broker, or the
other way round. Operations run one at a time (a lock), and each runs to its
end even if the HTTP request that started it goes away.

Ids: a node logs in to the broker as its id, so an id equal to a broker
username the gateway itself uses (its own user, `gateway`) is refused at
registration (409 `id.reserved`, field `id`). A database written before that
check may still hold such a node: `broker_users()` leaves it out with a log
line instead of building a user list the broker refuses, so the gateway still
starts; staff can revoke the node.

Owner: the event loop. The database is used only on the loop thread, and no
`await` happens inside a transaction.
"""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.broker import BrokerConfigError, BrokerUser
from gateway.errors import GatewayError
from gateway.registry import Registry, check_not_reserved

T = TypeVar("T")
# What one operation does to the registry: (node id, its row before or None, the result).
# A change returns the rows it replaced, [(node_id, row before or None)], and its result.
Change = Callable[[], tuple[list[tuple[str, sqlite3.Row | None]], T]]


class Provisioning:
    def __init__(self, registry: Registry, reload: Callable[[list[BrokerUser]], Awaitable[None]],
                 gateway_user: BrokerUser, log: Callable[[str], None]) -> None:
        """`reload`: coroutine function taking the full list of BrokerUser; `gateway_user`: the
        gateway's own BrokerUser (role gateway), first in every list; `log`: a callable taking text."""
        if not isinstance(gateway_user, BrokerUser) or gateway_user.role != "gateway":
            raise TypeError("gateway_user must be the gateway's BrokerUser (role gateway)")
        self.registry = registry
        self.reload = reload
        self.gateway_user = gateway_user
        self.log = log
        self._lock = asyncio.Lock()
        # callables(what, node_ids) after a change the broker took: "add", "reprovision" or "revoke"
        self.on_changed: list[Callable[[str, list[str]], object]] = []

    @property
    def reserved(self) -> frozenset[str]:
        """Node ids that would collide with a broker user of the gateway's own."""
        return frozenset({self.gateway_user.username})

    # ---- the broker's users ---------------------------------------------------
    def broker_users(self) -> list[BrokerUser]:
        """The gateway's user and one user per node that may connect; a node that cannot be one is left out."""
        users = [self.gateway_user]
        seen = {self.gateway_user.username}
        for username, hashed, node_id in self.registry.broker_users():
            if username in seen:
                self.log("broker: node %r left out of the broker: its id is the broker user of the gateway "
                         "(or another node); revoke it and register the board under another id" % (node_id,))
                continue
            try:
                users.append(BrokerUser(username, hashed, "node", node_id))
            except BrokerConfigError as exc:
                self.log("broker: node %r left out of the broker: %s" % (node_id, exc))
                continue
            seen.add(username)
        return users

    # ---- the three operations -------------------------------------------------
    async def add_node(self, obj: dict[str, Any], site: str, broker_host: str, broker_port: int,
                       location: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Register a node and let it on the broker; returns (node, provisioning bundle)."""
        def change() -> tuple[list[tuple[str, sqlite3.Row | None]], tuple[dict[str, Any], dict[str, Any]]]:
            node, bundle = self.registry.add_node(obj, site, broker_host, broker_port, location,
                                                  reserved=self.reserved)
            return [(node["id"], None)], (node, bundle)  # None: it did not exist (add_node refuses an existing id)
        return await self._unit("add", change)

    async def add_nodes(self, objs: list[dict[str, Any]], site: str, broker_host: str, broker_port: int,
                        location: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Register many nodes with one broker reload (a commune set up at once): all of them or none."""
        def change() -> tuple[list[tuple[str, sqlite3.Row | None]], list[tuple[dict[str, Any], dict[str, Any]]]]:
            with self.registry.db.tx():
                added = [self.registry.add_node(obj, site, broker_host, broker_port, location,
                                                reserved=self.reserved) for obj in objs]
            return [(node["id"], None) for node, _bundle in added], added
        return await self._unit("add", change)

    async def reprovision(self, node_id: str, site: str, broker_host: str, broker_port: int,
                          location: dict[str, Any]) -> dict[str, Any]:
        """New password and key for a node; the broker takes the new password at once."""
        def change() -> tuple[list[tuple[str, sqlite3.Row | None]], dict[str, Any]]:
            check_not_reserved(node_id, self.reserved)
            before = self._row(node_id)
            bundle = self.registry.reprovision(node_id, site, broker_host, broker_port, location)
            return [(node_id, before)], bundle
        return await self._unit("reprovision", change)

    async def revoke(self, node_id: str) -> None:
        """Take a node off the registry's active list and off the broker (its connection is closed)."""
        def change() -> tuple[list[tuple[str, sqlite3.Row | None]], None]:
            before = self._row(node_id)
            self.registry.revoke(node_id)
            return [(node_id, before)], None
        return await self._unit("revoke", change)

    # ---- the unit -------------------------------------------------------------
    async def _unit(self, what: str, change: Change[T]) -> T:
        # A task of its own: a cancelled request does not stop it between the change and its undo.
        task = asyncio.ensure_future(self._run(what, change))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved even if nobody awaits it
        return await asyncio.shield(task)

    async def _run(self, what: str, change: Change[T]) -> T:
        async with self._lock:
            replaced, result = change()  # validates, then commits (GatewayError: nothing written)
            node_id = ", ".join(n for n, _row in replaced[:3]) + (" ..." if len(replaced) > 3 else "")
            try:
                await self.reload(self.broker_users())
            except Exception as exc:
                self.log("broker: reload after %s of node %s failed (%r); undoing the registry change"
                         % (what, node_id, exc))
                with self.registry.db.tx():
                    for changed_id, before in replaced:
                        self._restore(changed_id, before)
                try:
                    await self.reload(self.broker_users())
                except Exception as again:
                    self.log("broker: reload with the previous users failed too: %r" % (again,))
                raise GatewayError(
                    "broker.unavailable",
                    "Máy chủ MQTT không áp dụng được thay đổi, nên thiết bị %s chưa được thay đổi gì. "
                    "Hãy thử lại sau ít phút; nếu vẫn lỗi, kiểm tra dịch vụ MQTT trên gateway." % node_id,
                    "The MQTT broker could not apply the change, so nothing was changed for node %s. "
                    "Try again in a few minutes; if it keeps failing, check the gateway's MQTT broker." % node_id,
                    status=503) from exc
            for fn in self.on_changed:
                try:  # the change is made and the broker has it: a follower's failure must not hide that
                    fn(what, [n for n, _row in replaced])
                except Exception as exc:
                    self.log("after %s of node %s: %r (the node gets its plan at its birth)" % (what, node_id, exc))
            return result

    # ---- rows, exactly as they were ------------------------------------------
    def _row(self, node_id: str) -> sqlite3.Row | None:
        return self.registry.snapshot(node_id)

    def _restore(self, node_id: str, node_row: sqlite3.Row | None) -> None:
        self.registry.restore(node_id, node_row)

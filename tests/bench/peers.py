"""Broker logins for the benchmarks' raw peers (plain paho clients measured beside the gateway).

The broker binds each connection's client id to its login, so peers must not log in as the
gateway's own user: a second "gateway" connection would take over the gateway's link. Each peer
gets its own user with the gateway's site-wide rights, added beside the registry's users.
"""
import secrets

from gateway.broker import BrokerUser, hash_password


async def add_peer_users(gw, names):
    """Reload the gateway's broker with a user per name (one password for all); returns the password."""
    password = secrets.token_urlsafe(12)
    hashed = hash_password(password)  # one hash for all: they are bench peers, not nodes
    await gw.broker.reload(gw.broker_users() + [BrokerUser(name, hashed, "gateway") for name in names])
    return password

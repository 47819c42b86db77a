"""The broker's two exceptions. `BrokerError` means the broker cannot be started,
reloaded or reached (the message says what to do about it); `BrokerConfigError`,
also a ValueError, means a user, site or bridge setting cannot be turned into a
broker configuration. Every other module of the package raises only these.
"""


class BrokerError(Exception):
    """The broker cannot be started, reloaded or reached; the message says what to do."""


class BrokerConfigError(BrokerError, ValueError):
    """A user, site or bridge setting cannot be turned into a broker configuration."""

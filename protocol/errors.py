"""Named errors of the wire contract.

Every decoder, validator and parser in protocol/ raises one of these on bad
input, with a message a technician can act on, and nothing else.
"""


class ProtocolError(ValueError):
    """Something that crossed (or will cross) the wire is not acceptable."""


class TopicError(ProtocolError):
    """A topic or an id inside a topic is malformed."""


class MessageError(ProtocolError):
    """A message payload cannot be decoded or fails validation."""


class ProgramError(ProtocolError):
    """A lamp program or broadcast plan is invalid."""


class NoMemory(MessageError):
    """The heap could not hold the parse just now: not the message's fault (a node says "no_memory",
    never "malformed", for a valid command it could not parse)."""

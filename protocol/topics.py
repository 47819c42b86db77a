"""MQTT topic names of the wire contract (see docs/design.md, "Wire contract").

    denloa/<site>/node/<id>/{state,tele,evt,cmd,ack}
    denloa/<site>/gateway/state

Ids are validated so that `+`, `#`, `/`, spaces or an empty id can never be
injected into a topic or a subscription filter.
"""
from protocol.errors import TopicError

ROOT = "denloa"
ID_MAX_LEN = 32

STATE = "state"
TELE = "tele"
EVT = "evt"
CMD = "cmd"
ACK = "ack"
NODE_KINDS = (STATE, TELE, EVT, CMD, ACK)

# (qos, retain) per node topic kind, as in the wire contract.
DELIVERY = {STATE: (1, True), TELE: (0, False), EVT: (1, False), CMD: (1, False), ACK: (1, False)}
GATEWAY_STATE_DELIVERY = (1, True)


def check_id(value, what="id"):
    """Return `value` if it is a valid site/node/zone id, else raise TopicError.

    Valid: 1..32 chars of a-z, 0-9 and '-', not starting or ending with '-'.
    """
    if not isinstance(value, str):
        raise TopicError("%s must be a string, got %s" % (what, type(value).__name__))
    if not value:
        raise TopicError("%s must not be empty" % what)
    if len(value) > ID_MAX_LEN:
        raise TopicError("%s %r is longer than %d characters" % (what, value[:40], ID_MAX_LEN))
    for ch in value:
        if not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch == "-"):
            raise TopicError("%s %r may contain only a-z, 0-9 and '-' (found %r)" % (what, value, ch))
    if value[0] == "-" or value[-1] == "-":
        raise TopicError("%s %r must not start or end with '-'" % (what, value))
    return value


def is_valid_id(value):
    try:
        check_id(value)
    except TopicError:
        return False
    return True


def node_topic(site, node, kind):
    """Topic of one node, e.g. node_topic("xa-an-binh", "den-01", CMD)."""
    if kind not in NODE_KINDS:
        raise TopicError("unknown node topic kind %r" % (kind,))
    return "%s/%s/node/%s/%s" % (ROOT, check_id(site, "site id"), check_id(node, "node id"), kind)


def gateway_state_topic(site):
    return "%s/%s/gateway/state" % (ROOT, check_id(site, "site id"))


def site_filter(site):
    """Subscription filter for everything under one site."""
    return "%s/%s/#" % (ROOT, check_id(site, "site id"))


def nodes_filter(site, kind):
    """Subscription filter for one kind of topic of every node of a site."""
    if kind not in NODE_KINDS:
        raise TopicError("unknown node topic kind %r" % (kind,))
    return "%s/%s/node/+/%s" % (ROOT, check_id(site, "site id"), kind)


def parse_topic(topic):
    """Split a topic into (site, node_or_None, kind).

    Gateway topics give node None and kind "state". Raises TopicError for
    anything that is not a topic of the contract.
    """
    if isinstance(topic, (bytes, bytearray)):
        try:
            topic = bytes(topic).decode()
        except UnicodeError:
            raise TopicError("topic is not valid UTF-8")
    if not isinstance(topic, str):
        raise TopicError("topic must be text")
    if len(topic) > 128:
        raise TopicError("topic is too long (%d characters)" % len(topic))
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != ROOT:
        raise TopicError("not a denloa topic: %r" % topic)
    site = check_id(parts[1], "site id")
    if parts[2] == "gateway" and len(parts) == 4 and parts[3] == STATE:
        return site, None, STATE
    if parts[2] == "node" and len(parts) == 5:
        node = check_id(parts[3], "node id")
        if parts[4] not in NODE_KINDS:
            raise TopicError("unknown node topic kind %r in %r" % (parts[4], topic))
        return site, node, parts[4]
    raise TopicError("not a denloa topic: %r" % topic)

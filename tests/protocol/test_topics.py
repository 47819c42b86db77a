from protocol import topics
from protocol.errors import TopicError
from tests.portable import raises, raises_with


def test_node_topics_round_trip():
    for kind in topics.NODE_KINDS:
        t = topics.node_topic("xa-an-binh", "den-07", kind)
        assert t == "denloa/xa-an-binh/node/den-07/" + kind
        assert topics.parse_topic(t) == ("xa-an-binh", "den-07", kind)
        assert topics.parse_topic(t.encode()) == ("xa-an-binh", "den-07", kind)


def test_gateway_state_topic():
    t = topics.gateway_state_topic("xa-1")
    assert t == "denloa/xa-1/gateway/state"
    assert topics.parse_topic(t) == ("xa-1", None, "state")


def test_filters():
    assert topics.site_filter("xa-1") == "denloa/xa-1/#"
    assert topics.nodes_filter("xa-1", topics.EVT) == "denloa/xa-1/node/+/evt"
    raises(TopicError, topics.nodes_filter, "xa-1", "bogus")


def test_ids_cannot_inject_wildcards_or_levels():
    for bad in ["", "+", "#", "a/b", "den+1", "den#", "A", "a b", "-a", "a-", "đèn", "x" * 33, None, 7]:
        raises(TopicError, topics.node_topic, "xa-1", bad, topics.CMD)
        raises(TopicError, topics.node_topic, bad, "den-1", topics.CMD)
        assert not topics.is_valid_id(bad)
    assert topics.is_valid_id("x" * 32)
    assert topics.is_valid_id("0")


def test_error_messages_say_what_is_wrong():
    raises_with(TopicError, "longer than 32", topics.check_id, "x" * 40, "node id")
    raises_with(TopicError, "'+'", topics.check_id, "a+b", "node id")
    raises_with(TopicError, "empty", topics.check_id, "", "site id")


def test_parse_rejects_foreign_topics():
    bad = [
        "",
        "denloa",
        "other/xa/node/n/state",
        "denloa/xa/node/n",
        "denloa/xa/node/n/state/extra",
        "denloa/xa/node/n/bogus",
        "denloa/xa/gateway/tele",
        "denloa/xa/node/+/state",
        "denloa/XA/node/n/state",
        b"denloa/xa/node/\xff/state",
        "denloa/xa/node/n/" + "x" * 200,
        None,
    ]
    for t in bad:
        raises(TopicError, topics.parse_topic, t)


def test_delivery_table_matches_contract():
    assert topics.DELIVERY[topics.STATE] == (1, True)
    assert topics.DELIVERY[topics.TELE] == (0, False)
    assert topics.DELIVERY[topics.CMD] == (1, False)
    assert topics.GATEWAY_STATE_DELIVERY == (1, True)

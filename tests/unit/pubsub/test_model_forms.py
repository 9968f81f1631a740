from __future__ import annotations

import pytest

from pubsubd.pubsub.errors import FormError
from pubsubd.pubsub.model import (
    AccessModel,
    MessageType,
    NodeConfig,
    SubscriptionOptions,
    bare,
    publish_preconditions,
    requested_children,
)


def test_bare() -> None:
    assert bare("a@b/c/d") == "a@b"
    assert bare("b") == "b"


def test_node_config_form_round_trip() -> None:
    config = NodeConfig(
        title="T",
        access_model=AccessModel.ROSTER,
        roster_groups_allowed=frozenset({"x", "y"}),
        max_items=None,
        collection=("blogs",),
    )
    form = config.to_form(children=("c1",))
    assert form["FORM_TYPE"] == ["http://jabber.org/protocol/pubsub#node_config"]
    assert form["pubsub#max_items"] == ["max"]
    assert form["pubsub#children"] == ["c1"]
    assert NodeConfig.from_form(form) == config
    assert requested_children(form) == ("c1",)


def test_node_config_from_form_applies_to_base_and_names_bad_fields() -> None:
    base = NodeConfig(title="Old")
    changed = NodeConfig.from_form(
        {"pubsub#max_items": ["5"], "pubsub#deliver_payloads": ["false"]}, base
    )
    assert (changed.title, changed.max_items, changed.deliver_payloads) == ("Old", 5, False)
    with pytest.raises(FormError) as caught:
        NodeConfig.from_form(
            {"pubsub#max_items": ["lots"], "pubsub#bogus": ["1"], "pubsub#access_model": ["x"]}
        )
    assert caught.value.condition == "not-acceptable"
    assert set(caught.value.fields) == {"pubsub#max_items", "pubsub#bogus", "pubsub#access_model"}


def test_subscription_options_round_trip_and_errors() -> None:
    options = SubscriptionOptions.from_form(
        {
            "pubsub#show-values": ["chat", "online"],
            "pubsub#subscription_depth": ["all"],
            "pubsub#digest": ["1"],
            "pubsubd#include_words": ["XMPP Jabber"],
            "pubsubd#message_type": ["chat"],
            "pubsubd#catch_up": ["true"],
        }
    )
    assert options.show_values == frozenset({"chat", "online"})
    assert options.subscription_depth is None
    assert options.include_words == ("xmpp", "jabber")
    assert options.message_type is MessageType.CHAT
    assert SubscriptionOptions.from_form(options.to_form()) == options
    with pytest.raises(FormError) as caught:
        SubscriptionOptions.from_form({"pubsub#show-values": ["sleepy"], "pubsub#expire": ["soon"]})
    assert caught.value.condition == "bad-request"
    assert set(caught.value.fields) == {"pubsub#show-values", "pubsub#expire"}


def test_publish_options_reject_unknown_fields() -> None:
    assert publish_preconditions({"FORM_TYPE": ["x"], "pubsub#access_model": ["open"]}) == {
        "pubsub#access_model": ["open"]
    }
    with pytest.raises(FormError) as caught:
        publish_preconditions({"pubsub#nonsense": ["1"]})
    assert (caught.value.condition, caught.value.pubsub_condition) == (
        "conflict",
        "precondition-not-met",
    )

"""XEP-0060 §6-§8 use cases and their error conditions, on the memory store."""

from __future__ import annotations

import pytest

from pubsubd.pubsub.errors import PubSubError
from pubsubd.pubsub.model import Affiliation, SubscriptionState
from pubsubd.pubsub.notifications import NotificationKind
from pubsubd.pubsub.service import ServiceConfig, SubscriptionChange

from .conftest import OWNER, World, make_world

BOB = "bob@example.org/phone"
EVE = "eve@example.org/laptop"


@pytest.fixture
def world() -> World:
    """Bob is online: headline notifications to offline accounts are not sent at all."""
    w = make_world()
    w.presence.shows[BOB] = "online"
    return w


def errors(exc: pytest.ExceptionInfo[PubSubError]) -> tuple[str, str | None]:
    return exc.value.condition, exc.value.pubsub_condition


async def node(world: World, node_id: str = "news", **fields: str) -> str:
    form = {f"pubsub#{k}": [v] for k, v in fields.items()}
    return (await world.service.create_node(OWNER, node_id, form)).node


# -- create ----------------------------------------------------------------------------------


async def test_create_named_and_instant_nodes(world: World) -> None:
    assert await node(world) == "news"
    instant = await world.service.create_node(OWNER, None)
    assert len(instant.node) == 32
    got = await world.service.get_node("news")
    assert got.creator == "owner@example.org"
    assert await world.service.affiliations(OWNER) == {
        "news": Affiliation.OWNER,
        instant.node: Affiliation.OWNER,
    }


async def test_create_errors(world: World) -> None:
    await node(world)
    with pytest.raises(PubSubError) as caught:
        await node(world)
    assert errors(caught) == ("conflict", None)
    with pytest.raises(PubSubError) as caught:
        await world.service.create_node("mallory@elsewhere.net/x", "x")
    assert errors(caught) == ("forbidden", None)
    with pytest.raises(PubSubError) as caught:
        await world.service.create_node(OWNER, "bad", {"pubsub#max_items": ["many"]})
    assert errors(caught) == ("not-acceptable", None)


async def test_creation_policies() -> None:
    nobody = make_world(ServiceConfig(node_creation="nobody"))
    with pytest.raises(PubSubError) as caught:
        await nobody.service.create_node(OWNER, "n")
    assert errors(caught) == ("feature-not-implemented", "unsupported")
    assert caught.value.feature == "create-nodes"
    no_instant = make_world(ServiceConfig(node_creation="anyone", instant_nodes=False))
    with pytest.raises(PubSubError) as caught:
        await no_instant.service.create_node("x@anywhere.net", None)
    assert errors(caught) == ("not-acceptable", "nodeid-required")
    admins = make_world(
        ServiceConfig(node_creation="admins", admins=frozenset({"root@example.org"}))
    )
    await admins.service.create_node("root@example.org/console", "n")
    with pytest.raises(PubSubError):
        await admins.service.create_node(OWNER, "m")


# -- configure, default, delete, purge -------------------------------------------------------


async def test_configure_and_notify_config(world: World) -> None:
    await node(world, notify_config="1")
    await world.service.subscribe(BOB, "news", "bob@example.org")
    outcome = await world.service.configure(OWNER, "news", {"pubsub#title": ["Headlines"]})
    view = await world.service.get_config(OWNER, "news")
    assert view.config.title == "Headlines"
    assert view.to_form()["pubsub#title"] == ["Headlines"]
    [event] = outcome.notifications
    assert event.kind is NotificationKind.CONFIGURATION
    assert event.config is not None and event.config.title == "Headlines"
    assert [r.address for r in event.recipients] == ["bob@example.org"]
    with pytest.raises(PubSubError) as caught:
        await world.service.configure(BOB, "news", {"pubsub#title": ["Mine"]})
    assert errors(caught) == ("forbidden", None)
    with pytest.raises(PubSubError) as caught:
        await world.service.get_config(OWNER, "nope")
    assert errors(caught) == ("item-not-found", None)


async def test_default_config_is_a_feed_node(world: World) -> None:
    config = world.service.default_config()
    assert config.persist_items and config.deliver_payloads
    assert config.notification_type == "headline"


async def test_delete_with_redirect_notifies_subscribers(world: World) -> None:
    await node(world)
    await world.service.subscribe(BOB, "news", "bob@example.org")
    with pytest.raises(PubSubError) as caught:
        await world.service.delete_node(BOB, "news")
    assert errors(caught) == ("forbidden", None)
    outcome = await world.service.delete_node(
        OWNER, "news", redirect="xmpp:pubsub.example.org?;node=new"
    )
    [event] = outcome.notifications
    assert (event.kind, event.redirect) == (
        NotificationKind.DELETE,
        "xmpp:pubsub.example.org?;node=new",
    )
    with pytest.raises(PubSubError) as caught:
        await world.service.get_node("news")
    assert errors(caught) == ("item-not-found", None)


async def test_purge(world: World) -> None:
    await node(world)
    await world.service.subscribe(BOB, "news", "bob@example.org")
    await world.service.publish(OWNER, "news", "<e/>", "1")
    with pytest.raises(PubSubError) as caught:
        await world.service.purge(BOB, "news")
    assert errors(caught) == ("forbidden", None)
    outcome = await world.service.purge(OWNER, "news")
    assert outcome.notifications[0].kind is NotificationKind.PURGE
    assert (await world.service.items(OWNER, "news")).items == ()
    await node(world, "transient", persist_items="0")
    with pytest.raises(PubSubError) as caught:
        await world.service.purge(OWNER, "transient")
    assert errors(caught) == ("feature-not-implemented", "unsupported")
    assert caught.value.feature == "persistent-items"


# -- publish, retract, items ---------------------------------------------------------------


async def test_publish_generates_ids_replaces_and_notifies(world: World) -> None:
    await node(world)
    await world.service.subscribe(BOB, "news", "bob@example.org")
    first = await world.service.publish(OWNER, "news", "<entry>one</entry>")
    assert len(first.item_id) == 32
    [event] = first.notifications
    assert event.kind is NotificationKind.ITEMS and event.with_payload
    assert event.items[0].payload == "<entry>one</entry>"
    assert event.recipients[0].subids
    await world.service.publish(OWNER, "news", "<entry>two</entry>", first.item_id)
    items = (await world.service.items(BOB, "news")).items
    assert [(i.item_id, i.payload) for i in items] == [(first.item_id, "<entry>two</entry>")]


async def test_publish_errors(world: World) -> None:
    await node(world, max_payload_size="10")
    with pytest.raises(PubSubError) as caught:
        await world.service.publish(BOB, "news", "<e/>")
    assert errors(caught) == ("forbidden", None)
    with pytest.raises(PubSubError) as caught:
        await world.service.publish(OWNER, "news", "<entry>too long</entry>")
    assert errors(caught) == ("not-acceptable", "payload-too-big")
    with pytest.raises(PubSubError) as caught:
        await world.service.publish(OWNER, "news", "")
    assert errors(caught) == ("bad-request", "payload-required")
    strict = make_world(ServiceConfig(auto_create=False, local_domains=frozenset({"example.org"})))
    with pytest.raises(PubSubError) as caught:
        await strict.service.publish(OWNER, "missing", "<e/>")
    assert errors(caught) == ("item-not-found", None)


async def test_publish_auto_creates_with_preconditions(world: World) -> None:
    outcome = await world.service.publish(
        OWNER, "auto", "<e/>", options={"pubsub#access_model": ["whitelist"]}
    )
    assert outcome.created
    assert (await world.service.get_node("auto")).config.access_model == "whitelist"


async def test_publish_options_preconditions(world: World) -> None:
    await node(world, access_model="presence")
    await world.service.publish(
        OWNER, "news", "<e/>", options={"pubsub#access_model": ["presence"]}
    )
    with pytest.raises(PubSubError) as caught:
        await world.service.publish(
            OWNER, "news", "<e/>", options={"pubsub#access_model": ["open"]}
        )
    assert errors(caught) == ("conflict", "precondition-not-met")
    with pytest.raises(PubSubError) as caught:
        await world.service.publish(OWNER, "news", "<e/>", options={"pubsub#unknown": ["1"]})
    assert errors(caught) == ("conflict", "precondition-not-met")


async def test_max_items_trims_and_notifies_retraction(world: World) -> None:
    await node(world, max_items="2")
    await world.service.subscribe(BOB, "news", "bob@example.org")
    for n in "abc":
        outcome = await world.service.publish(OWNER, "news", f"<e>{n}</e>", n)
    retract, items = outcome.notifications
    assert (retract.kind, retract.item_ids) == (NotificationKind.RETRACT, ("a",))
    assert items.kind is NotificationKind.ITEMS
    assert [i.item_id for i in (await world.service.items(BOB, "news")).items] == ["c", "b"]


async def test_node_full_reject(world: World) -> None:
    await node(world, max_items="1", publish_node_full="reject")
    await world.service.publish(OWNER, "news", "<e/>", "a")
    await world.service.publish(OWNER, "news", "<e2/>", "a")  # replacing is fine
    with pytest.raises(PubSubError) as caught:
        await world.service.publish(OWNER, "news", "<e/>", "b")
    assert errors(caught) == ("conflict", "node-full")


async def test_retract(world: World) -> None:
    await node(world, notify_retract="0")
    await world.service.subscribe(BOB, "news", "bob@example.org")
    await world.service.publish(OWNER, "news", "<e/>", "a")
    await world.service.publish(OWNER, "news", "<e/>", "b")
    assert (await world.service.retract(OWNER, "news", "a")).notifications == ()
    outcome = await world.service.retract(OWNER, "news", "b", notify=True)
    assert outcome.notifications[0].item_ids == ("b",)
    with pytest.raises(PubSubError) as caught:
        await world.service.retract(OWNER, "news", "a")
    assert errors(caught) == ("item-not-found", None)
    with pytest.raises(PubSubError) as caught:
        await world.service.retract(OWNER, "news", "")
    assert errors(caught) == ("bad-request", "item-required")
    await world.service.publish(OWNER, "news", "<e/>", "c")
    with pytest.raises(PubSubError) as caught:
        await world.service.retract(BOB, "news", "c")
    assert errors(caught) == ("forbidden", None)


async def test_publish_only_retracts_only_its_own_items(world: World) -> None:
    await node(world)
    await world.service.modify_affiliations(
        OWNER, "news", {"bob@example.org": Affiliation.PUBLISH_ONLY}
    )
    await world.service.publish(BOB, "news", "<e/>", "bobs")
    await world.service.publish(OWNER, "news", "<e/>", "owners")
    await world.service.retract(BOB, "news", "bobs")
    with pytest.raises(PubSubError):
        await world.service.retract(BOB, "news", "owners")
    with pytest.raises(PubSubError) as caught:
        await world.service.items(BOB, "news")
    assert errors(caught) == ("forbidden", None)


async def test_items_all_max_by_id_and_pages(world: World) -> None:
    await node(world)
    for n in "abcde":
        await world.service.publish(OWNER, "news", f"<e>{n}</e>", n)
    svc = world.service
    assert [i.item_id for i in (await svc.items(BOB, "news")).items] == list("edcba")
    assert [i.item_id for i in (await svc.items(BOB, "news", max_items=2)).items] == ["e", "d"]
    assert [i.item_id for i in (await svc.items(BOB, "news", item_ids=["b", "zz"])).items] == ["b"]
    page = await svc.items(BOB, "news", page_size=2)
    assert ([i.item_id for i in page.items], page.count, page.first, page.last) == (
        ["e", "d"],
        5,
        "e",
        "d",
    )
    page = await svc.items(BOB, "news", page_size=2, after="d")
    assert [i.item_id for i in page.items] == ["c", "b"]
    page = await svc.items(BOB, "news", page_size=2, before="")
    assert [i.item_id for i in page.items] == ["b", "a"]
    page = await svc.items(BOB, "news", page_size=2, before="b")
    assert [i.item_id for i in page.items] == ["d", "c"]
    with pytest.raises(PubSubError) as caught:
        await svc.items(BOB, "news", page_size=2, after="zz")
    assert errors(caught) == ("item-not-found", None)
    with pytest.raises(PubSubError) as caught:
        await svc.items(BOB, "nope")
    assert errors(caught) == ("item-not-found", None)


async def test_items_with_invalid_subid(world: World) -> None:
    await node(world)
    with pytest.raises(PubSubError) as caught:
        await world.service.items(BOB, "news", subid="bogus")
    assert errors(caught) == ("not-acceptable", "invalid-subid")


# -- subscribe, unsubscribe, options ---------------------------------------------------------


async def test_subscribe_sends_last_item_and_lists_own_subscriptions(world: World) -> None:
    await node(world)
    await world.service.publish(OWNER, "news", "<e>old</e>", "old")
    await world.service.publish(OWNER, "news", "<e>last</e>", "last")
    outcome = await world.service.subscribe(BOB, "news", BOB)
    assert outcome.subscription.state is SubscriptionState.SUBSCRIBED
    [last] = outcome.notifications
    assert [i.item_id for i in last.items] == ["last"]
    assert last.recipients[0].address == BOB
    assert [s.subid for s in await world.service.subscriptions(BOB)] == [outcome.subscription.subid]
    assert await world.service.subscriptions(EVE) == []


async def test_subscribe_errors(world: World) -> None:
    await node(world)
    with pytest.raises(PubSubError) as caught:
        await world.service.subscribe(BOB, "news", "eve@example.org")
    assert errors(caught) == ("bad-request", "invalid-jid")
    with pytest.raises(PubSubError) as caught:
        await world.service.subscribe(BOB, "nope", BOB)
    assert errors(caught) == ("item-not-found", None)
    await world.service.modify_affiliations(OWNER, "news", {"eve@example.org": Affiliation.OUTCAST})
    with pytest.raises(PubSubError) as caught:
        await world.service.subscribe(EVE, "news", EVE)
    assert errors(caught) == ("forbidden", None)
    await node(world, "closed", subscribe="0")
    with pytest.raises(PubSubError) as caught:
        await world.service.subscribe(BOB, "closed", BOB)
    assert errors(caught) == ("feature-not-implemented", "unsupported")
    with pytest.raises(PubSubError) as caught:
        await world.service.subscribe(BOB, "news", BOB, {"pubsub#deliver": ["maybe"]})
    assert errors(caught) == ("bad-request", None)


async def test_too_many_subscriptions() -> None:
    w = make_world(
        ServiceConfig(max_subscriptions_per_node=2, local_domains=frozenset({"example.org"}))
    )
    await node(w)
    for depth in ("1", "2"):
        await w.service.subscribe(BOB, "news", BOB, {"pubsub#digest_frequency": [depth]})
    with pytest.raises(PubSubError) as caught:
        await w.service.subscribe(BOB, "news", BOB, {"pubsub#digest_frequency": ["3"]})
    assert errors(caught) == ("policy-violation", "too-many-subscriptions")


async def test_multiple_subscriptions_and_subids(world: World) -> None:
    await node(world)
    one = (await world.service.subscribe(BOB, "news", BOB)).subscription
    again = (await world.service.subscribe(BOB, "news", BOB)).subscription
    assert again == one  # same options: the existing subscription
    two = (
        await world.service.subscribe(BOB, "news", BOB, {"pubsub#include_body": ["1"]})
    ).subscription
    assert two.subid != one.subid
    outcome = await world.service.publish(OWNER, "news", "<e/>")
    [recipient] = outcome.notifications[0].recipients
    assert set(recipient.subids) == {one.subid, two.subid}  # one message, both subids
    with pytest.raises(PubSubError) as caught:
        await world.service.unsubscribe(BOB, "news", BOB)
    assert errors(caught) == ("bad-request", "subid-required")
    with pytest.raises(PubSubError) as caught:
        await world.service.unsubscribe(BOB, "news", BOB, "bogus")
    assert errors(caught) == ("not-acceptable", "invalid-subid")
    await world.service.unsubscribe(BOB, "news", BOB, one.subid)
    await world.service.unsubscribe(BOB, "news", BOB)
    assert await world.service.subscriptions(BOB) == []


async def test_unsubscribe_errors(world: World) -> None:
    await node(world)
    await world.service.subscribe(BOB, "news", BOB)
    with pytest.raises(PubSubError) as caught:
        await world.service.unsubscribe(EVE, "news", BOB)
    assert errors(caught) == ("forbidden", None)
    with pytest.raises(PubSubError) as caught:
        await world.service.unsubscribe(EVE, "news", EVE)
    assert errors(caught) == ("unexpected-request", "not-subscribed")
    with pytest.raises(PubSubError) as caught:
        await world.service.unsubscribe(BOB, "nope", BOB)
    assert errors(caught) == ("item-not-found", None)


async def test_subscription_options(world: World) -> None:
    await node(world)
    sub = (
        await world.service.subscribe(BOB, "news", BOB, {"pubsub#include_body": ["1"]})
    ).subscription
    assert sub.options.include_body
    got = await world.service.get_options(BOB, "news", BOB)
    assert got == sub
    updated = await world.service.set_options(BOB, "news", BOB, {"pubsub#deliver": ["0"]})
    assert not updated.options.deliver and updated.options.include_body
    assert (await world.service.publish(OWNER, "news", "<e/>")).notifications == ()
    with pytest.raises(PubSubError) as caught:
        await world.service.set_options(BOB, "news", BOB, {"pubsub#digest": ["x"]})
    assert errors(caught) == ("bad-request", None)
    with pytest.raises(PubSubError) as caught:
        await world.service.get_options(EVE, "news", BOB)
    assert errors(caught) == ("forbidden", None)
    with pytest.raises(PubSubError) as caught:
        await world.service.get_options(BOB, "news", "")
    assert errors(caught) == ("bad-request", "jid-required")
    with pytest.raises(PubSubError) as caught:
        await world.service.get_options(EVE, "news", EVE)
    assert errors(caught) == ("unexpected-request", "not-subscribed")
    # The owner may read anyone's options.
    assert (await world.service.get_options(OWNER, "news", BOB)).subid == sub.subid


async def test_temporary_subscription_ends_with_presence(world: World) -> None:
    await node(world)
    await world.service.subscribe(BOB, "news", BOB, {"pubsub#expire": ["presence"]})
    await world.service.became_unavailable(BOB, last_resource=True)
    assert await world.service.subscriptions(BOB) == []


# -- owner management ------------------------------------------------------------------------


async def test_manage_subscriptions(world: World) -> None:
    await node(world)
    await world.service.subscribe(BOB, "news", BOB)
    with pytest.raises(PubSubError) as caught:
        await world.service.node_subscriptions(BOB, "news")
    assert errors(caught) == ("forbidden", None)
    outcome = await world.service.modify_subscriptions(
        OWNER,
        "news",
        [
            SubscriptionChange(BOB, SubscriptionState.NONE),
            SubscriptionChange(EVE, SubscriptionState.SUBSCRIBED),
        ],
    )
    told = {
        (n.recipients[0].address, n.subscription.state)
        for n in outcome.notifications
        if n.subscription
    }
    assert told == {(BOB, SubscriptionState.NONE), (EVE, SubscriptionState.SUBSCRIBED)}
    assert [s.jid for s in await world.service.node_subscriptions(OWNER, "news")] == [EVE]


async def test_manage_affiliations(world: World) -> None:
    await node(world)
    await world.service.subscribe(EVE, "news", EVE)
    with pytest.raises(PubSubError) as caught:
        await world.service.node_affiliations(BOB, "news")
    assert errors(caught) == ("forbidden", None)
    await world.service.modify_affiliations(
        OWNER,
        "news",
        {"bob@example.org": Affiliation.PUBLISHER, "eve@example.org": Affiliation.OUTCAST},
    )
    assert await world.service.node_affiliations(OWNER, "news") == {
        "owner@example.org": Affiliation.OWNER,
        "bob@example.org": Affiliation.PUBLISHER,
        "eve@example.org": Affiliation.OUTCAST,
    }
    assert await world.service.subscriptions(EVE) == []  # an outcast loses its subscription
    await world.service.publish(BOB, "news", "<e/>")  # a publisher may publish
    with pytest.raises(PubSubError) as caught:
        await world.service.modify_affiliations(
            OWNER, "news", {"owner@example.org": Affiliation.NONE}
        )
    assert errors(caught) == ("not-acceptable", None)

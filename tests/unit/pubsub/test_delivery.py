"""Presence-aware delivery, catch-up, keyword filters and digests through the service."""

from __future__ import annotations

from pubsubd.pubsub.delivery import passes_keywords
from pubsubd.pubsub.model import MessageType
from pubsubd.pubsub.notifications import Notification
from pubsubd.pubsub.service import ServiceConfig

from .conftest import OWNER, World, make_world

BOB = "bob@example.org"
PHONE, DESK = f"{BOB}/phone", f"{BOB}/desk"


def addresses(notifications: tuple[Notification, ...] | list[Notification]) -> set[str]:
    return {r.address for n in notifications for r in n.recipients}


async def setup(world: World, *, presence_based: bool = False, **options: list[str]) -> None:
    await world.service.create_node(
        OWNER, "feed", {"pubsub#presence_based_delivery": ["1" if presence_based else "0"]}
    )
    form = {k.replace("show_values", "show-values"): v for k, v in options.items()}
    await world.service.subscribe(
        BOB,
        "feed",
        BOB,
        {
            (f"pubsub#{k}" if not k.startswith("x_") else f"pubsubd#{k[2:]}"): v
            for k, v in form.items()
        },
    )


async def publish(world: World, item_id: str, text: str | None = None) -> tuple[Notification, ...]:
    return (
        await world.service.publish(OWNER, "feed", f"<e>{item_id}</e>", item_id, text=text)
    ).notifications


async def test_show_values_pick_the_available_resource(world: World) -> None:
    world.presence.shows.update({PHONE: "away", DESK: "online"})
    await setup(world, **{"show-values": ["online", "chat"]})
    assert addresses(await publish(world, "1")) == {DESK}


async def test_presence_based_node_reaches_every_available_resource(world: World) -> None:
    world.presence.shows.update({PHONE: "away", DESK: "dnd"})
    await setup(world, presence_based=True)
    assert addresses(await publish(world, "1")) == {PHONE, DESK}
    world.presence.shows.clear()
    assert addresses(await publish(world, "2")) == set()


async def test_full_jid_subscription_goes_to_that_resource(world: World) -> None:
    world.presence.shows.update({PHONE: "online", DESK: "online"})
    await world.service.create_node(OWNER, "feed", {"pubsub#presence_based_delivery": ["1"]})
    await world.service.subscribe(PHONE, "feed", PHONE)
    assert addresses(await publish(world, "1")) == {PHONE}


async def test_offline_subscriber_of_normal_node_gets_bare_jid_delivery(world: World) -> None:
    await world.service.create_node(OWNER, "feed", {"pubsub#notification_type": ["normal"]})
    await world.service.subscribe(BOB, "feed", BOB)
    [event] = await publish(world, "1")
    assert [(r.address, r.message_type) for r in event.recipients] == [(BOB, MessageType.NORMAL)]


async def test_online_bare_subscription_is_addressed_to_the_bare_jid(world: World) -> None:
    world.presence.shows.update({PHONE: "away"})
    await setup(world)
    assert addresses(await publish(world, "1")) == {BOB}


async def test_catch_up_delivers_missed_items_in_order_capped() -> None:
    world = make_world(ServiceConfig(catch_up_cap=3, local_domains=frozenset({"example.org"})))
    world.presence.shows.update({PHONE: "away"})
    await setup(world, **{"show-values": ["online", "chat"], "x_catch_up": ["1"]})
    for n in range(1, 7):
        assert addresses(await publish(world, str(n))) == set()
    await world.service.retract(OWNER, "feed", "5")
    # Still away: nothing is released by a change to another disallowed show.
    assert await world.service.became_available(PHONE, "xa", initial=False) == []
    [catch_up] = await world.service.became_available(PHONE, "online", initial=False)
    assert [i.item_id for i in catch_up.items] == ["4", "6"]
    assert catch_up.skipped == 3
    assert [r.address for r in catch_up.recipients] == [PHONE]
    # Released once only; new items flow normally now.
    world.presence.shows[PHONE] = "online"
    assert await world.service.became_available(PHONE, "online", initial=False) == []
    assert addresses(await publish(world, "7")) == {PHONE}


async def test_catch_up_for_offline_headline_subscriber(world: World) -> None:
    await setup(world, x_catch_up=["1"])
    for n in ("a", "b"):
        assert await publish(world, n) == ()
    world.presence.shows[DESK] = "online"
    [catch_up] = await world.service.became_available(DESK, "online")
    assert [i.item_id for i in catch_up.items] == ["a", "b"]
    assert catch_up.skipped == 0


async def test_last_item_on_presence_without_catch_up(world: World) -> None:
    await setup(world)
    await publish(world, "a")
    await publish(world, "b")
    [last] = await world.service.became_available(DESK, "online")
    assert [i.item_id for i in last.items] == ["b"]
    assert [r.address for r in last.recipients] == [DESK]
    assert await world.service.became_available(DESK, "away", initial=False) == []


async def test_keyword_filters(world: World) -> None:
    world.presence.shows[DESK] = "online"
    await setup(world, x_include_words=["xmpp jabber"], x_exclude_words=["spam"])
    assert addresses(await publish(world, "1", text="New XMPP release")) == {BOB}
    assert addresses(await publish(world, "2", text="Cooking tips")) == set()
    assert addresses(await publish(world, "3", text="Jabber spam offer")) == set()
    assert passes_keywords((), (), "anything")


async def test_message_type_and_include_body_per_subscription(world: World) -> None:
    world.presence.shows[DESK] = "online"
    await setup(world, x_message_type=["chat"], include_body=["1"])
    [event] = await publish(world, "1")
    [recipient] = event.recipients
    assert recipient.message_type is MessageType.CHAT and recipient.include_body


async def test_digest_batches_after_frequency(world: World) -> None:
    world.presence.shows[DESK] = "online"
    await setup(world, digest=["1"], digest_frequency=["60000"])
    start = world.clock.now
    assert await publish(world, "1") == ()
    world.clock.now += 10
    assert await publish(world, "2") == ()
    assert await world.service.due_digests(start + 59) == []
    [batch] = await world.service.due_digests(start + 60)
    assert [i.item_id for i in batch.items] == ["1", "2"]
    assert [r.address for r in batch.recipients] == [BOB]
    assert await world.service.due_digests(start + 600) == []


def test_remote_subscriber_gets_headlines_addressed_to_its_jid() -> None:
    """Presence of another server's user is unknown here: its server decides delivery."""
    from pubsubd.pubsub.delivery import Candidate, plan_delivery
    from pubsubd.pubsub.model import MessageType, NodeConfig, Subscription

    class LocalOnly:
        def available_resources(self, bare: str) -> dict[str, str]:
            return {}

        def knows(self, bare: str) -> bool:
            return bare.endswith("@here.example")

    config = NodeConfig(notification_type=MessageType.HEADLINE)
    remote = Subscription(node="n", jid="bob@there.example", subid="1")
    local = Subscription(node="n", jid="amy@here.example", subid="2")
    plan = plan_delivery([Candidate(remote), Candidate(local)], config, LocalOnly())
    assert [r.address for r in plan.recipients] == ["bob@there.example"]


async def test_connected_full_jid_without_presence_gets_the_notification(world: World) -> None:
    # RFC 6121 §8.5.3.1: a message to a connected resource is delivered even before its
    # initial presence; the node is not presence-based, so nothing is held for catch-up.
    world.presence.bound.add(PHONE)
    await world.service.create_node(OWNER, "feed", {"pubsub#presence_based_delivery": ["0"]})
    await world.service.subscribe(PHONE, "feed", PHONE, {"pubsubd#catch_up": ["1"]})
    assert addresses(await publish(world, "1")) == {PHONE}
    assert await world.service.became_available(PHONE, "online", initial=False) == []


async def test_connected_resource_without_presence_still_waits_where_presence_is_asked(
    world: World,
) -> None:
    world.presence.bound.add(PHONE)
    await world.service.create_node(OWNER, "feed", {"pubsub#presence_based_delivery": ["1"]})
    await world.service.subscribe(PHONE, "feed", PHONE)
    await world.service.subscribe(BOB, "feed", BOB, {"pubsub#show-values": ["online"]})
    assert addresses(await publish(world, "1")) == set()


async def test_bare_jid_subscription_is_not_delivered_to_a_resource_without_presence(
    world: World,
) -> None:
    # RFC 6121 §8.5.2.1.1: a bare-JID message goes to available resources only.
    world.presence.bound.add(PHONE)
    await setup(world, x_catch_up=["1"])
    assert addresses(await publish(world, "1")) == set()

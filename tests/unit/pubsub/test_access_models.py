"""Access models (XEP-0060 §4.5, §6.1.3, §6.5.9) and the capability table (§4.1)."""

from __future__ import annotations

import pytest

from pubsubd.pubsub.access import CAPABILITIES, Action
from pubsubd.pubsub.errors import PubSubError
from pubsubd.pubsub.model import Affiliation, SubscriptionState
from pubsubd.pubsub.notifications import NotificationKind

from .conftest import OWNER, World

BOB = "bob@example.org/phone"


async def make(world: World, model: str, **extra: list[str]) -> None:
    form = {"pubsub#access_model": [model], **{f"pubsub#{k}": v for k, v in extra.items()}}
    await world.service.create_node(OWNER, "n", form)
    await world.service.publish(OWNER, "n", "<e/>", "1")


async def refused(world: World, jid: str = BOB) -> list[tuple[str, str | None]]:
    """The errors of subscribing and of retrieving items, in that order."""
    found = []
    for attempt in (
        world.service.subscribe(jid, "n", jid),
        world.service.items(jid, "n"),
    ):
        try:
            await attempt
        except PubSubError as error:
            found.append((error.condition, error.pubsub_condition))
    return found


def test_capability_table_matches_xep_0060_table_1() -> None:
    table = {
        aff: tuple(
            CAPABILITIES[aff][a]
            for a in (
                Action.SUBSCRIBE,
                Action.RETRIEVE_ITEMS,
                Action.PUBLISH,
                Action.PURGE,
                Action.CONFIGURE,
                Action.DELETE,
            )
        )
        for aff in Affiliation
    }
    assert table == {
        Affiliation.OWNER: (True, True, True, True, True, True),
        Affiliation.PUBLISHER: (True, True, True, True, False, False),
        Affiliation.PUBLISH_ONLY: (False, False, True, False, False, False),
        Affiliation.MEMBER: (True, True, False, False, False, False),
        Affiliation.NONE: (True, True, False, False, False, False),
        Affiliation.OUTCAST: (False, False, False, False, False, False),
    }


async def test_open(world: World) -> None:
    await make(world, "open")
    assert await refused(world) == []


async def test_presence(world: World) -> None:
    await make(world, "presence")
    expected = ("not-authorized", "presence-subscription-required")
    assert await refused(world) == [expected, expected]
    world.roster.subscriptions[("owner@example.org", "bob@example.org")] = "to"
    assert await refused(world) == [expected, expected]
    world.roster.subscriptions[("owner@example.org", "bob@example.org")] = "from"
    assert await refused(world) == []


async def test_roster_groups(world: World) -> None:
    await make(world, "roster", roster_groups_allowed=["friends"])
    expected = ("not-authorized", "not-in-roster-group")
    world.roster.group_map[("owner@example.org", "bob@example.org")] = frozenset({"work"})
    assert await refused(world) == [expected, expected]
    world.roster.group_map[("owner@example.org", "bob@example.org")] = frozenset({"friends"})
    assert await refused(world) == []


async def test_whitelist(world: World) -> None:
    await make(world, "whitelist")
    expected = ("not-allowed", "closed-node")
    assert await refused(world) == [expected, expected]
    await world.service.modify_affiliations(OWNER, "n", {"bob@example.org": Affiliation.MEMBER})
    assert await refused(world) == []


async def test_outcast_is_blocked(world: World) -> None:
    await make(world, "open")
    await world.service.modify_affiliations(OWNER, "n", {"bob@example.org": Affiliation.OUTCAST})
    assert await refused(world) == [("forbidden", None), ("forbidden", None)]


async def test_authorize_pending_approval_and_denial(world: World) -> None:
    await make(world, "authorize")
    with pytest.raises(PubSubError) as caught:
        await world.service.items(BOB, "n")
    assert (caught.value.condition, caught.value.pubsub_condition) == (
        "not-authorized",
        "not-subscribed",
    )
    outcome = await world.service.subscribe(BOB, "n", BOB)
    assert outcome.subscription.state is SubscriptionState.PENDING
    [request] = outcome.notifications
    assert request.kind is NotificationKind.APPROVAL_REQUEST
    assert [r.address for r in request.recipients] == ["owner@example.org"]
    assert request.subscription is not None and request.subscription.jid == BOB
    with pytest.raises(PubSubError) as caught:
        await world.service.subscribe(BOB, "n", BOB)
    assert (caught.value.condition, caught.value.pubsub_condition) == (
        "not-authorized",
        "pending-subscription",
    )
    assert await world.service.pending_nodes(OWNER) == ["n"]
    with pytest.raises(PubSubError):
        await world.service.pending_subscriptions(BOB, "n")
    [pending] = await world.service.pending_subscriptions(OWNER, "n")
    approved = await world.service.resolve_pending(OWNER, "n", BOB, allow=True, subid=pending.subid)
    kinds = [n.kind for n in approved.notifications]
    assert kinds == [NotificationKind.SUBSCRIPTION, NotificationKind.ITEMS]
    assert approved.notifications[0].subscription.state is SubscriptionState.SUBSCRIBED  # type: ignore[union-attr]
    assert [i.item_id for i in (await world.service.items(BOB, "n")).items] == ["1"]

    carol = "carol@example.org/x"
    await world.service.subscribe(carol, "n", carol)
    denied = await world.service.resolve_pending(OWNER, "n", carol, allow=False)
    assert denied.notifications[0].subscription.state is SubscriptionState.NONE  # type: ignore[union-attr]
    assert await world.service.subscriptions(carol) == []


async def test_publish_models(world: World) -> None:
    await world.service.create_node(OWNER, "open", {"pubsub#publish_model": ["open"]})
    await world.service.publish(BOB, "open", "<e/>")
    await world.service.create_node(OWNER, "subs", {"pubsub#publish_model": ["subscribers"]})
    with pytest.raises(PubSubError) as caught:
        await world.service.publish(BOB, "subs", "<e/>")
    assert caught.value.condition == "forbidden"
    await world.service.subscribe(BOB, "subs", BOB)
    await world.service.publish(BOB, "subs", "<e/>")


async def test_admin_and_service_itself_bypass(world: World) -> None:
    await make(world, "whitelist")
    # The feed engine publishes as the service JID.
    await world.service.publish("pubsub.example.org", "n", "<e/>")

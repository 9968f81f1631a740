"""Owner modifications of several entries at once (XEP-0060 §8.8.2.4, §8.9.2.4) and the
pending-request rules of §8.7: the valid entries are applied, the refused ones reported."""

from __future__ import annotations

import pytest

from pubsubd.pubsub import RejectedEntries
from pubsubd.pubsub.model import Affiliation, SubscriptionState
from pubsubd.pubsub.service import SubscriptionChange

from .conftest import OWNER, World

BOB = "bob@example.org"
EVE = "eve@example.org"
CAROL = "carol@example.org"


async def test_subscriptions_apply_valid_entries_and_report_the_others(world: World) -> None:
    await world.service.create_node(OWNER, "news")
    await world.service.subscribe(BOB, "news", BOB)
    await world.service.modify_affiliations(OWNER, "news", {CAROL: Affiliation.OUTCAST})
    with pytest.raises(RejectedEntries) as caught:
        await world.service.modify_subscriptions(
            OWNER,
            "news",
            [
                SubscriptionChange(BOB, SubscriptionState.NONE),
                SubscriptionChange(EVE, SubscriptionState.SUBSCRIBED, subid="no-such-subid"),
                SubscriptionChange(CAROL, SubscriptionState.SUBSCRIBED),
                SubscriptionChange(EVE, SubscriptionState.SUBSCRIBED),
            ],
        )
    error = caught.value
    assert error.condition == "not-acceptable"
    assert [(s.jid, s.state) for s in error.subscriptions] == [
        (EVE, SubscriptionState.NONE),
        (CAROL, SubscriptionState.NONE),
    ]
    # The successful entries took effect and their subscribers are told (§8.8.4).
    assert [s.jid for s in await world.service.node_subscriptions(OWNER, "news")] == [EVE]
    assert {(n.recipients[0].address, n.subscription.state) for n in error.notifications
            if n.subscription} == {(BOB, SubscriptionState.NONE),
                                   (EVE, SubscriptionState.SUBSCRIBED)}


async def test_affiliations_keep_the_last_owner_and_apply_the_rest(world: World) -> None:
    await world.service.create_node(OWNER, "news")
    with pytest.raises(RejectedEntries) as caught:
        await world.service.modify_affiliations(
            OWNER,
            "news",
            {"owner@example.org": Affiliation.NONE, BOB: Affiliation.PUBLISHER},
        )
    assert caught.value.affiliations == (("owner@example.org", Affiliation.OWNER),)
    assert await world.service.node_affiliations(OWNER, "news") == {
        "owner@example.org": Affiliation.OWNER,
        BOB: Affiliation.PUBLISHER,
    }
    # With a second owner, the first may step down.
    await world.service.modify_affiliations(
        OWNER, "news", {EVE: Affiliation.OWNER, "owner@example.org": Affiliation.NONE}
    )
    assert "owner@example.org" not in await world.service.node_affiliations(EVE, "news")


async def test_affiliation_changes_resolve_pending_requests(world: World) -> None:
    await world.service.create_node(OWNER, "club", {"pubsub#access_model": ["authorize"]})
    await world.service.subscribe(BOB, "club", BOB)
    await world.service.subscribe(EVE, "club", EVE)
    assert await world.service.pending_nodes(OWNER) == ["club"]
    outcome = await world.service.modify_affiliations(
        OWNER, "club", {BOB: Affiliation.PUBLISHER, EVE: Affiliation.OUTCAST}
    )
    # §8.7: a new publisher's request is approved, an outcast's denied; both are told.
    states = {(n.recipients[0].address, n.subscription.state)
              for n in outcome.notifications if n.subscription}
    assert states == {(BOB, SubscriptionState.SUBSCRIBED), (EVE, SubscriptionState.NONE)}
    assert [(s.jid, s.state) for s in await world.service.node_subscriptions(OWNER, "club")] == [
        (BOB, SubscriptionState.SUBSCRIBED)
    ]
    assert await world.service.pending_nodes(OWNER) == []

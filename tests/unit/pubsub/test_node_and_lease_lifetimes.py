"""How long things live: auto-created nodes, leased and temporary subscriptions, items of
pubsub#purge_offline nodes, and the refused pubsub#item_expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pubsubd.jid import JID
from pubsubd.presence_view import PresenceView
from pubsubd.pubsub.errors import FormError, PubSubError
from pubsubd.pubsub.model import Affiliation
from pubsubd.pubsub.notifications import NotificationKind
from pubsubd.storage.im_sqlite import RosterItem, im_store
from pubsubd.storage.sqlite import Database

from .conftest import OWNER, World

BOB = "bob@example.org"


async def test_refused_publish_leaves_no_auto_created_node(world: World) -> None:
    with pytest.raises(PubSubError) as caught:
        await world.service.publish(OWNER, "empty", "")
    assert (caught.value.condition, caught.value.pubsub_condition) == (
        "bad-request", "payload-required")
    with pytest.raises(PubSubError) as caught:
        await world.service.publish(OWNER, "huge", "<e>" + "x" * 70_000 + "</e>")
    assert caught.value.pubsub_condition == "payload-too-big"
    assert await world.service.list_nodes() == []
    # A notification-only node may be auto-created by an empty publish (§7.1.3.7).
    await world.service.publish(
        OWNER, "pings", "", options={"pubsub#deliver_payloads": ["0"]}
    )
    assert [n.node_id for n in await world.service.list_nodes()] == ["pings"]


async def test_a_leased_subscription_ends_at_its_expire_time(world: World) -> None:
    await world.service.create_node(OWNER, "news")
    world.presence.shows[f"{BOB}/desk"] = "online"
    now = datetime.fromtimestamp(world.clock.now, UTC)
    lease = (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    await world.service.subscribe(BOB, "news", BOB, {"pubsub#expire": [lease]})
    outcome = await world.service.publish(OWNER, "news", "<e/>", "1")
    assert {r.address for n in outcome.notifications for r in n.recipients} == {BOB}
    world.clock.now += 3601
    outcome = await world.service.publish(OWNER, "news", "<e/>", "2")
    assert outcome.notifications == ()
    assert await world.service.subscriptions(BOB) == []


async def test_temporary_full_jid_subscription_ends_with_its_resource(world: World) -> None:
    await world.service.create_node(OWNER, "news")
    await world.service.subscribe(f"{BOB}/desk", "news", f"{BOB}/desk",
                                  {"pubsub#expire": ["presence"]})
    await world.service.subscribe(BOB, "news", BOB)
    await world.service.became_unavailable(f"{BOB}/phone", last_resource=False)
    assert len(await world.service.subscriptions(BOB)) == 2
    await world.service.became_unavailable(f"{BOB}/desk", last_resource=False)
    assert [s.jid for s in await world.service.subscriptions(BOB)] == [BOB]


async def test_purge_offline_when_the_last_publisher_leaves(world: World) -> None:
    await world.service.create_node(OWNER, "live", {"pubsub#purge_offline": ["1"]})
    await world.service.create_node(OWNER, "kept")
    await world.service.modify_affiliations(OWNER, "live", {BOB: Affiliation.PUBLISHER})
    await world.service.subscribe("eve@example.org", "live", "eve@example.org")
    world.presence.shows["eve@example.org/x"] = "online"
    for node in ("live", "kept"):
        await world.service.publish(OWNER, node, "<e/>", "1")
    world.presence.shows[f"{BOB}/desk"] = "online"
    outcome = await world.service.became_unavailable(OWNER, last_resource=True)
    assert outcome.notifications == ()  # Bob, a publisher, is still online
    assert (await world.service.items(OWNER, "live")).count == 1
    del world.presence.shows[f"{BOB}/desk"]
    outcome = await world.service.became_unavailable(f"{BOB}/desk", last_resource=True)
    assert [n.kind for n in outcome.notifications] == [NotificationKind.PURGE]
    assert (await world.service.items(OWNER, "live")).count == 0
    assert (await world.service.items(OWNER, "kept")).count == 1


async def test_item_expire_is_refused_by_name(world: World) -> None:
    with pytest.raises(FormError) as caught:
        await world.service.create_node(OWNER, "news", {"pubsub#item_expire": ["3600"]})
    assert (caught.value.condition, caught.value.fields) == (
        "not-acceptable", ("pubsub#item_expire",))
    await world.service.create_node(OWNER, "news", {"pubsub#item_expire": [""]})
    assert "pubsub#item_expire" not in (await world.service.get_config(OWNER, "news")).to_form()


async def test_presence_view_lists_whose_presence_a_user_receives(tmp_path: Path) -> None:
    db = Database(tmp_path / "im.db")
    store = im_store(db)
    alice = JID.parse("alice@example.org")
    for contact, subscription in (("bob", "to"), ("carol", "both"), ("dave", "from")):
        await store.put_item(alice, RosterItem(JID.parse(f"{contact}@example.org"),
                                               subscription=subscription))
    view = PresenceView(None, store)  # type: ignore[arg-type]
    assert sorted(str(c) for c in view.presence_sources(alice)) == [
        "bob@example.org", "carol@example.org"]
    db.close()

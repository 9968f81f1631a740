"""Collections (XEP-0248), PEP (XEP-0163), and the service over the SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from pubsubd.pubsub.errors import PubSubError
from pubsubd.pubsub.model import AccessModel
from pubsubd.pubsub.notifications import NotificationKind
from pubsubd.pubsub.service import PubSubService, ServiceConfig
from pubsubd.storage.pubsub_sqlite import SqlitePubSubStore
from pubsubd.storage.sqlite import Database

from .conftest import OWNER, Clock, Presence, Roster, World, make_world

BOB = "bob@example.org/phone"
COLLECTION = {"pubsub#node_type": ["collection"]}


@pytest.fixture
def world() -> World:
    w = make_world()
    w.presence.shows[BOB] = "online"
    return w


async def tree(world: World) -> None:
    """root ⊃ blogs ⊃ leaf"""
    svc = world.service
    await svc.create_node(OWNER, "root", COLLECTION)
    await svc.create_node(OWNER, "blogs", {**COLLECTION, "pubsub#collection": ["root"]})
    await svc.create_node(OWNER, "leaf", {"pubsub#collection": ["blogs"]})


async def test_child_items_reach_collection_subscribers_with_depth(world: World) -> None:
    await tree(world)
    svc = world.service
    shallow = (await svc.subscribe(BOB, "blogs", BOB)).subscription
    deep_jid = "carol@example.org/x"
    world.presence.shows[deep_jid] = "online"
    await svc.subscribe(deep_jid, "root", deep_jid, {"pubsub#subscription_depth": ["all"]})
    too_far = "dave@example.org/x"
    world.presence.shows[too_far] = "online"
    await svc.subscribe(too_far, "root", too_far)  # depth 1: "leaf" is two levels below
    [event] = (await svc.publish(OWNER, "leaf", "<e/>", "i1")).notifications
    assert event.node == "leaf"
    shim = {r.address: (r.collection, r.subids) for r in event.recipients}
    assert shim == {
        BOB: ("blogs", (shallow.subid,)),
        deep_jid: ("root", shim[deep_jid][1]),
    }


async def test_collection_items_and_children(world: World) -> None:
    await tree(world)
    await world.service.create_node(OWNER, "leaf2", {"pubsub#collection": ["blogs"]})
    await world.service.publish(OWNER, "leaf", "<e/>", "a")
    await world.service.publish(OWNER, "leaf2", "<e/>", "b")
    result = await world.service.items(BOB, "blogs")
    assert {(g.node, tuple(i.item_id for i in g.items)) for g in result.groups} == {
        ("leaf", ("a",)),
        ("leaf2", ("b",)),
    }
    assert set(await world.service.children("blogs")) == {"leaf", "leaf2"}
    assert [n.node_id for n in await world.service.list_nodes()] == ["root"]


async def test_collection_errors(world: World) -> None:
    await tree(world)
    svc = world.service
    with pytest.raises(PubSubError) as caught:
        await svc.configure(OWNER, "root", {"pubsub#collection": ["leaf"]})
    assert (caught.value.condition, caught.value.pubsub_condition) == (
        "not-allowed",
        "invalid-options",
    )
    with pytest.raises(PubSubError) as caught:
        await svc.configure(OWNER, "root", {"pubsub#collection": ["blogs"]})  # a cycle
    assert (caught.value.condition, caught.value.pubsub_condition) == (
        "not-allowed",
        "invalid-options",
    )
    with pytest.raises(PubSubError) as caught:
        await svc.configure(OWNER, "blogs", {"pubsub#node_type": ["leaf"]})
    assert (caught.value.condition, caught.value.pubsub_condition) == (
        "not-allowed",
        "invalid-options",
    )
    await svc.configure(OWNER, "root", {"pubsub#children_max": ["1"]})
    await svc.create_node(OWNER, "other", COLLECTION)
    with pytest.raises(PubSubError) as caught:
        await svc.associate(OWNER, "root", "other")
    assert (caught.value.condition, caught.value.pubsub_condition) == (
        "not-allowed",
        "max-nodes-exceeded",
    )
    with pytest.raises(PubSubError) as caught:
        await svc.publish(OWNER, "blogs", "<e/>")
    assert caught.value.feature == "publish"
    await svc.subscribe(BOB, "blogs", BOB)
    with pytest.raises(PubSubError) as caught:
        await svc.subscribe(BOB, "blogs", BOB, {"pubsub#subscription_depth": ["all"]})
    assert caught.value.condition == "conflict"
    await world.service.create_node("bob@example.org/phone", "bobs")
    with pytest.raises(PubSubError) as caught:
        await svc.associate("bob@example.org/phone", "blogs", "bobs")
    assert caught.value.condition == "forbidden"


async def test_nodes_subscribers_hear_about_association(world: World) -> None:
    await tree(world)
    svc = world.service
    await svc.subscribe(BOB, "blogs", BOB, {"pubsub#subscription_type": ["nodes"]})
    created = await svc.create_node(OWNER, "new", {"pubsub#collection": ["blogs"]})
    kinds = [(n.kind, n.child) for n in created.notifications]
    assert (NotificationKind.CREATE, "new") in kinds and (
        NotificationKind.ASSOCIATE,
        "new",
    ) in kinds
    # An item published below reaches "items" subscribers only.
    assert (await svc.publish(OWNER, "new", "<e/>")).notifications == ()
    notes = await svc.configure(OWNER, "blogs", {"pubsub#children": ["leaf"]})
    assert [(n.kind, n.child) for n in notes.notifications] == [
        (NotificationKind.DISSOCIATE, "new")
    ]
    assert await svc.children("blogs") == ("leaf",)


async def test_delete_collection_orphans_children(world: World) -> None:
    await tree(world)
    await world.service.delete_node(OWNER, "blogs")
    assert (await world.service.get_node("leaf")).parents == ()


# -- PEP ------------------------------------------------------------------------------------


class Interest:
    def __init__(self, wanted: set[tuple[str, str]]) -> None:
        self.wanted = wanted

    def interested(self, full_jid: str, node: str) -> bool:
        return (full_jid, node) in self.wanted


def pep(roster: Roster, presence: Presence, interest: Interest) -> PubSubService:
    from pubsubd.pubsub.store import MemoryPubSubStore

    return PubSubService(
        MemoryPubSubStore(),
        roster,
        presence,
        service="juliet@example.org",
        config=ServiceConfig.for_pep(),
        clock=Clock(),
        interest=interest,
        subscribers=roster,
    )


async def test_pep_auto_create_presence_default_and_notify_filtering() -> None:
    roster, presence = Roster(), Presence()
    roster.subscriptions[("juliet@example.org", "romeo@example.org")] = "both"
    roster.subscriptions[("juliet@example.org", "nurse@example.org")] = "both"
    presence.shows.update(
        {
            "romeo@example.org/a": "online",
            "romeo@example.org/b": "online",
            "nurse@example.org/x": "online",
            "juliet@example.org/balcony": "online",
        }
    )
    tune = "http://jabber.org/protocol/tune"
    interest = Interest(
        {
            ("romeo@example.org/a", tune),
            ("juliet@example.org/balcony", tune),
            ("stranger@example.org/z", tune),
        }
    )
    svc = pep(roster, presence, interest)
    with pytest.raises(PubSubError) as caught:
        await svc.publish("romeo@example.org/a", tune, "<tune/>")
    assert caught.value.condition == "forbidden"
    outcome = await svc.publish("juliet@example.org/balcony", tune, "<tune/>", "current")
    assert outcome.created
    assert (await svc.get_node(tune)).config.access_model is AccessModel.PRESENCE
    [event] = outcome.notifications
    assert {r.address for r in event.recipients} == {
        "romeo@example.org/a",
        "juliet@example.org/balcony",
    }
    # A contact coming online gets the last item; a stranger does not.
    [last] = await svc.became_available("romeo@example.org/a")
    assert [i.item_id for i in last.items] == ["current"]
    presence.shows["stranger@example.org/z"] = "online"
    assert await svc.became_available("stranger@example.org/z") == []
    with pytest.raises(PubSubError) as caught:
        await svc.items("stranger@example.org/z", tune)
    assert caught.value.pubsub_condition == "presence-subscription-required"


# -- SQLite ---------------------------------------------------------------------------------


async def test_service_on_sqlite_persists_published_items(tmp_path: Path) -> None:
    db = Database(tmp_path / "svc.db")
    roster, presence = Roster(), Presence()
    config = ServiceConfig(local_domains=frozenset({"example.org"}))
    svc = PubSubService(
        SqlitePubSubStore(db),
        roster,
        presence,
        service="pubsub.example.org",
        config=config,
    )
    await svc.create_node(OWNER, "feed", {"pubsub#max_items": ["2"]})
    await svc.subscribe(BOB, "feed", BOB, {"pubsub#show-values": ["online"]})
    for n in "abc":
        await svc.publish(OWNER, "feed", f"<e>{n}</e>", n)
    db.close()
    reopened = PubSubService(
        SqlitePubSubStore(Database(tmp_path / "svc.db")),
        roster,
        presence,
        service="pubsub.example.org",
        config=config,
    )
    assert [i.item_id for i in (await reopened.items(BOB, "feed")).items] == ["c", "b"]
    [sub] = await reopened.subscriptions(BOB)
    assert sub.options.show_values == frozenset({"online"})


async def test_a_leaf_in_two_collections_reaches_both(world: World) -> None:
    """multi-collection (XEP-0248 §7.2): one leaf associated with several collections."""
    svc = world.service
    await svc.create_node(OWNER, "sports", COLLECTION)
    await svc.create_node(OWNER, "local", COLLECTION)
    await svc.create_node(OWNER, "derby", {"pubsub#collection": ["sports", "local"]})
    eve = "eve@example.org/desk"
    world.presence.shows[eve] = "online"
    await svc.subscribe(BOB, "sports", BOB)
    await svc.subscribe(eve, "local", eve)
    [event] = (await svc.publish(OWNER, "derby", "<e/>", "goal")).notifications
    assert {(r.address, r.collection) for r in event.recipients} == {
        (BOB, "sports"),
        (eve, "local"),
    }

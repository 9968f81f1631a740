"""One contract, every pubsub store backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pubsubd.pubsub.model import (
    AccessModel,
    Affiliation,
    Node,
    NodeConfig,
    Subscription,
    SubscriptionOptions,
    SubscriptionState,
)
from pubsubd.pubsub.store import NewItem, PubSubStore
from pubsubd.storage.pubsub_sqlite import SqlitePubSubStore
from pubsubd.storage.sqlite import Database
from tests.unit.storage.backend_params import BACKENDS, open_param

SVC = "pubsub.example.org"
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PubSubStore]:
    backend = open_param(request, tmp_path)
    yield backend.stores.pubsub
    backend.stores.close()


def new(item_id: str, payload: str = "<x/>") -> NewItem:
    return NewItem(item_id, payload, "alice@example.org/desk", WHEN)


async def make(store: PubSubStore, node_id: str = "news", service: str = SVC) -> Node:
    config = NodeConfig(
        title="News",
        access_model=AccessModel.ROSTER,
        roster_groups_allowed=frozenset({"friends", "team"}),
        max_items=None,
    )
    node = Node(service, node_id, config, "alice@example.org", WHEN)
    assert await store.create_node(node, "alice@example.org/desk")
    return node


async def test_nodes_round_trip_with_config(store: PubSubStore) -> None:
    node = await make(store)
    assert not await store.create_node(node, None)
    assert await store.get_node(SVC, "news") == node
    assert await store.get_node("alice@example.org", "news") is None
    await make(store, "news", service="alice@example.org")  # PEP node of the same name
    assert [n.node_id for n in await store.list_nodes(SVC)] == ["news"]
    changed = Node(SVC, "news", NodeConfig(title="Changed"), node.creator, node.created)
    await store.update_node(changed)
    fetched = await store.get_node(SVC, "news")
    assert fetched is not None and fetched.config.title == "Changed"


async def test_owner_affiliation_created_with_node(store: PubSubStore) -> None:
    await make(store)
    assert await store.get_affiliation(SVC, "news", "alice@example.org/x") is Affiliation.OWNER
    await store.set_affiliation(SVC, "news", "bob@example.org", Affiliation.PUBLISHER)
    await store.set_affiliation(SVC, "news", "eve@example.org", Affiliation.OUTCAST)
    await store.set_affiliation(SVC, "news", "eve@example.org", Affiliation.NONE)
    assert await store.list_affiliations(SVC, "news") == {
        "alice@example.org": Affiliation.OWNER,
        "bob@example.org": Affiliation.PUBLISHER,
    }
    assert await store.affiliations_of(SVC, "bob@example.org/phone") == {
        "news": Affiliation.PUBLISHER
    }


async def test_subscriptions_round_trip(store: PubSubStore) -> None:
    await make(store)
    await make(store, "other")
    options = SubscriptionOptions(
        digest=True,
        show_values=frozenset({"chat"}),
        subscription_depth=None,
        include_words=("xmpp",),
        catch_up=True,
    )
    first = Subscription("news", "bob@example.org/phone", "s1", SubscriptionState.PENDING, options)
    second = Subscription("other", "bob@example.org", "s2")
    await store.put_subscription(SVC, first)
    await store.put_subscription(SVC, second)
    assert await store.list_subscriptions(SVC, "news") == [first]
    assert await store.subscriptions_of(SVC, "bob@example.org") == [first, second]
    third = Subscription("news", "bob@example.org", "s3")
    await store.put_subscription(SVC, third)
    # Exactly the JID as subscribed, on that node only.
    assert await store.node_subscriptions_of(SVC, "news", first.jid) == [first]
    assert await store.node_subscriptions_of(SVC, "news", "bob@example.org") == [third]
    assert await store.node_subscriptions_of(SVC, "other", first.jid) == []
    assert await store.delete_subscription(SVC, "news", "s3")
    approved = Subscription("news", first.jid, "s1", SubscriptionState.SUBSCRIBED, options)
    await store.put_subscription(SVC, approved)
    assert await store.list_subscriptions(SVC, "news") == [approved]
    assert await store.delete_subscription(SVC, "news", "s1")
    assert not await store.delete_subscription(SVC, "news", "s1")


async def test_items_newest_first_replace_and_trim(store: PubSubStore) -> None:
    await make(store)
    result = await store.put_items(SVC, "news", [new("a"), new("b"), new("c")], 3)
    assert [i.item_id for i in result.items] == ["a", "b", "c"]
    assert result.items[0].seq < result.items[1].seq < result.items[2].seq
    assert result.evicted == ()
    # Replacing "a" makes it the newest; the next publish trims the oldest ("b").
    await store.put_items(SVC, "news", [new("a", "<y/>")], 3)
    result = await store.put_items(SVC, "news", [new("d")], 3)
    assert result.evicted == ("b",)
    items = await store.get_items(SVC, "news")
    assert [i.item_id for i in items] == ["d", "a", "c"]
    assert items[1].payload == "<y/>" and items[1].published == WHEN
    assert [i.item_id for i in await store.get_items(SVC, "news", limit=2)] == ["d", "a"]
    assert [i.item_id for i in await store.get_items(SVC, "news", ["c", "zz", "d"])] == ["d", "c"]
    assert await store.count_items(SVC, "news") == 3


async def test_batch_larger_than_max_items_keeps_newest(store: PubSubStore) -> None:
    await make(store)
    result = await store.put_items(SVC, "news", [new("a"), new("b"), new("c")], 2)
    assert result.evicted == ("a",)
    assert [i.item_id for i in result.items] == ["b", "c"]


async def test_items_each_put_as_separate_calls_would(store: PubSubStore) -> None:
    await make(store)
    await store.put_items(SVC, "news", [new("a"), new("b")], 3)
    # Each entry trims on its own: "c" fills the node, "d" pushes out "a", "b" is replaced
    # (so it moves to the newest place) and "e" pushes out the oldest left, "c".
    results = await store.put_items_each(
        SVC, "news", [new("c"), new("d"), new("b", "<y/>"), new("e")], 3)
    assert [([i.item_id for i in r.items], list(r.evicted)) for r in results] == [
        (["c"], []), (["d"], ["a"]), (["b"], []), (["e"], ["c"])]
    seqs = [r.items[0].seq for r in results]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert [i.item_id for i in await store.get_items(SVC, "news")] == ["e", "b", "d"]
    # With a node of one item, each put trims the one before it, within the same batch.
    results = await store.put_items_each(SVC, "news", [new("f"), new("g")], 1)
    assert [([i.item_id for i in r.items], list(r.evicted)) for r in results] == [
        (["f"], ["d", "b", "e"]), (["g"], ["f"])]
    with pytest.raises(KeyError):
        await store.put_items_each(SVC, "nowhere", [new("a")], None)


async def test_delete_and_purge(store: PubSubStore) -> None:
    await make(store)
    await store.put_items(SVC, "news", [new("a"), new("b"), new("c")], None)
    assert await store.delete_items(SVC, "news", ["a", "zz"]) == ["a"]
    assert await store.purge_items(SVC, "news") == ["b", "c"]
    assert await store.count_items(SVC, "news") == 0


async def test_delete_node_cascades(store: PubSubStore) -> None:
    await make(store)
    await store.put_items(SVC, "news", [new("a")], None)
    await store.put_subscription(SVC, Subscription("news", "bob@example.org", "s1"))
    await store.delete_node(SVC, "news")
    assert await store.get_node(SVC, "news") is None
    await make(store)
    assert await store.get_items(SVC, "news") == []
    assert await store.list_subscriptions(SVC, "news") == []
    assert await store.list_affiliations(SVC, "news") == {"alice@example.org": Affiliation.OWNER}


async def test_sqlite_items_survive_reopen(tmp_path: Path) -> None:
    db = Database(tmp_path / "durable.db")
    store = SqlitePubSubStore(db)
    await make(store)
    await store.put_items(SVC, "news", [new("a")], 10)
    db.close()
    reopened = SqlitePubSubStore(Database(tmp_path / "durable.db"))
    assert [i.item_id for i in await reopened.get_items(SVC, "news")] == ["a"]
    reopened.db.close()


async def test_changed_items_are_written_in_one_batch_identical_ones_left(
    store: PubSubStore,
) -> None:
    await make(store)
    await store.put_items(SVC, "news", [new("a"), new("b")], 4)
    result = await store.put_changed_items(
        SVC, "news", [new("a"), new("b", "<changed/>"), new("c"), new("d")], 4)
    # "a" is the same bytes: not rewritten, keeps its place; "b" changed: newest but two.
    assert result.unchanged == ("a",)
    assert [i.item_id for i in result.written] == ["b", "c", "d"]
    assert result.written[0].seq < result.written[1].seq < result.written[2].seq
    assert result.evicted == ()
    items = await store.get_items(SVC, "news")
    assert [(i.item_id, i.payload) for i in items] == [
        ("d", "<x/>"), ("c", "<x/>"), ("b", "<changed/>"), ("a", "<x/>")]
    # Trimming counts what was there: two new items push out the two oldest.
    result = await store.put_changed_items(SVC, "news", [new("e"), new("f"), new("d")], 4)
    assert [i.item_id for i in result.written] == ["e", "f"]
    assert result.unchanged == ("d",)
    assert result.evicted == ("a", "b")
    assert [i.item_id for i in await store.get_items(SVC, "news")] == ["f", "e", "d", "c"]


async def test_changed_items_batch_larger_than_max_items(store: PubSubStore) -> None:
    await make(store)
    result = await store.put_changed_items(SVC, "news", [new("a"), new("b"), new("c")], 2)
    assert [i.item_id for i in result.written] == ["a", "b", "c"]  # all were written...
    assert result.evicted == ("a",)  # ...and the oldest trimmed in the same transaction
    assert [i.item_id for i in await store.get_items(SVC, "news")] == ["c", "b"]
    with pytest.raises(KeyError):
        await store.put_changed_items(SVC, "nowhere", [new("a")], 2)


async def test_subscription_listing_follows_every_write(store: PubSubStore) -> None:
    """A listing read once stays true after later writes (the fan-out lists on every publish)."""
    await make(store)
    assert await store.list_subscriptions(SVC, "news") == []
    one, two = (Subscription("news", f"u{i}@example.org", f"s{i}") for i in (1, 2))
    await store.put_subscription(SVC, one)
    await store.put_subscription(SVC, two)
    assert await store.list_subscriptions(SVC, "news") == [one, two]
    changed = Subscription("news", one.jid, "s1", SubscriptionState.UNCONFIGURED)
    await store.put_subscription(SVC, changed)
    # (where a replaced subscription goes in the order is the backend's own)
    assert sorted(await store.list_subscriptions(SVC, "news"), key=lambda s: s.subid) == [
        changed, two]
    assert await store.delete_subscription(SVC, "news", "s2")
    assert await store.list_subscriptions(SVC, "news") == [changed]
    # A subscription to a node that does not exist is not kept.
    assert await store.list_subscriptions(SVC, "gone") == []
    await store.put_subscription(SVC, Subscription("gone", "u3@example.org", "s3"))
    assert await store.list_subscriptions(SVC, "gone") == []
    await store.delete_node(SVC, "news")
    await make(store)
    assert await store.list_subscriptions(SVC, "news") == []


async def test_sqlite_subscriptions_survive_reopen(tmp_path: Path) -> None:
    db = Database(tmp_path / "durable.db")
    store = SqlitePubSubStore(db)
    await make(store)
    sub = Subscription("news", "bob@example.org", "s1")
    assert await store.list_subscriptions(SVC, "news") == []
    await store.put_subscription(SVC, sub)
    db.close()
    reopened = SqlitePubSubStore(Database(tmp_path / "durable.db"))
    assert await reopened.list_subscriptions(SVC, "news") == [sub]
    reopened.db.close()

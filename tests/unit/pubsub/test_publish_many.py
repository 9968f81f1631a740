"""A batch publish (a feed poll's entries): one transaction, one fan-out pass per audience,
and the semantics of one publish per entry (idempotency, max_items, order, refusals)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pubsubd.pubsub.batch import BatchEntry
from pubsubd.pubsub.errors import PubSubError
from pubsubd.pubsub.model import Subscription
from pubsubd.pubsub.notifications import Notification, NotificationKind
from pubsubd.pubsub.service import PubSubService, ServiceConfig
from pubsubd.pubsub.store import BatchPutResult, MemoryPubSubStore, NewItem, PutResult

from .conftest import OWNER, Clock, Presence, Roster

BOB, CAROL = "bob@example.org", "carol@example.org"


class CountingStore(MemoryPubSubStore):
    """The memory store, counting the writes of items and the reads of subscriptions."""

    def __init__(self) -> None:
        super().__init__()
        self.item_writes = 0
        self.subscription_reads = 0

    async def put_items(self, service: str, node_id: str, items: Sequence[NewItem],
                        max_items: int | None) -> PutResult:
        self.item_writes += 1
        return await super().put_items(service, node_id, items, max_items)

    async def put_changed_items(self, service: str, node_id: str, items: Sequence[NewItem],
                                max_items: int | None) -> BatchPutResult:
        self.item_writes += 1
        return await super().put_changed_items(service, node_id, items, max_items)

    async def list_subscriptions(self, service: str, node_id: str) -> list[Subscription]:
        self.subscription_reads += 1
        return await super().list_subscriptions(service, node_id)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def service_on(store: CountingStore, **config: object) -> PubSubService:
    presence = Presence({f"{BOB}/desk": "online", f"{CAROL}/desk": "online"})
    return PubSubService(store, Roster(), presence, service="pubsub.example.org",
                         config=ServiceConfig(local_domains=frozenset({"example.org"}),
                                              **config),  # type: ignore[arg-type]
                         clock=Clock())


async def feed_node(service: PubSubService, **fields: str) -> None:
    await service.create_node(OWNER, "feed", {f"pubsub#{k}": [v] for k, v in fields.items()})
    await service.subscribe(BOB, "feed", BOB)


def entry(item_id: str, text: str | None = None, payload: str | None = None) -> BatchEntry:
    return BatchEntry(item_id, payload or f"<e>{item_id}</e>", text)


def items_of(notifications: Sequence[Notification]) -> list[tuple[str, ...]]:
    return [tuple(i.item_id for i in n.items) for n in notifications
            if n.kind is NotificationKind.ITEMS]


async def test_one_write_one_subscriber_read_and_a_notification_per_entry_in_order(
    store: CountingStore,
) -> None:
    service = service_on(store)
    await feed_node(service)
    writes, reads = store.item_writes, store.subscription_reads
    outcome = await service.publish_many(OWNER, "feed", [entry(n) for n in "abcde"])
    assert store.item_writes - writes == 1
    # One read to group the items by audience, one for the single fan-out pass.
    assert store.subscription_reads - reads == 2
    assert outcome.published == ("a", "b", "c", "d", "e")
    assert items_of(outcome.notifications) == [("a",), ("b",), ("c",), ("d",), ("e",)]
    assert all(r.address == BOB for n in outcome.notifications for r in n.recipients)
    stored = await service.store.get_items("pubsub.example.org", "feed")
    assert [i.item_id for i in stored] == ["e", "d", "c", "b", "a"]


async def test_republished_identical_entries_change_nothing(store: CountingStore) -> None:
    service = service_on(store)
    await feed_node(service)
    await service.publish_many(OWNER, "feed", [entry("a"), entry("b")])
    again = await service.publish_many(
        OWNER, "feed", [entry("a"), entry("b", payload="<e>b, edited</e>"), entry("c")])
    assert again.unchanged == ("a",)
    assert again.published == ("b", "c")
    assert items_of(again.notifications) == [("b",), ("c",)]
    nothing = await service.publish_many(OWNER, "feed", [entry("c")])
    assert nothing.published == () and nothing.notifications == ()


async def test_keyword_filters_apply_per_entry(store: CountingStore) -> None:
    service = service_on(store)
    await service.create_node(OWNER, "feed")
    await service.subscribe(BOB, "feed", BOB, {"pubsubd#include_words": ["xmpp"]})
    await service.subscribe(CAROL, "feed", CAROL)
    outcome = await service.publish_many(OWNER, "feed", [
        entry("1", "XMPP news"), entry("2", "Cooking"), entry("3", "more xmpp")])
    heard = [(n.items[0].item_id, sorted(r.address for r in n.recipients))
             for n in outcome.notifications]
    assert heard == [("1", [BOB, CAROL]), ("2", [CAROL]), ("3", [BOB, CAROL])]


async def test_max_items_trims_in_the_same_write(store: CountingStore) -> None:
    service = service_on(store)
    await feed_node(service, max_items="3", notify_retract="1")
    await service.publish_many(OWNER, "feed", [entry("a"), entry("b")])
    outcome = await service.publish_many(OWNER, "feed", [entry("c"), entry("d"), entry("e")])
    assert items_of(outcome.notifications) == [("c",), ("d",), ("e",)]
    [retract] = [n for n in outcome.notifications if n.kind is NotificationKind.RETRACT]
    assert retract.item_ids == ("a", "b")
    stored = await service.store.get_items("pubsub.example.org", "feed")
    assert [i.item_id for i in stored] == ["e", "d", "c"]


async def test_a_too_big_entry_is_skipped_the_others_published(store: CountingStore) -> None:
    service = service_on(store, max_payload_size=100)
    await feed_node(service)
    outcome = await service.publish_many(
        OWNER, "feed", [entry("a"), entry("big", payload="<e>" + "x" * 200 + "</e>"), entry("b")])
    assert outcome.published == ("a", "b")
    [(refused_id, error)] = outcome.refused
    assert refused_id == "big" and error.pubsub_condition == "payload-too-big"
    assert items_of(outcome.notifications) == [("a",), ("b",)]


async def test_a_batch_needs_a_leaf_node_and_the_right_to_publish(store: CountingStore) -> None:
    service = service_on(store)
    await feed_node(service)
    with pytest.raises(PubSubError) as caught:
        await service.publish_many("mallory@elsewhere.net/x", "feed", [entry("a")])
    assert caught.value.condition == "forbidden"
    with pytest.raises(PubSubError) as caught:
        await service.publish_many(OWNER, "nowhere", [entry("a")])
    assert caught.value.condition == "item-not-found"

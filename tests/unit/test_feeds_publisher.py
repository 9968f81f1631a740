"""The feed publisher publishes a poll's entries as one batch: one write of items, one
notification per entry in order with its own body text, the status element on the first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from feeds.model import Entry, FeedState
from pubsubd.modules.feeds.publisher import NodePublisher
from pubsubd.pubsub import Notification, PubSubService, ServiceConfig
from pubsubd.pubsub.store import BatchPutResult, MemoryPubSubStore, NewItem, PutResult

from .pubsub.conftest import Clock, Presence, Roster

SERVICE = "pubsub.example.org"
BOB = "bob@example.org"
FEED = "https://example.org/feed.xml"


class CountingStore(MemoryPubSubStore):
    def __init__(self) -> None:
        super().__init__()
        self.item_writes = 0

    async def put_items(self, service: str, node_id: str, items: Sequence[NewItem],
                        max_items: int | None) -> PutResult:
        self.item_writes += 1
        return await super().put_items(service, node_id, items, max_items)

    async def put_changed_items(self, service: str, node_id: str, items: Sequence[NewItem],
                                max_items: int | None) -> BatchPutResult:
        self.item_writes += 1
        return await super().put_changed_items(service, node_id, items, max_items)


@dataclass
class Sent:
    """The component's notification sender, as far as the publisher uses it: what it sends."""

    calls: list[tuple[list[Notification], str | None, str | None]] = field(default_factory=list)

    async def send(self, notifications: Iterable[Notification], text: str | None = None,
                   extra: str | None = None) -> None:
        self.calls.append((list(notifications), text, extra))


@dataclass
class Component:
    service: PubSubService
    sender: Sent


def entry(n: int, payload_size: int = 0) -> Entry:
    atom = (f"<entry xmlns='http://www.w3.org/2005/Atom'><id>e{n}</id>"
            f"<title>Entry {n}</title>{'x' * payload_size}</entry>")
    return Entry(item_id=f"e{n}", title=f"Entry {n}", links=(), published="", updated="",
                 author="", categories=(), summary_text="", content_html="", enclosures=(),
                 atom_xml=atom, body_text=f"Entry {n} text", content_hash=str(n))


def publisher_on(store: CountingStore, **config: Any) -> tuple[NodePublisher, Sent]:
    service = PubSubService(store, Roster(), Presence({f"{BOB}/desk": "online"}),
                            service=SERVICE, clock=Clock(),
                            config=ServiceConfig(local_domains=frozenset({"example.org"}),
                                                 **config))
    sent = Sent()
    component: Any = Component(service, sent)

    async def route(_: Any) -> None:
        return None

    return NodePublisher(component, route, max_items=10), sent


async def test_a_poll_is_one_write_and_a_notification_per_entry() -> None:
    store = CountingStore()
    publisher, sent = publisher_on(store)
    feed = FeedState(FEED, FEED, title="News")
    await publisher.publish(feed, [entry(1)], notify=False)  # creates the node: history
    await publisher.service.subscribe(BOB, FEED, BOB)
    before = store.item_writes
    await publisher.publish(feed, [entry(2), entry(3), entry(4)], notify=True)
    assert store.item_writes - before == 1
    assert [[i.item_id for n in ns for i in n.items] for ns, _, _ in sent.calls] == [
        ["e2"], ["e3"], ["e4"]]
    assert [text for _, text, _ in sent.calls] == [
        "Entry 2 text", "Entry 3 text", "Entry 4 text"]
    extras = [extra for _, _, extra in sent.calls]
    assert extras[0] is not None and "feed-status" in extras[0]
    assert extras[1:] == [None, None]
    # The same entries again: stored already, nobody told twice.
    await publisher.publish(feed, [entry(3), entry(4)], notify=True)
    assert len(sent.calls) == 3


async def test_history_is_stored_without_notifications_and_big_entries_skipped() -> None:
    store = CountingStore()
    publisher, sent = publisher_on(store, max_payload_size=500)
    feed = FeedState(FEED, FEED, title="News")
    await publisher.publish(feed, [entry(1)], notify=False)
    await publisher.service.subscribe(BOB, FEED, BOB)
    await publisher.publish(feed, [entry(2), entry(3, payload_size=1000), entry(4)],
                            notify=True)
    stored = await publisher.service.store.get_items(SERVICE, FEED)
    assert [i.item_id for i in stored] == ["e4", "e2", "e1"]
    assert [n.items[0].item_id for ns, _, _ in sent.calls for n in ns] == ["e2", "e4"]

"""PubSubStore digest batches (pubsub#digest) over every backend: they keep their items with
payloads, come out once when due, forget retracted items, and survive reopening."""

from __future__ import annotations

from datetime import UTC, datetime

from pubsubd.pubsub.model import Item, MessageType, Node
from pubsubd.pubsub.notifications import Recipient

from .backend_params import Backend

SERVICE = "pubsub.example.org"
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BOB = Recipient("bob@example.org", MessageType.NORMAL, ("sub-1",), None, True)


def item(item_id: str, seq: int) -> Item:
    return Item(item_id, f"<entry xmlns='urn:x'>{item_id}</entry>", "pub@example.org", WHEN, seq)


async def test_batches_are_due_once_in_order_with_payloads(backend: Backend) -> None:
    store = backend.stores.pubsub
    await store.create_node(Node(SERVICE, "news"), None)
    await store.add_digest(SERVICE, "news", BOB, [item("a", 1)], started=100.0, frequency=60.0)
    # A later publish joins the open batch; its opening time stays.
    await store.add_digest(SERVICE, "news", BOB, [item("b", 2), item("c", 3)], started=130.0,
                           frequency=60.0)
    await store.add_digest(SERVICE, "missing", BOB, [item("x", 4)], started=100.0,
                           frequency=0.0)  # no such node: nothing kept
    assert await store.take_due_digests(SERVICE, 159.0) == []
    [due] = await store.take_due_digests(SERVICE, 160.0)
    assert (due.node, due.recipient, due.started, due.frequency) == ("news", BOB, 100.0, 60.0)
    assert due.items == (item("a", 1), item("b", 2), item("c", 3))
    assert await store.take_due_digests(SERVICE, 1e9) == []


async def test_forgotten_items_leave_batches_and_empty_batches_go(backend: Backend) -> None:
    store = backend.stores.pubsub
    await store.create_node(Node(SERVICE, "news"), None)
    carol = Recipient("carol@example.org")
    await store.add_digest(SERVICE, "news", BOB, [item("a", 1), item("b", 2)], started=0.0,
                           frequency=1.0)
    await store.add_digest(SERVICE, "news", carol, [item("a", 1)], started=0.0, frequency=1.0)
    await store.forget_digest_items(SERVICE, "news", ["a"])
    [due] = await store.take_due_digests(SERVICE, 10.0)
    assert due.recipient == BOB and [i.item_id for i in due.items] == ["b"]
    await store.add_digest(SERVICE, "news", BOB, [item("c", 3)], started=0.0, frequency=1.0)
    await store.forget_digest_items(SERVICE, "news")
    assert await store.take_due_digests(SERVICE, 10.0) == []


async def test_batches_survive_reopening(backend: Backend) -> None:
    store = backend.stores.pubsub
    await store.create_node(Node(SERVICE, "news"), None)
    await store.add_digest(SERVICE, "news", BOB, [item("a", 1)], started=5.0, frequency=2.0)
    reopened = backend.reopen().pubsub
    [due] = await reopened.take_due_digests(SERVICE, 7.0)
    assert due.recipient == BOB and due.items == (item("a", 1),)

"""Catch-up state kept in the store: the contract on every backend, and a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pubsubd.pubsub.delivery import Hold
from pubsubd.pubsub.model import Item, MessageType, Node
from pubsubd.pubsub.notifications import Recipient
from pubsubd.pubsub.service import PubSubService, ServiceConfig
from pubsubd.pubsub.store import MemoryPubSubStore, PubSubStore
from pubsubd.storage.postgres import PgDatabase, PgPubSubStore
from pubsubd.storage.pubsub_sqlite import SqlitePubSubStore
from pubsubd.storage.sqlite import Database

from .conftest import OWNER, SERVICE, Clock, Presence, Roster

WHEN = datetime(2026, 1, 2, tzinfo=UTC)
BOB = "bob@example.org"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PubSubStore]:
    if request.param == "memory":
        yield MemoryPubSubStore()
        return
    if request.param == "postgres":
        pg = PgDatabase(request.getfixturevalue("pg_url"), max_connections=2)
        yield PgPubSubStore(pg)
        pg.close()
        return
    db = Database(tmp_path / "pubsub.db")
    yield SqlitePubSubStore(db)
    db.close()


def item(item_id: str, seq: int) -> Item:
    return Item(item_id, "<x/>", "alice@example.org", WHEN, seq)


HOLD = Hold(BOB, frozenset({"online"}), Recipient(BOB, MessageType.NORMAL, ("s1",), "coll", True))


async def test_hold_caps_counts_and_replaces(store: PubSubStore) -> None:
    assert await store.create_node(Node(SERVICE, "news"), None)
    await store.hold_items(SERVICE, "news", [HOLD], [item("a", 1), item("b", 2)], 3)
    await store.hold_items(SERVICE, "news", [HOLD], [item("c", 3), item("a", 4)], 3)
    [entry] = await store.held_for(SERVICE, BOB)
    assert entry.item_ids == ("b", "c", "a")  # the republished "a" moved to the end
    assert entry.skipped == 0
    await store.hold_items(SERVICE, "news", [HOLD], [item("d", 5), item("e", 6)], 3)
    [entry] = await store.held_for(SERVICE, BOB)
    assert (entry.item_ids, entry.skipped) == (("a", "d", "e"), 2)
    assert (entry.recipient, entry.shows) == (HOLD.recipient, HOLD.shows)
    await store.forget_held(SERVICE, "news", ["d"])
    taken = await store.take_held(SERVICE, "news", BOB)
    assert taken is not None and taken.item_ids == ("a", "e")
    assert await store.take_held(SERVICE, "news", BOB) is None
    assert await store.held_for(SERVICE, BOB) == []


async def test_deleting_a_node_forgets_what_it_held(store: PubSubStore) -> None:
    assert await store.create_node(Node(SERVICE, "news"), None)
    await store.hold_items(SERVICE, "news", [HOLD], [item("a", 1)], 5)
    await store.hold_items(SERVICE, "gone", [HOLD], [item("a", 1)], 5)  # no such node
    await store.delete_node(SERVICE, "news")
    assert await store.held_for(SERVICE, BOB) == []


def _service(store: PubSubStore, presence: Presence) -> PubSubService:
    return PubSubService(
        store,
        Roster(),
        presence,
        service=SERVICE,
        config=ServiceConfig(local_domains=frozenset({"example.org"}), catch_up_cap=2),
        clock=Clock(),
    )


async def test_catch_up_survives_a_restart(tmp_path: Path) -> None:
    """Held items are committed with the publish: a new service over the same database
    (the server after kill -9) still releases exactly them, in order, capped."""
    db = Database(tmp_path / "pubsub.db")
    before = _service(SqlitePubSubStore(db), Presence())
    await before.create_node(OWNER, "news")
    await before.subscribe(BOB, "news", BOB, {"pubsubd#catch_up": ["1"]})
    for n in ("1", "2", "3"):
        await before.publish(OWNER, "news", f"<e>{n}</e>", n)
    db.close()

    db = Database(tmp_path / "pubsub.db")
    after = _service(SqlitePubSubStore(db), Presence({f"{BOB}/desk": "online"}))
    [caught_up, *rest] = await after.became_available(f"{BOB}/desk", "online")
    assert [i.item_id for i in caught_up.items] == ["2", "3"]
    assert caught_up.skipped == 1
    assert [r.address for r in caught_up.recipients] == [f"{BOB}/desk"]
    assert rest == []  # the catch-up replaces the "last item" on presence
    assert await after.catch_up.held_count(BOB, "news") == 0
    db.close()

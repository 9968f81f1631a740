"""FeedContactStore and FeedMarkStore contract, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsubd.storage.feed_contacts_sqlite import SqliteFeedContactStore, SqliteFeedMarkStore
from pubsubd.storage.interfaces import FeedContactStore, FeedMarkStore
from pubsubd.storage.memory import MemoryFeedContactStore, MemoryFeedMarkStore
from pubsubd.storage.postgres import PgDatabase, PgFeedContactStore, PgFeedMarkStore
from pubsubd.storage.sqlite import Database

from .backend_params import BACKENDS

Pair = tuple[FeedContactStore, FeedMarkStore]


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    if request.param == "memory":
        yield MemoryFeedContactStore(), MemoryFeedMarkStore()
    elif request.param == "sqlite":
        db = Database(tmp_path / "f.sqlite3")
        yield SqliteFeedContactStore(db), SqliteFeedMarkStore(db)
        db.close()
    else:
        pg = PgDatabase(request.getfixturevalue("pg_url"), max_connections=2)
        yield PgFeedContactStore(pg), PgFeedMarkStore(pg)
        pg.close()


async def test_contact_names_are_added_replaced_and_forgotten(pair: Pair) -> None:
    contacts, _ = pair
    await contacts.add("news", "feed-1")
    await contacts.add("blog", "feed-2")
    assert await contacts.load() == {"news": "feed-1", "blog": "feed-2"}
    await contacts.add("news", "feed-3")  # the short name now names another feed
    assert await contacts.load() == {"news": "feed-3", "blog": "feed-2"}
    await contacts.forget("feed-2")
    assert await contacts.load() == {"news": "feed-3"}


async def test_marks_change_one_flag_at_a_time(pair: Pair) -> None:
    _, marks = pair
    assert await marks.get("f") == (False, False)
    await marks.set("f", pinned=True)
    await marks.set("f", idle=True)
    assert await marks.get("f") == (True, True)
    await marks.set("f", pinned=False)
    assert await marks.get("f") == (False, True)
    await marks.forget("f")
    assert await marks.get("f") == (False, False)

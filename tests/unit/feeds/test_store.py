"""One contract suite for every FeedStore backend."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from feeds.model import FeedState
from feeds.store import FeedStore
from pubsubd.storage.feeds_sqlite import SqliteFeedStore
from pubsubd.storage.sqlite import Database
from tests.unit.storage.backend_params import BACKENDS, open_param


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeedStore]:
    backend = open_param(request, tmp_path)
    yield backend.stores.feeds
    backend.stores.close()


def feed(feed_id: str, **changes: object) -> FeedState:
    state = FeedState(feed_id, f"https://x/{feed_id}")
    return dataclasses.replace(state, **changes)  # type: ignore[arg-type]


async def test_put_get_roundtrip_keeps_every_field(store: FeedStore) -> None:
    state = feed("a", title="Ä title", etag='"e"', last_modified="Mon", next_fetch=12.5,
                 error_streak=3, last_status=304, paused=True, moved_to="https://y/")
    await store.put_feed(state)
    assert await store.get_feed("a") == state
    assert await store.get_feed("missing") is None
    await store.put_feed(dataclasses.replace(state, title="new"))
    assert (await store.get_feed("a")).title == "new"  # type: ignore[union-attr]
    assert [s.feed_id for s in await store.list_feeds()] == ["a"]


async def test_due_feeds_skips_paused_gone_and_future(store: FeedStore) -> None:
    await store.put_feed(feed("new"))
    await store.put_feed(feed("past", next_fetch=50.0))
    await store.put_feed(feed("future", next_fetch=500.0))
    await store.put_feed(feed("paused", next_fetch=1.0, paused=True))
    await store.put_feed(feed("gone", next_fetch=1.0, gone=True))
    assert [s.feed_id for s in await store.due_feeds(100.0)] == ["new", "past"]
    assert [s.feed_id for s in await store.due_feeds(100.0, limit=1)] == ["new"]
    assert await store.next_due_time() == -math.inf
    await store.delete_feed("new")
    assert await store.next_due_time() == 50.0


async def test_seen_set(store: FeedStore) -> None:
    await store.put_feed(feed("a"))
    await store.put_feed(feed("b"))
    await store.mark_seen("a", [("1", "h1"), ("2", "h2")], at=1.0)
    assert await store.filter_unseen("a", ["3", "1", "2", "4"]) == ["3", "4"]
    assert await store.filter_unseen("b", ["1"]) == ["1"]  # per feed
    assert await store.seen_hashes("a", ["1", "9"]) == {"1": "h1"}
    await store.mark_seen("a", [("1", "h1b")], at=2.0)
    assert await store.seen_hashes("a", ["1"]) == {"1": "h1b"}
    many = [(str(i), "h") for i in range(1200)]
    await store.mark_seen("b", many, at=3.0)
    assert await store.filter_unseen("b", [str(i) for i in range(1300)]) == [
        str(i) for i in range(1200, 1300)
    ]


async def test_commit_poll_is_state_and_seen_together(store: FeedStore) -> None:
    await store.put_feed(feed("a"))
    await store.commit_poll(feed("a", etag='"v2"'), [("x", "hx")], at=5.0)
    assert (await store.get_feed("a")).etag == '"v2"'  # type: ignore[union-attr]
    assert await store.filter_unseen("a", ["x"]) == []


async def test_delete_forgets_seen(store: FeedStore) -> None:
    await store.put_feed(feed("a"))
    await store.mark_seen("a", [("1", "h")], at=1.0)
    await store.delete_feed("a")
    await store.put_feed(feed("a"))
    assert await store.filter_unseen("a", ["1"]) == ["1"]


async def test_prune_keeps_most_recent(store: FeedStore) -> None:
    await store.put_feed(feed("a"))
    for i in range(5):
        await store.mark_seen("a", [(str(i), "h")], at=float(i))
    assert await store.prune_seen("a", 2) == 3
    assert await store.filter_unseen("a", ["0", "1", "2", "3", "4"]) == ["0", "1", "2"]


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    db = Database(tmp_path / "f.sqlite")
    store = SqliteFeedStore(db)
    await store.commit_poll(feed("a", etag='"e"'), [("1", "h")], at=1.0)
    db.close()
    again = SqliteFeedStore(Database(tmp_path / "f.sqlite"))
    assert (await again.get_feed("a")).etag == '"e"'  # type: ignore[union-attr]
    assert await again.filter_unseen("a", ["1", "2"]) == ["2"]

"""Persistence of feed state and of the seen set, behind a narrow Protocol.

The seen set is what makes "never twice" survive restarts: an item id, once recorded for a feed,
is never notified again, whatever the feed does with it later. :meth:`FeedStore.commit_poll`
records a poll's new ids and the feed's new state (validators included) in one transaction, so
a crash can never leave a stored ETag that hides entries that were not yet recorded.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any, Protocol

from feeds.model import FeedState

SeenItem = tuple[str, str]  # (item id, content hash)


class FeedStore(Protocol):
    async def get_feed(self, feed_id: str) -> FeedState | None: ...

    async def put_feed(self, state: FeedState) -> None: ...

    async def delete_feed(self, feed_id: str) -> None:
        """Forget the feed and its seen set."""

    async def list_feeds(self) -> list[FeedState]: ...

    async def due_feeds(self, now: float, limit: int = 100) -> list[FeedState]:
        """Active feeds due at ``now`` (next fetch passed or never scheduled), soonest first."""

    async def next_due_time(self) -> float | None:
        """The earliest next fetch of an active feed (``-inf`` if one was never scheduled)."""

    async def mark_seen(self, feed_id: str, items: Sequence[SeenItem], *, at: float) -> None:
        """Record ids of a stored feed (with content hash) as seen; re-marking updates the hash."""

    async def filter_unseen(self, feed_id: str, item_ids: Sequence[str]) -> list[str]:
        """The ids of ``item_ids`` never seen for this feed, in the given order."""

    async def seen_hashes(self, feed_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        """Content hash recorded for each of ``item_ids`` that was seen."""

    async def commit_poll(self, state: FeedState, items: Sequence[SeenItem], *, at: float) -> None:
        """Atomically mark ``items`` seen and store ``state``."""

    async def prune_seen(self, feed_id: str, keep: int) -> int:
        """Keep the ``keep`` most recently seen ids of the feed; returns how many were dropped."""


def state_to_json(state: FeedState) -> str:
    return json.dumps(dataclasses.asdict(state), sort_keys=True)


def state_from_json(text: str) -> FeedState:
    data: dict[str, Any] = json.loads(text)
    known = {f.name for f in dataclasses.fields(FeedState)}
    return FeedState(**{k: v for k, v in data.items() if k in known})


def _due_key(state: FeedState) -> float:
    return -math.inf if state.next_fetch is None else state.next_fetch


class MemoryFeedStore:
    """A :class:`FeedStore` in dictionaries, for tests and for running without a database."""

    def __init__(self) -> None:
        self._feeds: dict[str, FeedState] = {}
        # feed id -> item id -> (content hash, last seen)
        self._seen: dict[str, dict[str, tuple[str, float]]] = {}

    async def get_feed(self, feed_id: str) -> FeedState | None:
        return self._feeds.get(feed_id)

    async def put_feed(self, state: FeedState) -> None:
        self._feeds[state.feed_id] = state

    async def delete_feed(self, feed_id: str) -> None:
        self._feeds.pop(feed_id, None)
        self._seen.pop(feed_id, None)

    async def list_feeds(self) -> list[FeedState]:
        return sorted(self._feeds.values(), key=lambda s: s.feed_id)

    async def due_feeds(self, now: float, limit: int = 100) -> list[FeedState]:
        due = [s for s in self._feeds.values() if s.active and _due_key(s) <= now]
        return sorted(due, key=lambda s: (_due_key(s), s.feed_id))[:limit]

    async def next_due_time(self) -> float | None:
        keys = [_due_key(s) for s in self._feeds.values() if s.active]
        return min(keys) if keys else None

    async def mark_seen(self, feed_id: str, items: Sequence[SeenItem], *, at: float) -> None:
        seen = self._seen.setdefault(feed_id, {})
        for item_id, content_hash in items:
            seen[item_id] = (content_hash, at)

    async def filter_unseen(self, feed_id: str, item_ids: Sequence[str]) -> list[str]:
        seen = self._seen.get(feed_id, {})
        return [i for i in item_ids if i not in seen]

    async def seen_hashes(self, feed_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        seen = self._seen.get(feed_id, {})
        return {i: seen[i][0] for i in item_ids if i in seen}

    async def commit_poll(self, state: FeedState, items: Sequence[SeenItem], *, at: float) -> None:
        await self.mark_seen(state.feed_id, items, at=at)
        self._feeds[state.feed_id] = state

    async def prune_seen(self, feed_id: str, keep: int) -> int:
        seen = self._seen.get(feed_id, {})
        if len(seen) <= keep:
            return 0
        ordered = sorted(seen.items(), key=lambda kv: kv[1][1], reverse=True)
        self._seen[feed_id] = dict(ordered[:keep])
        return len(ordered) - keep

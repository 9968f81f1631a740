"""Who polls which feed: leases on due feeds, so several instances can share one feed table.

An instance takes due feeds with :meth:`FeedLeases.lease_due`; each comes with a
:class:`Lease` whose token fences every later write: :meth:`FeedLeases.claim` (entries about
to be published) and :meth:`FeedLeases.commit` (the poll's outcome, which also releases the
lease) do nothing once the lease was taken over, so an instance that stalled past its lease
never overwrites the state of the feed's new holder. An instance that dies stops renewing;
its leases run out and other instances take the feeds over within one lease period.

Exactly once: :meth:`FeedLeases.claim` inserts the entries of a fetched document into the
seen set under the feed's unique (feed, item id) key, marked as claimed by the lease. Only
the ids the insert created (``fresh``) are published by this instance. The commit clears the
claim mark. A claim still marked when the next holder sees the entry (``orphaned``) was made
by a holder that died between claiming and committing: the new holder publishes it unless it
is already an item of the node (the previous holder died after publishing), so an entry is
neither lost nor notified twice; see docs/scaling.md for the remaining windows.

:class:`LocalFeedLeases` is the one-process implementation over any :class:`FeedStore`
(memory, SQLite): leases are in-process bookkeeping, claims are plain "unseen" checks, host
spacing is an in-memory :class:`HostBudget`. The PostgreSQL implementation keeps all of it in
the database (``pubsubd.storage.postgres.feed_leases``).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from feeds.model import FeedState
from feeds.schedule import HostBudget
from feeds.store import FeedStore, SeenItem


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to poll ``feed_id`` until ``until`` (POSIX time), proven by ``token``."""

    feed_id: str
    token: str
    until: float
    taken_over: bool = False
    """The previous holder never released it (it died or stalled): a takeover, for metrics."""


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim on a document's entries found."""

    fresh: tuple[str, ...] = ()
    """Ids never seen before, now claimed by this lease: publish them."""
    orphaned: tuple[str, ...] = ()
    """Ids a previous holder claimed but never committed: publish unless already published."""


def new_token() -> str:
    return uuid.uuid4().hex


def default_instance_id() -> str:
    """``hostname:pid``: unique among running instances, readable in logs and metrics."""
    return f"{socket.gethostname()}:{os.getpid()}"


class FeedLeases(Protocol):
    """Work distribution beside the :class:`FeedStore`: which instance polls which feed."""

    instance_id: str

    async def lease_due(self, now: float, limit: int, lease_seconds: float
                        ) -> list[tuple[FeedState, Lease]]:
        """Up to ``limit`` active due feeds nobody holds, soonest first, leased to us."""

    async def lease_feed(self, feed_id: str, now: float, lease_seconds: float
                         ) -> tuple[FeedState, Lease] | None:
        """Lease one feed whatever its due time (a refresh, a pushed document); None if it
        is unknown or held by someone."""

    async def renew(self, leases: Sequence[Lease], now: float, lease_seconds: float
                    ) -> list[Lease]:
        """Extend the leases still ours; the ones missing from the answer were lost."""

    async def release(self, lease: Lease) -> None:
        """Give the feed back without committing a poll (its next fetch stays as it was)."""

    async def claim(self, lease: Lease, items: Sequence[SeenItem], now: float
                    ) -> Claim | None:
        """Claim a document's entries for publishing; None if the lease is no longer ours."""

    async def commit(self, lease: Lease, state: FeedState, items: Sequence[SeenItem],
                     at: float) -> bool:
        """``FeedStore.commit_poll`` fenced by the lease, releasing it in the same
        transaction; False (and nothing written) if the lease was taken over."""

    async def reserve_host(self, lease: Lease, host: str, now: float, spacing: float,
                           max_per_host: int) -> float | None:
        """A start time for a fetch from ``host`` at least ``spacing`` after the previous
        one of any instance, counted in flight until the lease is committed or released;
        None while ``max_per_host`` fetches from it are in flight."""

    async def next_due_time(self, now: float) -> float | None:
        """When :meth:`lease_due` may next find something (None: no active feed)."""


class LocalFeedLeases:
    """:class:`FeedLeases` for one process: nobody else polls the store's feeds."""

    def __init__(self, store: FeedStore, instance_id: str | None = None) -> None:
        self.store = store
        self.instance_id = instance_id or default_instance_id()
        self._held: dict[str, Lease] = {}
        self._hosts = HostBudget(0.0)

    def _holds(self, lease: Lease) -> bool:
        held = self._held.get(lease.feed_id)
        return held is not None and held.token == lease.token

    def _free(self, feed_id: str, now: float) -> bool:
        held = self._held.get(feed_id)
        return held is None or held.until < now

    def _take(self, state: FeedState, now: float, lease_seconds: float) -> Lease:
        lease = Lease(state.feed_id, new_token(), now + lease_seconds,
                      taken_over=state.feed_id in self._held)
        self._held[state.feed_id] = lease
        return lease

    async def lease_due(self, now: float, limit: int, lease_seconds: float
                        ) -> list[tuple[FeedState, Lease]]:
        if limit <= 0:
            return []
        due = await self.store.due_feeds(now, limit=limit + len(self._held))
        free = [s for s in due if self._free(s.feed_id, now)][:limit]
        return [(s, self._take(s, now, lease_seconds)) for s in free]

    async def lease_feed(self, feed_id: str, now: float, lease_seconds: float
                         ) -> tuple[FeedState, Lease] | None:
        state = await self.store.get_feed(feed_id)
        if state is None or not self._free(feed_id, now):
            return None
        return state, self._take(state, now, lease_seconds)

    async def renew(self, leases: Sequence[Lease], now: float, lease_seconds: float
                    ) -> list[Lease]:
        kept = []
        for lease in leases:
            if self._holds(lease):
                renewed = replace(lease, until=now + lease_seconds)
                self._held[lease.feed_id] = renewed
                kept.append(renewed)
        return kept

    async def release(self, lease: Lease) -> None:
        if self._holds(lease):
            del self._held[lease.feed_id]

    async def claim(self, lease: Lease, items: Sequence[SeenItem], now: float
                    ) -> Claim | None:
        if not self._holds(lease):
            return None
        unseen = await self.store.filter_unseen(lease.feed_id, [i for i, _ in items])
        return Claim(fresh=tuple(unseen))

    async def commit(self, lease: Lease, state: FeedState, items: Sequence[SeenItem],
                     at: float) -> bool:
        if not self._holds(lease):
            return False
        await self.store.commit_poll(state, items, at=at)
        del self._held[lease.feed_id]
        return True

    async def reserve_host(self, lease: Lease, host: str, now: float, spacing: float,
                           max_per_host: int) -> float | None:
        # One process: the fetcher's per-host semaphore bounds connections per host.
        self._hosts.spacing = spacing
        return self._hosts.reserve(host, now)

    async def next_due_time(self, now: float) -> float | None:
        return await self.store.next_due_time()


__all__ = ["Claim", "FeedLeases", "Lease", "LocalFeedLeases", "default_instance_id",
           "new_token"]

"""The feed poller: fetch → parse → normalize → dedupe → publish, for every due feed.

Each poll runs in its own task, at most ``max_concurrent_polls`` at a time, and every network
wait has a deadline (the fetcher's total timeout), so one slow or broken feed only ever holds
its own slot.

Every poll holds a lease on its feed (:mod:`feeds.leases`): with one process that is
in-memory bookkeeping; with several instances on one PostgreSQL database it is what keeps two
of them from polling a feed at once, and leases are renewed while polls run.

Ordering for "never lost, never twice": the entries of a document are first claimed under the
lease (the seen set's unique key decides which are new, whichever instance sees them), then
published, and only then committed as seen, together with the feed's new validators, in one
transaction that also releases the lease (:meth:`FeedLeases.commit`). A crash before the
commit loses nothing: the old ETag is still stored, so the next poll gets the document again;
an entry it finds claimed but never committed is published then, unless the node already has
it (the crash came after publishing). If the publisher raises, nothing is committed and the
feed retries with back-off.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol
from urllib.parse import urlsplit

import trio

from feeds.fetch import Fetcher, FetchResult
from feeds.leases import FeedLeases, Lease, LocalFeedLeases
from feeds.model import Entry, FeedEvent, FeedEventKind, FeedState, PollerStats
from feeds.normalize import normalize_feed
from feeds.parse import ParsedFeed, parse
from feeds.push import PushReceiver, parse_link_header
from feeds.schedule import SchedulePolicy, adapt_interval, next_fetch
from feeds.store import FeedStore

log = logging.getLogger(__name__)
SEED_MAX_AGE = 120.0  # seconds a document fetched at subscribe stands in for the first poll


class Publisher(Protocol):
    """Where entries go (for pubsubd: the feed's pubsub node). Must be idempotent by item id."""

    async def publish(
        self, feed: FeedState, entries: Sequence[Entry], *, notify: bool
    ) -> None: ...

    async def feed_event(self, feed: FeedState, event: FeedEvent) -> None: ...

    async def published_ids(self, feed: FeedState, item_ids: Sequence[str]) -> set[str]:
        """Which of ``item_ids`` are already published (entries a dead poll had claimed)."""
        ...


class FirstPoll(enum.StrEnum):
    """What subscribers hear of the entries already in a feed when it is first polled."""

    NONE = "none"
    LAST = "last"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class PollerConfig:
    schedule: SchedulePolicy = field(default_factory=SchedulePolicy)
    max_concurrent_polls: int = 16
    first_poll: FirstPoll = FirstPoll.LAST
    first_poll_count: int = 3
    republish_updates: bool = False
    failing_after: int = 5
    seen_keep: int = 5000
    idle_tick: float = 30.0
    lease_seconds: float = 60.0  # how long a feed stays ours without a renewal
    max_per_host: int = 0  # fetches from one host in flight across instances (0: no limit)


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll did, for callers of :meth:`Poller.refresh` and for tests."""

    feed_id: str
    status: int | None
    new: int = 0
    updated: int = 0
    notified: int = 0
    error: str = ""
    events: tuple[FeedEvent, ...] = ()
    state: FeedState | None = None
    """The feed as committed by this poll."""


class Poller:
    """Polls the feeds of a :class:`FeedStore` and hands new entries to a :class:`Publisher`."""

    def __init__(
        self,
        store: FeedStore,
        publisher: Publisher,
        fetcher: Fetcher,
        config: PollerConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        push: PushReceiver | None = None,
        leases: FeedLeases | None = None,
    ) -> None:
        self.store = store
        self.leases: FeedLeases = leases or LocalFeedLeases(store)
        self._held: dict[str, Lease] = {}  # the lease of each feed this instance polls
        self._leased: dict[str, FeedState] = {}  # the state read with the lease, until polled
        # Told of "takeover" (a feed leased from an instance that never released it) and
        # "lost" (a poll abandoned: its lease was taken over), for metrics.
        self.lease_listeners: list[Callable[[str], None]] = []
        self.publisher = publisher
        self.fetcher = fetcher
        self.config = config or PollerConfig()
        self.stats = PollerStats()
        self._clock = clock
        self._rng = rng
        self._in_flight: set[str] = set()
        self._finished: dict[str, trio.Event] = {}  # set when that feed's running poll ends
        self._wake = trio.Event()
        self._parse_limiter = trio.CapacityLimiter(2)
        # Told of the feed's committed state after every poll, whatever came of it (e.g. to
        # show "checked just now, next in 30 min" to its followers), once the poll is over:
        # meanwhile a refresh of the feed would be turned away.
        self.polled_listeners: list[Callable[[FeedState], Awaitable[None]]] = []
        self.push = push  # a WebSub subscriber: consulted for polling periods, told of hubs
        self._feed_locks: dict[str, trio.Lock] = {}  # a poll and a push never overlap
        self._discovered: dict[str, tuple[tuple[str, ...], str]] = {}  # feed → (hubs, topic)
        # Documents fetched for a feed before its first poll (checking the address at
        # subscribe): that poll takes one instead of fetching the same document again.
        self._seeded: dict[str, tuple[float, FetchResult]] = {}

    # -- management -------------------------------------------------------------------------

    async def add_feed(
        self, url: str, *, feed_id: str | None = None, title: str = "", group: str = ""
    ) -> FeedState:
        """Start polling ``url`` (due at once); an existing feed is returned unchanged."""
        key = feed_id or url
        existing = await self.store.get_feed(key)
        if existing is not None:
            return existing
        state = FeedState(
            feed_id=key, url=url, original_url=url, title=title, group=group,
            interval=self.config.schedule.base_interval,
        )
        await self.store.put_feed(state)
        self._poke()
        return state

    def seed(self, feed_id: str, result: FetchResult) -> None:
        """Hand the feed's next poll a document just fetched from its address, so that poll
        does not fetch it again; used once, and only while fresher than ``SEED_MAX_AGE``."""
        now = self._clock()
        for key, (at, _) in list(self._seeded.items()):
            if now - at > SEED_MAX_AGE:
                del self._seeded[key]
        self._seeded[feed_id] = (now, result)

    def _take_seed(self, state: FeedState) -> FetchResult | None:
        seeded = self._seeded.pop(state.feed_id, None)
        if seeded is None:
            return None
        at, result = seeded
        if self._clock() - at > SEED_MAX_AGE or result.url != state.url or state.etag \
                or state.last_modified:
            return None
        return result

    async def remove_feed(self, feed_id: str) -> None:
        """Stop polling ``feed_id`` and forget it. A poll of it under way is waited for, so it
        cannot commit the feed back after it was deleted."""
        while feed_id in self._in_flight:
            await self._finished.setdefault(feed_id, trio.Event()).wait()
        await self.store.delete_feed(feed_id)
        if self.push is not None:
            await self.push.forget(feed_id)

    async def pause(self, feed_id: str) -> FeedState | None:
        return await self._update(feed_id, paused=True)

    async def resume(self, feed_id: str) -> FeedState | None:
        """Poll again now; also revives a feed that was gone, for when it comes back."""
        state = await self._update(feed_id, paused=False, gone=False, next_fetch=self._clock())
        self._poke()
        return state

    async def refresh(self, feed_id: str) -> PollOutcome | None:
        """Poll now and return what happened (None if unknown). A poll of the feed already
        under way is waited for first, so what it published counts as done when this returns."""
        while feed_id in self._in_flight:
            await self._finished.setdefault(feed_id, trio.Event()).wait()
        self._in_flight.add(feed_id)
        try:
            outcome = await self.poll_feed(feed_id)
        finally:
            self._poll_ended(feed_id)
            self._poke()
        await self._tell_polled(outcome)
        return outcome

    async def _update(self, feed_id: str, **changes: object) -> FeedState | None:
        state = await self.store.get_feed(feed_id)
        if state is None:
            return None
        state = replace(state, **changes)  # type: ignore[arg-type]
        await self.store.put_feed(state)
        return state

    def _poke(self) -> None:
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll due feeds until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._renew_leases)
            task_status.started()
            while True:
                self._wake = trio.Event()
                await self._dispatch(nursery)
                await self._sleep_until_due()

    async def _dispatch(self, nursery: trio.Nursery) -> None:
        now = self._clock()
        free = self.config.max_concurrent_polls - len(self._in_flight)
        leased = await self.leases.lease_due(now, free, self.config.lease_seconds)
        started = 0
        for state, lease in leased:
            if state.feed_id in self._in_flight:  # a refresh of it is under way here
                await self.leases.release(lease)
                continue
            lag = 0.0 if state.next_fetch is None else max(0.0, now - state.next_fetch)
            self.stats.last_lag = lag
            self.stats.max_lag = max(self.stats.max_lag, lag)
            self._hold(lease, state)
            self._in_flight.add(state.feed_id)
            nursery.start_soon(self._poll_task, state.feed_id, urlsplit(state.url).hostname or "")
            started += 1
        # Only a lower bound: leasing takes no more than there are free slots.
        self.stats.queue_depth = 1 if free > 0 and started == free else 0
        self.stats.in_flight = len(self._in_flight)

    def _hold(self, lease: Lease, state: FeedState) -> None:
        self._held[lease.feed_id] = lease
        self._leased[lease.feed_id] = state
        self.stats.leases_held = len(self._held)
        if lease.taken_over:
            self.stats.lease_takeovers += 1
            self._lease_event("takeover")
            log.info("feed %s taken over from an instance that stopped renewing its lease",
                     lease.feed_id, extra={"event": "feed.lease_takeover", "feed": lease.feed_id})

    def _unhold(self, feed_id: str) -> Lease | None:
        self._leased.pop(feed_id, None)
        lease = self._held.pop(feed_id, None)
        self.stats.leases_held = len(self._held)
        return lease

    def _lease_event(self, kind: str) -> None:
        for listener in self.lease_listeners:
            try:
                listener(kind)
            except Exception:
                log.exception("a lease listener failed")

    async def _renew_leases(self) -> None:
        """Extend the leases of running polls, three times per lease period."""
        while True:
            await trio.sleep(self.config.lease_seconds / 3)
            held = list(self._held.values())
            if not held:
                continue
            try:
                kept = await self.leases.renew(held, self._clock(), self.config.lease_seconds)
            except Exception:  # the database is away: the polls' commits will tell
                log.exception("renewing %d feed leases failed", len(held))
                continue
            for lease in kept:
                current = self._held.get(lease.feed_id)
                if current is not None and current.token == lease.token:
                    self._held[lease.feed_id] = lease

    async def _acquire(self, feed_id: str) -> bool:
        """Lease one feed for a refresh or a push, waiting while another instance polls it;
        False if the feed is unknown or stays held past a lease period."""
        if feed_id in self._held:
            return True
        deadline = self._clock() + self.config.lease_seconds + 1.0
        while True:
            leased = await self.leases.lease_feed(feed_id, self._clock(),
                                                  self.config.lease_seconds)
            if leased is not None:
                self._hold(leased[1], leased[0])
                return True
            if await self.store.get_feed(feed_id) is None or self._clock() > deadline:
                return False
            await trio.sleep(0.1)

    async def _release(self, feed_id: str) -> None:
        """Give back the feed's lease if the poll ended without committing it. Also when the
        poll was cancelled (the server stops): another instance then takes the feed at once
        instead of after the lease period."""
        lease = self._unhold(feed_id)
        if lease is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                try:
                    await self.leases.release(lease)
                except Exception:  # it runs out by itself
                    log.exception("releasing the lease of feed %s failed", feed_id)

    async def _sleep_until_due(self) -> None:
        soonest = await self.leases.next_due_time(self._clock())
        delay = self.config.idle_tick
        if soonest is not None:
            # Feeds being polled still look due until their poll commits; their completion
            # wakes us, so a short nap suffices instead of spinning.
            delay = min(delay, max(soonest - self._clock(), 0.05 if self._in_flight else 0.0))
        with trio.move_on_after(delay):
            await self._wake.wait()

    async def _poll_task(self, feed_id: str, host: str) -> None:
        try:
            await self._wait_for_host(feed_id, host)
            outcome = await self.poll_feed(feed_id)
        except Exception:  # our own bug: log it and keep every other feed polling
            log.exception("poll of feed %s failed", feed_id)
            self._count_error("internal")
            outcome = None
        finally:
            self._poll_ended(feed_id)
            self.stats.in_flight = len(self._in_flight)
            self._poke()
        await self._tell_polled(outcome)

    async def _wait_for_host(self, feed_id: str, host: str) -> None:
        """Per-host politeness, across instances where the leases are shared: wait for this
        fetch's slot (``host_spacing`` after the previous one), and while the host has
        ``max_per_host`` fetches in flight."""
        spacing = self.config.schedule.host_spacing
        while (lease := self._held.get(feed_id)) is not None:
            slot = await self.leases.reserve_host(lease, host, self._clock(), spacing,
                                                  self.config.max_per_host)
            if slot is not None:
                wait = slot - self._clock()
                if wait > 0:
                    await trio.sleep(wait)
                return
            await trio.sleep(max(spacing, 0.05))

    def _poll_ended(self, feed_id: str) -> None:
        self._in_flight.discard(feed_id)
        finished = self._finished.pop(feed_id, None)
        if finished is not None:
            finished.set()

    async def _tell_polled(self, outcome: PollOutcome | None) -> None:
        if outcome is None or outcome.state is None:
            return
        for listener in self.polled_listeners:
            try:
                await listener(outcome.state)
            except Exception:
                log.exception("a poll listener failed for feed %s", outcome.feed_id)

    # -- one poll ---------------------------------------------------------------------------

    def _lock(self, feed_id: str) -> trio.Lock:
        lock = self._feed_locks.get(feed_id)
        if lock is None:
            lock = self._feed_locks[feed_id] = trio.Lock()
        return lock

    async def ingest(self, feed_id: str, body: bytes, content_type: str = "") -> PollOutcome | None:
        """Publish a document a hub pushed (W3C WebSub §7) as if a poll had just fetched it.

        The stored validators are kept: they describe the last document fetched, and the next
        poll should still get a 304 if that document did not change.
        """
        async with self._lock(feed_id):
            if not await self._acquire(feed_id):
                return None
            try:
                return await self._ingest(feed_id, body, content_type)
            finally:
                await self._release(feed_id)

    async def _ingest(self, feed_id: str, body: bytes, content_type: str) -> PollOutcome | None:
        state = await self.store.get_feed(feed_id)
        if state is None or not state.active:
            return None
        now = self._clock()
        result = FetchResult(
            state.url, state.url, status=200, body=body, content_type=content_type,
            etag=state.etag, last_modified=state.last_modified,
        )
        parsed = await parse(body, url=state.url, content_type=content_type,
                             limiter=self._parse_limiter)
        if not parsed.is_feed:
            log.info("feed %s: pushed content is not a feed (%s)", feed_id, parsed.bozo)
            return None
        return await self._publish(state, parsed, result, [], now)

    async def poll_feed(self, feed_id: str) -> PollOutcome | None:
        """Fetch, parse and publish one feed now (callers keep it out of the loop meanwhile)."""
        async with self._lock(feed_id):
            if not await self._acquire(feed_id):
                return None
            try:
                outcome = await self._poll_feed(feed_id)
            finally:
                await self._release(feed_id)
        if outcome is not None and outcome.status == 200 and not outcome.error:
            await self._tell_push(feed_id)
        return outcome

    async def _tell_push(self, feed_id: str) -> None:
        """Tell the push receiver which hubs the feed named in the document just fetched."""
        discovered = self._discovered.pop(feed_id, None)
        state = await self.store.get_feed(feed_id)
        if self.push is None or discovered is None or state is None:
            return
        hubs, topic = discovered
        try:
            await self.push.discovered(state, hubs, topic)
        except Exception:
            log.exception("feed %s: WebSub subscription failed", feed_id)

    async def _poll_feed(self, feed_id: str) -> PollOutcome | None:
        # The state read with the lease, or (a refresh of a feed leased earlier) read now.
        state = self._leased.pop(feed_id, None) or await self.store.get_feed(feed_id)
        if state is None:
            return None
        self.stats.polls += 1
        result = self._take_seed(state)
        if result is None:
            self.stats.fetches += 1
            result = await self.fetcher.fetch(
                state.url, etag=state.etag, last_modified=state.last_modified
            )
        now = self._clock()
        state = replace(
            state, last_fetch=now, last_status=result.status, fetch_count=state.fetch_count + 1
        )
        events: list[FeedEvent] = []
        if result.permanent_redirect and result.permanent_redirect != state.url:
            events.append(FeedEvent(
                FeedEventKind.MOVED,
                f"The feed moved permanently from {state.url} to {result.permanent_redirect}; "
                "it is now fetched from the new address.",
                status=result.status, new_url=result.permanent_redirect,
            ))
            moved = result.permanent_redirect
            state = replace(state, url=moved, moved_to=moved)

        if result.gone:
            # RFC 9110 §15.5.11: 410 means gone for good, so polling stops.
            state = replace(state, gone=True, next_fetch=None, last_error="HTTP 410 Gone")
            events.append(FeedEvent(
                FeedEventKind.GONE,
                f"The feed {state.url} is gone (HTTP 410) and will no longer be checked.",
                status=410,
            ))
            return await self._finish(state, [], events, PollOutcome(feed_id, 410))
        if result.not_modified:
            self.stats.not_modified += 1
            state = self._succeeded(state, result, events, changed=False, now=now)
            return await self._finish(state, [], events, PollOutcome(feed_id, 304))
        if result.error is not None:
            return await self._failed(
                state, str(result.error), result.error_detail, events, result, now
            )

        parsed = await parse(
            result.body, url=result.final_url, content_type=result.content_type,
            limiter=self._parse_limiter,
        )
        if not parsed.is_feed:
            return await self._failed(
                state, "not-a-feed", parsed.bozo or "no feed found", events, result, now
            )
        if self.push is not None:
            # W3C WebSub §4: the Link header takes precedence over links in the document.
            header_hubs, header_self = parse_link_header(result.link_header)
            hubs = header_hubs or parsed.hubs
            topic = header_self or parsed.self_url or result.final_url
            self._discovered[feed_id] = (hubs, topic)
        return await self._publish(state, parsed, result, events, now)

    async def _publish(
        self,
        state: FeedState,
        parsed: ParsedFeed,
        result: FetchResult,
        events: list[FeedEvent],
        now: float,
    ) -> PollOutcome | None:
        # Normalizing (sanitizing HTML, building Atom) costs as much as parsing: in the parse
        # threads too, or a large feed would stall every XMPP stream for tens of milliseconds.
        normalized = await trio.to_thread.run_sync(
            lambda: normalize_feed(parsed, fetched_at=now, base=result.final_url),
            limiter=self._parse_limiter,
        )
        entries = normalized.entries
        known = await self.store.seen_hashes(state.feed_id, [e.item_id for e in entries])
        fresh = await self._claim(state, entries, now)
        if fresh is None:
            return None
        new = [e for e in entries if e.item_id in fresh]
        updated = [
            e for e in entries
            if self.config.republish_updates and e.item_id not in fresh
            and e.item_id in known and known[e.item_id] != e.content_hash
        ]
        new, updated = _chronological(entries, new), _chronological(entries, updated)
        first = not state.initialized
        quiet, loud = self._split_first_poll(new) if first else ([], new)
        # The publisher names the node after the feed, so it sees the title of this document.
        state = replace(
            state, title=state.title or parsed.title, site_link=parsed.link or state.site_link
        )
        # The state this poll commits if publishing succeeds: the publisher shows it to
        # subscribers (next fetch, entries seen), not the state from before the poll.
        warning = "; ".join(w for w in (parsed.bozo, normalized.warning) if w)
        changed = bool(new or updated) or first
        recovered: list[FeedEvent] = []
        committed = self._succeeded(
            replace(state, etag=result.etag, last_modified=result.last_modified,
                    parse_warning=warning, entries_seen=state.entries_seen + len(new)),
            result, recovered, changed=changed, now=now, parsed=parsed,
        )
        try:
            if quiet:
                await self.publisher.publish(committed, quiet, notify=False)
            if loud or updated:
                await self.publisher.publish(committed, loud + updated, notify=True)
        except Exception as exc:
            log.warning("publishing feed %s failed: %s", state.feed_id, exc)
            # Nothing recorded and the old validators kept: the next poll retries these entries.
            return await self._failed(state, "publish", str(exc), events, None, now)
        self.stats.entries_published += len(new) + len(updated)
        self.stats.entries_notified += len(loud) + len(updated)
        events.extend(recovered)
        state = committed
        seen = [(e.item_id, e.content_hash) for e in entries]
        outcome = PollOutcome(
            state.feed_id, result.status, new=len(new), updated=len(updated),
            notified=len(loud) + len(updated),
        )
        finished = await self._finish(state, seen, events, outcome)
        if new and state.entries_seen > self.config.seen_keep:
            await self.store.prune_seen(state.feed_id, self.config.seen_keep)
        return finished

    async def _claim(self, state: FeedState, entries: Sequence[Entry], now: float
                     ) -> set[str] | None:
        """The ids of ``entries`` this poll is to publish: never seen, or claimed by a poll
        that died before committing and not published since. None if the lease was lost."""
        lease = self._held.get(state.feed_id)
        claim = None if lease is None else await self.leases.claim(
            lease, [(e.item_id, e.content_hash) for e in entries], now)
        if claim is None:
            self._lost(state.feed_id)
            return None
        chosen = set(claim.fresh)
        if claim.orphaned:
            done = await self.publisher.published_ids(state, claim.orphaned)
            log.info("feed %s: %d entries claimed by a poll that never committed, %d of them "
                     "published since", state.feed_id, len(claim.orphaned), len(done))
            chosen.update(i for i in claim.orphaned if i not in done)
        return chosen

    def _lost(self, feed_id: str) -> None:
        self._unhold(feed_id)
        self.stats.leases_lost += 1
        self._lease_event("lost")
        log.warning("feed %s: lease taken over by another instance; poll abandoned", feed_id,
                    extra={"event": "feed.lease_lost", "feed": feed_id})

    def _split_first_poll(self, new: list[Entry]) -> tuple[list[Entry], list[Entry]]:
        """(history published silently, entries notified) for a feed's first poll."""
        match self.config.first_poll:
            case FirstPoll.ALL:
                return [], new
            case FirstPoll.NONE:
                return new, []
            case FirstPoll.LAST:
                count = max(0, self.config.first_poll_count)
                split = max(0, len(new) - count)
                return new[:split], new[split:]

    def _succeeded(
        self,
        state: FeedState,
        result: FetchResult,
        events: list[FeedEvent],
        *,
        changed: bool,
        now: float,
        parsed: ParsedFeed | None = None,
    ) -> FeedState:
        if state.failing_reported:
            events.append(FeedEvent(
                FeedEventKind.RECOVERED,
                f"The feed {state.url} works again after {state.error_streak} failed attempts.",
                status=result.status,
            ))
        policy = self.config.schedule
        interval = adapt_interval(
            policy, state.interval, changed=changed, now=now, last_change=state.last_change
        )
        due = next_fetch(
            policy, now=now, interval=interval, max_age=result.max_age,
            ttl_minutes=parsed.ttl_minutes if parsed else None,
            skip_hours=parsed.skip_hours if parsed else (),
            skip_days=parsed.skip_days if parsed else (),
            rng=self._rng,
        )
        pushed_interval = self.push.poll_interval(state.feed_id, now) if self.push else None
        if pushed_interval is not None:
            due = max(due, now + pushed_interval)  # the hub pushes: polling is a safety net
        return replace(
            state,
            error_streak=0,
            failing_reported=False,
            last_error="",
            interval=interval,
            last_change=now if changed else state.last_change,
            etag=result.etag or state.etag,
            last_modified=result.last_modified or state.last_modified,
            next_fetch=due,
        )

    async def _failed(
        self,
        state: FeedState,
        kind: str,
        detail: str,
        events: list[FeedEvent],
        result: FetchResult | None,
        now: float,
    ) -> PollOutcome | None:
        self._count_error(kind)
        streak = state.error_streak + 1
        message = f"{kind}: {detail}" if detail else kind
        failing = state.failing_reported
        if streak >= self.config.failing_after and not failing:
            failing = True
            events.append(FeedEvent(
                FeedEventKind.FAILING,
                f"The feed {state.url} has failed {streak} times in a row (last error: "
                f"{message}); it will keep being retried less often.",
                status=result.status if result else None, error=message,
            ))
        state = replace(
            state,
            error_streak=streak,
            failing_reported=failing,
            last_error=message,
            next_fetch=next_fetch(
                self.config.schedule, now=now, interval=state.interval, error_streak=streak,
                retry_after=result.retry_after if result else None, rng=self._rng,
            ),
        )
        status = result.status if result else state.last_status
        return await self._finish(state, [], events, PollOutcome(
            state.feed_id, status, error=message
        ))

    async def _finish(
        self,
        state: FeedState,
        seen: list[tuple[str, str]],
        events: list[FeedEvent],
        outcome: PollOutcome,
    ) -> PollOutcome | None:
        """Commit, unless the feed was removed meanwhile; keep a pause made meanwhile."""
        current = await self.store.get_feed(state.feed_id)
        if current is None:
            return None
        state = replace(state, paused=current.paused)
        lease = self._held.get(state.feed_id)
        if lease is None or not await self.leases.commit(lease, state, seen, at=self._clock()):
            self._lost(state.feed_id)
            return None
        self._unhold(state.feed_id)
        # Events go out after the commit: at most once, never repeated by a retry.
        for event in events:
            try:
                await self.publisher.feed_event(state, event)
            except Exception:
                log.exception("reporting %s for feed %s failed", event.kind, state.feed_id)
        return replace(outcome, events=tuple(events), state=state)

    def _count_error(self, kind: str) -> None:
        self.stats.errors_by_kind[kind] = self.stats.errors_by_kind.get(kind, 0) + 1


def _chronological(document: list[Entry], chosen: list[Entry]) -> list[Entry]:
    """Oldest first: by date, ties (and undated entries) in reverse document order."""
    position = {e.item_id: i for i, e in enumerate(document)}
    return sorted(chosen, key=lambda e: (e.published, -position.get(e.item_id, 0)))


"""The poller with leases shared on PostgreSQL: what happens when an instance dies between
claiming entries and committing, or stalls until its lease is taken over."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from feeds.fetch import FetchConfig, Fetcher, FetchResult
from feeds.model import Entry, FeedState
from feeds.netguard import AddressPolicy
from feeds.poller import FirstPoll, Poller, PollerConfig
from feeds.schedule import SchedulePolicy
from pubsubd.storage.postgres import PgDatabase, PgFeedLeases, PgFeedStore
from tests.feedserver import FeedServer, open_feed_server

from .test_poller import Recorder, rss


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with open_feed_server() as srv:
        yield srv


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(FetchConfig(policy=AddressPolicy.from_strings(["127.0.0.1"]))) as f:
        yield f


@pytest.fixture
def db(pg_url: str) -> Iterator[PgDatabase]:
    database = PgDatabase(pg_url, max_connections=4)
    yield database
    database.close()


def instance(db: PgDatabase, name: str, fetcher: Fetcher, rec: Recorder) -> Poller:
    store = PgFeedStore(db)
    return Poller(store, rec, fetcher,
                  PollerConfig(schedule=SchedulePolicy(host_spacing=0.0), lease_seconds=30.0,
                               first_poll=FirstPoll.ALL),
                  leases=PgFeedLeases(db, name))


async def polled_once(server: FeedServer, poller: Poller) -> str:
    server.set("/f", rss(("a", "A")))
    state = await poller.add_feed(server.url("/f"), feed_id="f")
    await poller.refresh("f")
    server.set("/f", rss(("b", "B"), ("a", "A")))
    return state.feed_id


async def die_after_claiming(db: PgDatabase, feed_id: str) -> None:
    """Instance "dead" leases the feed (a lease long expired by now) and claims entry b,
    then never publishes nor commits."""
    dead = PgFeedLeases(db, "dead")
    leased = await dead.lease_feed(feed_id, time.time() - 100, 1.0)
    assert leased is not None
    assert await dead.claim(leased[1], [("b", "hash")], time.time()) is not None


async def test_an_entry_claimed_by_a_dead_instance_is_published_by_the_next(
        db: PgDatabase, server: FeedServer, fetcher: Fetcher) -> None:
    rec = Recorder()
    poller = instance(db, "alive", fetcher, rec)
    feed_id = await polled_once(server, poller)
    await die_after_claiming(db, feed_id)
    outcome = await poller.refresh(feed_id)
    assert outcome is not None and outcome.notified == 1
    assert rec.notified == ["a", "b"]
    assert poller.stats.lease_takeovers == 1
    await poller.refresh(feed_id)  # committed: never again
    assert rec.notified == ["a", "b"]


async def test_an_entry_the_dead_instance_had_published_is_not_notified_again(
        db: PgDatabase, server: FeedServer, fetcher: Fetcher) -> None:
    rec = Recorder()
    poller = instance(db, "alive", fetcher, rec)
    feed_id = await polled_once(server, poller)
    await die_after_claiming(db, feed_id)
    rec.published.append(("b", True))  # the dead instance got as far as publishing
    await poller.refresh(feed_id)
    assert rec.notified == ["a", "b"]


class TakenOverWhilePublishing(Recorder):
    """A publisher so slow that another instance takes the feed's lease meanwhile."""

    def __init__(self, db: PgDatabase) -> None:
        super().__init__()
        self.thief = PgFeedLeases(db, "thief")

    async def publish(self, feed: FeedState, entries: list[Entry],  # type: ignore[override]
                      *, notify: bool) -> None:
        await super().publish(feed, entries, notify=notify)
        assert await self.thief.lease_feed(feed.feed_id, time.time() + 3600, 60.0) is not None


async def test_a_poll_whose_lease_was_taken_over_commits_nothing(
        db: PgDatabase, server: FeedServer, fetcher: Fetcher) -> None:
    rec = TakenOverWhilePublishing(db)
    poller = instance(db, "slow", fetcher, rec)
    server.set("/f", rss(("a", "A")))
    await poller.add_feed(server.url("/f"), feed_id="f")
    before = await poller.store.get_feed("f")
    assert await poller.refresh("f") is None
    assert poller.stats.leases_lost == 1
    assert await poller.store.get_feed("f") == before  # the new holder's state stands
    assert await poller.store.seen_hashes("f", ["a"]) != {}  # claimed: nobody repeats it


class FetchStarted(Fetcher):
    """A fetcher telling when a fetch has begun."""

    def __init__(self) -> None:
        super().__init__(FetchConfig(policy=AddressPolicy.from_strings(["127.0.0.1"])))
        self.started = trio.Event()

    async def fetch(self, url: str, *, etag: str | None = None,
                    last_modified: str | None = None) -> FetchResult:
        self.started.set()
        return await super().fetch(url, etag=etag, last_modified=last_modified)


async def test_a_stopping_instance_gives_its_leases_back(
        db: PgDatabase, server: FeedServer) -> None:
    rec = Recorder()
    fetcher = FetchStarted()
    poller = instance(db, "leaving", fetcher, rec)
    server.set("/f", rss(("a", "A")), delay=30.0)  # the poll is under way when we stop
    await poller.add_feed(server.url("/f"), feed_id="f")
    other = PgFeedLeases(db, "staying")
    async with fetcher, trio.open_nursery() as nursery:
        await nursery.start(poller.run)
        await fetcher.started.wait()
        assert await other.lease_due(time.time(), 5, 30.0) == []
        nursery.cancel_scope.cancel()
    [(state, lease)] = await other.lease_due(time.time(), 5, 30.0)
    assert state.feed_id == "f" and not lease.taken_over  # given back, not left to expire

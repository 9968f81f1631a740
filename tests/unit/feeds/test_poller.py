"""The poller end to end against the local feed server, with a recording publisher."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trio.testing

from feeds.fetch import FetchConfig, Fetcher
from feeds.model import Entry, FeedEvent, FeedEventKind, FeedState
from feeds.netguard import AddressPolicy
from feeds.poller import FirstPoll, Poller, PollerConfig
from feeds.schedule import SchedulePolicy
from feeds.store import FeedStore, MemoryFeedStore
from pubsubd.storage.feeds_sqlite import SqliteFeedStore
from pubsubd.storage.sqlite import Database
from tests.feedserver import FeedServer, open_feed_server


def rss(*items: tuple[str, str]) -> str:
    body = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title><link>http://e/{guid}</link>"
        f"<description>{title} text</description></item>"
        for guid, title in items
    )
    channel = f"<title>Feed</title><link>http://e/</link>{body}"
    return f'<rss version="2.0"><channel>{channel}</channel></rss>'


@dataclass
class Recorder:
    published: list[tuple[str, bool]] = field(default_factory=list)
    events: list[FeedEvent] = field(default_factory=list)
    fail: bool = False
    _published: trio.Event = field(default_factory=trio.Event)

    async def publish(self, feed: FeedState, entries: Sequence[Entry], *, notify: bool) -> None:
        if self.fail:
            raise RuntimeError("node unavailable")
        self.published.extend((e.item_id, notify) for e in entries)
        self._published.set()
        self._published = trio.Event()

    async def wait_notified(self, item_id: str) -> None:
        while item_id not in self.notified:
            await self._published.wait()

    async def feed_event(self, feed: FeedState, event: FeedEvent) -> None:
        self.events.append(event)

    async def published_ids(self, feed: FeedState, item_ids: Sequence[str]) -> set[str]:
        return {i for i, _ in self.published if i in item_ids}

    @property
    def notified(self) -> list[str]:
        return [i for i, n in self.published if n]


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with open_feed_server() as srv:
        yield srv


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(FetchConfig(policy=AddressPolicy.from_strings(["127.0.0.1"]))) as f:
        yield f


@pytest.fixture
def virtual_clock() -> trio.testing.MockClock:
    """trio's autojump clock, jumping only once every task has been blocked for 20 ms of real
    time: these tests talk to a real (local) HTTP server, and socket I/O in flight must not
    count as idle, or the clock would jump past a deadline while a response is on its way."""
    return trio.testing.MockClock(autojump_threshold=0.02)


def make(store: FeedStore, fetcher: Fetcher, rec: Recorder, **cfg: object) -> Poller:
    cfg.setdefault("schedule", SchedulePolicy(host_spacing=0.0))
    return Poller(store, rec, fetcher, PollerConfig(**cfg))  # type: ignore[arg-type]


async def test_first_poll_fills_history_then_only_new_entries_notify(
    server: FeedServer, fetcher: Fetcher
) -> None:
    rec = Recorder()
    poller = make(MemoryFeedStore(), fetcher, rec, first_poll=FirstPoll.LAST, first_poll_count=1)
    server.set("/f", rss(("c", "C"), ("b", "B"), ("a", "A")))
    await poller.add_feed(server.url("/f"), feed_id="n1")
    first = await poller.refresh("n1")
    assert first is not None and first.new == 3 and first.notified == 1
    assert rec.published == [("a", False), ("b", False), ("c", True)]  # oldest first
    assert (await poller.refresh("n1")).status == 304  # type: ignore[union-attr]
    server.set("/f", rss(("d", "D"), ("c", "C"), ("b", "B")))
    second = await poller.refresh("n1")
    assert second is not None and second.new == 1
    assert rec.notified == ["c", "d"]
    # Reordered, dropped and re-added entries are never notified again.
    server.set("/f", rss(("a", "A"), ("d", "D"), ("c", "C")))
    await poller.refresh("n1")
    assert rec.notified == ["c", "d"]
    assert poller.stats.not_modified == 1 and poller.stats.fetches == 4
    state = await poller.store.get_feed("n1")
    assert state is not None and state.title == "Feed" and state.entries_seen == 4


@pytest.mark.parametrize(("mode", "expected"), [(FirstPoll.NONE, []), (FirstPoll.ALL, ["a", "b"])])
async def test_first_poll_modes(
    server: FeedServer, fetcher: Fetcher, mode: FirstPoll, expected: list[str]
) -> None:
    rec = Recorder()
    poller = make(MemoryFeedStore(), fetcher, rec, first_poll=mode)
    server.set("/f", rss(("b", "B"), ("a", "A")))
    await poller.add_feed(server.url("/f"), feed_id="x")
    await poller.refresh("x")
    assert rec.notified == expected and len(rec.published) == 2


async def test_restart_causes_no_duplicates(
    server: FeedServer, fetcher: Fetcher, tmp_path: Path
) -> None:
    server.set("/f", rss(("a", "A")), validators=False)  # no 304 to hide behind
    db = Database(tmp_path / "db.sqlite")
    rec = Recorder()
    poller = make(SqliteFeedStore(db), fetcher, rec, first_poll=FirstPoll.ALL)
    await poller.add_feed(server.url("/f"), feed_id="f")
    await poller.refresh("f")
    db.close()
    server.set("/f", rss(("b", "B"), ("a", "A")), validators=False)
    rec2 = Recorder()
    again = make(SqliteFeedStore(Database(tmp_path / "db.sqlite")), fetcher, rec2)
    await again.refresh("f")
    assert rec.notified == ["a"] and rec2.notified == ["b"]


async def test_publish_failure_loses_nothing(server: FeedServer, fetcher: Fetcher) -> None:
    rec = Recorder(fail=True)
    poller = make(MemoryFeedStore(), fetcher, rec, first_poll=FirstPoll.ALL)
    server.set("/f", rss(("a", "A")))
    await poller.add_feed(server.url("/f"), feed_id="f")
    outcome = await poller.refresh("f")
    assert outcome is not None and outcome.error.startswith("publish")
    state = await poller.store.get_feed("f")
    assert state is not None and state.etag is None and state.error_streak == 1
    rec.fail = False
    await poller.refresh("f")  # the document is fetched again, not a 304
    assert rec.notified == ["a"]


async def test_updates_republished_only_when_configured(
    server: FeedServer, fetcher: Fetcher
) -> None:
    for republish, expected in [(False, ["a"]), (True, ["a", "a"])]:
        rec = Recorder()
        poller = make(MemoryFeedStore(), fetcher, rec, first_poll=FirstPoll.ALL,
                      republish_updates=republish)
        server.set("/u", rss(("a", "A")))
        await poller.add_feed(server.url("/u"), feed_id="u")
        await poller.refresh("u")
        server.set("/u", rss(("a", "A corrected")))
        outcome = await poller.refresh("u")
        assert rec.notified == expected
        assert outcome is not None and outcome.updated == (1 if republish else 0)


async def test_permanent_redirect_updates_url_and_tells_once(
    server: FeedServer, fetcher: Fetcher
) -> None:
    rec = Recorder()
    poller = make(MemoryFeedStore(), fetcher, rec)
    server.set("/new", rss(("a", "A")))
    server.redirect("/old", "/new", 301)
    await poller.add_feed(server.url("/old"), feed_id="f")
    await poller.refresh("f")
    await poller.refresh("f")
    state = await poller.store.get_feed("f")
    assert state is not None and state.url == server.url("/new")
    assert state.original_url == server.url("/old")
    assert [e.kind for e in rec.events] == [FeedEventKind.MOVED]
    assert server.hits("/old") == 1


async def test_gone_stops_polling(server: FeedServer, fetcher: Fetcher) -> None:
    rec = Recorder()
    store = MemoryFeedStore()
    poller = make(store, fetcher, rec)
    server.fail("/f", 410)
    await poller.add_feed(server.url("/f"), feed_id="f")
    await poller.refresh("f")
    state = await store.get_feed("f")
    assert state is not None and state.gone and not state.active
    assert await store.due_feeds(time.time() + 10**9) == []
    assert [e.kind for e in rec.events] == [FeedEventKind.GONE]
    assert "gone" in rec.events[0].message


async def test_errors_back_off_then_report_failing_and_recovery(
    server: FeedServer, fetcher: Fetcher
) -> None:
    rec = Recorder()
    schedule = SchedulePolicy(error_base=60, error_max=3600, jitter=0, host_spacing=0)
    poller = make(MemoryFeedStore(), fetcher, rec, schedule=schedule, failing_after=3)
    server.fail("/f", 500)
    await poller.add_feed(server.url("/f"), feed_id="f")
    delays = []
    for _ in range(4):
        before = time.time()
        await poller.refresh("f")
        state = await poller.store.get_feed("f")
        assert state is not None
        delays.append(round(state.next_fetch - before))  # type: ignore[operator]
    assert delays == [60, 120, 240, 480]
    assert state.error_streak == 4 and "500" in state.last_error
    assert [e.kind for e in rec.events] == [FeedEventKind.FAILING]  # once, not every time
    assert poller.stats.errors_by_kind == {"http-status": 4}
    server.set("/f", rss(("a", "A")))
    await poller.refresh("f")
    assert [e.kind for e in rec.events] == [FeedEventKind.FAILING, FeedEventKind.RECOVERED]
    state = await poller.store.get_feed("f")
    assert state is not None and state.error_streak == 0 and state.last_error == ""


async def test_retry_after_is_honoured(server: FeedServer, fetcher: Fetcher) -> None:
    poller = make(MemoryFeedStore(), fetcher, Recorder())
    server.fail("/f", 429, retry_after="7200")
    await poller.add_feed(server.url("/f"), feed_id="f")
    before = time.time()
    await poller.refresh("f")
    state = await poller.store.get_feed("f")
    assert state is not None and state.next_fetch >= before + 7200  # type: ignore[operator]


async def test_private_address_is_refused_and_reported(server: FeedServer) -> None:
    async with Fetcher() as strict:
        poller = make(MemoryFeedStore(), strict, Recorder())
        server.set("/f", rss(("a", "A")))
        await poller.add_feed(server.url("/f"), feed_id="f")
        outcome = await poller.refresh("f")
    assert outcome is not None and outcome.error.startswith("blocked-address")
    assert server.requests == []


async def test_not_a_feed_is_an_error(server: FeedServer, fetcher: Fetcher) -> None:
    poller = make(MemoryFeedStore(), fetcher, Recorder())
    server.set("/f", "<html><body>hello</body></html>", content_type="text/html")
    await poller.add_feed(server.url("/f"), feed_id="f")
    outcome = await poller.refresh("f")
    assert outcome is not None and outcome.error.startswith("not-a-feed")


async def test_run_loop_polls_due_feeds_and_slow_feed_delays_no_other(
    server: FeedServer, fetcher: Fetcher, virtual_clock: trio.testing.MockClock
) -> None:
    # Virtual time: the slow feed's 3 s answer and the poller's naps cost no real time, and
    # the poller's clock is trio's, so "due" and "elapsed" are measured on the same clock.
    rec = Recorder()
    config = PollerConfig(first_poll=FirstPoll.ALL, schedule=SchedulePolicy(host_spacing=0.0))
    poller = Poller(MemoryFeedStore(), rec, fetcher, config, clock=trio.current_time)
    server.set("/slow", rss(("s", "S")), delay=3.0)
    server.set("/fast", rss(("f", "F")))
    await poller.add_feed(server.url("/slow"), feed_id="slow")
    async with trio.open_nursery() as nursery:
        await nursery.start(poller.run)
        await trio.sleep(0.1)  # virtual: the slow poll is under way (waiting for its answer)
        assert [r.path for r in server.requests] == ["/slow"]
        started = trio.current_time()
        await poller.add_feed(server.url("/fast"), feed_id="fast")
        await rec.wait_notified("f")
        assert trio.current_time() - started < 1.0
        assert "s" not in rec.notified
        nursery.cancel_scope.cancel()


async def test_pause_resume_remove(server: FeedServer, fetcher: Fetcher) -> None:
    store = MemoryFeedStore()
    poller = make(store, fetcher, Recorder())
    server.set("/f", rss(("a", "A")))
    await poller.add_feed(server.url("/f"), feed_id="f")
    await poller.pause("f")
    assert await store.due_feeds(time.time()) == []
    await poller.resume("f")
    assert [s.feed_id for s in await store.due_feeds(time.time() + 1)] == ["f"]
    await poller.remove_feed("f")
    assert await store.get_feed("f") is None
    assert await poller.refresh("f") is None


async def test_poll_listeners_hear_every_poll_once_it_is_over(
    server: FeedServer, fetcher: Fetcher
) -> None:
    rec = Recorder()
    poller = make(MemoryFeedStore(), fetcher, rec)
    server.set("/f", rss(("a", "A")))
    await poller.add_feed(server.url("/f"), feed_id="n1")
    heard: list[int | None] = []
    nested: list[int | None] = []

    async def polled(state: FeedState) -> None:
        heard.append(state.last_status)
        if len(heard) == 1:
            # Told once the poll is over: the feed may already be polled again.
            again = await poller.refresh("n1")
            nested.append(None if again is None else again.status)

    poller.polled_listeners.append(polled)
    first = await poller.refresh("n1")
    assert first is not None and first.state is not None and first.state.last_status == 200
    # The first poll (entries), then the nested one (304: nothing new) is told too.
    assert heard == [200, 304]
    assert nested == [304]


async def test_refresh_during_a_poll_waits_for_it_then_polls_again(
    server: FeedServer, fetcher: Fetcher
) -> None:
    """``feeds refresh`` while a scheduled poll of the feed runs: not turned away, but answered
    once that poll has published and a fresh one has run."""
    entered, release = trio.Event(), trio.Event()

    class Gated(Recorder):
        async def publish(self, feed: FeedState, entries: Sequence[Entry], *,
                          notify: bool) -> None:
            entered.set()
            await release.wait()
            await super().publish(feed, entries, notify=notify)

    rec = Gated()
    poller = make(MemoryFeedStore(), fetcher, rec, first_poll=FirstPoll.ALL)
    server.set("/f", rss(("a", "A")))
    await poller.add_feed(server.url("/f"), feed_id="f")
    outcomes: list[object] = []

    async def refresh() -> None:
        outcomes.append(await poller.refresh("f"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refresh)
        await entered.wait()  # the first poll is publishing
        nursery.start_soon(refresh)
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes == [], "the second refresh waits for the running poll"
        release.set()
    assert len(outcomes) == 2 and all(o is not None for o in outcomes)
    assert server.hits("/f") == 2 and rec.notified == ["a"]


async def test_a_seeded_document_stands_in_for_the_first_fetch(
    server: FeedServer, fetcher: Fetcher
) -> None:
    rec = Recorder()
    poller = make(MemoryFeedStore(), fetcher, rec, first_poll=FirstPoll.ALL)
    server.set("/f", rss(("a", "A")))
    fetched = await fetcher.fetch(server.url("/f"))  # e.g. checking the address at subscribe
    poller.seed("s", fetched)
    await poller.add_feed(server.url("/f"), feed_id="s")
    first = await poller.refresh("s")
    assert first is not None and first.new == 1 and server.hits("/f") == 1
    state = await poller.store.get_feed("s")
    assert state is not None and state.etag  # the seeded document's validators were kept
    # Used once: the next poll fetches, conditionally.
    assert (await poller.refresh("s")).status == 304  # type: ignore[union-attr]
    assert server.hits("/f") == 2


async def test_the_publisher_sees_the_state_the_poll_commits(
    server: FeedServer, fetcher: Fetcher
) -> None:
    seen: list[FeedState] = []

    class Watching(Recorder):
        async def publish(self, feed: FeedState, entries: Sequence[Entry], *,
                          notify: bool) -> None:
            seen.append(feed)
            await super().publish(feed, entries, notify=notify)

    poller = make(MemoryFeedStore(), fetcher, Watching(), first_poll=FirstPoll.ALL)
    server.set("/f", rss(("b", "B"), ("a", "A")))
    await poller.add_feed(server.url("/f"), feed_id="p")
    await poller.refresh("p")
    committed = await poller.store.get_feed("p")
    assert committed is not None and seen
    told = seen[-1]
    assert told.entries_seen == 2 == committed.entries_seen
    assert told.last_fetch is not None and told.next_fetch is not None
    assert told.next_fetch > told.last_fetch
    assert (told.last_fetch, told.next_fetch) == (committed.last_fetch, committed.next_fetch)

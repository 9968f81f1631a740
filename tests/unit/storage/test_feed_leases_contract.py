"""FeedLeases contract (feeds.leases) over every backend: one process leasing in memory on the
memory and SQLite stores, every instance sharing the database on PostgreSQL. Where a test
needs two instances, a single-process backend is one instance playing both parts."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio

from feeds.leases import FeedLeases, LocalFeedLeases
from feeds.model import FeedState

from .backend_params import Backend

NOW = 1_000_000.0
LEASE = 60.0


def leases_of(backend: Backend, instance: str = "a") -> FeedLeases:
    factory = backend.stores.lease_feeds
    return factory(instance) if factory else LocalFeedLeases(backend.stores.feeds, instance)


def two_instances(backend: Backend) -> tuple[FeedLeases, FeedLeases]:
    first = leases_of(backend, "a")
    return first, (leases_of(backend, "b") if backend.stores.lease_feeds else first)


# Several instances sharing the feeds only exist on PostgreSQL; a single-process backend
# polls alone, so these tests have nothing to check there.
shared_only = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


async def add(backend: Backend, *feeds: tuple[str, float | None]) -> None:
    for feed_id, due in feeds:
        await backend.stores.feeds.put_feed(FeedState(feed_id, f"http://h/{feed_id}",
                                                      next_fetch=due))


async def test_due_feeds_are_leased_soonest_first_and_once(backend: Backend) -> None:
    await add(backend, ("late", NOW - 1), ("never", None), ("early", NOW - 50),
              ("future", NOW + 100))
    a, b = two_instances(backend)
    leased = await a.lease_due(NOW, 10, LEASE)
    assert [s.feed_id for s, _ in leased] == ["never", "early", "late"]
    assert all(lease.until == NOW + LEASE and not lease.taken_over for _, lease in leased)
    assert len({lease.token for _, lease in leased}) == 3
    assert await b.lease_due(NOW, 10, LEASE) == []  # held until they are committed
    assert await a.lease_feed("early", NOW, LEASE) is None
    one = await b.lease_feed("future", NOW, LEASE)  # a refresh: whatever its due time
    assert one is not None and one[0].feed_id == "future"


async def test_commit_stores_the_poll_and_releases_the_lease(backend: Backend) -> None:
    await add(backend, ("f", NOW - 1))
    leases = leases_of(backend)
    [(state, lease)] = await leases.lease_due(NOW, 5, LEASE)
    claim = await leases.claim(lease, [("e1", "h1"), ("e2", "h2")], NOW)
    assert claim is not None and claim.fresh == ("e1", "e2") and claim.orphaned == ()
    polled = replace(state, title="Polled", next_fetch=NOW + 5)
    assert await leases.commit(lease, polled, [("e1", "h1"), ("e2", "h2")], at=NOW)
    assert await backend.stores.feeds.get_feed("f") == polled
    assert await backend.stores.feeds.seen_hashes("f", ["e1", "e2"]) == {"e1": "h1",
                                                                          "e2": "h2"}
    [(_, again)] = await leases.lease_due(NOW + 6, 5, LEASE)  # released: due again later
    claim = await leases.claim(again, [("e2", "h2"), ("e3", "h3")], NOW + 6)
    assert claim is not None and claim.fresh == ("e3",)


async def test_an_expired_lease_is_taken_over_and_its_holder_fenced_off(
        backend: Backend) -> None:
    await add(backend, ("f", NOW - 1))
    a, b = two_instances(backend)
    [(state, stale)] = await a.lease_due(NOW, 5, LEASE)
    assert await b.lease_due(NOW + LEASE - 1, 5, LEASE) == []
    [(_, fresh)] = await b.lease_due(NOW + LEASE + 1, 5, LEASE)
    assert fresh.taken_over and fresh.token != stale.token
    # The stalled holder wakes up: nothing it writes counts any more.
    assert await a.claim(stale, [("e1", "h1")], NOW + LEASE + 2) is None
    assert not await a.commit(stale, replace(state, title="stale"), [("e1", "h1")],
                              at=NOW + LEASE + 2)
    assert await a.renew([stale], NOW + LEASE + 2, LEASE) == []
    await a.release(stale)
    assert (await backend.stores.feeds.get_feed("f")) == state
    assert await backend.stores.feeds.seen_hashes("f", ["e1"]) == {}
    # The new holder's lease is intact.
    assert await b.commit(fresh, replace(state, title="new"), [], at=NOW + LEASE + 3)
    new = await backend.stores.feeds.get_feed("f")
    assert new is not None and new.title == "new"


async def test_renewing_keeps_a_lease_and_releasing_frees_it(backend: Backend) -> None:
    await add(backend, ("f", NOW - 1), ("g", NOW - 1))
    a, b = two_instances(backend)
    leased = {s.feed_id: lease for s, lease in await a.lease_due(NOW, 5, LEASE)}
    [renewed] = await a.renew([leased["f"]], NOW + 50, LEASE)
    assert renewed.until == NOW + 50 + LEASE and renewed.token == leased["f"].token
    await a.release(leased["g"])
    taken = await b.lease_due(NOW + LEASE + 1, 5, LEASE)  # f renewed, g released
    assert [s.feed_id for s, _ in taken] == ["g"]
    assert not taken[0][1].taken_over  # given back, not taken over


async def test_host_slots_are_spaced(backend: Backend) -> None:
    await add(backend, ("f", NOW - 1), ("g", NOW - 1), ("h", NOW - 1))
    a, b = two_instances(backend)
    leases = [lease for _, lease in await a.lease_due(NOW, 5, LEASE)]
    first = await a.reserve_host(leases[0], "h.example", NOW, 2.0, 0)
    second = await b.reserve_host(leases[1], "h.example", NOW, 2.0, 0)
    other = await b.reserve_host(leases[2], "other.example", NOW, 2.0, 0)
    assert (first, second, other) == (NOW, NOW + 2.0, NOW)


@shared_only
async def test_fetches_in_flight_per_host_are_capped_across_instances(
        backend: Backend) -> None:
    await add(backend, ("f", NOW - 1), ("g", NOW - 1))
    a, b = two_instances(backend)
    [(_, lf)] = await a.lease_due(NOW, 1, LEASE)
    [(_, lg)] = await b.lease_due(NOW, 1, LEASE)
    assert await a.reserve_host(lf, "h.example", NOW, 0.0, 1) == NOW
    assert await b.reserve_host(lg, "h.example", NOW, 0.0, 1) is None  # one in flight
    await a.commit(lf, FeedState("f", "http://h/f", next_fetch=NOW + 60), [], at=NOW)
    assert await b.reserve_host(lg, "h.example", NOW, 0.0, 1) == NOW
    # A dead instance's fetch stops counting when its lease runs out.
    await add(backend, ("k", NOW - 1))
    [(_, lk)] = await a.lease_due(NOW, 1, LEASE)
    assert await a.reserve_host(lk, "dead.example", NOW, 0.0, 1) == NOW
    assert await b.reserve_host(lg, "dead.example", NOW + LEASE + 1, 0.0, 1) is not None


@shared_only
async def test_only_one_instance_claims_an_entry(backend: Backend) -> None:
    await add(backend, ("f", NOW - 1))
    a, b = two_instances(backend)
    [(_, stale)] = await a.lease_due(NOW, 1, LEASE)
    assert await a.claim(stale, [("e1", "h")], NOW) is not None
    # a dies before committing; b takes the feed over and sees the same document.
    [(_, fresh)] = await b.lease_due(NOW + LEASE + 1, 1, LEASE)
    claim = await b.claim(fresh, [("e1", "h"), ("e2", "h")], NOW + LEASE + 1)
    assert claim is not None and claim.fresh == ("e2",) and claim.orphaned == ("e1",)
    # Committed: nothing is orphaned any more.
    assert await b.commit(fresh, FeedState("f", "http://h/f", next_fetch=NOW),
                          [("e1", "h"), ("e2", "h")], at=NOW + LEASE + 1)
    [(_, later)] = await a.lease_due(NOW + LEASE + 2, 1, LEASE)
    assert await a.claim(later, [("e1", "h"), ("e2", "h")], NOW + LEASE + 2) is not None
    again = await a.claim(later, [("e1", "h"), ("e2", "h")], NOW + LEASE + 2)
    assert again is not None and again.fresh == () and again.orphaned == ()


@shared_only
async def test_instances_leasing_at_once_never_share_a_feed(backend: Backend) -> None:
    await add(backend, *((f"f{i:03}", NOW - i) for i in range(300)))
    instances = [leases_of(backend, f"i{n}") for n in range(4)]
    got: dict[str, list[str]] = {}

    async def take(leases: FeedLeases) -> None:
        mine = got.setdefault(leases.instance_id, [])
        while batch := await leases.lease_due(NOW, 7, LEASE):
            mine.extend(s.feed_id for s, _ in batch)

    async with trio.open_nursery() as nursery:
        for leases in instances:
            nursery.start_soon(take, leases)
    every = [f for feeds in got.values() for f in feeds]
    assert len(every) == len(set(every)) == 300


@shared_only
async def test_next_due_time_waits_for_leases_held_elsewhere(backend: Backend) -> None:
    await add(backend, ("f", NOW - 1))
    a, b = two_instances(backend)
    assert await b.next_due_time(NOW) == NOW - 1
    await a.lease_due(NOW, 1, LEASE)
    assert await b.next_due_time(NOW) == NOW + LEASE

"""WebSubStore contract (hub subscriptions and push leases), over every backend."""

from __future__ import annotations

from feeds.push import LeaseState, PushLease
from pubsubd.storage.interfaces import HubSubscription

from .backend_params import Backend

TOPIC = "https://example.org/feeds/news.atom"


async def test_hub_subscriptions_renew_expire_and_delete(backend: Backend) -> None:
    store = backend.stores.websub
    await store.put_subscription(HubSubscription(TOPIC, "https://a.example/cb", "s3cret", 100.0))
    await store.put_subscription(HubSubscription(TOPIC, "https://b.example/cb", None, 50.0))
    await store.put_subscription(HubSubscription("https://other/t", "https://a.example/cb",
                                                 None, 100.0))
    assert [s.callback for s in await store.subscriptions_for(TOPIC, 60.0)] == [
        "https://a.example/cb"]
    # A renewal replaces the lease of the same (topic, callback).
    await store.put_subscription(HubSubscription(TOPIC, "https://b.example/cb", "new", 200.0))
    found = await store.subscriptions_for(TOPIC, 60.0)
    assert {(s.callback, s.secret) for s in found} == {
        ("https://a.example/cb", "s3cret"), ("https://b.example/cb", "new")}
    assert await store.count_subscriptions() == 3
    assert await store.expire_subscriptions(150.0) == 2
    assert await store.delete_subscription(TOPIC, "https://b.example/cb")
    assert not await store.delete_subscription(TOPIC, "https://b.example/cb")
    assert await store.count_subscriptions() == 0


async def test_subscriptions_and_leases_survive_reopening(backend: Backend) -> None:
    store = backend.stores.websub
    await store.put_subscription(HubSubscription(TOPIC, "https://a.example/cb", "k", 100.0))
    lease = PushLease("feed-1", "https://hub.example/", "https://site/feed", "tok", "sec",
                      LeaseState.ACTIVE, 10.0, 1000.0, 20.0)
    await store.put_lease(lease)
    await store.put_lease(PushLease("feed-2", "https://hub.example/", "https://site/2", "t2",
                                    "s2"))
    reopened = backend.reopen().websub
    assert [s.secret for s in await reopened.subscriptions_for(TOPIC, 0.0)] == ["k"]
    leases = {lease.feed_id: lease for lease in await reopened.all_leases()}
    assert leases["feed-1"] == lease
    assert leases["feed-2"].state is LeaseState.PENDING and leases["feed-2"].expires is None
    await reopened.delete_lease("feed-2")
    assert [lease.feed_id for lease in await reopened.all_leases()] == ["feed-1"]

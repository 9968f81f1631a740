"""The WebSub subscriber with the poller, against a test hub and a feed server, both real."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import httpx
import pytest
import trio

from feeds.fetch import FetchConfig, Fetcher
from feeds.guarded_transport import GuardedTransport
from feeds.netguard import AddressPolicy
from feeds.poller import FirstPoll, Poller, PollerConfig
from feeds.push import LeaseState, parse_link_header
from feeds.store import MemoryFeedStore
from feeds.websub_subscriber import SubscriberConfig, WebSubSubscriber, signature_valid
from pubsubd.net.http import Request, Response
from pubsubd.storage.memory import MemoryWebSubStore
from tests.feedserver import FeedServer, open_feed_server
from tests.websub_support import TestHub, serve

from .test_poller import Recorder

LOCAL = AddressPolicy.from_strings(["127.0.0.1"])


def atom(hub: str, self_url: str, *ids: str) -> str:
    entries = "".join(
        f"<entry><id>urn:e:{i}</id><title>Entry {i}</title><updated>2024-01-0{n + 1}T00:00:00Z"
        f"</updated><link href='http://e/{i}'/></entry>" for n, i in enumerate(ids))
    return (f"<feed xmlns='http://www.w3.org/2005/Atom'><title>Pushed</title><id>urn:f</id>"
            f"<updated>2024-01-01T00:00:00Z</updated><link rel='hub' href='{hub}'/>"
            f"<link rel='self' href='{self_url}'/>{entries}</feed>")


@pytest.fixture
async def feeds() -> AsyncIterator[FeedServer]:
    async with open_feed_server() as srv:
        yield srv


def test_link_header_and_signature() -> None:
    hubs, self_url = parse_link_header(
        '<https://hub.example/>; rel="hub", <https://site/feed>; rel=self, <x>; rel="next"')
    assert hubs == ("https://hub.example/",) and self_url == "https://site/feed"
    import hashlib
    import hmac
    good = "sha1=" + hmac.new(b"k", b"body", hashlib.sha1).hexdigest()
    assert signature_valid("k", b"body", good)
    assert not signature_valid("k", b"body!", good)
    assert not signature_valid("k", b"body", "md5=00")
    assert not signature_valid("k", b"body", "")


async def test_push_reaches_the_publisher_and_polling_backs_off(feeds: FeedServer) -> None:
    store = MemoryFeedStore()
    leases = MemoryWebSubStore()
    recorder = Recorder()
    async with trio.open_nursery() as nursery, \
            Fetcher(FetchConfig(policy=LOCAL)) as fetcher, \
            httpx.AsyncClient(transport=GuardedTransport(LOCAL, 4)) as client:
        hub = await TestHub().start(nursery)
        holder: list[WebSubSubscriber] = []

        async def callback(request: Request) -> Response:
            token = request.path.rsplit("/", 1)[-1]
            status, body = await holder[0].callback(
                request.method, token, dict(parse_qsl(request.query)), request.headers,
                request.body)
            return Response(status, body)

        cb_port = await serve(callback, nursery)
        subscriber = WebSubSubscriber(leases, client, SubscriberConfig(
            callback_base=f"http://127.0.0.1:{cb_port}/cb/", lease_seconds=600,
            poll_interval_with_push=7200.0))
        holder.append(subscriber)
        poller = Poller(store, recorder, fetcher,
                        PollerConfig(first_poll=FirstPoll.ALL), push=subscriber)
        subscriber.attach(poller.ingest)
        await nursery.start(subscriber.run)

        topic = feeds.url("/feed.atom")
        feeds.set("/feed.atom", atom(hub.url, topic, "1"), content_type="application/atom+xml")
        await poller.add_feed(topic, feed_id="news")
        await poller.refresh("news")
        await hub.wait_for(lambda: len(hub.verified) == 1)
        (sub,) = hub.verified.values()
        assert sub.topic == topic and sub.lease_seconds == "600" and len(sub.secret) >= 32
        assert subscriber.poll_interval("news", time.time()) == 7200.0
        (lease,) = await leases.all_leases()
        assert lease.state is LeaseState.ACTIVE

        # A forged push (wrong key) is acknowledged and ignored.
        forged = await hub.distribute(sub, atom(hub.url, topic, "1", "evil").encode(),
                                      secret="guess")
        assert forged.status_code == 202 and subscriber.rejected == 1

        started = time.monotonic()
        pushed = await hub.distribute(sub, atom(hub.url, topic, "1", "2").encode())
        assert pushed.status_code == 202
        await recorder.wait_notified("urn:e:2")
        assert time.monotonic() - started < 1.0
        assert "urn:e:evil" not in [i for i, _ in recorder.published]
        assert len(feeds.requests) == 1  # the push needed no fetch

        # The next poll is a safety net, far away while the hub pushes.
        await poller.refresh("news")
        state = await store.get_feed("news")
        assert state is not None and state.next_fetch is not None
        assert state.next_fetch >= time.time() + 7000

        # Removing the feed unsubscribes at the hub, which verifies with us.
        await poller.remove_feed("news")
        await hub.wait_for(lambda: not hub.verified)
        assert hub.requests[-1]["hub.mode"] == "unsubscribe"
        nursery.cancel_scope.cancel()


async def test_a_refusing_hub_leaves_the_feed_polled_as_usual(feeds: FeedServer) -> None:
    leases = MemoryWebSubStore()
    async with trio.open_nursery() as nursery, \
            Fetcher(FetchConfig(policy=LOCAL)) as fetcher, \
            httpx.AsyncClient(transport=GuardedTransport(LOCAL, 4)) as client:
        hub = await TestHub(refuse=True).start(nursery)
        subscriber = WebSubSubscriber(leases, client, SubscriberConfig(
            callback_base="http://127.0.0.1:9/cb/"))
        poller = Poller(MemoryFeedStore(), Recorder(), fetcher, push=subscriber)
        await nursery.start(subscriber.run)
        topic = feeds.url("/f.atom")
        feeds.set("/f.atom", atom(hub.url, topic, "1"), content_type="application/atom+xml")
        await poller.add_feed(topic, feed_id="f")
        await poller.refresh("f")
        assert len(hub.requests) == 1
        (lease,) = await leases.all_leases()
        assert lease.state is LeaseState.DENIED
        assert subscriber.poll_interval("f", time.time()) is None
        nursery.cancel_scope.cancel()


async def test_unverified_subscription_expires_into_polling() -> None:
    leases = MemoryWebSubStore()
    now = [1000.0]
    async with httpx.AsyncClient(transport=GuardedTransport(LOCAL, 4)) as client, \
            trio.open_nursery() as nursery:
        subscriber = WebSubSubscriber(leases, client, SubscriberConfig(
            callback_base="http://127.0.0.1:9/cb/", verify_timeout=60.0), clock=lambda: now[0])
        await nursery.start(subscriber.run)
        from feeds.model import FeedState
        # The hub address is closed: the request fails and the lease is denied at once.
        await subscriber.discovered(FeedState("x", "http://127.0.0.1:9/feed"),
                                    ["http://127.0.0.1:9/hub"], "http://127.0.0.1:9/feed")
        (lease,) = await leases.all_leases()
        assert lease.state is LeaseState.DENIED
        # A verification for a token we never handed out is refused.
        status, _ = await subscriber.callback(
            "GET", "unknown", {"hub.mode": "subscribe", "hub.topic": "t", "hub.challenge": "c"},
            {}, b"")
        assert status == 404
        nursery.cancel_scope.cancel()


async def test_a_restarted_subscriber_keeps_its_leases() -> None:
    import hashlib
    import hmac

    from feeds.push import PushLease
    leases = MemoryWebSubStore()
    now = time.time()
    await leases.put_lease(PushLease("f", "http://127.0.0.1:9/hub", "http://site/feed", "tok",
                                     "sec", LeaseState.ACTIVE, now, now + 600))
    received: list[tuple[str, bytes]] = []
    got = trio.Event()

    async def ingest(feed_id: str, body: bytes, content_type: str) -> None:
        received.append((feed_id, body))
        got.set()

    async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
        subscriber = WebSubSubscriber(leases, client, SubscriberConfig(
            callback_base="http://127.0.0.1:9/cb/", poll_interval_with_push=900.0))
        subscriber.attach(ingest)
        assert await subscriber.callback("POST", "tok", {}, {}, b"x") == (503, b"")
        await nursery.start(subscriber.run)
        assert subscriber.poll_interval("f", now) == 900.0
        signature = "sha512=" + hmac.new(b"sec", b"doc", hashlib.sha512).hexdigest()
        status, _ = await subscriber.callback("POST", "tok", {},
                                              {"x-hub-signature": signature}, b"doc")
        assert status == 202
        await got.wait()
        assert received == [("f", b"doc")]
        assert subscriber.poll_interval("f", now + 601) is None  # lapsed: polling as usual
        nursery.cancel_scope.cancel()

"""Seeding the scale bench's database through pubsubd's own stores: every feed as if polled
once (its ETag kept, so a stable feed answers 304), and for each changing feed its node, the
entries already seen and the reader's subscription."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence

import trio

from bench.scenario_feeds import ENTRIES_PER_DOC
from feeds.model import FeedState
from feeds.normalize import safe_item_id
from pubsubd import ns
from pubsubd.pubsub.model import MessageType, Node, NodeConfig, Subscription
from pubsubd.storage.postgres import PgDatabase, PgFeedStore, PgPubSubStore

CONCURRENCY = 16


def seed(url: str, urls: Sequence[str], *, changing_every: int, reader: str, service: str,
         period: float) -> None:
    db = PgDatabase(url, max_connections=CONCURRENCY)
    feeds, pubsub = PgFeedStore(db), PgPubSubStore(db)
    now = time.time()
    rng = random.Random(5)

    async def one(i: int, feed: str) -> None:
        await feeds.put_feed(FeedState(
            feed_id=feed, url=feed, original_url=feed, title=f"Benchmark feed {i}",
            etag=f'"{i}-0"', interval=period, next_fetch=now - rng.random() * period,
            last_fetch=now - period, last_change=now - period, entries_seen=ENTRIES_PER_DOC,
            fetch_count=1, last_status=200))
        if i % changing_every:
            return
        guids = [f"urn:bench:feed:{i}:post:{n}" for n in range(ENTRIES_PER_DOC)]
        await feeds.mark_seen(feed, [(safe_item_id(g), "seeded") for g in guids], at=now)
        config = NodeConfig(title=f"Benchmark feed {i}", payload_type=ns.ATOM, max_items=20,
                            notification_type=MessageType.HEADLINE)
        await pubsub.create_node(Node(service, feed, config, creator=service), service)
        await pubsub.put_subscription(service, Subscription(feed, reader, uuid.uuid4().hex))

    async def main() -> None:
        limiter = trio.CapacityLimiter(CONCURRENCY)

        async def limited(i: int, feed: str) -> None:
            async with limiter:
                await one(i, feed)

        async with trio.open_nursery() as nursery:
            for i, feed in enumerate(urls):
                nursery.start_soon(limited, i, feed)

    try:
        trio.run(main)
    finally:
        db.close()

"""The scale test's pieces: a feed farm (many small RSS feeds over several loopback addresses,
each fetch recorded with its start, end and fetching instance), the instances of ``pubsubd
component`` sharing one PostgreSQL database, and the seeding of that database.

Seeding writes feeds, nodes and subscriptions through the stores' own classes before any
instance starts: the instances then read subscriptions fresh from the database, so the test
does not depend on caches being told of subscriptions made through another instance.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trio

from .test_components_mode import ComponentProcess

EVENT = "{http://jabber.org/protocol/pubsub#event}"
UA_INSTANCE = re.compile(r"instance/(\S+)")


@dataclass(frozen=True, slots=True)
class Fetch:
    feed: int
    host: str
    instance: str
    start: float
    end: float
    status: int


@dataclass
class FarmFeed:
    guids: list[str]
    version: int = 1


@dataclass
class FeedFarm:
    """``count`` RSS feeds spread over ``hosts`` loopback addresses (127.0.0.1, .2, ...), one
    threaded HTTP server each. ETags make unchanged feeds answer 304; every answer waits
    ``delay`` seconds so that fetches overlap as they would on the network."""

    count: int
    hosts: int = 4
    delay: float = 0.0
    feeds: list[FarmFeed] = field(default_factory=list)
    fetches: list[Fetch] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stalled: str = ""  # an instance whose fetches are held until released
    stalled_now: int = 0
    answered: dict[str, float] = field(default_factory=dict)  # instance -> its last answer
    released: threading.Event = field(default_factory=threading.Event)
    servers: list[ThreadingHTTPServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.feeds = [FarmFeed([f"f{i}-old"]) for i in range(self.count)]

    def __enter__(self) -> FeedFarm:
        farm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                farm.serve(self)

            def log_message(self, *_: Any) -> None:
                pass

        for n in range(self.hosts):
            server = ThreadingHTTPServer((f"127.0.0.{n + 1}", 0), Handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        return self

    def __exit__(self, *_: object) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def url(self, i: int) -> str:
        host, port = self.servers[i % self.hosts].server_address[:2]
        return f"http://{host}:{port}/f/{i}.xml"

    def document(self, i: int) -> bytes:
        items = "".join(f"<item><guid isPermaLink='false'>{g}</guid><title>Entry {g}</title>"
                        f"<link>http://example.org/{g}</link><description>{g}</description>"
                        "</item>" for g in reversed(self.feeds[i].guids))
        return (f"<?xml version='1.0'?><rss version='2.0'><channel><title>Feed {i}</title>"
                f"<link>http://example.org/{i}</link>{items}</channel></rss>").encode()

    def etag(self, i: int) -> str:
        return f'"{i}-{self.feeds[i].version}"'

    def add_entry(self, i: int, guid: str) -> None:
        with self.lock:
            feed = self.feeds[i]
            feed.guids = [*feed.guids, guid][-5:]
            feed.version += 1

    def stall(self, instance: str) -> None:
        """Hold ``instance``'s fetches from now on: it then surely holds leases when killed,
        and once its last answered fetch is well past, it is not half-way through publishing
        what that fetch brought."""
        self.released.clear()
        self.stalled = instance

    def release(self) -> None:
        self.stalled = ""
        self.released.set()

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        start = time.time()
        host = request.headers.get("Host", "").split(":")[0]
        match = UA_INSTANCE.search(request.headers.get("User-Agent", ""))
        instance = match.group(1) if match else ""
        i = int(request.path.rsplit("/", 1)[-1].removesuffix(".xml"))
        with self.lock:
            self.in_flight[host] = busy = self.in_flight.get(host, 0) + 1
            self.max_in_flight[host] = max(self.max_in_flight.get(host, 0), busy)
            etag, body = self.etag(i), self.document(i)
        status = 0
        try:
            if instance and instance == self.stalled:
                with self.lock:
                    self.stalled_now += 1
                self.released.wait(timeout=60.0)
                return  # the fetching instance is gone: nothing is answered
            if self.delay:
                time.sleep(self.delay)
            if request.headers.get("If-None-Match") == etag:
                status = 304
                request.send_response(304)
                request.send_header("ETag", etag)
                request.send_header("Content-Length", "0")
                request.end_headers()
            else:
                status = 200
                request.send_response(200)
                request.send_header("Content-Type", "application/rss+xml")
                request.send_header("ETag", etag)
                request.send_header("Content-Length", str(len(body)))
                request.end_headers()
                request.wfile.write(body)
            request.wfile.flush()
        finally:
            with self.lock:
                self.in_flight[host] -= 1
                end = time.time()
                self.fetches.append(Fetch(i, host, instance, start, end, status))
                if status:
                    self.answered[instance] = end


def overlapping_fetches(fetches: Sequence[Fetch]) -> list[tuple[Fetch, Fetch]]:
    """Pairs of fetches of one feed that were under way at the same time."""
    by_feed: dict[int, list[Fetch]] = {}
    for f in fetches:
        by_feed.setdefault(f.feed, []).append(f)
    found = []
    for runs in by_feed.values():
        runs.sort(key=lambda f: f.start)
        found += [(a, b) for a, b in zip(runs, runs[1:], strict=False) if b.start < a.end]
    return found


def seed(url: str, farm: FeedFarm, service: str, subscribers: Sequence[str],
         interval: float, start_in: float) -> None:
    """Every feed of the farm as if polled once (entries seen, ETag kept), its node, and one
    subscriber's subscription; first polls due over one interval from ``start_in`` on."""
    from feeds.model import FeedState
    from pubsubd import ns
    from pubsubd.pubsub.model import MessageType, Node, NodeConfig, Subscription
    from pubsubd.storage.postgres import PgDatabase, PgFeedStore, PgPubSubStore

    db = PgDatabase(url, max_connections=8)
    feeds, pubsub = PgFeedStore(db), PgPubSubStore(db)
    now = time.time()
    rng = random.Random(7)

    async def one(i: int) -> None:
        feed = farm.url(i)
        await feeds.put_feed(FeedState(
            feed_id=feed, url=feed, original_url=feed, title=f"Feed {i}", etag=farm.etag(i),
            interval=interval, next_fetch=now + start_in + rng.random() * interval,
            last_fetch=now, last_change=now, entries_seen=1, fetch_count=1, last_status=200))
        await feeds.mark_seen(feed, [(g, "seeded") for g in farm.feeds[i].guids], at=now)
        config = NodeConfig(title=f"Feed {i}", payload_type=ns.ATOM, max_items=20,
                            notification_type=MessageType.HEADLINE)
        await pubsub.create_node(Node(service, feed, config, creator=service), service)
        await pubsub.put_subscription(service, Subscription(
            feed, subscribers[i % len(subscribers)], uuid.uuid4().hex))

    async def main() -> None:
        limiter = trio.CapacityLimiter(8)

        async def limited(i: int) -> None:
            async with limiter:
                await one(i)

        async with trio.open_nursery() as nursery:
            for i in range(farm.count):
                nursery.start_soon(limited, i)

    try:
        trio.run(main)
    finally:
        db.close()


def lease_owners(url: str) -> dict[str, str]:
    """Feed → instance holding its lease right now."""
    import psycopg

    with psycopg.connect(url) as conn:
        return {str(f): str(o) for f, o in conn.execute(
            "SELECT feed_id, lease_owner FROM feeds WHERE lease_owner IS NOT NULL")}


def instances(base: Path, count: int, *, front_port: int, domain: str, secret: str,
              url: str, feeds: dict[str, Any]) -> list[ComponentProcess]:
    made = []
    for n in range(count):
        workdir = base / f"instance{n}"
        workdir.mkdir()
        made.append(ComponentProcess(workdir, extra={
            "listeners": [],
            "storage": {"url": url},
            "component_of": {"host": "127.0.0.1", "port": front_port, "domain": domain,
                             "secret": secret},
            "feeds": {**feeds, "instance_id": f"i{n}"},
            "log": {"level": "INFO"},
        }))
    return made


def event_items(message: ET.Element) -> Iterator[tuple[str, str]]:
    """(node, item id) of each item a pubsub event notification carries."""
    event = message.find(f"{EVENT}event")
    if event is None:
        return
    for items in event.findall(f"{EVENT}items"):
        for item in items.findall(f"{EVENT}item"):
            yield items.get("node", ""), item.get("id", "")

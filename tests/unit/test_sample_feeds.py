"""The built-in sample feed server: real HTTP on loopback, fetched through the guarded fetcher."""

from __future__ import annotations

import dataclasses

import trio

from feeds.discover import discover
from feeds.fetch import ErrorKind, FetchConfig, Fetcher
from feeds.netguard import AddressPolicy
from feeds.normalize import normalize_feed
from feeds.parse import parse
from pubsubd.config import FeedsConfig
from pubsubd.modules.feeds.samples import SampleFeedServer


async def test_samples_are_served_grow_and_only_their_port_is_opened() -> None:
    samples = SampleFeedServer.bind(FeedsConfig(samples_port=0, samples_new_entry_every=3600))
    policy = dataclasses.replace(AddressPolicy(), allow_endpoints=frozenset({samples.endpoint}))
    async with trio.open_nursery() as nursery, Fetcher(FetchConfig(policy=policy)) as fetcher:
        await nursery.start(samples.serve)
        feeds = samples.catalogue()
        assert {f.group for f in feeds} == {"Samples"} and len(feeds) >= 2
        counts: dict[str, int] = {}
        etags: dict[str, str | None] = {}
        for feed in feeds:
            first = await fetcher.fetch(feed.url)
            assert first.ok, first
            parsed = await parse(first.body, url=feed.url, content_type=first.content_type)
            before = normalize_feed(parsed, fetched_at=0.0, base=feed.url).entries
            assert parsed.title == feed.title and before
            counts[feed.url], etags[feed.url] = len(before), first.etag
            again = await fetcher.fetch(feed.url, etag=first.etag)
            assert again.not_modified  # RFC 9110 §13.1.2
        samples.add_entries()
        for feed in feeds:
            grown = await fetcher.fetch(feed.url, etag=etags[feed.url])
            parsed = await parse(grown.body, url=feed.url, content_type=grown.content_type)
            entries = normalize_feed(parsed, fetched_at=0.0, base=feed.url).entries
            assert grown.status == 200 and len(entries) == counts[feed.url] + 1
            assert any("Sample entry 1" in e.title for e in entries)
        index = await fetcher.fetch(samples.base_url)
        assert {c.url for c in discover(index.body, samples.base_url)} == {f.url for f in feeds}
        # Another service on loopback stays refused: only the samples' endpoint is open.
        other = await fetcher.fetch(f"http://127.0.0.1:{samples.port + 1}/")
        assert other.error is ErrorKind.BLOCKED_ADDRESS
        nursery.cancel_scope.cancel()

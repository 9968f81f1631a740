"""Feeds written from pubsub items read back the same through our own parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feeds.normalize import normalize_feed
from feeds.parse import parse_bytes
from feeds.render import FeedMeta, SourceItem, render

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ENTRY = (
    "<entry xmlns='http://www.w3.org/2005/Atom'><id>urn:x:1</id><title>Hello &amp; bye</title>"
    "<updated>2024-05-01T12:00:00Z</updated><published>2024-05-01T11:00:00Z</published>"
    "<link rel='alternate' href='https://site.example/1'/>"
    "<link rel='enclosure' href='https://site.example/1.mp3' type='audio/mpeg' length='42'/>"
    "<author><name>Ann</name></author><category term='news'/>"
    "<summary type='text'>Short</summary><content type='html'>&lt;p&gt;Long&lt;/p&gt;</content>"
    "</entry>"
)
ITEMS = [SourceItem("1", ENTRY, WHEN), SourceItem("tune", "<tune xmlns='urn:t'>Song</tune>", WHEN)]
META = FeedMeta("Node", "https://example.org/feeds/node.x", hub="https://example.org/websub/hub")


@pytest.mark.parametrize("kind", ["atom", "rss", "json"])
def test_rendered_feeds_round_trip(kind: str) -> None:
    parsed = parse_bytes(render(kind, META, ITEMS), url=META.self_url)
    assert parsed.title == "Node"
    assert parsed.hubs == ("https://example.org/websub/hub",)
    first, other = normalize_feed(parsed, fetched_at=0.0).entries
    assert first.title == "Hello & bye"
    assert first.link == "https://site.example/1"
    assert "<p>Long</p>" in first.content_html
    assert first.enclosures[0].href == "https://site.example/1.mp3"
    assert first.categories == ("news",) and first.author == "Ann"
    assert first.published == "2024-05-01T11:00:00Z"
    assert other.title == "tune" and "Song" in other.content_html


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError):
        render("html", META, ITEMS)

from __future__ import annotations

import pytest

from feeds.discover import discover, looks_like_feed
from feeds.opml import (
    OpmlError,
    OpmlFeed,
    default_catalogue,
    export_opml,
    parse_opml,
    sample_feed,
    sample_names,
)
from feeds.parse import parse_bytes


def test_discover_finds_alternate_feed_links() -> None:
    page = b"""<html><head><title>Blog</title>
    <link rel="stylesheet" href="/s.css">
    <link rel="alternate" type="application/rss+xml" title="Posts  RSS" href="/feed.rss">
    <link rel="Alternate" type="application/atom+xml" href="atom.xml">
    <link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">
    <link rel="alternate" type="application/rss+xml" href="/feed.rss">
    <link rel="alternate" hreflang="fr" href="/fr/">
    </head><body><a rel="alternate" type="application/rss+xml" href="/no">x</a></body></html>"""
    found = discover(page, "https://blog.example/posts/index.html")
    assert [(c.url, c.type) for c in found] == [
        ("https://blog.example/feed.rss", "rss"),
        ("https://blog.example/posts/atom.xml", "atom"),
    ]
    assert found[0].title == "Posts RSS"
    assert discover(b"", "https://x/") == []


def test_looks_like_feed() -> None:
    assert looks_like_feed(b'<?xml version="1.0"?>\n<rss version="2.0">')
    assert looks_like_feed(b'<feed xmlns="http://www.w3.org/2005/Atom">')
    assert not looks_like_feed(b"<!doctype html><html><head>")


OPML = b"""<?xml version="1.0"?>
<opml version="2.0"><head><title>mine</title></head><body>
  <outline text="Tech"><outline text="Deep">
    <outline type="rss" text="A" xmlUrl="https://a/feed"/></outline>
    <outline type="rss" title="B" text="b" xmlUrl="https://b/feed" htmlUrl="https://b/"/></outline>
  <outline type="rss" text="C" xmlUrl="https://c/feed"/>
  <outline type="rss" text="dup" xmlUrl="https://c/feed"/>
  <outline type="rss" text="local file" xmlUrl="file:///etc/passwd"/>
</body></opml>"""


def test_parse_opml_folders_become_groups() -> None:
    assert parse_opml(OPML) == [
        OpmlFeed("https://a/feed", "A", "", "Tech/Deep"),
        OpmlFeed("https://b/feed", "B", "https://b/", "Tech"),
        OpmlFeed("https://c/feed", "C", "", ""),
    ]


def test_export_then_import_roundtrips() -> None:
    feeds = parse_opml(OPML)
    assert parse_opml(export_opml(feeds, now=0)) == feeds


def test_opml_errors_and_entities_refused() -> None:
    with pytest.raises(OpmlError):
        parse_opml(b"<html/>")
    with pytest.raises(OpmlError):
        parse_opml(b"<opml><body>")
    evil = b'<!DOCTYPE opml [<!ENTITY x SYSTEM "file:///etc/passwd">]><opml><body>' \
           b'<outline text="&x;" xmlUrl="https://x/"/></body></opml>'
    with pytest.raises(OpmlError, match="external entity"):
        parse_opml(evil)


def test_shipped_catalogue_and_samples() -> None:
    catalogue = default_catalogue()
    assert len(catalogue) >= 3 and all(f.url.startswith("https://") for f in catalogue)
    assert {f.group for f in catalogue} >= {"Standards", "Software"}
    names = sample_names()
    assert len(names) >= 2
    for name in names:
        parsed = parse_bytes(sample_feed(name))
        assert parsed.version and parsed.entries and not parsed.bozo

"""Parsing and normalizing the fixture feeds, quirks included."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from lxml import etree

from feeds.normalize import ATOM_NS, normalize_feed, rfc3339, safe_item_id
from feeds.parse import parse, parse_bytes, strip_doctype

NOW = 1_700_000_000.0
A = f"{{{ATOM_NS}}}"
Load = Callable[[str], bytes]


def load(fixture_bytes: Load, name: str, url: str = "https://feeds.example/feed"):
    parsed = parse_bytes(fixture_bytes(name), url=url)
    return parsed, normalize_feed(parsed, fetched_at=NOW)


@pytest.mark.parametrize(
    ("name", "version", "count"),
    [("rss091.xml", "rss091", 2), ("rss10.rdf", "rss10", 2), ("rss20.xml", "rss20", 4),
     ("atom03.xml", "atom03", 2), ("atom10.xml", "atom10", 3)],
)
def test_every_format_yields_valid_atom_entries(
    fixture_bytes: Load, name: str, version: str, count: int
) -> None:
    parsed, feed = load(fixture_bytes, name)
    assert parsed.version.startswith(version)
    assert len(feed.entries) == count
    for entry in feed.entries:
        root = etree.fromstring(entry.atom_xml)
        assert root.tag == A + "entry"
        assert root.findtext(A + "id") and root.findtext(A + "updated")
        assert root.find(A + "title") is not None
        assert 0 < len(entry.item_id) <= 200 and " " not in entry.item_id
        assert entry.published.endswith("Z") and entry.updated.endswith("Z")


def test_rss20_quirks(fixture_bytes: Load) -> None:
    parsed, feed = load(fixture_bytes, "rss20.xml", "https://news.example.com/feed.xml")
    first = feed.entries[0]
    assert first.item_id == "article-1"
    assert first.title == "Bold headline with & entity"  # HTML in title stripped, entity decoded
    assert first.link == "https://news.example.com/articles/1"  # relative link resolved
    assert first.published == "2024-03-05T13:30:00Z"
    assert first.author == "The Editor"
    assert first.categories == ("tech", "xmpp")
    assert first.enclosures[0].href == "https://news.example.com/media/episode1.mp3"
    assert first.enclosures[0].length == 12345
    html = first.content_html
    assert "script" not in html and "alert" not in html and "onclick" not in html
    assert "onerror" not in html and "style" not in html and "javascript:" not in html
    assert '<a href="https://news.example.com/more"' in html
    assert 'src="https://news.example.com/pic.png"' in html
    # Duplicate guid: only the first copy is kept, and the feed status says so.
    assert [e.item_id for e in feed.entries].count("article-1") == 1
    assert feed.duplicates == 1 and "duplicate" in feed.warning
    # No date: the fetch time stands in.
    undated = next(e for e in feed.entries if e.title == "No date at all")
    assert undated.published == rfc3339(NOW)
    # Over-long guid is hashed, stably.
    long_one = next(e for e in feed.entries if e.title.startswith("A guid far too long"))
    assert long_one.item_id.startswith("sha256-")
    assert long_one.item_id == load(fixture_bytes, "rss20.xml")[1].entries[-1].item_id
    assert parsed.ttl_minutes == 90
    assert parsed.skip_hours == frozenset({0, 1, 2}) and parsed.skip_days == frozenset({6})


def test_entry_without_id_gets_hash_of_link_and_title(fixture_bytes: Load) -> None:
    _, feed = load(fixture_bytes, "atom10.xml")
    no_id = feed.entries[2]
    assert no_id.item_id.startswith("sha256-")
    parsed_again = normalize_feed(parse_bytes(fixture_bytes("atom10.xml")), fetched_at=NOW + 99)
    assert parsed_again.entries[2].item_id == no_id.item_id


def test_entry_with_nothing_is_skipped_with_reason(fixture_bytes: Load) -> None:
    _, feed = load(fixture_bytes, "rss20-empty-item.xml")
    assert feed.entries == [] and "without id" in feed.skipped[0]


def test_atom10_xml_base_and_xhtml(fixture_bytes: Load) -> None:
    parsed, feed = load(fixture_bytes, "atom10.xml")
    assert parsed.title == "Modern Atom Blog"
    first, second = feed.entries[:2]
    assert first.link == "https://blog.example.org/posts/second"
    assert 'href="https://blog.example.org/about"' in first.content_html
    assert first.published == "2024-05-02T09:00:00Z" and first.updated == "2024-05-02T12:00:00Z"
    assert first.author == "Grace"  # inherited from the feed
    assert second.title == "Plain text <not a tag>"  # type="text" is not markup
    assert second.summary_text == "Summary with markup & entities."
    assert second.enclosures[0].href == "https://blog.example.org/posts/files/talk.pdf"
    root = etree.fromstring(second.atom_xml)
    assert root.find(A + "link[@rel='enclosure']").get("length") == "2048"
    assert root.findtext(A + "title") == "Plain text <not a tag>"


def test_atom03_escaped_and_base64(fixture_bytes: Load) -> None:
    _, feed = load(fixture_bytes, "atom03.xml")
    assert feed.entries[0].content_html == "<p>Escaped <i>HTML</i> content.</p>"
    assert feed.entries[0].published == "2004-05-01T12:00:00Z"
    assert feed.entries[1].summary_text == "Hello from base64"
    assert feed.entries[0].author == "Old Timer"


def test_rss091_entities_and_rss10_dates(fixture_bytes: Load) -> None:
    parsed, feed = load(fixture_bytes, "rss091.xml", "http://example.org/cafe/rss")
    assert parsed.title == "Café Notes"
    assert "8 — croissants" in feed.entries[0].summary_text
    assert feed.entries[1].link == "http://example.org/cafe/news/second.html"
    _, rdf = load(fixture_bytes, "rss10.rdf", "http://example.net/rdf")
    assert rdf.entries[0].item_id == "http://example.net/2024/one"
    assert rdf.entries[0].published == "2024-03-01T09:00:00Z"
    assert rdf.entries[0].author == "Ada Lovelace"
    assert rdf.entries[0].title == "First RDF item"


def test_broken_encoding_and_malformed_still_yield_items(fixture_bytes: Load) -> None:
    parsed, feed = load(fixture_bytes, "broken-encoding.xml")
    assert parsed.bozo and feed.entries[0].title == "Café crème"
    parsed, feed = load(fixture_bytes, "malformed.xml")
    assert parsed.bozo and [e.item_id for e in feed.entries] == ["bad-1", "bad-2"]


def test_billion_laughs_is_not_expanded(fixture_bytes: Load) -> None:
    started = time.perf_counter()
    parsed, feed = load(fixture_bytes, "billion-laughs.xml")
    assert time.perf_counter() - started < 2
    assert len(feed.entries[0].title) < 100 and "lollol" not in feed.entries[0].title
    assert "root:" not in feed.entries[0].atom_xml


def test_quadratic_blowup_is_not_expanded() -> None:
    big = "x" * 50_000
    doc = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "{big}">]>'
        '<rss version="2.0"><channel><title>q</title><item><guid>q1</guid><description>'
        + "&a;" * 20_000
        + "</description></item></channel></rss>"
    ).encode()
    started = time.perf_counter()
    parsed = parse_bytes(doc)
    assert time.perf_counter() - started < 3
    assert len(parsed.entries[0].get("summary", "")) < 200_000


def test_strip_doctype_touches_prolog_only() -> None:
    doc = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "v">]><rss><!DOCTYPE kept></rss>'
    assert strip_doctype(doc) == b'<?xml version="1.0"?><rss><!DOCTYPE kept></rss>'


def test_safe_item_id() -> None:
    assert safe_item_id("tag:x,2024:1") == "tag:x,2024:1"
    assert safe_item_id("has space").startswith("sha256-")
    assert safe_item_id("é").startswith("sha256-")
    assert safe_item_id("x" * 201).startswith("sha256-")
    assert safe_item_id("x" * 201) == safe_item_id("x" * 201)


def test_body_text_is_clean_and_truncated_on_text() -> None:
    summary = "<p>" + "word &amp; " * 100 + "</p>"
    doc = (
        '<rss version="2.0"><channel><item><title>T &amp;amp; U</title><link>http://e/1</link>'
        f"<description><![CDATA[{summary}]]></description></item></channel></rss>"
    ).encode()
    entry = normalize_feed(parse_bytes(doc), fetched_at=NOW).entries[0]
    title, link, short = entry.body_text.split("\n")
    assert title == "T & U" and link == "http://e/1"
    assert short.endswith("…") and len(short) <= 300
    assert "<" not in short and "&amp;" not in short


def test_content_hash_ignores_dates_but_sees_text() -> None:
    def doc(text: str, date: str) -> bytes:
        return (
            f'<rss version="2.0"><channel><item><guid>g</guid><title>t</title>'
            f"<pubDate>{date}</pubDate><description>{text}</description></item></channel></rss>"
        ).encode()

    def digest(text: str, date: str) -> str:
        return normalize_feed(parse_bytes(doc(text, date)), fetched_at=NOW).entries[0].content_hash

    same = "Mon, 04 Mar 2024 08:00:00 GMT"
    assert digest("a", same) == digest("a", "Tue, 05 Mar 2024 08:00:00 GMT")
    assert digest("a", same) != digest("b", same)


async def test_parse_runs_in_thread(fixture_bytes: Load) -> None:
    parsed = await parse(fixture_bytes("rss20.xml"), url="https://x/")
    assert parsed.title == "Quirky & Co. News"

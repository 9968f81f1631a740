"""Entries larger than the payload limit are shortened, never dropped."""

from __future__ import annotations

from lxml import etree

from feeds.normalize import ATOM_NS, normalize_feed
from feeds.parse import parse_bytes
from feeds.shorten import shorten_entry

A = f"{{{ATOM_NS}}}"
LIMIT = 4096


def _entry(content_words: int, summary: str = "", title: str = "Big one"):
    words = " ".join(f"word{i}" for i in range(content_words))
    desc = f"<description>{summary}</description>" if summary else ""
    doc = (f"<rss version='2.0'><channel><title>t</title><link>http://example.org/</link>"
           f"<item><title>{title}</title><link>http://example.org/big</link><guid>big-1</guid>"
           f"<pubDate>Tue, 14 Nov 2023 22:13:20 GMT</pubDate>{desc}"
           f"<content:encoded xmlns:content='http://purl.org/rss/1.0/modules/content/'>"
           f"<![CDATA[<p>{words}</p>]]></content:encoded></item></channel></rss>")
    return normalize_feed(parse_bytes(doc.encode(), url="http://example.org/f"),
                          fetched_at=1_700_000_000.0).entries[0]


def test_an_entry_that_fits_is_left_alone() -> None:
    entry = _entry(10)
    assert shorten_entry(entry, LIMIT) is entry


def test_a_large_entry_keeps_its_identity_and_gets_a_link_instead_of_content() -> None:
    entry = _entry(5000, summary="A short summary.")
    assert len(entry.atom_xml.encode()) > LIMIT
    short = shorten_entry(entry, LIMIT)
    assert short is not None and len(short.atom_xml.encode()) <= LIMIT
    assert short.item_id == entry.item_id and short.content_hash == entry.content_hash
    root = etree.fromstring(short.atom_xml)
    original = etree.fromstring(entry.atom_xml)
    for tag in ("id", "title", "published", "updated", "summary"):
        assert root.findtext(A + tag) == original.findtext(A + tag), tag
    assert root.find(A + "link").get("href") == "http://example.org/big"
    content = root.findtext(A + "content")
    assert "word4999" not in content and 'href="http://example.org/big"' in content


def test_a_summary_made_from_huge_content_is_cut_too() -> None:
    entry = _entry(5000)  # no description: the summary is the content's text
    short = shorten_entry(entry, LIMIT)
    assert short is not None and len(short.atom_xml.encode()) <= LIMIT
    summary = etree.fromstring(short.atom_xml).findtext(A + "summary")
    assert summary and summary.startswith("word0 word1") and summary.endswith("…")


def test_nothing_fits_below_the_skeleton() -> None:
    assert shorten_entry(_entry(10), 100) is None

"""JSON Feed 1.0/1.1, enclosure-only entries and DOCTYPE-declared entities in ids."""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from feeds.discover import looks_like_feed
from feeds.normalize import ATOM_NS, normalize_feed
from feeds.parse import expand_simple_entities, parse_bytes

NOW = 1_700_000_000.0
A = f"{{{ATOM_NS}}}"
Load = Callable[[str], bytes]


def test_json_feed_11_items_become_normalized_entries(fixture_bytes: Load) -> None:
    parsed = parse_bytes(fixture_bytes("jsonfeed11.json"), url="https://json.example/feed.json",
                         content_type="application/feed+json")
    assert parsed.version == "json11" and parsed.is_feed
    assert parsed.title == "JSON Eleven <not markup>"
    assert parsed.link == "https://json.example/"
    assert parsed.hubs == ("https://hub.example/",)
    assert parsed.self_url == "https://json.example/feed.json"
    feed = normalize_feed(parsed, fetched_at=NOW)
    second, first = feed.entries
    assert second.item_id == "https://json.example/2"
    assert second.title == "Second & last"
    assert second.link == "https://json.example/posts/2"  # relative url resolved
    assert "<b>world</b>" in second.content_html and "script" not in second.content_html
    assert second.summary_text == "A summary"
    assert second.published == "2024-05-02T08:00:00Z" and second.updated == "2024-05-03T00:00:00Z"
    assert second.categories == ("news", "json") and second.author == "Item Author"
    assert first.item_id == "1"  # a JSON Feed 1.0-style numeric id, as text
    assert first.enclosures[0].href == "https://json.example/ep1.mp3"
    assert first.enclosures[0].length == 1234 and first.enclosures[0].type == "audio/mpeg"
    assert first.title.startswith("Only text, no title")
    root = etree.fromstring(second.atom_xml)
    assert root.findtext(A + "title") == "Second & last"


def test_json_feed_10_is_sniffed_without_content_type(fixture_bytes: Load) -> None:
    body = fixture_bytes("jsonfeed10.json")
    assert looks_like_feed(body)
    parsed = parse_bytes(body, url="https://json1.example/feed.json")
    assert parsed.version == "json10"
    (entry,) = normalize_feed(parsed, fetched_at=NOW).entries
    assert entry.item_id == "a1" and entry.author == "Old Style"
    assert "&lt;text&gt;" in entry.content_html  # content_text is text, not markup


def test_json_that_is_not_a_feed_is_not_a_feed() -> None:
    parsed = parse_bytes(b'{"hello": "world"}', content_type="application/json")
    assert not parsed.is_feed


def test_enclosure_only_entries_are_keyed_on_the_enclosure_url(fixture_bytes: Load) -> None:
    parsed = parse_bytes(fixture_bytes("podcast-enclosure-only.xml"), url="https://pod.example/f")
    feed = normalize_feed(parsed, fetched_at=NOW)
    assert feed.skipped == []
    assert [e.item_id for e in feed.entries] == [
        "https://pod.example/episodes/ep2.mp3", "https://pod.example/episodes/ep1.mp3"]
    assert feed.entries[0].title == "ep2.mp3"
    again = normalize_feed(parse_bytes(fixture_bytes("podcast-enclosure-only.xml")),
                           fetched_at=NOW + 60)
    assert [e.item_id for e in again.entries] == [e.item_id for e in feed.entries]


def test_doctype_entities_are_expanded_in_ids(fixture_bytes: Load) -> None:
    parsed = parse_bytes(fixture_bytes("doctype-entity-id.xml"), url="https://ent.example/rss")
    one, two = normalize_feed(parsed, fetched_at=NOW).entries
    assert one.source_id == "https://ent.example/posts/1"
    assert one.link == "https://ent.example/posts/1"
    assert "&" not in one.item_id
    assert two.item_id == "id-2"
    assert "&site;" not in two.title  # a nested entity is never expanded, nor left as-is text


def test_entity_expansion_is_bounded() -> None:
    doc = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "' + b"x" * 200 + b'">]><r>'
           + b"&e;" * 10_000 + b"</r>")
    out = expand_simple_entities(doc)
    assert len(out) < len(doc) + 70_000
    assert out.count(b"&e;") > 0

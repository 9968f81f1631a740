"""Pure parts of the feed contacts: short names, health in words, entries as chat, avatars."""

from __future__ import annotations

from lxml import etree

from feeds.fetch import FetchResult
from feeds.model import FeedState
from pubsubd.modules.feeds.avatar import image_url, photo_of
from pubsubd.modules.feeds.contacts import base_name, health, next_check, slug, unique_name
from pubsubd.modules.feeds.delivery import body_of, entry_message, read_entry, styled_title

ATOM = "http://www.w3.org/2005/Atom"
NOW = 1_700_000_000.0


def test_short_names_are_readable_valid_localparts() -> None:
    assert slug("Planet Jabber — News!") == "planet-jabber-news"
    assert slug("Café Crème") == "cafe-creme"
    assert slug("日本語") == ""
    assert base_name("", "https://www.example.org/blog/feed.xml") == "example-org-blog-feed"
    assert base_name("日本語", "https://example.org/") == "example-org"
    assert len(base_name("x" * 300, "https://e.org/")) <= 40
    assert unique_name("news", {"news", "news-2"}) == "news-3"
    assert unique_name("news", set()) == "news"


def test_health_says_when_checked_and_next() -> None:
    state = FeedState("u", "u", last_fetch=NOW - 120, next_fetch=NOW + 28 * 60)
    assert health(state, NOW) == (None, "checked 2 min ago, next in 28 min")
    failing = FeedState("u", "u", last_fetch=NOW, next_fetch=NOW + 300, error_streak=2,
                        last_error="timeout")
    show, status = health(failing, NOW, failing_after=5)
    assert show == "away" and status.startswith("failing: timeout — checked just now")
    assert health(FeedState("u", "u", error_streak=5, last_error="x"), NOW)[0] == "xa"
    assert health(FeedState("u", "u", gone=True), NOW)[0] == "xa"
    assert health(state, NOW, delivering=False)[0] == "away"
    assert next_check(FeedState("u", "u"), NOW) == "now"
    polling = FeedState("u", "u", last_fetch=NOW, next_fetch=NOW - 5, interval=1800)
    assert next_check(polling, NOW) == "in 30 min"
    assert next_check(FeedState("u", "u", next_fetch=NOW + 3 * 3600), NOW) == "in 3 h"


def test_an_entry_as_a_plain_chat_message() -> None:
    payload = (f"<entry xmlns='{ATOM}'><title type='text'>Hello world</title>"
               "<link rel='alternate' href='https://e.org/1'/>"
               "<link rel='enclosure' href='https://e.org/1.mp3'/>"
               "<summary type='text'>Some words.</summary></entry>")
    entry = read_entry(payload)
    assert entry is not None and entry.enclosures == ("https://e.org/1.mp3",)
    assert body_of(entry) == ("*Hello world*\nhttps://e.org/1\n\nSome words.\n"
                              "Attachment: https://e.org/1.mp3")
    message = entry_message(entry, "news@pubsub.example", "a@example")
    assert message.get("type") == "chat"
    assert [u.text for u in message.iter("{jabber:x:oob}url")] == [
        "https://e.org/1", "https://e.org/1.mp3"]
    assert message.find("{urn:xmpp:sid:0}origin-id").get("id") == message.get("id")
    assert not [e for e in message.iter() if isinstance(e.tag, str) and "pubsub" in e.tag]
    assert styled_title("a * b") == "a * b"  # XEP-0393 would misread it
    assert read_entry("<p>not atom</p>") is None
    assert etree.tostring(message).count(b"<body>") == 1


def test_avatar_url_from_feed_documents() -> None:
    atom = f"<feed xmlns='{ATOM}'><logo>/logo.png</logo><icon>i.ico</icon></feed>".encode()
    assert image_url(atom, "https://e.org/feed/") == "https://e.org/feed/i.ico"
    rss = b"<rss><channel><image><url>https://e.org/l.png</url></image></channel></rss>"
    assert image_url(rss, "https://e.org/") == "https://e.org/l.png"
    assert image_url(b"<rss><channel/></rss>", "https://e.org/") == ""
    png = FetchResult(url="u", final_url="u", status=200, body=b"\x89PNG",
                      content_type="image/png")
    assert photo_of(png) is not None
    html = FetchResult(url="u", final_url="u", status=200, body=b"<html>",
                       content_type="text/html")
    assert photo_of(html) is None


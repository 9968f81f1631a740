"""Pure parts of the feed contacts: short names, health in words, entries as chat, avatars."""

from __future__ import annotations

from datetime import UTC, datetime

import trio
from lxml import etree

from feeds.fetch import FetchResult
from feeds.model import FeedState
from pubsubd.modules.feeds.avatar import image_url, photo_of
from pubsubd.modules.feeds.contacts import base_name, health, next_check, slug, unique_name
from pubsubd.modules.feeds.delivery import (
    ChatDelivery,
    body_of,
    entry_message,
    entry_messages,
    read_entry,
    styled_title,
)
from pubsubd.pubsub import Notification, NotificationKind, Recipient
from pubsubd.pubsub.model import Item, MessageType

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


OOB_URL = "{jabber:x:oob}x/{jabber:x:oob}url"


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
    assert message is not None and message.get("type") == "chat"
    # The web link is in the body only: an OOB copy of it would be shown twice (converse.js).
    assert message.findtext("{jabber:client}body") == ("*Hello world*\nhttps://e.org/1\n\n"
                                                       "Some words.")
    assert message.find("{jabber:x:oob}x") is None
    assert message.find("{urn:xmpp:sid:0}origin-id").get("id") == message.get("id")
    assert not [e for e in message.iter() if isinstance(e.tag, str) and "pubsub" in e.tag]
    assert styled_title("a * b") == "a * b"  # XEP-0393 would misread it
    assert read_entry("<p>not atom</p>") is None
    assert etree.tostring(message).count(b"<body>") == 1


def test_each_enclosure_is_a_message_whose_body_is_its_oob_url() -> None:
    payload = (f"<entry xmlns='{ATOM}'><title>Episode 7</title>"
               "<link href='https://e.org/7'/>"
               "<link rel='enclosure' href='https://e.org/7.mp3'/>"
               "<link rel='enclosure' href='https://e.org/7.jpg'/>"
               "<link rel='enclosure' href='https://e.org/7.mp3'/></entry>")
    entry = read_entry(payload)
    assert entry is not None
    messages = entry_messages(entry, "pod@pubsub.example", "a@example")
    bodies = [m.findtext("{jabber:client}body") for m in messages]
    assert bodies == ["*Episode 7*\nhttps://e.org/7", "https://e.org/7.mp3", "https://e.org/7.jpg"]
    assert [[u.text for u in m.iter("{jabber:x:oob}url")] for m in messages] == [
        [], ["https://e.org/7.mp3"], ["https://e.org/7.jpg"]]
    for m in messages:
        assert m.get("type") == "chat" and m.get("from") == "pod@pubsub.example"
        assert m.find("{urn:xmpp:sid:0}origin-id").get("id") == m.get("id")
    assert len({m.get("id") for m in messages}) == 3

    # An entry whose link is its enclosure says it once, as the enclosure.
    same = read_entry(f"<entry xmlns='{ATOM}'><title>Cover</title>"
                      "<link href='https://e.org/c.png'/>"
                      "<link rel='enclosure' href='https://e.org/c.png'/></entry>")
    assert same is not None
    assert [m.findtext("{jabber:client}body") for m in entry_messages(same, "p", "a")] == [
        "*Cover*", "https://e.org/c.png"]
    # An entry of nothing but an enclosure is that one message.
    bare = read_entry(f"<entry xmlns='{ATOM}'><link rel='enclosure' href='https://e.org/b.ogg'/>"
                      "</entry>")
    assert bare is not None
    only = entry_messages(bare, "p", "a")
    assert [m.findtext(OOB_URL) for m in only] == ["https://e.org/b.ogg"]


def test_chat_delivery_sends_the_text_then_each_enclosure() -> None:
    payload = (f"<entry xmlns='{ATOM}'><title>Episode 8</title><link href='https://e.org/8'/>"
               "<link rel='enclosure' href='https://e.org/8.mp3'/></entry>")
    sent: list[tuple[etree._Element, bool]] = []

    async def send(element: etree._Element, *, deferrable: bool = False) -> None:
        sent.append((element, deferrable))

    async def contact_of(node: str) -> str | None:
        return "pod@pubsub.example" if node == "feeds/pod" else None

    async def urgent(reader: str) -> bool:
        return False

    delivery = ChatDelivery(contact_of, send, urgent)
    item = Item("i1", payload, "pubsub.example", datetime.now(UTC))
    reader = Recipient("a@example/phone", message_type=MessageType.CHAT)
    notification = Notification(NotificationKind.ITEMS, "pubsub.example", "feeds/pod",
                                (reader,), items=(item,))
    assert trio.run(delivery, notification, reader)
    assert [(m.findtext("{jabber:client}body"), m.findtext(OOB_URL), m.get("to"), d)
            for m, d in sent] == [
        ("*Episode 8*\nhttps://e.org/8", None, "a@example/phone", True),
        ("https://e.org/8.mp3", "https://e.org/8.mp3", "a@example/phone", True)]


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


"""XEP-0410 self-ping of the feed service's occupants in rooms: a room that no longer has us
answers not-acceptable, and the occupant joins again; a room that still has us is left alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from lxml import etree

from pubsubd import ns
from pubsubd.core.router import Stanza
from pubsubd.jid import JID
from pubsubd.modules.feeds.rooms import RoomFeeds, feed_nick
from pubsubd.storage.memory import MemoryRoomFeedStore
from pubsubd.xml import builders

if TYPE_CHECKING:
    from pubsubd.modules.feeds.manager import FeedManager

ROOM = "lounge@conference.example.org"
PING = ns.clark(ns.PING, "ping")


class Room:
    """The other end: answers each self-ping with ``condition`` (a result when empty)."""

    def __init__(self, condition: str) -> None:
        self.condition = condition
        self.sent: list[etree._Element] = []
        self.rooms: RoomFeeds | None = None

    async def __call__(self, element: etree._Element) -> None:
        self.sent.append(element)
        if element.find(PING) is None or self.rooms is None:
            return
        answer = builders.iq("error" if self.condition else "result", to=element.get("from"),
                             from_=element.get("to"), id_=element.get("id"))
        if self.condition:
            error = etree.SubElement(answer, ns.clark(ns.CLIENT, "error"), type="cancel")
            builders.child(error, ns.STANZAS_ERR, self.condition)
        await self.rooms.handle(Stanza(answer, JID.parse(element.get("to") or ""),
                                       JID.parse(element.get("from") or "")))

    def joins(self) -> list[etree._Element]:
        return [e for e in self.sent if e.tag == ns.clark(ns.CLIENT, "presence")
                and e.find(ns.clark(ns.MUC, "x")) is not None]


def rooms_with(room: Room) -> RoomFeeds:
    rooms = RoomFeeds(cast("FeedManager", None), MemoryRoomFeedStore(), room,
                      "pubsub.example.org")
    room.rooms = rooms
    return rooms


async def test_a_room_that_lost_us_is_joined_again() -> None:
    room = Room("not-acceptable")  # XEP-0410 §3.1: not an occupant (any more)
    rooms = rooms_with(room)
    occupant = rooms._occupant(ROOM, "https://e.org/feed", "News")
    await rooms._self_ping(occupant)
    ping, join = room.sent
    assert ping.get("to") == f"{ROOM}/News" and ping.get("from") == rooms.jid(occupant)
    assert room.joins() == [join] and join.get("to") == f"{ROOM}/News"


async def test_a_room_that_still_has_us_is_left_alone() -> None:
    for condition in ("", "service-unavailable", "feature-not-implemented"):
        room = Room(condition)  # XEP-0410 §3.1: these mean we are still in the room
        rooms = rooms_with(room)
        await rooms._self_ping(rooms._occupant(ROOM, None, "feeds"))
        assert len(room.sent) == 1 and room.joins() == [], condition


def test_feed_nick_is_the_title_or_the_host() -> None:
    assert feed_nick("  Planet   Jabber ", "https://planet.jabber.org/atom") == "Planet Jabber"
    assert feed_nick("", "https://planet.jabber.org/atom") == "planet.jabber.org"
    assert len(feed_nick("x" * 200, "https://e.org/")) == 40

"""Feeds posted into a group chat room: the owner invites the feed service, says
``feeds: subscribe <url>`` in the room, and every occupant reads the feed's entries as groupchat
from the feed's own occupant; filters apply, ``list`` and ``unsubscribe`` work, others are
refused, the room's feeds come back after a restart, and kicking a feed unsubscribes it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from slixmpp import JID

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import FEEDS_EXTRA, ThreadedFeedServer, rss  # noqa: E402
from harness import ServerProcess, connect, disconnect, round_trip, run  # noqa: E402
from muc_support import PLUGINS, Inbox, clients, configure  # noqa: E402

SERVICE = "pubsub.localhost"
ROOM = JID("lounge@conference.localhost")
FEED_NICK = "Room news"


def _said(stanza: Any, nick: str, text: str) -> bool:
    return (stanza.xml.tag == "{jabber:client}message" and stanza["type"] == "groupchat"
            and stanza["from"] == JID(f"{ROOM}/{nick}") and text in stanza["body"])


def _presence_of(stanza: Any, nick: str, type_: str = "available") -> bool:
    return (stanza.xml.tag == "{jabber:client}presence" and stanza["from"] == JID(f"{ROOM}/{nick}")
            and stanza["type"] == type_)


def _bodies_from(stanzas: list[Any], nick: str) -> list[str]:
    return [s["body"] for s in stanzas if s.xml.tag == "{jabber:client}message"
            and s["from"] == JID(f"{ROOM}/{nick}") and s["type"] == "groupchat"]


def test_room_owner_subscribes_a_room_and_occupants_read_entries(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        web.set("/room.xml", rss(FEED_NICK, ["r1"]), content_type="application/rss+xml")
        url = web.url("/room.xml")
        web.set("/other.xml", rss("Other", ["o1"]), content_type="application/rss+xml")
        server = ServerProcess(tmp_path, extra={"feeds": {**FEEDS_EXTRA,
                                                          "max_feeds_per_user": 1}})
        server.start()
        try:
            async def scenario() -> None:
                alice, bob, carol = await clients(server, "alice", "bob", "carol")
                muc_a, muc_b, muc_c = (c.plugin["xep_0045"] for c in (alice, bob, carol))
                inbox_a, inbox_b = Inbox(alice), Inbox(bob)
                await muc_a.join_muc_wait(ROOM, "alice", timeout=5)  # alice owns the room
                await configure(alice, ROOM, persistentroom=True)
                await muc_b.join_muc_wait(ROOM, "bob", timeout=5)
                await muc_c.join_muc_wait(ROOM, "carol", timeout=5)

                # A mediated invitation (XEP-0045 §7.8.2) brings the service in.
                muc_a.invite(ROOM, SERVICE)
                await inbox_a.next(lambda s: _presence_of(s, "feeds"))

                # Only owners and admins may change the room's feeds.
                carol.send_message(mto=ROOM, mbody=f"feeds: subscribe {url}", mtype="groupchat")
                refusal = await inbox_a.next(lambda s: _said(s, "feeds", "carol:"))
                assert "only the owners and admins" in refusal["body"]

                inbox_b.drain()
                alice.send_message(mto=ROOM, mbody=f"feeds: subscribe {url} not:skipme",
                                   mtype="groupchat")
                joined = await inbox_b.next(lambda s: _presence_of(s, FEED_NICK))
                assert joined["muc"]["affiliation"] == "none"
                answer = await inbox_a.next(lambda s: _said(s, "feeds", "alice:"))
                assert f"Now posting {FEED_NICK} ({url})" in answer["body"], answer["body"]

                # The per-user feed limit holds for a room as a whole.
                alice.send_message(mto=ROOM, mbody=f"feeds: subscribe {web.url('/other.xml')}",
                                   mtype="groupchat")
                answer = await inbox_a.next(lambda s: _said(s, "feeds", "alice:"))
                assert "already has 1 feeds" in answer["body"], answer["body"]

                # New entries reach every occupant as groupchat from the feed's nick, filtered
                # by the subscription's options like a personal subscription.
                web.set("/room.xml", rss(FEED_NICK, ["skipme", "r2", "r1"]),
                        content_type="application/rss+xml")
                await asyncio.to_thread(server.refresh_feed, url)
                entry = await inbox_b.next(lambda s: _said(s, FEED_NICK, "Entry r2"))
                assert "http://example.org/r2" in entry["body"]
                await round_trip(bob)
                assert not any("skipme" in b for b in _bodies_from(inbox_b.drain(), FEED_NICK))

                # After a restart the service is back in the room with its feed.
                for client in (alice, bob, carol):
                    await disconnect(client)
                await asyncio.to_thread(server.restart)
                alice, bob = [await connect(server, f"{name}@{server.domain}", plugins=PLUGINS)
                              for name in ("alice", "bob")]
                inbox_a, inbox_b = Inbox(alice), Inbox(bob)
                _, _, occupants, _ = await bob.plugin["xep_0045"].join_muc_wait(
                    ROOM, "bob", timeout=5, maxstanzas=0)
                assert {"feeds", FEED_NICK} <= {p["from"].resource for p in occupants}
                await alice.plugin["xep_0045"].join_muc_wait(ROOM, "alice", timeout=5,
                                                             maxstanzas=0)
                web.set("/room.xml", rss(FEED_NICK, ["r4", "skipme", "r2", "r1"]),
                        content_type="application/rss+xml")
                await asyncio.to_thread(server.refresh_feed, url)
                await inbox_b.next(lambda s: _said(s, FEED_NICK, "Entry r4"))

                # A private message to the "feeds" occupant works as well.
                alice.send_message(mto=JID(f"{ROOM}/feeds"), mbody="list", mtype="chat")
                listing = await inbox_a.next(lambda s: s["type"] == "chat"
                                             and s["from"] == JID(f"{ROOM}/feeds"))
                assert f"1. {FEED_NICK} — {url}" in listing["body"], listing["body"]

                alice.send_message(mto=ROOM, mbody="feeds: unsubscribe 1", mtype="groupchat")
                await inbox_b.next(lambda s: _presence_of(s, FEED_NICK, "unavailable"))
                answer = await inbox_a.next(lambda s: _said(s, "feeds", "alice:"))
                assert "no longer posted here" in answer["body"], answer["body"]
                web.set("/room.xml", rss(FEED_NICK, ["r3", "r4", "skipme", "r2", "r1"]),
                        content_type="application/rss+xml")
                await asyncio.to_thread(server.refresh_feed, url)
                await round_trip(bob)
                assert not any("r3" in b for b in _bodies_from(inbox_b.drain(), FEED_NICK))

                # Kicking a feed's occupant (XEP-0045 §8.2) unsubscribes the room from it.
                alice.send_message(mto=ROOM, mbody=f"feeds: subscribe {url}", mtype="groupchat")
                await inbox_b.next(lambda s: _presence_of(s, FEED_NICK))
                await alice.plugin["xep_0045"].set_role(ROOM, FEED_NICK, "none")
                notice = await inbox_a.next(lambda s: _said(s, "feeds", "was kicked"))
                assert url in notice["body"]
                alice.send_message(mto=ROOM, mbody="feeds: list", mtype="groupchat")
                listing = await inbox_a.next(lambda s: _said(s, "feeds", "alice:"))
                assert "No feeds are posted here" in listing["body"], listing["body"]
                for client in (alice, bob):
                    await disconnect(client)

            run(scenario())
        finally:
            server.kill()

"""A room that follows a feed with ``digest:`` reads the entries of each batch together, as
groupchat from the feed's occupant, once the digest is due (XEP-0060 §6.3.7 pubsub#digest),
and not before."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from slixmpp import JID

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import FEEDS_EXTRA, ThreadedFeedServer, form_xml, iq, rss  # noqa: E402
from harness import ServerProcess, connect, disconnect, run  # noqa: E402
from muc_support import Inbox, clients  # noqa: E402

SERVICE = "pubsub.localhost"
ROOM = JID("digested@conference.localhost")
FEED_NICK = "Digest news"
PUBSUB = "http://jabber.org/protocol/pubsub"
SUBSCRIBE_OPTIONS = "http://jabber.org/protocol/pubsub#subscribe_options"
FREQUENCY = 2.0  # seconds: the test's digest period (the room command takes minutes)
SLOW_FEEDS = {**FEEDS_EXTRA, "default_interval": 3600.0, "min_interval": 3600.0,
              "max_interval": 3600.0}  # only ``feeds refresh`` polls


def _said(stanza: Any, nick: str, text: str) -> bool:
    return (stanza.xml.tag == "{jabber:client}message" and stanza["type"] == "groupchat"
            and stanza["from"] == JID(f"{ROOM}/{nick}") and text in stanza["body"])


def _presence_of(stanza: Any, nick: str) -> bool:
    return (stanza.xml.tag == "{jabber:client}presence" and stanza["from"] == JID(f"{ROOM}/{nick}")
            and stanza["type"] == "available")


def test_a_room_digest_posts_each_batch_when_due(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        web.set("/digest.xml", rss(FEED_NICK, ["d1"]), content_type="application/rss+xml")
        url = web.url("/digest.xml")
        server = ServerProcess(tmp_path, extra={"feeds": SLOW_FEEDS})
        server.start()
        try:
            admin_jid = server.add_user("admin")

            async def scenario() -> None:
                alice, bob = await clients(server, "alice", "bob")
                inbox_a, inbox_b = Inbox(alice), Inbox(bob)
                await alice.plugin["xep_0045"].join_muc_wait(ROOM, "alice", timeout=5)
                await bob.plugin["xep_0045"].join_muc_wait(ROOM, "bob", timeout=5)
                alice.plugin["xep_0045"].invite(ROOM, SERVICE)
                await inbox_a.next(lambda s: _presence_of(s, "feeds"))

                alice.send_message(mto=ROOM, mbody=f"feeds: subscribe {url} digest:60",
                                   mtype="groupchat")
                answer = await inbox_a.next(lambda s: _said(s, "feeds", "alice:"))
                assert (f"Now posting {FEED_NICK} ({url}), as a digest every 60 minutes."
                        in answer["body"]), answer["body"]
                # The room's subscription is an ordinary one of the room's JID: a service
                # admin shortens its digest period (XEP-0060 §6.3.5) so the test need not
                # wait an hour.
                admin = await connect(server, admin_jid)
                options = form_xml("submit", {
                    "FORM_TYPE": [SUBSCRIBE_OPTIONS], "pubsub#digest": ["1"],
                    "pubsub#digest_frequency": [str(int(FREQUENCY * 1000))]})
                await iq(admin, SERVICE, "set",
                         f"<pubsub xmlns='{PUBSUB}'><options node='{url}' jid='{ROOM}'>"
                         f"{options}</options></pubsub>")
                await disconnect(admin)
                inbox_b.drain()

                # Two new entries in one poll open one batch.
                web.set("/digest.xml", rss(FEED_NICK, ["d3", "d2", "d1"]),
                        content_type="application/rss+xml")
                polled_at = time.monotonic()
                await asyncio.to_thread(server.refresh_feed, url)
                first = await inbox_b.next(lambda s: _said(s, FEED_NICK, "Entry"))
                # The batch opened after ``polled_at`` and is due FREQUENCY later, not before;
                # without the digest the entries would come as soon as they are published.
                waited = time.monotonic() - polled_at
                assert waited >= FREQUENCY, waited
                second = await inbox_b.next(lambda s: _said(s, FEED_NICK, "Entry"))
                # One message per entry, in the order they were published.
                assert "Entry d2" in first["body"] and "Entry d3" in second["body"], (
                    first["body"], second["body"])
                for client in (alice, bob):
                    await disconnect(client)

            run(scenario())
        finally:
            server.kill()

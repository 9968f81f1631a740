"""Feeds end to end: a real HTTP feed server, the real pubsubd, a slixmpp client.

A user subscribes by each of the three ways in (chat with the service, the ad-hoc Subscribe
command, a plain pubsub subscribe to the URL node), receives exactly the new entries as
notifications with the Atom payload and a body, and a kill -9 restart repeats nothing.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import (  # noqa: E402
    ATOM,
    COMMANDS,
    FEEDS_EXTRA,
    PUBSUB,
    Inbox,
    ThreadedFeedServer,
    chat,
    form_xml,
    iq,
    items_of,
    rss,
)
from harness import ServerProcess, connect, disconnect, round_trip, run  # noqa: E402

SERVICE = "pubsub.localhost"
FEED_STATUS = "urn:pubsubd:feed-status:0"
CONTACT_A = "feed-a@pubsub.localhost"
CONTACT_B = "feed-b@pubsub.localhost"


def _chat_entries(inbox: Inbox) -> list[tuple[str, str]]:
    """(sender, entry guid) of the entries received as chat messages from feed contacts."""
    found = []
    for message in inbox.messages:
        body = message.findtext("{jabber:client}body") or ""
        if message.get("type") == "chat" and body.startswith("*Entry "):
            found.append((message.get("from", "").split("/")[0],
                          body.splitlines()[0].removeprefix("*Entry ").rstrip("*")))
    return found


async def _stored_ids(client: Any, node: str) -> set[str]:
    answer = await iq(client, SERVICE, "get",
                      f"<pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub>")
    return {item.get("id", "") for item in items_of(answer)}


def test_three_ways_in_exactly_new_entries_and_no_duplicates_after_restart(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        for name in ("a", "b", "c"):
            web.set(f"/{name}.xml", rss(f"Feed {name}", [f"{name}1", f"{name}2"]),
                    content_type="application/rss+xml")
        # A web page advertising feed c: the ad-hoc command is given the page, not the feed.
        web.set("/page.html", f"<html><head><link rel='alternate' type='application/rss+xml' "
                              f"title='C' href='{web.url('/b.xml')}'></head></html>",
                content_type="text/html")
        url_a, url_b, url_c = (web.url(f"/{n}.xml") for n in "abc")
        server = ServerProcess(tmp_path, extra={"feeds": FEEDS_EXTRA})
        server.start()
        try:
            jid = server.add_user("alice")

            async def subscribe_three_ways() -> None:
                client = await connect(server, jid)
                inbox = Inbox(client)
                # (a) chat, with a keyword option
                reply = await chat(client, inbox, SERVICE, f"subscribe {url_a}")
                assert "Subscribed" in reply, reply
                # (b) ad-hoc command, given a web page: discovery picks its feed and says so
                first = await iq(client, SERVICE, "set",
                                 f"<command xmlns='{COMMANDS}' node='feeds/subscribe' "
                                 "action='execute'/>")
                command = first.find(f"{{{COMMANDS}}}command")
                assert command is not None and command.get("status") == "executing"
                done = await iq(client, SERVICE, "set",
                                f"<command xmlns='{COMMANDS}' node='feeds/subscribe' "
                                f"sessionid='{command.get('sessionid')}' action='complete'>"
                                + form_xml("submit", {"url": [web.url("/page.html")]})
                                + "</command>")
                notes = [n.text or "" for n in done.iter(f"{{{COMMANDS}}}note")]
                assert any(url_b in n and "web page" in n for n in notes), notes
                # (c) a plain XEP-0060 subscribe to the node named by the feed's URL
                options = form_xml("submit", {
                    "FORM_TYPE": ["http://jabber.org/protocol/pubsub#subscribe_options"],
                    "pubsub#include_body": ["1"],
                })
                await iq(client, SERVICE, "set",
                         f"<pubsub xmlns='{PUBSUB}'><subscribe node='{url_c}' jid='{jid}'/>"
                         f"<options>{options}</options></pubsub>")
                listing = await chat(client, inbox, SERVICE, "list")
                for url in (url_a, url_b, url_c):
                    assert url in listing, listing
                for url in (url_a, url_b, url_c):  # the first poll (history) is done
                    await asyncio.to_thread(server.refresh_feed, url)
                    assert len(await _stored_ids(client, url)) >= 2
                # Chat and ad-hoc subscribers get the latest entry at once, from the feed's
                # contact; the plain pubsub subscriber came before any entry, so nothing.
                await inbox.wait_for(lambda: len(_chat_entries(inbox)) >= 2)
                assert sorted(_chat_entries(inbox)) == [(CONTACT_A, "a1"), (CONTACT_B, "b1")]
                assert inbox.item_notifications() == [], "history must not be notified"
                # New entries appear: each arrives once — as plain chat from the feed's contact
                # for chat and ad-hoc subscribers, as a headline event with the Atom entry and
                # a body for the pubsub subscriber.
                for name in "abc":
                    web.set(f"/{name}.xml", rss(f"Feed {name}", [f"{name}3", f"{name}1",
                                                                  f"{name}2"]),
                            content_type="application/rss+xml")
                for url in (url_a, url_b, url_c):
                    await asyncio.to_thread(server.refresh_feed, url)
                await inbox.wait_for(lambda: len(inbox.item_notifications()) >= 1
                                     and len(_chat_entries(inbox)) >= 4)
                await round_trip(client)  # anything more would have come by now
                assert sorted(_chat_entries(inbox)) == [
                    (CONTACT_A, "a1"), (CONTACT_A, "a3"), (CONTACT_B, "b1"), (CONTACT_B, "b3")]
                got = inbox.item_notifications()
                assert [(node, message.get("type")) for node, _, message in got] == [
                    (url_c, "headline")], got
                for _node, _id, message in got:
                    assert message.find(f".//{{{ATOM}}}entry") is not None
                    body = message.findtext("{jabber:client}body") or ""
                    assert "Entry " in body and "3" in body, body
                    # The feed's health rides along when it changed (here: first news of it).
                    status = message.find(f"{{{FEED_STATUS}}}status")
                    assert status is not None, "the first notification carries the feed status"
                    assert status.find(f"{{{FEED_STATUS}}}http").get("code") == "200"
                await disconnect(client)

            run(subscribe_three_ways())
            server.restart(hard=True)

            async def after_restart() -> None:
                client = await connect(server, jid)
                inbox = Inbox(client)
                for url in (url_a, url_b, url_c):  # polls after the restart, published...
                    await asyncio.to_thread(server.refresh_feed, url)
                await round_trip(client)  # ... and delivered by now, were there anything
                assert inbox.item_notifications() == [], "a restart must repeat nothing"
                assert _chat_entries(inbox) == [], "a restart must repeat nothing"
                web.set("/a.xml", rss("Feed a", ["a4", "a3", "a1", "a2"]),
                        content_type="application/rss+xml")
                await asyncio.to_thread(server.refresh_feed, url_a)
                # The feed's contact kept its name across the restart.
                await inbox.wait_for(lambda: len(_chat_entries(inbox)) >= 1)
                await round_trip(client)
                assert _chat_entries(inbox) == [(CONTACT_A, "a4")]
                assert inbox.item_notifications() == []
                await disconnect(client)

            run(after_restart())
        finally:
            if server.alive():
                server.kill()

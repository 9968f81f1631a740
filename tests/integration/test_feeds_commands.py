"""Feed ad-hoc commands (My feeds, Unsubscribe, Import/Export OPML), polling stopping when the
last subscriber leaves, and the built-in sample feeds that ``make run`` serves."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import (  # noqa: E402
    COMMANDS,
    DATA,
    FEEDS_EXTRA,
    PUBSUB,
    Inbox,
    ThreadedFeedServer,
    chat,
    form_xml,
    iq,
    rss,
)
from harness import (  # noqa: E402
    ServerProcess,
    connect,
    disconnect,
    reserved_port,
    round_trip,
    run,
    until,
)

SERVICE = "pubsub.localhost"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
ONE = "one@pubsub.localhost"  # named after its OPML title
NOTES = "pubsubd-engineering-notes@pubsub.localhost"


async def _command(
    client: Any, node: str, fields: dict[str, list[str]] | None = None
) -> ET.Element:
    """Run an ad-hoc command: execute, then submit ``fields`` if it asks for a form."""
    answer = await iq(client, SERVICE, "set",
                      f"<command xmlns='{COMMANDS}' node='{node}' action='execute'/>")
    command = answer.find(f"{{{COMMANDS}}}command")
    assert command is not None
    if command.get("status") == "completed" or fields is None:
        return command
    done = await iq(client, SERVICE, "set",
                    f"<command xmlns='{COMMANDS}' node='{node}' action='complete' "
                    f"sessionid='{command.get('sessionid')}'>"
                    f"{form_xml('submit', fields)}</command>")
    result = done.find(f"{{{COMMANDS}}}command")
    assert result is not None and result.get("status") == "completed"
    return result


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - the test's own server
        return str(answer.read().decode())


def _options(command: ET.Element, var: str) -> list[str]:
    return [o.findtext(f"{{{DATA}}}value") or "" for f in command.iter(f"{{{DATA}}}field")
            if f.get("var") == var for o in f.findall(f"{{{DATA}}}option")]


def _entries(inbox: Inbox, contact: str) -> list[ET.Element]:
    """Entries received as chat messages from a feed's contact: those with an XEP-0359
    origin-id (the contact's other words carry none)."""
    return [m for m in inbox.messages if m.get("from", "").split("/")[0] == contact
            and m.get("type") == "chat" and m.find("{urn:xmpp:sid:0}origin-id") is not None]


def _link(entry: ET.Element) -> str:
    """The link of an entry: the first URL of its body (after the title, before the summary),
    which carries no XEP-0066 copy of it."""
    assert entry.find("{jabber:x:oob}x") is None
    found = re.search(r"https?://\S+", entry.findtext("{jabber:client}body") or "")
    return found.group(0) if found else ""


def _values(command: ET.Element, var: str) -> list[str]:
    return [v.text or "" for f in command.iter(f"{{{DATA}}}field") if f.get("var") == var
            for v in f.findall(f"{{{DATA}}}value")]


def test_commands_opml_and_last_subscriber_stops_polling(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        for name in ("one", "two"):
            web.set(f"/{name}.xml", rss(f"Feed {name}", [f"{name}1"]),
                    content_type="application/rss+xml")
        one, two = web.url("/one.xml"), web.url("/two.xml")
        opml = ("<opml version='2.0'><head><title>mine</title></head><body>"
                f"<outline text='News'><outline type='rss' text='One' xmlUrl='{one}'/>"
                f"<outline type='rss' text='Two' xmlUrl='{two}'/></outline></body></opml>")
        web.set("/three.xml", rss("Feed three", ["three1"]), content_type="application/rss+xml")
        three = web.url("/three.xml")
        catalogue = tmp_path / "catalogue.opml"
        catalogue.write_text("<opml version='2.0'><head/><body><outline text='Reading'>"
                             f"<outline type='rss' text='Three' xmlUrl='{three}'/>"
                             "</outline></body></opml>")
        feeds = {**FEEDS_EXTRA, "catalogue": str(catalogue)}
        server = ServerProcess(tmp_path, extra={"feeds": feeds})
        server.start()
        try:
            jid = server.add_user("dave")

            async def scenario() -> None:
                client = await connect(server, jid)
                inbox = Inbox(client)
                # The catalogue's folder became a collection node holding its feed's node.
                folder = await iq(client, SERVICE, "get",
                                  f"<query xmlns='{DISCO_ITEMS}' node='feeds/Reading'/>")
                assert [i.get("node") for i in folder.iter(f"{{{DISCO_ITEMS}}}item")] == [three]
                imported = await _command(client, "feeds/import-opml",
                                          {"opml": opml.replace("><", ">\n<").splitlines()})
                notes = [n.text for n in imported.iter(f"{{{COMMANDS}}}note")]
                assert notes[0] == "Subscribed to 2 feed(s).", notes
                mine = await _command(client, "feeds/list")
                assert sorted(_options(mine, "unfollow")) == sorted([one, two])
                exported = await _command(client, "feeds/export-opml")
                document = "\n".join(_values(exported, "opml"))
                assert one in document and two in document
                # Catch-up and a digest chosen in the Subscribe form become the options.
                await _command(client, "feeds/subscribe", {
                    "url": [one], "pubsubd#catch_up": ["1"], "pubsubd#message_type": ["chat"],
                })
                options = await iq(client, SERVICE, "get",
                                   f"<pubsub xmlns='{PUBSUB}'><options node='{one}' "
                                   f"jid='{jid}'/></pubsub>")
                assert _values(options, "pubsubd#catch_up") == ["1"]
                assert _values(options, "pubsubd#message_type") == ["chat"]
                await asyncio.to_thread(server.refresh_feed, one)  # one1 is history
                web.set("/one.xml", rss("Feed one", ["one2", "one1"]),
                        content_type="application/rss+xml")
                await asyncio.to_thread(server.refresh_feed, one)
                await inbox.wait_for(lambda: len(_entries(inbox, ONE)) == 1)
                assert inbox.item_notifications(one) == [], "chat: no pubsub event"
                # "pause" holds deliveries of every feed of the user until "resume".
                reply = await chat(client, inbox, SERVICE, "pause")
                assert reply.startswith("Deliveries paused for all 2 of your feeds"), reply
                assert f"(from {ONE}; paused)" in await chat(client, inbox, SERVICE, "list")
                web.set("/one.xml", rss("Feed one", ["one3", "one2", "one1"]),
                        content_type="application/rss+xml")
                await asyncio.to_thread(server.refresh_feed, one)  # one3 is published...
                await round_trip(client)  # ... and would have been delivered by now
                assert len(_entries(inbox, ONE)) == 1
                assert "resumed" in await chat(client, inbox, SERVICE, "resume 1")
                # "unsubscribe 2" in chat is the second feed of "list"; the last subscriber
                # leaving stops its polling, but not the other's.
                listing = await chat(client, inbox, SERVICE, "list")
                assert listing.index(one) < listing.index(two), listing
                assert "Unsubscribed" in await chat(client, inbox, SERVICE, "unsubscribe 2")
                # Polling stops over time, so time is the subject here: while the other
                # feed is polled twice more (at least one whole interval), it is not polled.
                hits_one = web.hits("/one.xml")
                await until(lambda: web.hits("/one.xml") >= hits_one + 1)
                hits_two, hits_one = web.hits("/two.xml"), web.hits("/one.xml")
                await until(lambda: web.hits("/one.xml") >= hits_one + 2)
                assert web.hits("/two.xml") == hits_two, "nobody follows it: not polled"
                answer = await iq(client, SERVICE, "get",
                                  f"<pubsub xmlns='{PUBSUB}'><items node='{two}'/></pubsub>")
                assert list(answer.iter(f"{{{PUBSUB}}}item")), "the node and its items stay"
                # A new subscriber wakes it up again.
                assert "Subscribed" in await chat(client, inbox, SERVICE, f"subscribe {two}")
                await until(lambda: web.hits("/two.xml") > hits_two)
                await disconnect(client)

            run(scenario())
            rows = json.loads(server.cli("feeds", "list", "--json").stdout)
            listed = {row["id"]: row for row in rows}
            assert listed[one]["state"] == "ok" and listed[two]["state"] == "ok"
            assert listed[three]["group"] == "Reading" and listed[three]["title"] == "Three"
        finally:
            server.kill()


def test_sample_feeds_deliver_without_internet(tmp_path: Path) -> None:
    feeds = {**FEEDS_EXTRA, "serve_samples": True, "samples_port": reserved_port(),
             "samples_new_entry_every": 1.0, "first_poll": "none"}
    feeds.pop("allow_hosts")  # the sample server is opened on its own, nothing else
    server = ServerProcess(tmp_path, extra={"feeds": feeds})
    server.start()
    try:
        jid = server.add_user("erin")
        base = f"http://127.0.0.1:{feeds['samples_port']}/"
        url = base + "pubsubd-notes.xml"

        async def scenario() -> None:
            client = await connect(server, jid)
            inbox = Inbox(client)
            reply = await chat(client, inbox, SERVICE, f"subscribe {url}")
            assert "Subscribed" in reply and "pubsubd engineering notes" in reply, reply
            # The latest entry at once, then generated ones, from the feed's contact; their
            # links lead to pages of the sample server.
            await inbox.wait_for(lambda: any(
                "Sample entry" in (m.findtext("{jabber:client}body") or "")
                for m in _entries(inbox, NOTES)))
            links = [_link(m) for m in _entries(inbox, NOTES)]
            assert all(link.startswith(base) for link in links), links
            for link in (links[0], links[-1]):
                page = await asyncio.to_thread(_get, link)
                assert "<h1>" in page, page
            await disconnect(client)

        run(scenario())
    finally:
        server.kill()

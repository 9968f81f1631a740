"""Feed safety and health, end to end: private addresses refused by default, a malformed feed
isolated with its error in the node metadata, a dead feed announced once, and the
``pubsubd feeds`` command line working through the control socket."""

from __future__ import annotations

import asyncio
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import (  # noqa: E402
    FEEDS_EXTRA,
    PUBSUB,
    Inbox,
    ThreadedFeedServer,
    chat,
    iq,
    rss,
)
from harness import ServerProcess, connect, disconnect, round_trip, run, until  # noqa: E402

SERVICE = "pubsub.localhost"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
STATUS_NS = "urn:pubsubd:feed-status:0"


def _metadata(answer: Any) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for field in answer.iter("{jabber:x:data}field"):
        fields[field.get("var", "")] = [v.text or "" for v in field.iter("{jabber:x:data}value")]
    return fields


def test_private_address_refused_by_default(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        web.set("/feed.xml", rss("Local", ["x1"]), content_type="application/rss+xml")
        url = web.url("/feed.xml")
        server = ServerProcess(tmp_path)  # no feeds.allow_hosts: loopback is not public
        server.start()
        try:
            jid = server.add_user("mallory")

            async def scenario() -> None:
                from slixmpp.exceptions import IqError

                client = await connect(server, jid)
                inbox = Inbox(client)
                reply = await chat(client, inbox, SERVICE, f"subscribe {url}")
                assert "private or local address" in reply, reply
                with pytest.raises(IqError) as refused:
                    await iq(client, SERVICE, "set",
                             f"<pubsub xmlns='{PUBSUB}'><subscribe node='{url}' jid='{jid}'/>"
                             "</pubsub>")
                assert refused.value.condition == "not-allowed"
                assert "no feeds yet" in await chat(client, inbox, SERVICE, "list")
                await disconnect(client)

            run(scenario())
            assert web.hits("/feed.xml") == 0, "nothing may reach a refused address"
        finally:
            server.kill()


GOOD = "good-news@pubsub.localhost"
BAD = "bad@pubsub.localhost"


def _guids(inbox: Inbox, contact: str) -> list[str]:
    """Guids of the entries received as chat from a feed's contact, in order."""
    return [(m.findtext("{jabber:client}body") or "").splitlines()[0].strip("*")
            .removeprefix("Entry ")
            for m in inbox.messages if m.get("from", "").split("/")[0] == contact
            and (m.findtext("{jabber:client}body") or "").startswith("*Entry ")]


def test_malformed_feed_isolated_gone_feed_told_once_and_cli(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        for name in ("good", "bad", "dying"):
            web.set(f"/{name}.xml", rss(name, [f"{name}1"]), content_type="application/rss+xml")
        good, bad, dying = (web.url(f"/{n}.xml") for n in ("good", "bad", "dying"))
        server = ServerProcess(tmp_path, extra={"feeds": FEEDS_EXTRA})
        server.start()
        try:
            jid = server.add_user("carol")
            added = server.cli("feeds", "add", good, "--title", "Good news", "--json")
            assert json.loads(added.stdout)["id"] == good

            async def scenario() -> None:
                client = await connect(server, jid)
                inbox = Inbox(client)
                for url in (good, bad, dying):
                    assert "Subscribed" in await chat(client, inbox, SERVICE, f"subscribe {url}")
                for url in (good, bad, dying):  # first polls: history only
                    await asyncio.to_thread(server.refresh_feed, url)
                web.set("/bad.xml", "Service temporarily replaced by this sentence.",
                        content_type="application/rss+xml")
                web.set("/dying.xml", "gone\n", status=410, content_type="text/plain")
                web.set("/good.xml", rss("good", ["good2", "good1"]),
                        content_type="application/rss+xml")
                for url in (good, bad, dying):
                    await asyncio.to_thread(server.refresh_feed, url)
                # Chat subscribers: the latest entry at once, then the new one, from the
                # feed's contact.
                await inbox.wait_for(lambda: _guids(inbox, GOOD) == ["good1", "good2"])
                await inbox.wait_for(lambda: any(
                    m.findtext("{jabber:client}subject", "").startswith("Feed gone")
                    for m in inbox.messages))
                # Time is the subject: while the bad feed is polled twice more (a whole
                # interval), the gone one is not, so it is not announced again.
                hits_bad = web.hits("/bad.xml")
                await until(lambda: web.hits("/bad.xml") >= hits_bad + 2)
                await round_trip(client)
                told = [m for m in inbox.messages
                        if m.findtext("{jabber:client}subject", "").startswith("Feed gone")]
                assert len(told) == 1, "a dead feed is announced once"
                # ... in the feed's own conversation, for a follower by chat.
                assert told[0].get("from") == "dying@pubsub.localhost"
                assert told[0].get("type") == "chat"
                status = told[0].find(f"{{{STATUS_NS}}}status")
                assert status is not None and status.get("feed") == dying
                assert status.find(f"{{{STATUS_NS}}}http").get("code") == "410"
                info = await iq(client, SERVICE, "get",
                                f"<query xmlns='{DISCO_INFO}' node='{bad}'/>")
                meta = _metadata(info)
                assert meta["pubsubd#last_error"] and "not-a-feed" in meta["pubsubd#last_error"][0]
                assert meta["pubsubd#http_status"] == ["200"]
                assert meta["pubsubd#feed_url"] == [bad]
                assert int(meta["pubsubd#error_streak"][0]) >= 1
                good_meta = _metadata(await iq(client, SERVICE, "get",
                                               f"<query xmlns='{DISCO_INFO}' node='{good}'/>"))
                assert good_meta["pubsubd#last_error"] == []
                assert good_meta["pubsub#title"] == ["Good news"]
                # Options from chat reach the subscription: only entries about "kittens".
                reply = await chat(client, inbox, SERVICE, f"subscribe {good} only:kittens")
                assert "options updated" in reply, reply
                web.set("/good.xml", rss("good", ["good3", "good2", "good1"]),
                        content_type="application/rss+xml")
                await asyncio.to_thread(server.refresh_feed, good)  # good3 is published
                await round_trip(client)  # and would have been delivered by now
                # good1 came on subscribing, good2 as new; good3 does not mention kittens.
                assert _guids(inbox, GOOD) == ["good1", "good2"]
                assert inbox.item_notifications() == [], "chat deliveries carry no event"
                # A failing feed's contact is away with the error; a healthy one available.
                second = await connect(server, jid + "/second", presence=False)
                seen: dict[str, ET.Element] = {}
                arrived = asyncio.Event()

                def on_presence(stanza: Any) -> None:
                    seen[stanza["from"].bare] = stanza.xml
                    arrived.set()

                second.add_event_handler("presence", on_presence)
                second.send_presence()  # initial presence: the contacts are probed
                async with asyncio.timeout(15):
                    while BAD not in seen or GOOD not in seen:
                        arrived.clear()
                        await arrived.wait()
                bad_presence, good_presence = seen[BAD], seen[GOOD]
                assert bad_presence.findtext("{jabber:client}show") in ("away", "xa")
                assert "not-a-feed" in (bad_presence.findtext("{jabber:client}status") or "")
                assert good_presence.findtext("{jabber:client}show") is None
                assert "checked" in (good_presence.findtext("{jabber:client}status") or "")
                await disconnect(client, second)

            run(scenario())
            listed = json.loads(server.cli("feeds", "list", "--json").stdout)
            by_id = {row["id"]: row for row in listed}
            assert by_id[bad]["error_streak"] >= 1 and by_id[good]["error_streak"] == 0
            assert by_id[dying]["state"] == "gone"
            refreshed = json.loads(server.cli("feeds", "refresh", bad, "--json").stdout)
            assert refreshed["ok"] is False and "not-a-feed" in refreshed["error"]
            exported = server.cli("feeds", "export").stdout
            assert good in exported and "<opml" in exported
            missing = server.cli("feeds", "refresh", web.url("/nope.xml"), check=False)
            assert missing.returncode != 0
        finally:
            server.kill()


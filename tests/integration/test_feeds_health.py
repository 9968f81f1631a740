"""Feed safety and health, end to end: private addresses refused by default, a malformed feed
isolated with its error in the node metadata, a dead feed announced once, and the
``pubsubd feeds`` command line working through the control socket."""

from __future__ import annotations

import json
import sys
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
                import asyncio

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
                await inbox.wait_for(lambda: [i for _, i, _ in inbox.item_notifications()]
                                     == ["good1", "good2"])
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
                # good1 came on subscribing (the feed was polled before: XEP-0060 §6.1.7
                # on_sub), good2 as new; good3 does not mention kittens.
                assert [i for _, i, _ in inbox.item_notifications()] == ["good1", "good2"]
                await disconnect(client)

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


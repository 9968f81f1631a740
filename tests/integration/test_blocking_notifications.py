"""XEP-0191 on the paths that skip the router's filters: a user who blocks ``pubsub.<domain>``,
a PEP contact or a feed contact receives none of its notifications, and gets them again once
unblocked (§3.3: stanzas from a blocked JID are not delivered)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import FEEDS_EXTRA, ThreadedFeedServer, chat, rss  # noqa: E402
from feeds_support import Inbox as FeedInbox  # noqa: E402
from harness import ServerProcess, connect, disconnect, round_trip, run  # noqa: E402

from .pubsub_helpers import (  # noqa: E402
    PUBSUB,
    PUBSUB_PLUGINS,
    item_ids,
    message_queue,
    next_event,
    no_event,
    raw_iq,
)
from .test_pubsub_pep import PLUGINS as PEP_PLUGINS  # noqa: E402
from .test_pubsub_pep import befriend, interested, nick_xml  # noqa: E402

BLOCKING = "urn:xmpp:blocking"


async def block(client: Any, jid: str) -> None:
    await raw_iq(client, "", "set", f"<block xmlns='{BLOCKING}'><item jid='{jid}'/></block>")


async def unblock(client: Any, jid: str) -> None:
    await raw_iq(client, "", "set", f"<unblock xmlns='{BLOCKING}'><item jid='{jid}'/></unblock>")


def publish_xml(node: str, item_id: str) -> str:
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item_id}'>"
            f"<entry xmlns='http://www.w3.org/2005/Atom'><title>{item_id}</title></entry>"
            "</item></publish></pubsub>")


def test_blocking_the_pubsub_service_stops_its_notifications(server: ServerProcess) -> None:
    owner, reader = server.add_user("blk_owner"), server.add_user("blk_reader")
    service = f"pubsub.{server.domain}"

    async def scenario() -> None:
        publisher = await connect(server, owner, plugins=PUBSUB_PLUGINS)
        subscriber = await connect(server, reader, plugins=PUBSUB_PLUGINS)
        await raw_iq(publisher, service, "set",
                     f"<pubsub xmlns='{PUBSUB}'><create node='blk-news'/></pubsub>")
        await raw_iq(subscriber, service, "set",
                     f"<pubsub xmlns='{PUBSUB}'><subscribe node='blk-news' jid='{reader}'/>"
                     "</pubsub>")
        events = message_queue(subscriber)
        await raw_iq(publisher, service, "set", publish_xml("blk-news", "before"))
        assert item_ids(await next_event(events)) == ["before"]

        await block(subscriber, service)
        await raw_iq(publisher, service, "set", publish_xml("blk-news", "while-blocked"))
        await round_trip(publisher)  # its notifications are queued by now
        await no_event(events, subscriber)

        await unblock(subscriber, service)
        await raw_iq(publisher, service, "set", publish_xml("blk-news", "after"))
        assert item_ids(await next_event(events)) == ["after"]
        await disconnect(publisher, subscriber)

    run(scenario())


def test_blocking_a_contact_stops_its_pep_notifications(server: ServerProcess) -> None:
    alice, bob = server.add_user("pepblk_alice"), server.add_user("pepblk_bob")

    async def scenario() -> None:
        pa = await connect(server, alice, plugins=PEP_PLUGINS)
        pb = await connect(server, bob, plugins=PEP_PLUGINS)
        await befriend(pa, pb)
        await interested(pb)
        events = message_queue(pb)
        await raw_iq(pa, "", "set", nick_xml("one", "Alice"))
        assert item_ids(await next_event(events)) == ["one"]

        await block(pb, alice)
        await raw_iq(pa, "", "set", nick_xml("two", "Alice B."))
        await round_trip(pa)  # the publish is answered first, then notified: both done now
        await no_event(events, pb)

        await unblock(pb, alice)
        await raw_iq(pa, "", "set", nick_xml("three", "Alice C."))
        # The node keeps one item: "two" is retracted, then "three" arrives.
        while not (ids := item_ids(await next_event(events))):
            pass
        assert ids == ["three"]
        await disconnect(pa, pb)

    run(scenario())


SLOW_FEEDS = {**FEEDS_EXTRA, "default_interval": 3600.0, "min_interval": 3600.0,
              "max_interval": 3600.0}  # only ``feeds refresh`` polls
RSS = "application/rss+xml"


def test_blocking_a_feed_contact_stops_its_entries(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        web.set("/news.xml", rss("Daily News", ["n1"]), content_type=RSS)
        news = web.url("/news.xml")
        server = ServerProcess(tmp_path, extra={"feeds": SLOW_FEEDS})
        server.start()
        try:
            alice = server.add_user("alice")
            contact = "daily-news@pubsub.localhost"

            def entries(inbox: FeedInbox) -> list[str]:
                return [b.splitlines()[0] for b in inbox.bodies(contact) if "Entry " in b]

            async def poll(guids: list[str]) -> None:
                web.set("/news.xml", rss("Daily News", guids), content_type=RSS)
                # Returns once the poll, and the delivery of what it found, is done.
                await asyncio.to_thread(server.cli, "feeds", "refresh", news, "--json",
                                        check=False)

            async def scenario() -> None:
                client = await connect(server, alice + "/desk")
                inbox = FeedInbox(client)
                assert "Subscribed" in await chat(client, inbox, "feeds@pubsub.localhost",
                                                  f"subscribe {news}")
                await poll(["n2", "n1"])
                await inbox.wait_for(lambda: "*Entry n2*" in entries(inbox))

                await block(client, contact)
                await poll(["n3", "n2", "n1"])
                await round_trip(client)
                assert "*Entry n3*" not in entries(inbox), entries(inbox)

                await unblock(client, contact)
                await poll(["n4", "n3", "n2", "n1"])
                await inbox.wait_for(lambda: "*Entry n4*" in entries(inbox))
                assert "*Entry n3*" not in entries(inbox), entries(inbox)
                await disconnect(client)

            run(scenario())
        finally:
            if server.alive():
                server.kill()

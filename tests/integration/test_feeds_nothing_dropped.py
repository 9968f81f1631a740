"""Feeds end to end, nothing dropped: an entry larger than the payload limit reaches the
subscriber shortened (never skipped) and is counted; a feed is fetched once, not twice, when it
is subscribed to; the status element in a notification is the state the poll committed."""

from __future__ import annotations

import asyncio
import http.client
import sys
import xml.etree.ElementTree as ET
from email.utils import formatdate
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import ATOM, FEEDS_EXTRA, PUBSUB, Inbox, ThreadedFeedServer, iq  # noqa: E402
from harness import ServerProcess, connect, disconnect, run  # noqa: E402

SERVICE = "pubsub.localhost"
FEED_STATUS = "urn:pubsubd:feed-status:0"
LIMIT = 8192


def document(guids: list[str], big: str | None = None) -> str:
    items = []
    for i, guid in enumerate(guids):
        text = (" ".join(f"word{n}" for n in range(20_000)) if guid == big
                else f"About {guid}.")
        items.append(
            f"<item><title>Entry {guid}</title><link>http://example.org/{guid}</link>"
            f"<guid isPermaLink='false'>{guid}</guid>"
            f"<pubDate>{formatdate(1_700_000_000 - 60 * i, usegmt=True)}</pubDate>"
            f"<description>Summary of {guid}.</description>"
            f"<content:encoded><![CDATA[<p>{text}</p>]]></content:encoded></item>")
    return ("<?xml version='1.0'?><rss version='2.0' "
            "xmlns:content='http://purl.org/rss/1.0/modules/content/'><channel><title>Big</title>"
            f"<link>http://example.org/</link><description>d</description>{''.join(items)}"
            "</channel></rss>")


def metric(server: ServerProcess, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["metrics"], timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_large_entry_arrives_shortened_feed_fetched_once_status_after_poll(
    tmp_path: Path,
) -> None:
    with ThreadedFeedServer() as web:
        url = web.url("/big.xml")
        web.set("/big.xml", document(["a"]), content_type="application/rss+xml")
        # Polled on demand only; a period long enough that the next fetch is seconds ahead.
        feeds = {**FEEDS_EXTRA, "default_interval": 60.0, "min_interval": 60.0,
                 "max_interval": 60.0}
        server = ServerProcess(tmp_path, extra={"feeds": feeds,
                                                "pubsub": {"max_payload_bytes": LIMIT}})
        server.config["listeners"].append(
            {"kind": "metrics", "address": "127.0.0.1", "port": server.metrics_port})
        server.config_path.write_text(yaml.safe_dump(server.config))
        server.start()
        try:
            jid = server.add_user("alice")

            async def scenario() -> None:
                client = await connect(server, jid)
                inbox = Inbox(client)
                await iq(client, SERVICE, "set",
                         f"<pubsub xmlns='{PUBSUB}'><subscribe node='{url}' jid='{jid}'/>"
                         "</pubsub>")
                await asyncio.to_thread(server.refresh_feed, url)
                # Checking the address fetched the document; the first poll reused it, and
                # every later poll is conditional.
                plain = [r for r in web.server.requests if r.path == "/big.xml"
                         and "if-none-match" not in r.headers
                         and "if-modified-since" not in r.headers]
                assert len(plain) == 1, [r.headers for r in web.server.requests]

                web.set("/big.xml", document(["big", "a"], big="big"),
                        content_type="application/rss+xml")
                await asyncio.to_thread(server.refresh_feed, url)
                await inbox.wait_for(lambda: any(
                    i == "big" for _, i, _ in inbox.item_notifications(url)))
                [(_, _, message)] = [n for n in inbox.item_notifications(url) if n[1] == "big"]
                entry = message.find(f".//{{{ATOM}}}entry")
                assert entry is not None
                assert len(ET.tostring(entry)) <= LIMIT
                assert entry.findtext(f"{{{ATOM}}}title") == "Entry big"
                assert entry.findtext(f"{{{ATOM}}}summary") == "Summary of big."
                assert entry.findtext(f"{{{ATOM}}}published")
                assert entry.find(f"{{{ATOM}}}link").get("href") == "http://example.org/big"
                content = entry.findtext(f"{{{ATOM}}}content") or ""
                assert "word19999" not in content and "http://example.org/big" in content

                status = message.find(f"{{{FEED_STATUS}}}status")
                assert status is not None, ET.tostring(message)
                last = status.findtext(f"{{{FEED_STATUS}}}last_fetch") or ""
                following = status.findtext(f"{{{FEED_STATUS}}}next_fetch") or ""
                assert last and following and following > last
                assert status.findtext(f"{{{FEED_STATUS}}}entries") == "2"

                answer = await iq(client, SERVICE, "get",
                                  f"<pubsub xmlns='{PUBSUB}'><items node='{url}'/></pubsub>")
                assert {i.get("id") for i in answer.iter(f"{{{PUBSUB}}}item")} == {"a", "big"}
                assert metric(server, "pubsubd_feed_entries_shortened_total") == 1.0
                await disconnect(client)

            run(scenario())
        finally:
            server.stop()

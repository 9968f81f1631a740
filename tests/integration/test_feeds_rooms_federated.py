"""Feeds posted into a room on another server: the owner of a room at a.localhost invites the
feed service of b.localhost, which joins over federation like any remote occupant and posts the
feed's entries there."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import yaml
from slixmpp import JID

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import FEEDS_EXTRA, ThreadedFeedServer, rss  # noqa: E402
from harness import disconnect, reserved_port, run  # noqa: E402
from muc_support import Inbox, clients  # noqa: E402

from .s2s_support import federated_server  # noqa: E402

ROOM = JID("hall@conference.a.localhost")
SERVICE_AT_B = "pubsub.b.localhost"


def _said(stanza: Any, nick: str, text: str) -> bool:
    return (stanza.xml.tag == "{jabber:client}message" and stanza["type"] == "groupchat"
            and stanza["from"] == JID(f"{ROOM}/{nick}") and text in stanza["body"])


def test_a_remote_room_gets_a_feed_over_federation(tmp_path: Path) -> None:
    port_a, port_b = reserved_port(), reserved_port()
    to_a, to_b = f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"
    a = federated_server(tmp_path / "a", "a.localhost", port_a,
                         {"b.localhost": to_b, "pubsub.b.localhost": to_b})
    b = federated_server(tmp_path / "b", "b.localhost", port_b,
                         {"a.localhost": to_a, "conference.a.localhost": to_a})
    with ThreadedFeedServer() as web:
        web.set("/far.xml", rss("Far News", ["f1"]), content_type="application/rss+xml")
        url = web.url("/far.xml")
        b.config["feeds"] = FEEDS_EXTRA
        b.config_path.write_text(yaml.safe_dump(b.config))
        a.start()
        b.start()
        try:
            async def scenario() -> None:
                alice, bob = await clients(a, "alice", "bob")
                inbox_a, inbox_b = Inbox(alice), Inbox(bob)
                await alice.plugin["xep_0045"].join_muc_wait(ROOM, "alice", timeout=5)
                await bob.plugin["xep_0045"].join_muc_wait(ROOM, "bob", timeout=5)
                alice.plugin["xep_0045"].invite(ROOM, SERVICE_AT_B)
                await inbox_a.next(lambda s: s["from"] == JID(f"{ROOM}/feeds")
                                   and s.xml.tag == "{jabber:client}presence")
                alice.send_message(mto=ROOM, mbody=f"feeds: subscribe {url}", mtype="groupchat")
                answer = await inbox_a.next(lambda s: _said(s, "feeds", "alice:"))
                assert "Now posting Far News" in answer["body"], answer["body"]
                web.set("/far.xml", rss("Far News", ["f2", "f1"]),
                        content_type="application/rss+xml")
                await asyncio.to_thread(b.refresh_feed, url)
                entry = await inbox_b.next(lambda s: _said(s, "Far News", "Entry f2"))
                assert "http://example.org/f2" in entry["body"]
                for client in (alice, bob):
                    await disconnect(client)

            run(scenario())
        finally:
            for proc in (a, b):
                if proc.alive():
                    proc.kill()

"""``pubsubd component`` plugged into Debian's Prosody and ejabberd: a user of each follows a
local feed by chatting with ``feeds@pubsub.<their domain>``, receives entries while available,
finds the entry published while away on the next login exactly once (the host's offline storage
for chat entries, the component's catch-up for headlines), and lists the feeds by chat."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import connect, disconnect, round_trip, run
from peers import require_peer

from .component_hosts import SECRET, EjabberdHost, HostServer, ProsodyHost
from .feeds_support import FEEDS_EXTRA, ThreadedFeedServer, rss
from .s2s_support import Inbox, stanza
from .test_components_mode import ComponentProcess

C = "{jabber:client}"


class HostEndpoint:
    """What :func:`harness.connect` needs of a server: where its c2s port is."""

    def __init__(self, host: HostServer) -> None:
        self.c2s_port = host.c2s_port


@pytest.fixture(params=["prosody", "ejabberd"])
def hosted(request: pytest.FixtureRequest,
           tmp_path: Path) -> Iterator[tuple[HostServer, ComponentProcess]]:
    host: HostServer
    if request.param == "prosody":
        require_peer("prosody")
        host = ProsodyHost(tmp_path / "prosody")
    else:
        require_peer("erl", "ejabberdctl")  # ejabberdctl: the sign that ejabberd is installed
        host = EjabberdHost(tmp_path / "ejabberd")
    host.start()
    (tmp_path / "component").mkdir()
    component = ComponentProcess(tmp_path / "component", extra={
        "listeners": [],
        "component_of": {"host": "127.0.0.1", "port": host.component_port,
                         "domain": host.component_domain, "secret": SECRET},
        "feeds": FEEDS_EXTRA,
    })
    try:
        component.start()
        yield host, component
    finally:
        if component.alive():
            component.kill()
        host.stop()


def test_a_user_of_the_host_follows_a_feed(hosted: tuple[Any, ComponentProcess]) -> None:
    host, component = hosted
    commands, news = f"feeds@{host.component_domain}", f"host-news@{host.component_domain}"
    reader_jid = host.add_user("reader")

    def entry(guid: str) -> Any:
        def match(el: ET.Element) -> bool:
            return (stanza("message", "chat", news)(el)
                    and (el.findtext(f"{C}body") or "").startswith(f"*Entry {guid}*"))
        return match

    with ThreadedFeedServer() as web:
        url = web.url("/host.xml")
        web.set("/host.xml", rss("Host News", ["h1"]), content_type="application/rss+xml")

        async def scenario() -> None:
            reader = await connect(HostEndpoint(host), reader_jid)  # type: ignore[arg-type]
            inbox = Inbox(reader)
            reader.send_message(mto=commands, mbody=f"subscribe {url}", mtype="chat")
            reply = await inbox.wait(stanza("message", "chat", commands))
            assert "Subscribed" in (reply.findtext(f"{C}body") or "")
            await inbox.wait(stanza("presence", "subscribe", news))
            await inbox.wait(entry("h1"))
            reader.send_presence(pto=news, ptype="subscribed")
            await asyncio.to_thread(component.wait_for_log,
                                    f" available: {reader.boundjid.full}")
            await disconnect(reader)
            await asyncio.to_thread(component.wait_for_log,
                                    f"unavailable: {reader.boundjid.full}")
            web.set("/host.xml", rss("Host News", ["h2", "h1"]),
                    content_type="application/rss+xml")
            await asyncio.to_thread(component.refresh_feed, url)
            # h2 is the first entry published after the history (by this refresh or a poll)
            await asyncio.to_thread(component.wait_for_log, "entries published and notified")
            reader = await connect(HostEndpoint(host), reader_jid,  # type: ignore[arg-type]
                                   presence=False)
            inbox = Inbox(reader)
            # The host stores h2 offline while handling the component's stream, in order: a
            # ping answered by the component comes back after that store finished. Without
            # it, a login within the store's write time finds nothing yet (ejabberd's Mnesia
            # write took 130 ms under load) and h2 waits for the login after.
            await round_trip(reader, host.component_domain)
            reader.send_presence()
            await inbox.wait(entry("h2"))
            reader.send_message(mto=commands, mbody="list", mtype="chat")
            listing = await inbox.wait(stanza("message", "chat", commands))
            assert "Host News" in (listing.findtext(f"{C}body") or "")
            # Caught up exactly once: the host's offline copy, not also a replay by the
            # component on the returning presence, and nothing read before comes again.
            await inbox.absent(lambda el: entry("h2")(el) or entry("h1")(el),
                               via=host.component_domain)
            await disconnect(reader)

        run(scenario())


def test_a_headline_follower_is_caught_up_by_the_component(
        hosted: tuple[Any, ComponentProcess]) -> None:
    """Headlines are not stored offline (RFC 6121 §8.5.2.1.1), so with ``catchup`` the
    component itself holds what appeared while the user was away and sends it when the host
    forwards the user's returning presence: once, to the resource that came back."""
    host, component = hosted
    commands, news = f"feeds@{host.component_domain}", f"host-news@{host.component_domain}"
    reader_jid = host.add_user("reader")

    def headline(guid: str) -> Any:
        def match(el: ET.Element) -> bool:
            return (el.tag == f"{C}message" and el.get("type") == "headline"
                    and f"Entry {guid}".encode() in ET.tostring(el))
        return match

    with ThreadedFeedServer() as web:
        url = web.url("/away.xml")
        web.set("/away.xml", rss("Host News", ["a1"]), content_type="application/rss+xml")

        async def scenario() -> None:
            reader = await connect(HostEndpoint(host), reader_jid)  # type: ignore[arg-type]
            inbox = Inbox(reader)
            reader.send_message(mto=commands, mbody=f"subscribe {url} type:headline catchup",
                                mtype="chat")
            reply = await inbox.wait(stanza("message", "chat", commands))
            assert "Subscribed" in (reply.findtext(f"{C}body") or ""), ET.tostring(reply)
            await inbox.wait(stanza("presence", "subscribe", news))
            reader.send_presence(pto=news, ptype="subscribed")
            await asyncio.to_thread(component.wait_for_log,
                                    f" available: {reader.boundjid.full}")
            await disconnect(reader)
            await asyncio.to_thread(component.wait_for_log,
                                    f"unavailable: {reader.boundjid.full}")
            web.set("/away.xml", rss("Host News", ["a2", "a1"]),
                    content_type="application/rss+xml")
            await asyncio.to_thread(component.refresh_feed, url)
            await asyncio.to_thread(component.wait_for_log, "entries published and notified")
            reader = await connect(HostEndpoint(host), reader_jid,  # type: ignore[arg-type]
                                   presence=False)
            inbox = Inbox(reader)  # listening before the presence that releases the catch-up
            reader.send_presence()
            caught_up = await inbox.wait(headline("a2"))
            assert caught_up.get("to") == reader.boundjid.full
            await inbox.absent(lambda el: headline("a2")(el) or headline("a1")(el),
                               via=host.component_domain)
            await disconnect(reader)

        run(scenario())

"""``pubsubd component``: pubsub and the feed service as an external component (XEP-0114) of
another server. The host here is pubsubd itself (its component listener); the interop tests
with Prosody and ejabberd run the same scenario against those servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ServerProcess, connect, disconnect, run

from .feeds_support import FEEDS_EXTRA, ThreadedFeedServer, rss
from .s2s_support import Inbox, stanza

C = "{jabber:client}"
SECRET = "feeds-component-secret"
COMMANDS = "feeds@pubsub.localhost"
NEWS = "near-news@pubsub.localhost"


class ComponentProcess(ServerProcess):
    """``pubsubd component`` with the harness's config handling; started once its link to the
    host is up (the log line is the event)."""

    def start(self, timeout: float = 15.0) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pubsubd", "component", "--config", str(self.config_path)],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
        domain = self.config["component_of"]["domain"]
        self.wait_for_log(f"as component {domain}", timeout=timeout)


@pytest.fixture
def host_and_component(tmp_path: Path) -> Iterator[tuple[ServerProcess, ComponentProcess]]:
    (tmp_path / "host").mkdir()
    host = ServerProcess(tmp_path / "host", extra={
        "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": 0},
                      {"kind": "c2s_tls", "address": "127.0.0.1", "port": 0},
                      {"kind": "component", "address": "127.0.0.1", "port": 0}],
        "components": {"pubsub.localhost": {"secret": SECRET}},
        "pubsub": {"enabled": False},
        "feeds": {"enabled": False},
    })
    host.start()
    (tmp_path / "component").mkdir()
    component = ComponentProcess(tmp_path / "component", extra={
        "listeners": [],
        "component_of": {"host": "127.0.0.1", "port": host.port("component"),
                         "domain": "pubsub.localhost", "secret": SECRET},
        "feeds": FEEDS_EXTRA,
    })
    try:
        component.start()
        yield host, component
    finally:
        for proc in (component, host):
            if proc.alive():
                proc.kill()


def entry(guid: str) -> Any:
    def match(el: ET.Element) -> bool:
        return (stanza("message", "chat", NEWS)(el)
                and (el.findtext(f"{C}body") or "").startswith(f"*Entry {guid}*"))
    return match


def test_follow_a_feed_through_the_component(
        host_and_component: tuple[ServerProcess, ComponentProcess]) -> None:
    host, component = host_and_component
    reader_jid = host.add_user("reader")
    with ThreadedFeedServer() as web:
        url = web.url("/near.xml")
        web.set("/near.xml", rss("Near News", ["n1"]), content_type="application/rss+xml")

        async def scenario() -> None:
            reader = await connect(host, reader_jid)
            inbox = Inbox(reader)
            reader.send_message(mto=COMMANDS, mbody=f"subscribe {url}", mtype="chat")
            reply = await inbox.wait(stanza("message", "chat", COMMANDS))
            assert "Subscribed" in (reply.findtext(f"{C}body") or "")
            await inbox.wait(stanza("presence", "subscribe", NEWS))
            await inbox.wait(entry("n1"))
            # Approving the contact's request lets the host share the reader's presence with
            # the component (RFC 6121 §3.1.5): delivery then follows it.
            reader.send_presence(pto=NEWS, ptype="subscribed")
            await asyncio.to_thread(component.wait_for_log, f" available: {reader.boundjid.full}")

            # Away (disconnected): the entry waits in the host's offline storage, as for any
            # chat message (RFC 6121 §8.5.2.1.1), and arrives at the next login.
            await disconnect(reader)
            await asyncio.to_thread(component.wait_for_log,
                                    f"unavailable: {reader.boundjid.full}")
            web.set("/near.xml", rss("Near News", ["n2", "n1"]),
                    content_type="application/rss+xml")
            await asyncio.to_thread(component.refresh_feed, url)
            reader = await connect(host, reader_jid, presence=False)
            inbox = Inbox(reader)
            reader.send_presence()
            caught_up = await inbox.wait(entry("n2"))
            assert caught_up.find("{urn:xmpp:delay}delay") is not None
            # The chat commands work through the component too.
            reader.send_message(mto=COMMANDS, mbody="list", mtype="chat")
            listing = await inbox.wait(stanza("message", "chat", COMMANDS))
            assert "Near News" in (listing.findtext(f"{C}body") or "")
            await disconnect(reader)

        run(scenario())

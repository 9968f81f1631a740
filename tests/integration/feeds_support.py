"""Helpers for the feed integration tests: a real HTTP feed server in a thread, feed documents,
a message collector and raw IQs for slixmpp clients (which run on asyncio, not trio)."""

from __future__ import annotations

import asyncio
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from email.utils import formatdate
from typing import Any
from xml.sax.saxutils import escape

import trio
from feedserver import FeedServer

ATOM = "http://www.w3.org/2005/Atom"
EVENT = "http://jabber.org/protocol/pubsub#event"
PUBSUB = "http://jabber.org/protocol/pubsub"
COMMANDS = "http://jabber.org/protocol/commands"
DATA = "jabber:x:data"

FEEDS_EXTRA = {
    "allow_hosts": ["127.0.0.1"],
    "default_interval": 1.0,
    "min_interval": 1.0,
    "max_interval": 1.0,
    "error_backoff": 1.0,
    "max_error_backoff": 1.0,
    "host_spacing": 0.0,
    "first_poll": "none",
}


class ThreadedFeedServer:
    """``tests/feedserver.py`` run by trio in a background thread, driven from sync code."""

    def __init__(self) -> None:
        self.server = FeedServer()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._cancel = scope
            async with trio.open_nursery() as nursery:
                await nursery.start(self.server.serve)
                self._ready.set()
                await trio.sleep_forever()

    def __enter__(self) -> ThreadedFeedServer:
        self._thread.start()
        assert self._ready.wait(10), "feed server did not start"
        return self

    def __exit__(self, *_: object) -> None:
        assert self._token is not None and self._cancel is not None
        trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(10)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return trio.from_thread.run_sync(lambda: fn(*args, **kwargs), trio_token=self._token)

    def url(self, path: str) -> str:
        return self.server.url(path)

    def set(self, path: str, body: bytes | str, **kwargs: Any) -> None:
        self._call(self.server.set, path, body, **kwargs)

    def hits(self, path: str) -> int:
        return int(self._call(self.server.hits, path))


def rss(title: str, guids: Sequence[str]) -> str:
    """An RSS 2.0 document whose items (newest first) are named after their guids."""
    items = "".join(
        f"<item><title>Entry {g}</title><link>http://example.org/{g}</link>"
        f"<guid isPermaLink='false'>{g}</guid>"
        f"<pubDate>{formatdate(1_700_000_000 - 60 * i, usegmt=True)}</pubDate>"
        f"<description>About {g}.</description></item>"
        for i, g in enumerate(guids)
    )
    return (f"<?xml version='1.0'?><rss version='2.0'><channel><title>{title}</title>"
            f"<link>http://example.org/</link><description>d</description>{items}</channel></rss>")


class Inbox:
    """Every message a slixmpp client receives, as ElementTree elements."""

    def __init__(self, client: Any) -> None:
        self.messages: list[ET.Element] = []
        self._arrived = asyncio.Event()
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        client.register_handler(Callback(
            "feeds-test inbox", MatchXPath("{jabber:client}message"), self._on_message
        ))

    def _on_message(self, stanza: Any) -> None:
        self.messages.append(stanza.xml)
        self._arrived.set()

    def item_notifications(self, node: str | None = None) -> list[tuple[str, str, ET.Element]]:
        """(node, item id, message) of each item in pubsub event messages."""
        found = []
        for message in self.messages:
            for items in message.iter(f"{{{EVENT}}}items"):
                if node is not None and items.get("node") != node:
                    continue
                for item in items.iter(f"{{{EVENT}}}item"):
                    found.append((items.get("node", ""), item.get("id", ""), message))
        return found

    def bodies(self, from_: str) -> list[str]:
        """Bodies of the chat messages from ``from_`` (replies, not notifications)."""
        return [m.findtext("{jabber:client}body") or "" for m in self.messages
                if m.get("from", "").startswith(from_) and m.get("type") == "chat"
                and m.find(f"{{{EVENT}}}event") is None]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while not predicate():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"timed out; messages: "
                                     f"{[ET.tostring(m)[:400] for m in self.messages]}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass


async def iq(client: Any, to: str, type_: str, payload: str, within: float = 15.0) -> ET.Element:
    """Send an IQ with a raw XML payload; the answer's element (errors raise IqError)."""
    request = client.make_iq(ito=to, itype=type_)
    request.append(ET.fromstring(payload))
    answer = await request.send(timeout=within)
    return answer.xml


async def chat(client: Any, inbox: Inbox, to: str, text: str, within: float = 15.0) -> str:
    """Say ``text`` to ``to`` and return the next chat reply from it."""
    before = len(inbox.bodies(to))
    client.send_message(mto=to, mbody=text, mtype="chat")
    await inbox.wait_for(lambda: len(inbox.bodies(to)) > before, within)
    return inbox.bodies(to)[before]


def form_xml(type_: str, fields: dict[str, list[str]]) -> str:
    inner = "".join(
        f"<field var='{var}'>" + "".join(f"<value>{escape(v)}</value>" for v in values) + "</field>"
        for var, values in fields.items()
    )
    return f"<x xmlns='{DATA}' type='{type_}'>{inner}</x>"


def items_of(answer: ET.Element) -> list[ET.Element]:
    return list(answer.iter(f"{{{PUBSUB}}}item"))

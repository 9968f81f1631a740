"""Shared pieces of the IM integration tests: a stanza inbox and presence matchers."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from harness import ServerProcess, connect

C = "{jabber:client}"
R = "{jabber:iq:roster}"


class Inbox:
    """Every stanza a client receives, to wait for the one a step expects."""

    def __init__(self, client: Any) -> None:
        self.items: list[ET.Element] = []
        self.event = asyncio.Event()
        client.add_filter("in", self._in)

    def _in(self, stanza: Any) -> Any:
        self.items.append(stanza.xml)
        self.event.set()
        return stanza

    async def wait(self, pred: Callable[[ET.Element], bool], timeout: float = 5.0) -> ET.Element:
        deadline = time.monotonic() + timeout
        while True:
            for i, el in enumerate(self.items):
                if pred(el):
                    del self.items[i]
                    return el
            self.event.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"not received; got {[ET.tostring(e) for e in self.items]}")
            try:
                await asyncio.wait_for(self.event.wait(), remaining)
            except TimeoutError:
                pass

    async def absent(self, pred: Callable[[ET.Element], bool], wait: float = 0.5) -> None:
        await asyncio.sleep(wait)
        assert not any(pred(el) for el in self.items), [ET.tostring(e) for e in self.items]

    def bodies(self) -> list[str]:
        return [el.findtext(f"{C}body") or "" for el in self.items
                if el.tag == f"{C}message" and el.find(f"{C}body") is not None]

    async def push(self, contact: str) -> tuple[dict[str, str], str]:
        """The next roster push about ``contact``: its item's attributes and the push's ver."""
        el = await self.wait(roster_push(contact))
        query = el.find(f"{R}query")
        assert query is not None and query.get("ver")
        item = query.find(f"{R}item")
        assert item is not None
        return dict(item.attrib), query.get("ver", "")


def roster_push(contact: str) -> Callable[[ET.Element], bool]:
    def match(el: ET.Element) -> bool:
        item = el.find(f"{R}query/{R}item")
        return el.tag == f"{C}iq" and el.get("type") == "set" and item is not None \
            and item.get("jid") == contact
    return match


def presence(type_: str | None = None, from_: str | None = None) -> Callable[[ET.Element], bool]:
    def match(el: ET.Element) -> bool:
        return (el.tag == f"{C}presence" and el.get("type") == type_
                and (from_ is None or el.get("from") == from_))
    return match


async def client_for(server: ServerProcess, jid: str, *, roster: bool = True,
                     **kw: Any) -> tuple[Any, Inbox]:
    """A client that answers subscription requests only when the test says so."""
    client = await connect(server, jid, presence=False, **kw)
    client.auto_authorize = None
    client.auto_subscribe = False
    inbox = Inbox(client)
    if roster:
        await client.get_roster()
    client.send_presence()
    return client, inbox


async def raw_iq(client: Any, type_: str, payload: str, to: str | None = None) -> ET.Element:
    """Send an IQ with a hand-written payload; the reply's XML (IqError raised on error)."""
    iq = client.make_iq_set(ito=to) if type_ == "set" else client.make_iq_get(ito=to)
    iq.append(ET.fromstring(payload))
    reply = await iq.send(timeout=5)
    return reply.xml  # type: ignore[no-any-return]


async def befriend(a: Any, a_in: Inbox, b: Any, b_in: Inbox) -> None:
    """``b`` subscribes to ``a``'s presence and ``a`` approves: a's roster has b as "from"."""
    a_bare, b_bare = str(a.boundjid.bare), str(b.boundjid.bare)
    b.send_presence(pto=a_bare, ptype="subscribe")
    await a_in.wait(presence("subscribe", b_bare))
    a.send_presence(pto=b_bare, ptype="subscribed")
    await b_in.wait(presence("subscribed", a_bare))

"""Shared pieces of the IM integration tests: a stanza inbox and presence matchers."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from harness import ServerProcess, connect, round_trip

C = "{jabber:client}"
R = "{jabber:iq:roster}"


class Inbox:
    """Every stanza a client receives (or, with ``direction="out"``, sends), to wait for the
    one a step expects."""

    def __init__(self, client: Any, direction: str = "in") -> None:
        self.client = client
        self.direction = direction
        self.items: list[ET.Element] = []
        self.event = asyncio.Event()
        client.add_filter(direction, self._in)

    def _in(self, stanza: Any) -> Any:
        self.items.append(stanza.xml)
        self.event.set()
        return stanza

    def close(self) -> None:
        self.client.del_filter(self.direction, self._in)

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

    async def absent(self, pred: Callable[[ET.Element], bool], via: str | None = None) -> None:
        """Nothing matching arrived. Checked after a round trip to the server (or to ``via``,
        a remote domain whose stanzas would come over federation): the test must first have
        done what would have produced the stanza."""
        await round_trip(self.client, via)
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


def disco_info_query(el: ET.Element) -> bool:
    return (el.tag == f"{C}iq" and el.get("type") == "get"
            and el.find("{http://jabber.org/protocol/disco#info}query") is not None)


def result_of(query: ET.Element) -> Callable[[ET.Element], bool]:
    return lambda el: el.get("type") == "result" and el.get("id") == query.get("id")


async def caps_announced(client: Any) -> None:
    """Send presence with the client's current caps and return once the server has processed
    it, and, if it asked the client's disco#info (XEP-0115 §6.2), has processed the answer."""
    received, sent = Inbox(client), Inbox(client, "out")
    try:
        client.send_presence()
        await round_trip(client)  # a disco#info query it sent, if any, came before the answer
        query = next((el for el in received.items if disco_info_query(el)), None)
        if query is not None:
            await sent.wait(result_of(query))  # slixmpp answered
            await round_trip(client)  # ... and the server has read the answer
    finally:
        received.close()
        sent.close()


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

"""What the MUC integration tests share: clients with the MUC plugins, and an inbox of every
groupchat presence and message a client receives."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

from harness import ServerProcess, connect
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

PLUGINS = ("xep_0030", "xep_0045", "xep_0199", "xep_0004")
MUC = "http://jabber.org/protocol/muc"
MUC_USER = f"{MUC}#user"


def codes(stanza: Any) -> set[int]:
    return set(stanza["muc"]["status_codes"])


class Inbox:
    """Every groupchat presence and message a client receives, in order."""

    def __init__(self, client: Any) -> None:
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        client.add_event_handler("groupchat_presence", self.items.put_nowait)
        # every message, with or without a body (subjects, status notices, errors)
        client.register_handler(Callback("muc-test-messages", MatchXPath("{jabber:client}message"),
                                         self.items.put_nowait))

    async def next(self, predicate: Any = lambda _: True) -> Any:
        while True:
            stanza = await asyncio.wait_for(self.items.get(), 5)
            if predicate(stanza):
                return stanza

    def drain(self) -> list[Any]:
        found = []
        while not self.items.empty():
            found.append(self.items.get_nowait())
        return found


async def clients(server: ServerProcess, *names: str,
                  plugins: tuple[str, ...] = PLUGINS) -> list[Any]:
    return [await connect(server, server.add_user(name), plugins=plugins) for name in names]


async def configure(client: Any, room: Any, **fields: Any) -> None:
    """Submit muc#roomconfig fields (``passwordprotectedroom=True`` for
    ``muc#roomconfig_passwordprotectedroom``; ``maxhistoryfetch`` keeps its muc# name)."""
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=f"{MUC}#roomconfig")
    for name, value in fields.items():
        var = f"muc#{name}" if name == "maxhistoryfetch" else f"muc#roomconfig_{name}"
        ftype = "boolean" if isinstance(value, bool) else (
            "list-multi" if isinstance(value, list) else None)
        form.add_field(var=var, ftype=ftype, value=value)
    await client.plugin["xep_0045"].set_room_config(room, form, timeout=5)


async def iq(client: Any, type_: str, to: Any, payload: str) -> Any:
    """Send an IQ with a raw payload; the result (IqError on an error)."""
    request = client.make_iq_get(ito=to) if type_ == "get" else client.make_iq_set(ito=to)
    request.xml.append(ET.fromstring(payload))
    return await request.send(timeout=5)


def send_raw(client: Any, xml: str) -> None:
    client.send_raw(xml)

"""Shared helpers of the pubsub integration tests: event queues and raw pubsub IQs."""

from __future__ import annotations

import asyncio
from typing import Any

from harness import round_trip
from slixmpp import ET
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

PUBSUB_PLUGINS = ("xep_0030", "xep_0060", "xep_0004", "xep_0059", "xep_0131")
PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = "http://jabber.org/protocol/pubsub#owner"
EVENT = "http://jabber.org/protocol/pubsub#event"
ERRORS = "http://jabber.org/protocol/pubsub#errors"


def service_jid(server: Any) -> str:
    return f"pubsub.{server.domain}"


def message_queue(client: Any) -> asyncio.Queue[Any]:
    """Every incoming ``<message/>`` carrying a pubsub event, in arrival order."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    client.register_handler(Callback(
        f"pubsub events {id(queue)}",
        MatchXPath(f"{{jabber:client}}message/{{{EVENT}}}event"),
        queue.put_nowait,
    ))
    return queue


async def next_event(queue: asyncio.Queue[Any], timeout: float = 5.0) -> ET.Element:
    msg = await asyncio.wait_for(queue.get(), timeout)
    return msg.xml


async def no_event(queue: asyncio.Queue[Any], client: Any) -> None:
    """No event arrived for ``client``, checked after a round trip to its server (which every
    stanza the server had already sent it precedes): first do what would have sent one."""
    await round_trip(client)
    assert queue.empty(), ET.tostring(queue.get_nowait().xml)


async def raw_iq(client: Any, to: str, type_: str, payload: str) -> ET.Element:
    """Send an IQ whose payload is given as XML text; return the result element."""
    iq = client.Iq()
    if to:
        iq["to"] = to
    iq["type"] = type_
    iq.append(ET.fromstring(payload))
    result = await iq.send(timeout=5)
    return result.xml


async def iq_error(client: Any, to: str, type_: str, payload: str) -> tuple[str, str, str | None]:
    """Send a raw IQ expected to fail: (error type, condition, pubsub#errors condition)."""
    try:
        await raw_iq(client, to, type_, payload)
    except IqError as exc:
        error = exc.iq.xml.find("{jabber:client}error")
        assert error is not None
        condition = next(c.tag.split("}")[1] for c in error
                         if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}")
                         and not c.tag.endswith("}text"))
        app = next((c for c in error if c.tag.startswith(f"{{{ERRORS}}}")), None)
        app_name = app.tag.split("}")[1] if app is not None else None
        return error.get("type") or "", condition, app_name
    raise AssertionError("the request succeeded")


def item_ids(event: ET.Element) -> list[str]:
    return [i.get("id") for i in event.iter(f"{{{EVENT}}}item")]


def form_fields(element: ET.Element) -> dict[str, str | None]:
    """The first value of every data-form field found under ``element``."""
    return {f.get("var"): f.findtext("{jabber:x:data}value")
            for f in element.iter("{jabber:x:data}field")}


async def node_meta(client: Any, jid: str, node: str) -> dict[str, str | None]:
    info = await raw_iq(client, jid, "get",
                        f"<query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/>")
    return form_fields(info)

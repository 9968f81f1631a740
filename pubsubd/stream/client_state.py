"""Client State Indication (XEP-0352), sans I/O: what an inactive client is spared for now.

A phone in a pocket tells the server ``<inactive/>``; until it says ``<active/>`` the server
holds what can wait — presence updates (only the latest per contact matters), pubsub and PEP
notifications, headlines and group chat, messages without a body (chat states) — and sends
at once what a person waits for: chat messages with a body, and every iq (a request the
client must answer, or the result it asked for). The held stanzas go out in their order when
the client is active again, or when too many pile up. XEP-0352 leaves the policy to the
server; this is ours.

A sender that knows better than the stanza's shape marks it when it queues it: a
:class:`Deferrable` is held like a headline although it is a chat message with a body (a feed
entry its reader wants batched), without the writer parsing it to find out.
"""

from __future__ import annotations

from lxml import etree

from pubsubd import ns

CSI = "urn:xmpp:csi:0"
T_ACTIVE = ns.clark(CSI, "active")
T_INACTIVE = ns.clark(CSI, "inactive")
MAX_HELD = 200  # beyond this the held stanzas are flushed rather than kept in memory

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_T_PRESENCE = (ns.clark(ns.CLIENT, "presence"), "presence")


class Deferrable(bytes):
    """A serialized stanza its sender lets wait while the client is inactive (the mark is
    decided when it is queued, so the writer needs no parse to honour it)."""

    __slots__ = ()


class ClientState:
    """The writer's filter: ``outgoing`` gives what to send now, ``activate`` the backlog."""

    def __init__(self) -> None:
        self.inactive = False
        self._held: list[bytes] = []
        self._presence_at: dict[str, int] = {}  # sender → index of its held presence

    @property
    def held(self) -> int:
        return len(self._held)

    def deactivate(self) -> None:
        self.inactive = True

    def activate(self) -> list[bytes]:
        """The client is active again: everything held, in order (XEP-0352 §4)."""
        self.inactive = False
        return self.take_all()

    def take_all(self) -> list[bytes]:
        held = [data for data in self._held if data]
        self._held.clear()
        self._presence_at.clear()
        return held

    def outgoing(self, batch: list[bytes]) -> list[bytes]:
        """What of ``batch`` is sent now (after any backlog released by an overflow)."""
        if not self.inactive:
            return [*self.take_all(), *batch] if self._held else batch
        now = []
        for data in batch:
            if isinstance(data, Deferrable):
                self._held.append(data)
                continue
            kind = _classify(data)
            if kind == "urgent":
                now.append(data)
            elif kind.startswith("presence:"):
                sender = kind.removeprefix("presence:")
                previous = self._presence_at.get(sender)
                if previous is not None:
                    self._held[previous] = b""  # superseded: only the latest presence counts
                self._presence_at[sender] = len(self._held)
                self._held.append(data)
            else:
                self._held.append(data)
        if len(self._held) > MAX_HELD:
            return [*self.take_all(), *now]
        return now


def _classify(data: bytes) -> str:
    """"urgent", "presence:<from>" or "hold"."""
    stripped = data.lstrip()
    if not stripped.startswith((b"<message", b"<presence")):
        return "urgent"  # iq, stream-level elements, keep-alives
    try:
        el = etree.fromstring(stripped, _PARSER)
    except etree.XMLSyntaxError:
        return "urgent"
    if el.tag in _T_PRESENCE:
        if el.get("type") in (None, "unavailable"):
            return "presence:" + (el.get("from") or "")
        return "urgent"  # subscription requests and errors want the person's attention
    if el.get("type") in ("headline", "groupchat"):
        return "hold"
    if any(etree.QName(child).localname == "body" for child in el.iter()
           if isinstance(child.tag, str)):
        return "urgent"  # a message someone wrote (also inside a carbon copy)
    return "hold"  # chat states, receipts, pubsub/PEP events

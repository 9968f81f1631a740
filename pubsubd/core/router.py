"""All routing rules in one place (RFC 6120 §8 and §10, RFC 6121 §8.5).

Every stanza — from a client, a module, a component or a peer server — enters :meth:`Router.route`.
The router decides *where* it goes; modules decide *what* it means through hooks and IQ handlers:

* ``iq`` to a served domain, to the sender's own account, or to another local bare JID is answered
  by the IQ handler registered for (scope, type, payload tag); an IQ handler returns a payload
  (or None) for the ``result``, or raises :class:`StanzaError` (IQ semantics of RFC 6120 §8.2.3
  are enforced here: exactly one answer, never one to a result or an error).
* ``presence`` is handed to the hooks ``presence/out`` (from a local client) and ``presence/in``
  (to a local user); the presence module implements RFC 6121 on top.
* ``message`` to local users follows RFC 6121 §8.5 below, with hooks ``message/in`` (filters such
  as blocking and carbons run first) and ``message/offline`` (offline storage).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from lxml import etree

from pubsubd import ns
from pubsubd.core.bounded import BoundedMap
from pubsubd.core.hooks import HookBus
from pubsubd.core.session import Session, SessionRegistry
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID, InvalidJID
from pubsubd.stream.client_state import Deferrable
from pubsubd.xml import builders

log = logging.getLogger(__name__)

PENDING_IQ_TIMEOUT = 120.0  # seconds an answer to one of our own requests is awaited
PENDING_IQ_MAX = 10_000  # requests of ours awaiting an answer at once
_KINDS = {ns.C_MESSAGE: "message", ns.C_PRESENCE: "presence", ns.C_IQ: "iq"}
_PRE_HOOKS = {kind: f"{kind}/pre" for kind in _KINDS.values()}


@dataclass(slots=True)
class Stanza:
    """A stanza in flight, with its parsed addresses and where it came from."""

    element: etree._Element
    from_: JID
    to: JID | None
    origin: Session | None = None  # the local client session that sent it
    # The id the sender's archive gave this message (XEP-0313 §3.5), for the sent carbon
    # copies only: the message itself leaves without it.
    archive_id: str | None = None
    # The stanza as serialized by a routing hook (the archive: as the sender's copy on the way
    # out, then as the recipient's with its stanza-id spliced in, so these bytes may carry
    # more than the element). Whatever delivers or copies the stanza after that uses them
    # (:meth:`serialized`); a hook that changes the element must set them back to None.
    wire: bytes | None = None
    deferrable: bool = False  # XEP-0352: may wait while the recipient's client is inactive
    # The tags of the element's children as the stream parser saw them, None when unknown: a
    # hook that changes the element's children must set this back to None.
    children: tuple[str, ...] | None = None

    def serialized(self) -> bytes:
        """The element's bytes: ``wire`` if a hook left them, else serialized now; marked
        :class:`Deferrable` when they may wait."""
        data = self.wire if self.wire is not None else etree.tostring(self.element)
        return Deferrable(data) if self.deferrable else data

    @property
    def kind(self) -> str:
        tag = self.element.tag
        kind = _KINDS.get(tag)  # asked several times per stanza: no QName object
        return kind if kind is not None else etree.QName(tag).localname

    @property
    def type(self) -> str:
        kind = self.kind
        default = "normal" if kind == "message" else ("available" if kind == "presence" else "")
        return self.element.get("type") or default

    @property
    def id(self) -> str | None:
        return self.element.get("id")


class AlreadyAnswered(Exception):
    """Raised by an IQ handler that sent its answer itself (e.g. before closing streams)."""


IqHandler = Callable[[Stanza], Awaitable[etree._Element | None]]


class Component(Protocol):
    """An in-process service on its own domain (e.g. pubsub.example.org)."""

    domain: str

    async def receive(self, stanza: Stanza) -> None: ...


class AccountDirectory(Protocol):
    async def exists(self, jid: JID) -> bool: ...


class RemoteRouter(Protocol):
    async def send(self, stanza: Stanza) -> bool: ...


class Router:
    def __init__(self, domains: Sequence[str], sessions: SessionRegistry, hooks: HookBus,
                 accounts: AccountDirectory) -> None:
        self.domains = frozenset(domains)
        self.sessions = sessions
        self.hooks = hooks
        self.accounts = accounts
        self.components: dict[str, Component] = {}
        self.subdomain_components: set[str] = set()  # their subdomains route to them too
        self.remote: RemoteRouter | None = None
        # Set by a module that classifies client stanzas by their children (the archive):
        # client streams then have their parser note them (Stanza.children).
        self.wants_children = False
        self._iq: dict[tuple[str, str, str], IqHandler] = {}
        # Callbacks for our own requests, by id: a peer that never answers must not keep them
        # forever, so they expire (and the oldest go beyond the cap).
        self.iq_result_handlers: MutableMapping[str, Callable[[Stanza], Awaitable[None]]] = (
            BoundedMap(PENDING_IQ_MAX, ttl=PENDING_IQ_TIMEOUT))

    # --- registration -------------------------------------------------------------------

    def add_iq_handler(self, scope: str, type_: str, tag: str, handler: IqHandler) -> None:
        """``scope``: "host" (to a served domain), "self" (to the sender's own account) or
        "bare" (to another local user's bare JID); ``tag`` is the payload's Clark name."""
        assert scope in ("host", "self", "bare") and type_ in ("get", "set")
        self._iq[(scope, type_, tag)] = handler

    def add_component(self, component: Component, *, subdomains: bool = False) -> None:
        self.components[component.domain] = component
        if subdomains:
            self.subdomain_components.add(component.domain)

    def component_for(self, domain: str) -> Component | None:
        """The component serving ``domain``: its own, or a parent's that takes subdomains."""
        component = self.components.get(domain)
        if component is not None or not self.subdomain_components:
            return component
        parts = domain.split(".")
        for i in range(1, len(parts) - 1):
            parent = ".".join(parts[i:])
            if parent in self.subdomain_components:
                return self.components.get(parent)
        return None

    def is_local(self, jid: JID) -> bool:
        return jid.domain in self.domains

    # --- entry points -------------------------------------------------------------------

    async def route_from_client(self, session: Session, element: etree._Element,
                                children: tuple[str, ...] | None = None) -> None:
        """A stanza from a bound client: validate its addressing and stamp ``from``;
        ``children``: its child tags as parsed (:attr:`Stanza.children`), if known."""
        # RFC 6120 §8.1.2.1: the server stamps the full JID of the session; a client cannot spoof.
        element.set("from", str(session.jid))
        raw_to = element.get("to")
        to: JID | None = None
        if raw_to is not None:
            try:
                to = JID.parse(raw_to)
            except InvalidJID as exc:
                # RFC 6120 §8.3.3.8
                await self.bounce(Stanza(element, session.jid, None, session),
                            StanzaError(Condition.JID_MALFORMED, str(exc)))
                return
        await self.route(Stanza(element, session.jid, to, session, children=children))

    async def route(self, st: Stanza) -> None:
        try:
            await self._route(st)
        except StanzaError as err:
            await self.bounce(st, err)
        except Exception:
            log.exception("internal error routing %s from %s", st.kind, st.from_)
            await self.bounce(st, StanzaError(Condition.INTERNAL_SERVER_ERROR))

    async def _route(self, st: Stanza) -> None:
        kind = st.kind
        if kind not in ("message", "presence", "iq"):
            return
        if kind == "iq" and not await self._valid_iq(st):
            return
        hooks = self.hooks
        pre = _PRE_HOOKS[kind]
        # fire_now first: with no filter on the bus (nobody blocks anyone), or only plain
        # functions (the archive), a stanza does not pay for the coroutine of a firing.
        handled = hooks.fire_now(pre, st)
        if handled is None:
            handled = await hooks.fire(pre, st)
        if handled:
            return  # consumed by a filter (e.g. blocking)
        to = st.to
        if to is None:
            if kind == "iq":
                await self._handle_iq(st, "self")
            elif kind == "message":
                # RFC 6120 §10.3: no 'to' means the sender's own bare JID.
                st.to = st.from_.bare
                await self._to_local_user(st)
            else:
                await self.hooks.fire("presence/out", st)
            return
        if kind == "presence" and st.origin is not None and st.type in ("available", "unavailable"):
            # Directed presence (RFC 6121 §4.6) is tracked by the presence module, then routed.
            if await self.hooks.fire("presence/directed", st):
                return
        component = self.component_for(to.domain)
        if component is not None:
            await component.receive(st)
            return
        if to.domain in self.domains:
            if to.local is None:
                await self._to_host(st)
            elif kind == "iq" and to.bare == st.from_.bare and to.resource is None:
                await self._handle_iq(st, "self")
            else:
                await self._to_local_user(st)
            return
        if self.remote is not None and await self.remote.send(st):
            return
        # RFC 6120 §10.4.3: the remote domain cannot be reached.
        raise StanzaError(Condition.REMOTE_SERVER_NOT_FOUND)

    async def _valid_iq(self, st: Stanza) -> bool:
        """RFC 6120 §8.2.3: an id and a type are required, and get/set carry exactly one child."""
        type_ = st.element.get("type")
        if not st.id or type_ not in ("get", "set", "result", "error"):
            if type_ not in ("result", "error"):
                await self.bounce(st, StanzaError(Condition.BAD_REQUEST,
                                                  "iq needs an id and a valid type"))
            return False
        if type_ in ("get", "set") and len(st.element) != 1:
            await self.bounce(st, StanzaError(Condition.BAD_REQUEST,
                                              "iq get/set needs exactly one child"))
            return False
        return True

    async def _to_host(self, st: Stanza) -> None:
        if st.kind == "iq":
            await self._handle_iq(st, "host")
        elif st.kind == "presence":
            await self.hooks.fire("presence/host", st)
        else:
            await self.hooks.fire("message/host", st)

    async def _handle_iq(self, st: Stanza, scope: str) -> None:
        type_ = st.type
        if type_ in ("result", "error"):
            handler = self.iq_result_handlers.pop(st.id or "", None)
            if handler is not None:
                await handler(st)
            return  # RFC 6120 §8.2.3: never answer a result or an error
        payload = st.element[0]
        handler = self._iq.get((scope, type_, payload.tag))
        if handler is None and scope == "self":
            # Requests to one's own account also reach the host-level handlers
            # (disco, ping, version of the server on behalf of the account).
            handler = self._iq.get(("bare", type_, payload.tag))
        if handler is None:
            if await self.hooks.fire(f"iq/{scope}", st):
                return
            # RFC 6120 §8.4: unknown payload namespace
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)
        try:
            result = await handler(st)
        except AlreadyAnswered:
            return
        await self.reply(st, result)

    # --- RFC 6121 §8.5: delivery to a local user --------------------------------------------

    async def _to_local_user(self, st: Stanza) -> None:
        assert st.to is not None
        to = st.to
        kind = st.kind
        if kind == "presence":
            await self.hooks.fire("presence/in", st)
            return
        if to.resource is not None:
            # A bound full JID is an existing account: no need to ask the directory.
            session = self.sessions.get(to)
            if session is not None:
                if kind == "message":
                    handled = self.hooks.fire_now("message/in", st)
                    if handled is None:
                        handled = await self.hooks.fire("message/in", st)
                    if handled:
                        return
                session.send(st.serialized() if st.deferrable else (st.wire or st.element))
                return
        if not await self.accounts.exists(to.bare):
            # RFC 6121 §8.5.1: no such user
            if st.kind == "iq" or (st.kind == "message" and st.type != "error"):
                raise StanzaError(Condition.SERVICE_UNAVAILABLE)
            return
        if to.resource is not None:
            session = self.sessions.get(to)
            if session is not None:
                if st.kind == "message" and await self.hooks.fire("message/in", st):
                    return
                session.send(st.serialized() if st.deferrable else (st.wire or st.element))
                return
            # RFC 6121 §8.5.3.2: no resource matches the full JID
            if st.kind == "iq":
                raise StanzaError(Condition.SERVICE_UNAVAILABLE)
            if st.kind == "message" and st.type == "chat":
                await self._message_to_bare(st)
            elif st.kind == "message" and st.type != "error":
                raise StanzaError(Condition.SERVICE_UNAVAILABLE)
            return
        if st.kind == "iq":
            await self._handle_iq(st, "bare")
            return
        await self._message_to_bare(st)

    async def _message_to_bare(self, st: Stanza) -> None:
        """RFC 6121 §8.5.2: a message to a bare JID, by type."""
        assert st.to is not None
        type_ = st.type
        if type_ == "error":
            return
        if type_ == "groupchat":
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)  # §8.5.2.1.3
        handled = self.hooks.fire_now("message/in", st)
        if handled is None:
            handled = await self.hooks.fire("message/in", st)
        if handled:
            return
        targets = self.message_targets(st.to, type_)
        if targets:
            data = st.serialized()
            for session in targets:
                session.send(data)
            return
        if type_ == "headline":
            return  # §8.5.2.2.3: silently ignored
        if await self.hooks.fire("message/offline", st):
            return
        raise StanzaError(Condition.SERVICE_UNAVAILABLE)  # §8.5.2.2.1 / §8.5.2.2.2

    def message_targets(self, bare: JID, type_: str) -> list[Session]:
        """Available resources with non-negative priority; for normal and chat only the
        highest-priority ones (RFC 6121 §8.5.2.1.1), for headline all of them (§8.5.2.1.2)."""
        candidates = [s for s in self.sessions.resources(bare)
                      if s.presence.available and s.presence.priority >= 0]
        if not candidates or type_ == "headline":
            return candidates
        top = max(s.presence.priority for s in candidates)
        return [s for s in candidates if s.presence.priority == top]

    # --- answers ------------------------------------------------------------------------

    async def reply(self, request: Stanza, payload: etree._Element | None) -> None:
        await self.send_to(request.from_, builders.iq_result(request.element, payload),
                           request.origin)

    async def bounce(self, st: Stanza, error: StanzaError) -> None:
        """Answer ``st`` with ``error`` — unless it is itself an error or a result
        (RFC 6120 §8.3.1)."""
        if st.element.get("type") in ("error", "result"):
            return
        if st.kind == "presence" and st.type not in ("available", "subscribe", "probe"):
            return
        reply = builders.error_reply(st.element, error)
        if st.to is None and st.kind == "iq":
            reply.attrib.pop("from", None)
        await self.send_to(st.from_, reply, st.origin)

    async def send_to(self, to: JID, element: etree._Element,
                      origin: Session | None = None) -> None:
        """Deliver a server-generated stanza: straight to a local session, else by routing."""
        if origin is not None and origin.jid == to:
            origin.send(element)
            return
        if to.domain in self.domains and to.local is not None and to.resource is not None:
            session = self.sessions.get(to)
            if session is not None:
                session.send(element)
            return
        from_ = element.get("from")
        from_jid = JID.parse(from_) if from_ else JID.parse(next(iter(self.domains)))
        await self.route(Stanza(element, from_jid, to, None))

    async def send(self, element: etree._Element, *, deferrable: bool = False) -> None:
        """Route a stanza generated by the server or a module (its ``from`` must be set);
        ``deferrable``: an inactive client (XEP-0352) may get it later."""
        from_ = JID.parse(element.get("from") or next(iter(self.domains)))
        to_attr = element.get("to")
        await self.route(Stanza(element, from_, JID.parse(to_attr) if to_attr else None, None,
                                deferrable=deferrable))


def payload_ns(element: etree._Element) -> str | None:
    if len(element) == 0:
        return None
    return etree.QName(element[0]).namespace


__all__ = ["Router", "Stanza", "IqHandler", "Component", "payload_ns", "ns"]

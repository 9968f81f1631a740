"""Resource binding (RFC 6120 §7) and the legacy session request (RFC 3921 §3).

A mixin of :class:`~pubsubd.net.c2s.C2SConnection`. It also dispatches the other IQs allowed
during negotiation: before authentication, the pre-auth handlers modules register (XEP-0077).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.core.context import ServerContext
from pubsubd.core.session import Session
from pubsubd.errors import StanzaError, StreamCondition, StreamError
from pubsubd.jid import JID, InvalidJID, prepare_resourcepart
from pubsubd.logging_setup import ContextAdapter
from pubsubd.net.c2s_state import T_BIND, T_SESSION, State
from pubsubd.xml import builders


class ResourceBinding:
    """The binding steps of the negotiation; the connection owns (and initialises) the state."""

    ctx: ServerContext
    secure: bool
    state: State
    domain: str
    authenticated: JID | None
    session: Session | None
    _outbox_send: trio.MemorySendChannel[bytes]
    _login_to_record: JID | None

    if TYPE_CHECKING:
        @property
        def log(self) -> ContextAdapter: ...

        def close_with(self, error: StreamError) -> None: ...

        def _write_now(self, data: bytes) -> bool: ...

        async def _send_el(self, el: etree._Element) -> None: ...

        def _out_of_order(self, el: etree._Element) -> StreamError: ...

    async def _negotiation_iq(self, el: etree._Element) -> None:
        payload = el[0] if len(el) == 1 else None
        if self.state is State.EXPECT_STARTTLS:
            raise self._out_of_order(el)  # XEP-0077 §11: register only over TLS
        if self.authenticated is None:
            handler = self.ctx.pre_auth_iq.get(payload.tag if payload is not None else "")
            if handler is None:
                raise self._out_of_order(el)
            reply = await handler(self, el)  # type: ignore[operator]
            await self._send_el(reply)
            return
        if payload is not None and payload.tag == T_BIND and el.get("type") == "set":
            await self._bind(el, payload)
        elif payload is not None and payload.tag == T_SESSION:
            await self._send_el(builders.iq_result(el))
        else:
            raise self._out_of_order(el)

    async def _bind(self, iq: etree._Element, bind: etree._Element) -> None:
        assert self.authenticated is not None
        limits = self.ctx.config.limits
        requested = bind.findtext(ns.clark(ns.BIND, "resource"))
        resource: str | None = None
        if requested:
            try:
                resource = prepare_resourcepart(requested)
            except InvalidJID:
                # RFC 6120 §7.7.2.1
                await self._iq_error(iq, "bad-request", "modify")
                return
        if resource is None:
            resource = secrets.token_hex(6)  # RFC 6120 §7.6: server-generated
        jid = self.authenticated.with_resource(resource)
        existing = self.ctx.sessions.get(jid)
        if existing is not None:
            # RFC 6120 §7.7.2.2: resolve the conflict by policy.
            if limits.resource_conflict == "old_wins":
                await self._iq_error(iq, "conflict", "cancel")
                return
            if limits.resource_conflict == "random_resource":
                jid = self.authenticated.with_resource(f"{resource}.{secrets.token_hex(3)}")
                existing = None
        session = Session(jid, self._outbox_send, self.close_with, secure=self.secure,
                          direct=self._write_now)
        self.session = session
        old = self.ctx.sessions.add(session)
        if old is not None and old is not session:
            old.displaced = True
            old.close(StreamError(StreamCondition.CONFLICT, "replaced by a new session"))
        result = builders.iq_result(iq)
        result.attrib.pop("from", None)
        reply_bind = builders.child(result, ns.BIND, "bind")
        etree.SubElement(reply_bind, ns.clark(ns.BIND, "jid")).text = str(jid)
        await self._send_el(result)
        self.state = State.BOUND
        self.log.info("bound %s", jid, extra={"event": "c2s.session_bound", "jid": str(jid)})
        self._login_to_record = jid  # written while the session already runs (see _serve)
        await self.ctx.hooks.notify("session/bound", session)

    async def _iq_error(self, iq: etree._Element, condition: str, type_: str) -> None:
        reply = builders.error_reply(iq, StanzaError(condition, type_=type_))
        reply.attrib.pop("from", None)
        await self._send_el(reply)

    def _is_session_request(self, el: etree._Element) -> bool:
        if el.tag != ns.C_IQ or el.get("type") != "set" or len(el) != 1 or not el.get("id"):
            return False
        to = el.get("to")
        return el[0].tag == T_SESSION and (to is None or to == self.domain)

    def _answer_session_request(self, el: etree._Element, session: Session) -> None:
        """RFC 3921 §3 (kept by RFC 6121 Appendix E): a no-op for old clients."""
        result = builders.iq_result(el)
        result.attrib.pop("from", None)
        session.send(result)

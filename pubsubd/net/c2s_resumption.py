"""XEP-0198 on a client stream: acks, hibernation, resumption, and leftovers on expiry.

A mixin of :class:`~pubsubd.net.c2s.C2SConnection`. The counting and the wire format are the
sans-I/O :mod:`pubsubd.stream.stream_management`; this module wires them to the connection: the
writer's batches, a dropped transport that hibernates the session instead of ending it, a
<resume/> that moves the session onto a new connection, and the stanzas left unacknowledged
when a hibernated session finally expires.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.core.context import ServerContext
from pubsubd.core.router import Stanza
from pubsubd.core.session import Session
from pubsubd.errors import Condition, StanzaError, StreamCondition, StreamError
from pubsubd.jid import JID, InvalidJID
from pubsubd.logging_setup import ContextAdapter
from pubsubd.net.c2s_state import T_SM_ACK, T_SM_ENABLE, T_SM_REQUEST, State
from pubsubd.stream.client_state import ClientState
from pubsubd.stream.stream_management import (
    HandledCountError,
    HandledCountTooHigh,
    StreamManagement,
    failed,
    is_stanza,
    new_sm_id,
    parse_h,
)

SM_KEY = "xep0198"  # Session.features key of the resumption state
_DELAY = ns.clark(ns.DELAY, "delay")


@dataclass(eq=False, slots=True)
class _Resumable:
    """What a resumable session keeps across connections (XEP-0198 §5)."""

    sm: StreamManagement
    outbox: trio.MemoryReceiveChannel[bytes]  # the session's queue, drained by its owner
    owner: StreamResumption
    timeout: float


class StreamResumption:
    """XEP-0198 steps of a connection; the connection owns (and initialises) the state."""

    ctx: ServerContext
    secure: bool
    state: State
    authenticated: JID | None
    session: Session | None
    _outbox_send: trio.MemorySendChannel[bytes]
    _outbox_recv: trio.MemoryReceiveChannel[bytes]
    client_state: ClientState
    _pending_error: StreamError | None
    # The SM state, whether the writer counts yet (from <enabled/> on), and the hibernation
    # of a resumable session whose connection dropped.
    sm: StreamManagement | None
    _sm_counting: bool
    _enabled_marker: bytes | None
    _resume_timeout: float
    _lost: bool  # the transport failed: no clean </stream:stream>
    _taken_over: bool  # a <resume/> on another connection replaces this one
    _hibernating: bool
    _hibernated: trio.Event | None  # created when first waited for or set: most never are
    _wake: trio.Event | None  # created when the session hibernates
    _resumed: bool
    _kept_for_handover: list[bytes]

    if TYPE_CHECKING:
        @property
        def log(self) -> ContextAdapter: ...

        def close_with(self, error: StreamError) -> None: ...

        def _write_now(self, data: bytes) -> bool: ...

        async def _send(self, data: bytes) -> None: ...

        async def _end_session(self, session: Session) -> None: ...

    def _count_sent(self, batch: list[bytes]) -> list[bytes]:
        """Count each stanza (not each write) and keep it until acked; ask for acks now and then.

        Counting starts with the <enabled/> itself (§4: "after sending <enabled/>"): stanzas
        queued before it are not numbered.
        """
        sm = self.sm
        assert sm is not None
        out: list[bytes] = []
        for data in batch:
            out.append(data)
            if data is self._enabled_marker:
                self._sm_counting = True
                self._enabled_marker = None
            elif self._sm_counting and is_stanza(data) and sm.stanza_sent(data):
                out.append(sm.request())
        if sm.overflowing:
            raise StreamError(StreamCondition.RESOURCE_CONSTRAINT,
                              "too many stanzas left unacknowledged")
        return out

    def _on_sm_element(self, el: etree._Element, session: Session) -> None:
        """<enable/>, <r/>, <a/> or a late <resume/> on a bound stream."""
        tag = el.tag
        sm = self.sm
        if tag == T_SM_REQUEST:
            if sm is not None:
                session.send(sm.ack())  # §4: MUST answer; through the writer, in order
        elif tag == T_SM_ACK:
            if sm is None:
                return
            try:
                h = parse_h(el.get("h"))
            except ValueError:
                raise StreamError(StreamCondition.INVALID_XML, "invalid 'h'") from None
            try:
                released = sm.release(h)
            except HandledCountTooHigh as exc:
                raise HandledCountError(exc) from None  # §6
            for data in released:
                self.ctx.sessions.deliveries.acknowledged(session, data)
        elif tag == T_SM_ENABLE:
            config = self.ctx.config.stream_management
            if not config.enabled:
                session.send(failed("feature-not-implemented"))
            elif sm is not None:
                session.send(failed("unexpected-request"))  # §3: at most one <enable/>
            else:
                self._enable(el, session)
        else:  # <resume/> after binding: too late (§5 replaces binding)
            session.send(failed("unexpected-request"))

    def _enable(self, el: etree._Element, session: Session) -> None:
        config = self.ctx.config.stream_management
        resume = el.get("resume") in ("true", "1")
        sm = StreamManagement(max_unacked=config.max_unacked,
                              sm_id=new_sm_id() if resume else None)
        self.sm = sm  # §4: the inbound count starts on receiving <enable/>
        timeout = config.resume_timeout
        wanted = el.get("max", "")
        if wanted.isdigit():
            timeout = min(timeout, float(wanted))  # §3: the client's preferred maximum
        self._resume_timeout = timeout
        if sm.id is not None:
            self.ctx.sessions.resumable[sm.id] = session
            session.features[SM_KEY] = _Resumable(sm, self._outbox_recv, self, timeout)
        # From here on what the session is given counts (after the marker) and may be lost.
        self.ctx.sessions.deliveries.start_tracking(session)
        marker = sm.enabled(int(timeout))
        self._enabled_marker = marker
        session.send(marker)

    async def _enable_too_early(self) -> None:
        # XEP-0198 §3: not before resource binding.
        await self._send(failed("unexpected-request"))

    async def _resume(self, el: etree._Element) -> None:
        """XEP-0198 §5: take over a session whose stream was interrupted, instead of binding."""
        assert self.authenticated is not None
        if not self.ctx.config.stream_management.enabled:
            await self._send(failed("feature-not-implemented"))  # §5
            return
        previd = el.get("previd", "")
        try:
            h = parse_h(el.get("h"))
        except ValueError:
            await self._send(failed("bad-request"))
            return
        session = self._resumable(previd)
        link = session.features.get(SM_KEY) if session is not None else None
        if session is None or not isinstance(link, _Resumable):
            # §5: unknown or expired; the client may bind a resource on this same stream.
            await self._send(failed("item-not-found"))
            return
        old = link.owner
        if not old._hibernating:
            # §5 Example 15: the old stream is still open: conflict, and it lets go.
            old._taken_over = True
            old.close_with(StreamError(StreamCondition.CONFLICT, "the session was resumed"))
            with trio.move_on_after(5):
                await old._hibernation().wait()
            if self._resumable(previd) is not session or not old._hibernating:
                await self._send(failed("item-not-found"))
                return
        sm = link.sm
        try:
            released = sm.release(h)  # §5: 'h' on <resume/> counts as an <a/>
        except HandledCountTooHigh as exc:
            raise HandledCountError(exc) from None
        for data in released:
            self.ctx.sessions.deliveries.acknowledged(session, data)
        old._resumed = True
        assert old._wake is not None  # set up before _hibernating
        old._wake.set()
        link.owner = self
        self.sm = sm
        self._sm_counting = True
        self._resume_timeout = link.timeout
        self.session = session
        self._outbox_send = session.outbox
        self._outbox_recv = link.outbox
        session.rebind(self.close_with, secure=self.secure, direct=self._write_now)
        session.hibernated = False
        # §5: <resumed/>, then every stanza still unacknowledged, in order; what was queued
        # during the hibernation follows through the writer.
        resent = sm.resumed() + b"".join(sm.unacked)
        held = old.client_state.take_all()  # XEP-0352: held while inactive, never written
        if held:
            resent += b"".join(self._count_sent(held))
        await self._send(resent)
        self.state = State.BOUND
        self.log.info("resumed %s", session.jid,
                      extra={"event": "c2s.session_resumed", "jid": str(session.jid)})

    def _resumable(self, previd: str) -> Session | None:
        session = self.ctx.sessions.resumable.get(previd)
        if session is None or session.closed or session.jid.bare != self.authenticated:
            return None
        return session

    def _may_hibernate(self, session: Session) -> bool:
        """§7: an unfinished stream keeps its session for a while; a clean close does not."""
        if self.sm is None or not self.sm.resumable or session.closed or session.displaced:
            return False
        if self.ctx.shutting_down:
            return False
        timed_out = (self._pending_error is not None
                     and self._pending_error.condition is StreamCondition.CONNECTION_TIMEOUT)
        return self._lost or self._taken_over or timed_out

    async def _hibernate(self, session: Session) -> None:
        """Keep ``session`` bound (same JID, same presence) until resumed or expired.

        Stanzas routed to it meanwhile wait in its bounded outbox; an overflow or a shutdown
        closes it, which wakes this wait early.
        """
        self._wake = wake = trio.Event()
        self._hibernating = True
        session.hibernated = True
        self._hibernation().set()
        if session.closed or self.ctx.shutting_down:
            wake.set()  # closed while the connection was winding down
        self.log.info("session %s hibernated", session.jid,
                      extra={"event": "c2s.session_hibernated", "jid": str(session.jid)})
        try:
            with trio.move_on_after(self._resume_timeout):
                await wake.wait()
        finally:
            if not self._resumed:
                with trio.move_on_after(5) as scope:
                    scope.shield = True
                    await self._end_session(session)

    def _hibernation(self) -> trio.Event:
        """Set once this connection's session hibernates (awaited by a <resume/> elsewhere)."""
        if self._hibernated is None:
            self._hibernated = trio.Event()
        return self._hibernated

    def _forget_resumable(self, session: Session) -> None:
        """The session ends for good: a later <resume/> must not find it."""
        sm = self.sm
        resumable = self.ctx.sessions.resumable
        if sm is not None and sm.id is not None and resumable.get(sm.id) is session:
            del resumable[sm.id]

    def _sm_leftovers(self) -> list[bytes]:
        """Stanzas the client never acknowledged, then those never written (in order)."""
        assert self.sm is not None
        leftovers = list(self.sm.unacked)
        self.sm.unacked.clear()
        leftovers += self._kept_for_handover  # taken from the outbox at shutdown, unwritten
        self._kept_for_handover = []
        leftovers += self.client_state.take_all()  # held by XEP-0352, never written
        while True:
            try:
                if data := self._outbox_recv.receive_nowait():  # b"": a wake-up (XEP-0352)
                    leftovers.append(data)
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return leftovers

    def _handover(self, session: Session, leftovers: list[bytes]) -> list[tuple[bytes, float]]:
        """Which leftovers this session must hand over: not those another resource of the
        account received or still holds (XEP-0198 §4 for one account, not one stream)."""
        return self.ctx.sessions.deliveries.ended(session, leftovers)

    async def _reroute(self, session: Session, handover: list[tuple[bytes, float]]) -> None:
        """§4: treat unacked stanzas as sent to an unavailable resource (RFC 6121 §8.5.3.2).

        A chat or normal message with a body goes to the account's other available resources
        as if sent to the bare JID, else to offline storage (XEP-0160), stamped with the time
        it was first delivered (§4 and XEP-0203), not the time the session ended; if both
        fail, and for iq requests, the sender gets service-unavailable. Carbon copies and our
        own messages (from the account itself) are dropped.
        """
        try:
            await self._reroute_each(session, handover)
        except Exception:
            self.log.exception("could not hand over the unacknowledged stanzas of %s", session.jid)

    async def _reroute_each(self, session: Session, handover: list[tuple[bytes, float]]) -> None:
        router = self.ctx.router
        bare = session.jid.bare
        for data, first_sent in handover:
            st = _handed_over(data, bare)
            if st is None:
                continue
            el = st.element
            kind, type_ = st.kind, st.type
            if kind == "message":
                _stamp_delay(el, bare.domain, first_sent)
                targets = [s for s in router.message_targets(bare, type_)
                           if s is not session and not s.closed]
                if targets:
                    for target in targets:
                        target.send(el)
                    continue
                if await self.ctx.hooks.fire("message/offline", st):
                    continue
                await router.bounce(st, StanzaError(Condition.SERVICE_UNAVAILABLE))
            elif kind == "iq" and type_ in ("get", "set"):
                await router.bounce(st, StanzaError(Condition.SERVICE_UNAVAILABLE))


def handed_over(data: bytes, account: JID) -> bool:
    """Whether the hand-over of :meth:`StreamResumption._reroute` keeps ``data`` (else drops it)."""
    return _handed_over(data, account) is not None


def _handed_over(data: bytes, account: JID) -> Stanza | None:
    """RFC 6121 §8.5: a chat or normal message with a body, not the account's own, or an iq
    request; anything else sent to a resource that went away is dropped."""
    if not is_stanza(data):
        return None
    try:
        el = etree.fromstring(data)
        sender = JID.parse(el.get("from", ""))
    except (etree.XMLSyntaxError, InvalidJID):
        return None
    st = Stanza(el, sender, account)
    kind, type_ = st.kind, st.type
    if kind == "message" and type_ in ("chat", "normal"):
        if sender.bare == account or el.find(ns.C_BODY) is None:
            return None
        return st
    if kind == "iq" and type_ in ("get", "set"):
        return st
    return None


def _stamp_delay(el: etree._Element, domain: str, when: float) -> None:
    """XEP-0203 §3 (and XEP-0198 §4): when the server first tried to deliver the message.

    A stamp this server already added (an earlier offline storage) is the older, truer one.
    """
    if any(delay.get("from") == domain for delay in el.findall(_DELAY)):
        return
    stamp = datetime.datetime.fromtimestamp(when, datetime.UTC)
    delay = etree.SubElement(el, _DELAY, nsmap={None: ns.DELAY})
    delay.set("from", domain)
    delay.set("stamp", stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

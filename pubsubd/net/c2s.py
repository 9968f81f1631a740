"""One client connection (RFC 6120 §4-§7): negotiation, then stanzas to the router.

The reader runs negotiation in order — stream header, STARTTLS, SASL, stream restart, resource
binding — each step a small method that either advances ``self.state`` or raises a
:class:`StreamError`. What may arrive in each state is a table (:data:`ALLOWED`), so an element
out of order is refused in one place. After binding, a writer task drains the session's bounded
outbox, joining everything queued into one ``send_all``; while it waits on an empty outbox, a
plain-TCP stream's stanzas are written by the direct-writes task instead
(:mod:`pubsubd.net.direct_writes`), so a stanza costs no wake-up of this connection's tasks.

The protocol features are mixins, one module each: SASL (:mod:`pubsubd.net.c2s_sasl`), resource
binding (:mod:`pubsubd.net.c2s_binding`) and XEP-0198 (:mod:`pubsubd.net.c2s_resumption`); this
module keeps the lifecycle, the header and features, STARTTLS and the reader and writer.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import ssl
from copy import deepcopy

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.core.context import ServerContext
from pubsubd.core.session import Session
from pubsubd.errors import StreamCondition, StreamError
from pubsubd.jid import JID, InvalidJID
from pubsubd.logging_setup import ContextAdapter
from pubsubd.net.c2s_binding import ResourceBinding
from pubsubd.net.c2s_resumption import SM_KEY, StreamResumption, handed_over
from pubsubd.net.c2s_sasl import MAX_SASL_ATTEMPTS, SaslNegotiation
from pubsubd.net.c2s_state import (
    SM_TAGS,
    T_ABORT,
    T_AUTH,
    T_BIND,
    T_RESPONSE,
    T_SESSION,
    T_SM_ACK,
    T_SM_ENABLE,
    T_SM_REQUEST,
    T_SM_RESUME,
    T_STARTTLS,
    State,
    StreamRestart,
)
from pubsubd.net.direct_writes import direct_writes, writer_waits
from pubsubd.net.exception_groups import decisive
from pubsubd.net.idle_watch import idle_watch
from pubsubd.stream.client_state import CSI, T_ACTIVE, T_INACTIVE, ClientState
from pubsubd.stream.parser import ElementReceived, StreamClosed, StreamOpened, StreamParser
from pubsubd.stream.stream_management import StreamManagement
from pubsubd.xml import builders

__all__ = [
    "ALLOWED", "MAX_SASL_ATTEMPTS", "READ_SIZE", "SERVER_LANG", "SM_KEY", "SM_TAGS", "T_ABORT",
    "T_AUTH", "T_BIND", "T_RESPONSE", "T_SESSION", "T_SM_ACK", "T_SM_ENABLE", "T_SM_REQUEST",
    "T_SM_RESUME", "T_STARTTLS", "C2SConnection", "State", "refuse",
]

log = logging.getLogger(__name__)

READ_SIZE = 65536
# A graceful shutdown writes what is queued for each client, but a client that does not read
# must not hold the server: after this long its stream is cut.
SHUTDOWN_FLUSH_SECONDS = 2.0
# Seconds of silence after which the read that ends it parks the parser once it is handled.
PARK_AFTER = 5.0
# RFC 6120 §4.7.4: our error texts are English, so the response header always says "en"
# (it matches "en" and, by the lookup scheme of RFC 4647, "en-*"; other languages fall back).
SERVER_LANG = "en"
_LANG_TAG = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")  # RFC 5646 shape, loosely

# The negotiation table: which first-level elements each state accepts.
ALLOWED: dict[State, frozenset[str]] = {
    State.EXPECT_STARTTLS: frozenset({T_STARTTLS, ns.C_IQ}),
    State.EXPECT_AUTH: frozenset({T_STARTTLS, T_AUTH, ns.C_IQ}),
    State.SASL_SCRAM: frozenset({T_RESPONSE, T_ABORT}),
    # XEP-0198 §3/§5: <enable/> here is refused (before binding); <resume/> replaces binding.
    State.EXPECT_BIND: frozenset({ns.C_IQ, T_SM_ENABLE, T_SM_RESUME}),
    State.BOUND: ns.STANZA_TAGS,
}


class C2SConnection(SaslNegotiation, ResourceBinding, StreamResumption):
    """A client stream from accept to close; the mixins add SASL, binding and XEP-0198."""

    # One slot per attribute, no instance dict: an idle connection is mostly this object.
    __slots__ = (
        "ctx", "stream", "peer", "secure", "state", "parser", "domain", "lang", "header_sent",
        "stream_id", "authenticated", "session", "sasl_failures", "sasl_refusals", "_scram",
        "_scram_user", "_scram_account", "_login_to_record", "_outbox_send", "_outbox_recv",
        "_pending_error", "_cancel", "_last_received", "_idle_scope", "_idle_timeout",
        "_waiting_input", "_keepalive", "_writer_waiting_since", "_keepalive_due",
        "_pending_events", "sm", "_sm_counting", "_enabled_marker", "_resume_timeout", "_lost",
        "_taken_over", "_hibernating", "_hibernated", "_wake", "_resumed", "client_state",
        "_kept_for_handover", "_unwritten", "_mid_write", "_rest", "_unsent", "_direct",
    )

    def __init__(self, ctx: ServerContext, stream: trio.abc.Stream, peer: str, *,
                 direct_tls: bool = False) -> None:
        self.ctx = ctx
        self.stream: trio.abc.Stream = stream
        self.peer = peer
        self.secure = direct_tls
        self.state = State.EXPECT_HEADER
        self.parser = self._new_parser()
        self.domain = ctx.config.primary_domain
        self.lang = SERVER_LANG  # the client's preferred language (RFC 6120 §4.7.4)
        self.header_sent = False
        self.stream_id: str | None = None  # drawn with the first header of each stream
        self.authenticated: JID | None = None
        self.session: Session | None = None
        self.sasl_failures = 0  # wrong credentials (RFC 6120 §6.4.5)
        self.sasl_refusals = 0  # other refused SASL steps
        self._scram = None
        self._scram_user = ""
        self._scram_account = None
        self._login_to_record: JID | None = None  # stamped off the bind's critical path
        send, recv = trio.open_memory_channel[bytes](ctx.config.limits.outbox_stanzas)
        self._outbox_send: trio.MemorySendChannel[bytes] = send
        self._outbox_recv: trio.MemoryReceiveChannel[bytes] = recv
        self._pending_error: StreamError | None = None
        self._cancel = trio.CancelScope()
        self._last_received = trio.current_time()
        self._idle_scope: trio.CancelScope | None = None  # set while reading stanzas
        self._idle_timeout = ctx.config.limits.idle_timeout
        self._waiting_input = False  # in a socket read (see look)
        self._keepalive = ctx.config.limits.keepalive_interval
        self._writer_waiting_since: float | None = None  # the writer waits on an empty outbox
        self._keepalive_due = False
        # XEP-0198: the SM state, whether the writer counts yet (from <enabled/> on), and the
        # hibernation of a resumable session whose connection dropped.
        self.sm: StreamManagement | None = None
        self._sm_counting = False
        self._enabled_marker: bytes | None = None
        self._resume_timeout = ctx.config.stream_management.resume_timeout
        self._lost = False  # the transport failed: no clean </stream:stream>
        self._taken_over = False  # a <resume/> on another connection replaces this one
        self._hibernating = False
        self._hibernated: trio.Event | None = None
        self._wake: trio.Event | None = None
        self._resumed = False
        self._kept_for_handover: list[bytes] = []  # queued at shutdown, for the hand-over
        self._unwritten: list[bytes] = []  # the writer's last batch when the shutdown came
        self._mid_write = False  # the writer is inside send_all, or _rest ends a half stanza
        self._direct: list[bytes] | None = None  # taken by _write_now, not yet written
        self._rest = b""  # what the kernel did not take of a direct write, for the writer
        # Stanzas taken for a direct write of which the kernel took nothing: whole stanzas for
        # the writer, still separate so that a shutdown can leave those the hand-over keeps.
        self._unsent: list[bytes] = []
        self.client_state = ClientState()  # XEP-0352

    @property
    def log(self) -> ContextAdapter:
        """This connection's logger (made when something is logged, not kept per connection)."""
        return ContextAdapter(log, {"peer": self.peer})  # merges each call's extra=

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            with self._cancel:
                try:
                    await self._serve()
                except BaseExceptionGroup as group:
                    # The reader and writer share a nursery, which wraps what they raise; the
                    # handlers below want the one error that ended the connection.
                    leaf = decisive(group)
                    if leaf is None:
                        raise  # only cancellation: the scope absorbs it
                    raise leaf from None
        except StreamError as err:
            self._pending_error = err
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            self.log.debug("connection lost: %s", exc)
            self._pending_error = None
            self._lost = True
            await self._finish(send_close=False)
            return
        except Exception:
            self.log.exception("internal error on connection from %s", self.peer)
            self._pending_error = StreamError(StreamCondition.INTERNAL_SERVER_ERROR)
        await self._finish(send_close=True)

    def close_with(self, error: StreamError) -> None:
        """Called by the session (conflict, overload, shutdown): end this connection."""
        if self._pending_error is None:
            self._pending_error = error
        self._cancel.cancel()
        if self._hibernating and self._wake is not None:
            self._wake.set()  # ends the hibernation early (outbox overflow, shutdown)

    async def _finish(self, send_close: bool) -> None:
        self.parser.release()  # nothing more is read
        session = self.session
        self.session = None
        hibernate = session is not None and self._may_hibernate(session)
        queued = self._queued_at_shutdown() if send_close and session is not None else []
        self._direct = None  # nothing is written after the stream's end
        if session is not None and not hibernate:
            await self._end_session(session)
        with trio.move_on_after(5) as scope:
            scope.shield = True
            try:
                if queued and not await self._flush(queued):
                    send_close = False  # a stuck client: the stream is cut, not closed
                if send_close:
                    tail = b""
                    if self._pending_error is not None:
                        if not self.header_sent:
                            tail += self._header_bytes()
                        tail += self._pending_error.to_bytes()
                        self.log.info("stream error %s sent to %s",
                                      self._pending_error.condition.value, self.peer,
                                      extra={"event": "c2s.stream_error",
                                             "jid": str(self.authenticated or ""),
                                             "status": self._pending_error.condition.value})
                    elif not self.header_sent:
                        tail += self._header_bytes()
                    tail += b"</stream:stream>"
                    await self.stream.send_all(tail)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
                pass
            try:
                await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
                pass
        if hibernate:
            assert session is not None
            await self._hibernate(session)

    def _queued_at_shutdown(self) -> list[bytes]:
        """What a graceful shutdown still writes before its stream error (RFC 6120 §4.4).

        Modules queue their farewells (MUC status 332) just before the streams close, so a
        ``system-shutdown`` stream first writes what is queued, XEP-0352-held stanzas too.
        With XEP-0198 the session cannot be resumed after a shutdown: what the hand-over keeps
        (RFC 6121 §8.5: a message with a body goes to offline storage, a request is bounced)
        stays queued for it, so nothing is delivered twice; the rest would be dropped, so it
        is written.
        """
        if not self._shutdown_called():
            return []
        rest, self._rest = self._rest, b""  # a direct write's end: it completes the stanza
        # Taken for a direct write, unwritten: the kernel refused them, or the pass never came.
        direct, self._direct = [*self._unsent, *(self._direct or [])], None
        self._unsent = []
        if self._mid_write and not rest:
            return []  # after half a stanza nothing more can be written well-formed
        queued = self.client_state.take_all() + self._unwritten
        self._unwritten = []
        while True:
            try:
                if data := self._outbox_recv.receive_nowait():  # b"": a wake-up (XEP-0352)
                    queued.append(data)
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        if self.sm is not None and self.authenticated is not None:
            account = self.authenticated.bare
            written: list[bytes] = []
            for data in queued:
                (self._kept_for_handover if handed_over(data, account) else written).append(data)
            queued = written
            # Direct writes were counted when taken: the hand-over finds those it keeps among
            # the unacknowledged stanzas, so only the others are written.
            direct = [data for data in direct if not handed_over(data, account)]
        return [rest, *direct, *queued] if rest else [*direct, *queued]

    def _shutdown_called(self) -> bool:
        error = self._pending_error
        return error is not None and error.condition is StreamCondition.SYSTEM_SHUTDOWN

    async def _flush(self, queued: list[bytes]) -> bool:
        """Write ``queued`` within :data:`SHUTDOWN_FLUSH_SECONDS`; False if that ran out."""
        with trio.move_on_after(SHUTDOWN_FLUSH_SECONDS):
            await self.stream.send_all(b"".join(queued))
            return True
        self.log.info("%s did not take its last stanzas in time", self.peer)
        return False

    async def _end_session(self, session: Session) -> None:
        """The resource goes away for good: unregister it and tell the modules."""
        self._forget_resumable(session)
        session.closed = True
        handover = self._handover(session, self._sm_leftovers()) if self.sm is not None else []
        # A session displaced by a resource conflict is no longer in the registry, but
        # its resource still went away: modules (presence) must hear of it too.
        if self.ctx.sessions.remove(session) or session.displaced:
            await self._record_logout(session)
            self.log.info("session %s closed", session.jid,
                          extra={"event": "c2s.session_closed", "jid": str(session.jid)})
            if handover:
                await self._reroute(session, handover)
            await self.ctx.hooks.notify("session/closed", session)

    async def _record_login(self, jid: JID) -> None:
        """Stamp the account's login time (XEP-0133 and XEP-0012 report it).

        It runs beside the session rather than before it, so a login costs no database round
        trip on its critical path; it is shielded so that a client that disconnects at once
        still gets the stamp, before the logout stamp of :meth:`_finish`.
        """
        with trio.move_on_after(5) as scope:
            scope.shield = True
            try:
                await self.ctx.accounts.record_login(jid.local or "", jid.domain)
            except Exception:
                self.log.exception("could not record the login of %s", jid)

    async def _record_logout(self, session: Session) -> None:
        """Stamp the account's logout time (XEP-0012 §4 answers "seconds since logout")."""
        with trio.move_on_after(5) as scope:
            scope.shield = True  # a shutdown must not lose the stamp
            try:
                await self.ctx.accounts.record_logout(session.jid.local or "", session.jid.domain)
            except Exception:
                self.log.exception("could not record the logout of %s", session.jid)

    async def _serve(self) -> None:
        limits = self.ctx.config.limits
        with trio.move_on_after(limits.handshake_timeout) as negotiation:
            await self._negotiate()
        if negotiation.cancelled_caught:
            raise StreamError(StreamCondition.CONNECTION_TIMEOUT, "negotiation took too long")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer)
            if self._login_to_record is not None:
                nursery.start_soon(self._record_login, self._login_to_record)
            try:
                await self._read_stanzas()
            finally:
                nursery.cancel_scope.cancel()

    # --- I/O helpers ----------------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _send_el(self, el: etree._Element) -> None:
        await self.stream.send_all(etree.tostring(el))

    async def _events(self):  # type: ignore[no-untyped-def]
        """Parsed stream events, reading from the socket as needed.

        Once bound, the connection tells :mod:`pubsubd.net.idle_watch` whether it waits for
        input; the time of its last read is ``_last_received``.

        The parser is parked (its lxml state released, see :mod:`pubsubd.stream.parser`)
        when the stream is likely to rest: after the read that bound the resource, and after
        a read that ended a silence of :data:`PARK_AFTER` seconds. A busy stream keeps its
        parser; a mostly idle one pays for a fresh parser only on its rare reads.
        """
        while True:
            self._waiting_input = True
            data = await self._receive()
            self._waiting_input = False  # routing what arrived is not idleness
            if not data:
                raise trio.BrokenResourceError("peer closed the connection")
            now = trio.current_time()
            rest = now - self._last_received >= PARK_AFTER or self.state is not State.BOUND
            self._last_received = now
            for event in self.parser.feed(data):
                yield event
            event = data = None  # not kept while waiting: a stanza keeps its whole document
            self.parser.check()  # a violation after those events ends the stream now
            if rest and self.state is State.BOUND:
                self.parser.park()

    async def _receive(self) -> bytes | bytearray:
        """One read from the client.

        A plain TCP stream is read from its socket directly: wait until it is readable, then
        read. trio's ``SocketStream`` reads first and waits only when that would block, which
        on a connection that routed all it got (the usual case: the client waits for an
        answer) costs a failed system call, an exception and a context manager per read.
        Waiting first is also the yield a busy reader owes the other connections.
        """
        stream = self.stream
        if type(stream) is not trio.SocketStream:
            return await stream.receive_some(READ_SIZE)
        fd = stream.socket.fileno()
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                return os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue  # readable, then not (another reader cannot exist: spurious)

    # --- negotiation -----------------------------------------------------------------------

    def _new_parser(self) -> StreamParser:
        """A parser for the next stream; it notes child tags if a module wants them."""
        return StreamParser(self.ctx.config.limits.max_stanza_bytes,
                            note_children=self.ctx.router.wants_children)

    async def _negotiate(self) -> None:
        while self.state is not State.BOUND:
            try:
                await self._negotiate_stream()
            except StreamRestart:
                self.parser.release()
                self.parser = self._new_parser()
                self.state = State.EXPECT_HEADER
                continue

    async def _negotiate_stream(self) -> None:
        events = self._events()
        async for event in events:
            match event:
                case StreamOpened():
                    await self._on_header(event)
                case StreamClosed():
                    raise trio.BrokenResourceError("stream closed during negotiation")
                case ElementReceived(element=el):
                    allowed = ALLOWED.get(self.state, frozenset())
                    if el.tag not in allowed:
                        raise self._out_of_order(el)
                    await self._on_negotiation_element(el)
                    if self.state is State.BOUND:
                        self._pending_events = events
                        return

    def _out_of_order(self, el: etree._Element) -> StreamError:
        if el.tag in ns.STANZA_TAGS:
            # RFC 6120 §6.4.? / §7.1: no stanzas before authentication and binding.
            if self.state is State.EXPECT_STARTTLS:
                return StreamError(StreamCondition.POLICY_VIOLATION, "STARTTLS is required first")
            return StreamError(StreamCondition.NOT_AUTHORIZED, "authenticate and bind first")
        if etree.QName(el).namespace in (ns.STREAM, ns.TLS, ns.SASL, ns.BIND):
            return StreamError(StreamCondition.POLICY_VIOLATION, "unexpected negotiation element")
        return StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE)

    async def _on_header(self, header: StreamOpened) -> None:
        if header.lang and _LANG_TAG.fullmatch(header.lang):
            # RFC 6120 §4.7.4: remembered as the default xml:lang of the client's stanzas.
            self.lang = header.lang
        to = header.to
        if to is not None:
            try:
                domain = JID.parse(to).domain
            except InvalidJID:
                domain = None
        else:
            domain = self.ctx.config.primary_domain
        self.domain = domain if domain in self.ctx.config.domains else self.domain
        await self._send(self._header_bytes(reply_to=header.from_))
        self.header_sent = True
        # RFC 6120 §4.9.3.10 / §4.8.5: content namespace and stream prefix.
        if header.default_ns != ns.CLIENT:
            raise StreamError(StreamCondition.INVALID_NAMESPACE, "expected jabber:client")
        if header.stream_prefix != "stream":
            raise StreamError(StreamCondition.BAD_NAMESPACE_PREFIX, "use the 'stream' prefix")
        # RFC 6120 §4.9.3.6: a 'to' we do not serve.
        if domain is None or domain not in self.ctx.config.domains:
            raise StreamError(StreamCondition.HOST_UNKNOWN, f"{to} is not served here")
        # RFC 6120 §4.7.5: version 1.0 or any 1.x; anything else (or none) is unsupported.
        version = header.version
        if version is None or not _version_ok(version):
            raise StreamError(StreamCondition.UNSUPPORTED_VERSION, "XMPP 1.0 is required")
        await self._send_features()

    def _header_bytes(self, reply_to: str | None = None) -> bytes:
        self.stream_id = self.stream_id or secrets.token_urlsafe(16)
        to = f" to='{_attr(reply_to)}'" if reply_to else ""
        return (
            f"<?xml version='1.0'?><stream:stream xmlns='{ns.CLIENT}' "
            f"xmlns:stream='{ns.STREAM}' from='{_attr(self.domain)}'{to} "
            f"id='{self.stream_id}' version='1.0' xml:lang='{SERVER_LANG}'>"
        ).encode()

    async def _send_features(self) -> None:
        cfg = self.ctx.config
        features = etree.Element(ns.STREAM_FEATURES, nsmap={"stream": ns.STREAM})
        if self.authenticated is None:
            tls_required = cfg.tls.require_c2s and not self.secure
            if not self.secure and self.ctx.tls is not None:
                starttls = builders.child(features, ns.TLS, "starttls")
                if cfg.tls.require_c2s:
                    etree.SubElement(starttls, ns.clark(ns.TLS, "required"))
            if tls_required:
                self.state = State.EXPECT_STARTTLS
            else:
                mechs = builders.child(features, ns.SASL, "mechanisms")
                for name in self._mechanisms():
                    etree.SubElement(mechs, ns.clark(ns.SASL, "mechanism")).text = name
                if bindings := self._channel_bindings():
                    # XEP-0440 §3: the types -PLUS can use here, so a client does not try one
                    # this connection cannot give (tls-unique under TLS 1.3, tls-exporter).
                    offered = builders.child(features, ns.SASL_CB, "sasl-channel-binding")
                    for kind in bindings:
                        etree.SubElement(offered, ns.clark(ns.SASL_CB, "channel-binding"),
                                         type=kind)
                if cfg.registration.enabled:
                    builders.child(features, ns.REGISTER_FEATURE, "register")
                self.state = State.EXPECT_AUTH
        else:
            builders.child(features, ns.BIND, "bind")
            builders.child(features, CSI, "csi")  # XEP-0352 §3
            # RFC 3921 session establishment, optional per RFC 6121 Appendix E.
            session = builders.child(features, ns.SESSION, "session")
            etree.SubElement(session, ns.clark(ns.SESSION, "optional"))
            if cfg.stream_management.enabled:
                builders.child(features, ns.SM, "sm")  # XEP-0198 §2, offered with bind
            for feature in self.ctx.post_auth_features:
                features.append(_copy(feature))
            self.state = State.EXPECT_BIND
        await self._send_el(features)

    async def _on_negotiation_element(self, el: etree._Element) -> None:
        tag = el.tag
        if tag == T_STARTTLS:
            await self._starttls()
        elif tag == T_AUTH:
            await self._auth(el)
        elif tag == T_RESPONSE:
            await self._scram_final(el)
        elif tag == T_ABORT:
            await self._sasl_abort()
        elif tag == ns.C_IQ:
            await self._negotiation_iq(el)
        elif tag == T_SM_ENABLE:
            await self._enable_too_early()
        elif tag == T_SM_RESUME:
            await self._resume(el)

    async def _starttls(self) -> None:
        if self.secure or self.ctx.tls is None:
            # RFC 6120 §5.4.2.2: failure, then close.
            await self._send(f"<failure xmlns='{ns.TLS}'/></stream:stream>".encode())
            raise trio.BrokenResourceError("STARTTLS refused")
        await self._send(f"<proceed xmlns='{ns.TLS}'/>".encode())
        tls_stream = trio.SSLStream(self.stream, self.ctx.tls, server_side=True)
        await tls_stream.do_handshake()
        self.stream = tls_stream
        self.secure = True
        self.header_sent = False
        self.stream_id = None
        raise StreamRestart

    # --- established session ---------------------------------------------------------------

    async def _read_stanzas(self) -> None:
        watch = idle_watch()
        watch.add(self, min(self._idle_timeout, self._keepalive))
        try:
            await self._route_stanzas()
        finally:
            watch.discard(self)
            self._idle_scope = None

    def look(self, now: float) -> bool:
        """What silence calls for at ``now`` (asked by :mod:`pubsubd.net.idle_watch`): a
        client silent for ``limits.idle_timeout`` while we wait for its input is timed out
        (True: it needs no more looks); a writer with nothing sent for
        ``limits.keepalive_interval`` is woken to send a keep-alive."""
        if self._waiting_input and now - self._last_received >= self._idle_timeout:
            if self._idle_scope is not None:
                self._idle_scope.cancel()  # ends the read: connection-timeout
            return True
        since = self._writer_waiting_since
        if since is not None and not self._keepalive_due and now - since >= self._keepalive:
            self._keepalive_due = True
            try:
                self._outbox_send.send_nowait(b"")  # an empty item wakes the writer
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # full: the writer is busy anyway; closed: the connection ends
        return False

    async def _route_stanzas(self) -> None:
        assert self.session is not None
        session = self.session
        events = self._pending_events
        route = self.ctx.router.route_from_client
        stanza_tags = ns.STANZA_TAGS
        with trio.CancelScope() as idle:
            self._idle_scope = idle  # cancelled by the idle watch (see look)
            async for event in events:
                if type(event) is not ElementReceived:  # the common case tested first
                    if isinstance(event, StreamClosed):
                        return
                    raise StreamError(StreamCondition.INVALID_XML)  # a second stream header
                el = event.element
                tag = el.tag
                if tag in stanza_tags:
                    if self.sm is not None:
                        self.sm.stanza_received()  # XEP-0198 §4: 'h' counts stanzas
                    lang = self.lang
                    if lang and el.get(ns.XML_LANG) is None:
                        el.set(ns.XML_LANG, lang)  # RFC 6120 §4.7.4
                    if tag == ns.C_IQ and self._is_session_request(el):
                        self._answer_session_request(el, session)
                        continue
                    await route(session, el, event.children)
                elif tag in SM_TAGS:
                    self._on_sm_element(el, session)
                elif tag in (T_ACTIVE, T_INACTIVE):
                    self._on_client_state(tag == T_ACTIVE)
                elif tag == T_STARTTLS or etree.QName(el).namespace in (ns.SASL, ns.BIND):
                    raise StreamError(StreamCondition.POLICY_VIOLATION, "negotiation is over")
                else:
                    # RFC 6120 §4.9.3.23
                    raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE)
        if idle.cancelled_caught:
            raise StreamError(StreamCondition.CONNECTION_TIMEOUT, "idle for too long")

    async def _writer(self) -> None:
        """Send everything queued in one ``send_all``; a whitespace keep-alive when silent."""
        recv = self._outbox_recv
        while True:
            try:
                first = recv.receive_nowait()  # busy: no timer needed
                silent = False
            except trio.WouldBlock:
                silent = True  # waited for below, outside the handler: an exception kept
                # alive while waiting would keep its traceback and frames too
            if silent:
                # The idle watch wakes it with an empty item when it waited too long (look).
                self._writer_waiting_since = trio.current_time()
                try:
                    first = await recv.receive()
                finally:
                    self._writer_waiting_since = None
            batch = [first]
            while True:
                try:
                    batch.append(recv.receive_nowait())
                except trio.WouldBlock:
                    break
            if self._shutdown_called():
                self._unwritten = batch  # taken while the shutdown began: _finish decides
                return
            if self._rest or self._unsent:  # a direct write's remainder goes before the rest
                rest = self._rest + b"".join(self._unsent)
                self._rest, self._unsent = b"", []
                self._mid_write = True
                await self.stream.send_all(rest)
                self._mid_write = False
            batch = [data for data in self.client_state.outgoing(batch) if data]
            if not batch:
                if self._keepalive_due:  # nothing else to send: between two stanzas
                    self._keepalive_due = False
                    if self._sm_counting and self.sm is not None and self.sm.unacked:
                        await self.stream.send_all(self.sm.request())  # XEP-0198 §4, on idle
                    else:
                        await self.stream.send_all(b" ")  # RFC 6120 §4.6.1 keep-alive
                continue
            self._keepalive_due = False  # what is sent now keeps the stream alive
            if self.sm is not None:
                batch = self._count_sent(batch)
            self._mid_write = True  # a cancellation now may leave a stanza half written
            await self.stream.send_all(b"".join(batch) if len(batch) > 1 else batch[0])
            self._mid_write = False

    def _write_now(self, data: bytes) -> bool:
        """Take ``data`` for a direct write if the writer is idle; False: queue it instead.

        When the stream is plain TCP, the writer waits on an empty outbox (nothing queued can
        be overtaken) and XEP-0352 holds nothing, the stanza is counted for XEP-0198 as the
        writer would count it and kept in ``_direct``: the direct-writes task
        (:mod:`pubsubd.net.direct_writes`) writes all a connection got in one go, without
        waking its writer. Until then whatever else comes for this client joins it, in order.
        """
        direct = self._direct
        if direct is None:
            stream = self.stream
            if (type(stream) is not trio.SocketStream or self._pending_error is not None
                    or self.client_state.inactive or self.client_state.held or self._rest
                    or self._unsent
                    or not writer_waits(self._outbox_recv)):
                return False
        if self.sm is not None:
            try:
                batch = self._count_sent([data])
            except StreamError as err:  # what the writer would have raised: the stream ends
                self.close_with(err)
                return True  # kept in the unacknowledged queue for the hand-over
        else:
            batch = [data]
        if direct is None:
            self._direct = batch
            direct_writes().add(self)
        else:
            direct += batch
        return True

    def _flush_direct(self) -> None:
        """Write what ``_write_now`` took; the writer finishes what the kernel did not take."""
        direct = self._direct
        if direct is None or self._pending_error is not None:
            return  # the connection ended or ends: _finish decides (a shutdown writes some)
        self._direct = None
        data = b"".join(direct) if len(direct) > 1 else direct[0]
        written = 0
        stream = self.stream
        if (type(stream) is trio.SocketStream and not self._rest and not self._unsent
                and writer_waits(self._outbox_recv)):
            try:
                written = os.write(stream.socket.fileno(), data)
            except OSError:  # EAGAIN, or a broken stream the writer will find out about
                written = 0
            if written == len(data):
                return
            self._mid_write = self._mid_write or written > 0
        # The writer is busy (or the kernel took only part): it writes the rest first.
        if written or self._rest:
            self._rest += data[written:]  # completes a stanza: written as it is
        else:
            self._unsent += direct  # whole stanzas: a shutdown may still leave some out
        try:
            self._outbox_send.send_nowait(b"")  # wakes the writer if it waits
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # a full outbox wakes it anyway

    def _on_client_state(self, active: bool) -> None:
        """XEP-0352 §4: the writer holds or releases what can wait; an empty item wakes it."""
        if not active:
            self.client_state.deactivate()
            return
        self.client_state.inactive = False
        try:
            self._outbox_send.send_nowait(b"")
        except trio.WouldBlock:
            pass  # a full outbox wakes the writer anyway


def _version_ok(version: str) -> bool:
    """RFC 6120 §4.7.5: numeric major.minor; we answer "1.0" to any version from 1.0 up."""
    major, dot, minor = version.partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        return False
    return int(major) >= 1


def _attr(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")
            .replace('"', "&quot;"))


def _copy(el: etree._Element) -> etree._Element:
    return deepcopy(el)


async def refuse(ctx: ServerContext, stream: trio.abc.Stream, peer: str,
                 error: StreamError) -> None:
    """Answer a connection we will not serve: header, stream error, close (RFC 6120 §4.9.1.2).

    Used for the per-IP connection cap, so the client learns why instead of seeing a bare
    TCP close it would retry at once.
    """
    conn = C2SConnection(ctx, stream, peer)
    conn._pending_error = error
    await conn._finish(send_close=True)

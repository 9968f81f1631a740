"""One client connection (RFC 6120 §4-§7): negotiation, then stanzas to the router.

The reader runs negotiation in order — stream header, STARTTLS, SASL, stream restart, resource
binding — each step a small method that either advances ``self.state`` or raises a
:class:`StreamError`. What may arrive in each state is a table (:data:`ALLOWED`), so an element
out of order is refused in one place. After binding, a writer task drains the session's bounded
outbox, joining everything queued into one ``send_all``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import re
import secrets
import ssl
from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.core.context import ServerContext
from pubsubd.core.router import Stanza
from pubsubd.core.session import Session
from pubsubd.errors import Condition, StanzaError, StreamCondition, StreamError
from pubsubd.jid import JID, InvalidJID, prepare_localpart, prepare_resourcepart
from pubsubd.logging_setup import ContextAdapter
from pubsubd.stream.parser import ElementReceived, StreamClosed, StreamOpened, StreamParser
from pubsubd.stream.sasl import (
    PlainServer,
    SaslFailure,
    ScramServer,
    mechanisms_offered,
    verify_password,
)
from pubsubd.stream.stream_management import (
    HandledCountError,
    HandledCountTooHigh,
    StreamManagement,
    failed,
    is_stanza,
    new_sm_id,
    parse_h,
)
from pubsubd.xml import builders

if TYPE_CHECKING:
    from pubsubd.storage.accounts import Account

log = logging.getLogger(__name__)

READ_SIZE = 65536
# RFC 6120 §4.7.4: our error texts are English, so the response header always says "en"
# (it matches "en" and, by the lookup scheme of RFC 4647, "en-*"; other languages fall back).
SERVER_LANG = "en"
_LANG_TAG = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")  # RFC 5646 shape, loosely
MAX_SASL_ATTEMPTS = 3  # RFC 6120 §6.4.5: allow a configurable number of retries (at least 2)


class State(Enum):
    EXPECT_HEADER = auto()
    EXPECT_STARTTLS = auto()  # TLS is required and not yet negotiated
    EXPECT_AUTH = auto()
    SASL_SCRAM = auto()  # waiting for the client's final SCRAM message
    EXPECT_BIND = auto()
    BOUND = auto()


T_STARTTLS = ns.clark(ns.TLS, "starttls")
T_AUTH = ns.clark(ns.SASL, "auth")
T_RESPONSE = ns.clark(ns.SASL, "response")
T_ABORT = ns.clark(ns.SASL, "abort")
T_BIND = ns.clark(ns.BIND, "bind")
T_SESSION = ns.clark(ns.SESSION, "session")
T_SM_ENABLE = ns.clark(ns.SM, "enable")
T_SM_RESUME = ns.clark(ns.SM, "resume")
T_SM_REQUEST = ns.clark(ns.SM, "r")
T_SM_ACK = ns.clark(ns.SM, "a")
SM_TAGS = frozenset({T_SM_ENABLE, T_SM_RESUME, T_SM_REQUEST, T_SM_ACK})
SM_KEY = "xep0198"  # Session.features key of the resumption state

# The negotiation table: which first-level elements each state accepts.
ALLOWED: dict[State, frozenset[str]] = {
    State.EXPECT_STARTTLS: frozenset({T_STARTTLS, ns.C_IQ}),
    State.EXPECT_AUTH: frozenset({T_STARTTLS, T_AUTH, ns.C_IQ}),
    State.SASL_SCRAM: frozenset({T_RESPONSE, T_ABORT}),
    # XEP-0198 §3/§5: <enable/> here is refused (before binding); <resume/> replaces binding.
    State.EXPECT_BIND: frozenset({ns.C_IQ, T_SM_ENABLE, T_SM_RESUME}),
    State.BOUND: ns.STANZA_TAGS,
}


@dataclass(eq=False, slots=True)
class _Resumable:
    """What a resumable session keeps across connections (XEP-0198 §5)."""

    sm: StreamManagement
    outbox: trio.MemoryReceiveChannel[bytes]  # the session's queue, drained by its owner
    owner: C2SConnection
    timeout: float


class _Restart(Exception):
    """The stream restarts (after TLS or SASL): a fresh parser and a new header follow."""


class C2SConnection:
    def __init__(self, ctx: ServerContext, stream: trio.abc.Stream, peer: str, *,
                 direct_tls: bool = False) -> None:
        self.ctx = ctx
        self.stream: trio.abc.Stream = stream
        self.peer = peer
        self.secure = direct_tls
        self.state = State.EXPECT_HEADER
        self.parser = StreamParser(ctx.config.limits.max_stanza_bytes)
        self.domain = ctx.config.primary_domain
        self.lang = SERVER_LANG  # the client's preferred language (RFC 6120 §4.7.4)
        self.header_sent = False
        self.authenticated: JID | None = None
        self.session: Session | None = None
        self.sasl_failures = 0
        self._scram: ScramServer | None = None
        self._scram_user = ""
        self._scram_account: Account | None = None
        self._login_to_record: JID | None = None  # stamped off the bind's critical path
        send, recv = trio.open_memory_channel[bytes](ctx.config.limits.outbox_stanzas)
        self._outbox_send: trio.MemorySendChannel[bytes] = send
        self._outbox_recv: trio.MemoryReceiveChannel[bytes] = recv
        self._pending_error: StreamError | None = None
        self._cancel = trio.CancelScope()
        self._last_received = trio.current_time()
        self._idle_scope: trio.CancelScope | None = None  # set while reading stanzas
        self._idle_timeout = ctx.config.limits.idle_timeout
        self.log = ContextAdapter(log, {"peer": peer})  # merges each call's extra=
        # XEP-0198: the SM state, whether the writer counts yet (from <enabled/> on), and the
        # hibernation of a resumable session whose connection dropped.
        self.sm: StreamManagement | None = None
        self._sm_counting = False
        self._enabled_marker: bytes | None = None
        self._resume_timeout = ctx.config.stream_management.resume_timeout
        self._lost = False  # the transport failed: no clean </stream:stream>
        self._taken_over = False  # a <resume/> on another connection replaces this one
        self._hibernating = False
        self._hibernated = trio.Event()
        self._wake = trio.Event()
        self._resumed = False

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            with self._cancel:
                try:
                    await self._serve()
                except BaseExceptionGroup as group:
                    # The reader and writer share a nursery, which wraps what they raise; the
                    # handlers below want the one error that ended the connection.
                    leaf = _decisive(group)
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
        if self._hibernating:
            self._wake.set()  # ends the hibernation early (outbox overflow, shutdown)

    async def _finish(self, send_close: bool) -> None:
        session = self.session
        self.session = None
        hibernate = session is not None and self._may_hibernate(session)
        if session is not None and not hibernate:
            await self._end_session(session)
        with trio.move_on_after(5) as scope:
            scope.shield = True
            try:
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

    async def _end_session(self, session: Session) -> None:
        """The resource goes away for good: unregister it and tell the modules."""
        sm = self.sm
        resumable = self.ctx.sessions.resumable
        if sm is not None and sm.id is not None and resumable.get(sm.id) is session:
            del resumable[sm.id]
        session.closed = True
        leftovers = self._sm_leftovers() if sm is not None else []
        # A session displaced by a resource conflict is no longer in the registry, but
        # its resource still went away: modules (presence) must hear of it too.
        if self.ctx.sessions.remove(session) or session.displaced:
            await self._record_logout(session)
            self.log.info("session %s closed", session.jid,
                          extra={"event": "c2s.session_closed", "jid": str(session.jid)})
            if leftovers:
                await self._reroute(session, leftovers)
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

        Once bound, the idle limit is a deadline on each socket read (one per read, not one
        cancel scope per stanza: a read often brings many stanzas).
        """
        while True:
            idle = self._idle_scope
            if idle is not None:
                idle.deadline = trio.current_time() + self._idle_timeout
                data = await self.stream.receive_some(READ_SIZE)
                idle.deadline = math.inf  # routing what arrived is not idleness
            else:
                data = await self.stream.receive_some(READ_SIZE)
            if not data:
                raise trio.BrokenResourceError("peer closed the connection")
            self._last_received = trio.current_time()
            for event in self.parser.feed(data):
                yield event
            self.parser.check()  # a violation after those events ends the stream now

    # --- negotiation -----------------------------------------------------------------------

    async def _negotiate(self) -> None:
        while self.state is not State.BOUND:
            try:
                await self._negotiate_stream()
            except _Restart:
                self.parser = StreamParser(self.ctx.config.limits.max_stanza_bytes)
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
        self.stream_id = getattr(self, "stream_id", None) or secrets.token_urlsafe(16)
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
                if cfg.registration.enabled:
                    builders.child(features, ns.REGISTER_FEATURE, "register")
                self.state = State.EXPECT_AUTH
        else:
            builders.child(features, ns.BIND, "bind")
            # RFC 3921 session establishment, optional per RFC 6121 Appendix E.
            session = builders.child(features, ns.SESSION, "session")
            etree.SubElement(session, ns.clark(ns.SESSION, "optional"))
            if cfg.stream_management.enabled:
                builders.child(features, ns.SM, "sm")  # XEP-0198 §2, offered with bind
            for feature in self.ctx.post_auth_features:
                features.append(_copy(feature))
            self.state = State.EXPECT_BIND
        await self._send_el(features)

    def _channel_bindings(self) -> list[str]:
        if self.secure and self.ctx.tls_cert_der is not None:
            return ["tls-server-end-point"]
        return []

    def _channel_binding_data(self, kind: str) -> bytes | None:
        if not self.secure:
            return None
        if kind == "tls-server-end-point" and self.ctx.tls_cert_der is not None:
            # RFC 5929 §4.1: SHA-256 of the certificate (its signature uses SHA-256).
            return hashlib.sha256(self.ctx.tls_cert_der).digest()
        if kind == "tls-unique" and isinstance(self.stream, trio.SSLStream):
            # RFC 5929 §3; undefined for TLS 1.3 (RFC 9266), where this returns None.
            try:
                if self.stream.version() == "TLSv1.3":
                    return None
                data: bytes | None = self.stream.get_channel_binding("tls-unique")
                return data
            except (ValueError, ssl.SSLError, AttributeError):
                return None
        return None

    def _mechanisms(self) -> list[str]:
        return mechanisms_offered(self.secure, self.ctx.config.auth.allow_plain_without_tls,
                                  self._channel_bindings())

    async def _on_negotiation_element(self, el: etree._Element) -> None:
        tag = el.tag
        if tag == T_STARTTLS:
            await self._starttls()
        elif tag == T_AUTH:
            await self._auth(el)
        elif tag == T_RESPONSE:
            await self._scram_final(el)
        elif tag == T_ABORT:
            self._scram = None
            await self._sasl_failure("aborted", count=False)
        elif tag == ns.C_IQ:
            await self._negotiation_iq(el)
        elif tag == T_SM_ENABLE:
            # XEP-0198 §3: not before resource binding.
            await self._send(failed("unexpected-request"))
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
        raise _Restart

    # --- SASL (RFC 6120 §6) ------------------------------------------------------------------

    async def _auth(self, el: etree._Element) -> None:
        mechanism = el.get("mechanism", "")
        if mechanism not in self._mechanisms():
            await self._sasl_failure("invalid-mechanism", count=False)
            return
        try:
            initial = _b64(el.text)
        except SaslFailure as failure:
            await self._sasl_failure(failure.condition)
            return
        if mechanism == "PLAIN":
            await self._plain(initial)
        else:
            await self._scram_start(mechanism, initial)

    async def _plain(self, message: bytes) -> None:
        try:
            authzid, authcid, password = PlainServer.check(message)
            username = _localpart(authcid)
        except SaslFailure as failure:
            await self._sasl_failure(failure.condition)
            return
        await self._throttle(username)
        account = await self.ctx.accounts.get(username, self.domain)
        creds = account.credentials.get("SHA-256") if account else None
        # One PBKDF2-SHA-256 derivation, off the event loop (the SHA-1 keys are not tried too).
        ok = creds is not None and await trio.to_thread.run_sync(
            verify_password, password, creds, "SHA-256"
        )
        if not ok:
            await self._sasl_failure("not-authorized", username=username)
            return
        await self._sasl_success(username, authzid, None, account)

    async def _scram_start(self, mechanism: str, client_first: bytes) -> None:
        try:
            scram = ScramServer.for_mechanism(
                mechanism, self._channel_binding_data,
                binding_advertised=bool(self._channel_bindings()),
            )
            username = _localpart(scram.start(client_first))
        except SaslFailure as failure:
            await self._sasl_failure(failure.condition)
            return
        await self._throttle(username)
        account = await self.ctx.accounts.get(username, self.domain)
        creds = account.credentials.get(scram.hash_name) if account else None
        challenge = scram.server_first(creds)
        self._scram = scram
        self._scram_user = username
        self._scram_account = account
        self.state = State.SASL_SCRAM
        await self._send(
            f"<challenge xmlns='{ns.SASL}'>{base64.b64encode(challenge).decode()}</challenge>".encode()
        )

    async def _scram_final(self, el: etree._Element) -> None:
        scram, self._scram = self._scram, None
        assert scram is not None
        try:
            server_final = scram.finish(_b64(el.text))
        except SaslFailure as failure:
            await self._sasl_failure(failure.condition, username=self._scram_user)
            return
        await self._sasl_success(self._scram_user, scram.authzid, server_final,
                                 self._scram_account)

    async def _throttle(self, username: str) -> None:
        delay = self.ctx.throttle.delay_for(self.peer, username)
        if delay > 0:
            await trio.sleep(delay)

    async def _sasl_success(self, username: str, authzid: str | None,
                            additional: bytes | None, account: Account | None) -> None:
        """``account`` is the record the credentials were checked against (read once)."""
        if account is None:
            await self._sasl_failure("not-authorized", username=username)
            return
        if not account.enabled:
            await self._sasl_failure("account-disabled", count=False)
            return
        jid = JID.from_parts(username, self.domain)
        if authzid:
            # RFC 6120 §6.4.6: an authzid must name the authenticated account itself.
            try:
                if JID.parse(authzid).bare != jid:
                    raise InvalidJID("other identity")
            except InvalidJID:
                await self._sasl_failure("invalid-authzid")
                return
        self.ctx.throttle.success(self.peer, username)
        self.authenticated = jid
        body = base64.b64encode(additional).decode() if additional else ""
        await self._send(f"<success xmlns='{ns.SASL}'>{body}</success>".encode())
        self.log.info("%s authenticated from %s", jid, self.peer,
                      extra={"event": "c2s.login", "jid": str(jid)})
        self.header_sent = False
        self.stream_id = None
        raise _Restart

    async def _sasl_failure(self, condition: str, *, username: str | None = None,
                            count: bool = True) -> None:
        self.state = State.EXPECT_AUTH
        if username is not None:
            self.ctx.throttle.failure(self.peer, username)
            self.log.warning("authentication failed for %s@%s from %s (%s)",
                             username, self.domain, self.peer, condition,
                             extra={"event": "c2s.login_failed",
                                    "jid": f"{username}@{self.domain}", "status": condition})
        await self._send(f"<failure xmlns='{ns.SASL}'><{condition}/></failure>".encode())
        if count:
            self.sasl_failures += 1
            if self.sasl_failures >= MAX_SASL_ATTEMPTS:
                # RFC 6120 §6.4.5: after the allowed retries, close the stream.
                raise StreamError(StreamCondition.POLICY_VIOLATION, "too many failed attempts")

    # --- binding (RFC 6120 §7) -------------------------------------------------------------

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
        session = Session(jid, self._outbox_send, self.close_with, secure=self.secure)
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
        from pubsubd.errors import StanzaError

        reply = builders.error_reply(iq, StanzaError(condition, type_=type_))
        reply.attrib.pop("from", None)
        await self._send_el(reply)

    # --- established session ---------------------------------------------------------------

    async def _read_stanzas(self) -> None:
        assert self.session is not None
        session = self.session
        events = self._pending_events
        route = self.ctx.router.route_from_client
        with trio.CancelScope() as idle:
            self._idle_scope = idle  # _events moves its deadline at each read
            async for event in events:
                match event:
                    case ElementReceived(element=el):
                        if el.tag in SM_TAGS:
                            self._on_sm_element(el, session)
                            continue
                        if el.tag not in ns.STANZA_TAGS:
                            if el.tag == T_STARTTLS or etree.QName(el).namespace in (ns.SASL,
                                                                                      ns.BIND):
                                raise StreamError(StreamCondition.POLICY_VIOLATION,
                                                  "negotiation is over")
                            # RFC 6120 §4.9.3.23
                            raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE)
                        if self.sm is not None:
                            self.sm.stanza_received()  # XEP-0198 §4: 'h' counts stanzas
                        if self.lang and el.get(ns.XML_LANG) is None:
                            el.set(ns.XML_LANG, self.lang)  # RFC 6120 §4.7.4
                        if el.tag == ns.C_IQ and self._is_session_request(el):
                            # RFC 3921 §3 (kept by RFC 6121 Appendix E): a no-op for old clients.
                            result = builders.iq_result(el)
                            result.attrib.pop("from", None)
                            session.send(result)
                            continue
                        await route(session, el)
                    case StreamClosed():
                        return
                    case StreamOpened():
                        raise StreamError(StreamCondition.INVALID_XML)
        if idle.cancelled_caught:
            raise StreamError(StreamCondition.CONNECTION_TIMEOUT, "idle for too long")

    def _is_session_request(self, el: etree._Element) -> bool:
        if el.tag != ns.C_IQ or el.get("type") != "set" or len(el) != 1 or not el.get("id"):
            return False
        to = el.get("to")
        return el[0].tag == T_SESSION and (to is None or to == self.domain)

    async def _writer(self) -> None:
        """Send everything queued in one ``send_all``; a whitespace keep-alive when silent."""
        keepalive = self.ctx.config.limits.keepalive_interval
        recv = self._outbox_recv
        while True:
            try:
                first = recv.receive_nowait()  # busy: no timer needed
            except trio.WouldBlock:
                with trio.move_on_after(keepalive) as waiting:
                    first = await recv.receive()
                if waiting.cancelled_caught:
                    if self._sm_counting and self.sm is not None and self.sm.unacked:
                        await self.stream.send_all(self.sm.request())  # XEP-0198 §4, on idle
                    else:
                        await self.stream.send_all(b" ")  # RFC 6120 §4.6.1 keep-alive
                    continue
            batch = [first]
            while True:
                try:
                    batch.append(recv.receive_nowait())
                except trio.WouldBlock:
                    break
            if self.sm is not None:
                batch = self._count_sent(batch)
            await self.stream.send_all(b"".join(batch) if len(batch) > 1 else batch[0])

    # --- XEP-0198 stream management ----------------------------------------------------------

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
                sm.acknowledged(h)
            except HandledCountTooHigh as exc:
                raise HandledCountError(exc) from None  # §6
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
        marker = sm.enabled(int(timeout))
        self._enabled_marker = marker
        session.send(marker)

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
                await old._hibernated.wait()
            if self._resumable(previd) is not session or not old._hibernating:
                await self._send(failed("item-not-found"))
                return
        sm = link.sm
        try:
            sm.acknowledged(h)  # §5: 'h' on <resume/> counts as an <a/>
        except HandledCountTooHigh as exc:
            raise HandledCountError(exc) from None
        old._resumed = True
        old._wake.set()
        link.owner = self
        self.sm = sm
        self._sm_counting = True
        self._resume_timeout = link.timeout
        self.session = session
        self._outbox_send = session.outbox
        self._outbox_recv = link.outbox
        session.rebind(self.close_with, secure=self.secure)
        # §5: <resumed/>, then every stanza still unacknowledged, in order; what was queued
        # during the hibernation follows through the writer.
        await self._send(sm.resumed() + b"".join(sm.unacked))
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
        self._hibernating = True
        self._hibernated.set()
        if session.closed or self.ctx.shutting_down:
            self._wake.set()  # closed while the connection was winding down
        self.log.info("session %s hibernated", session.jid,
                      extra={"event": "c2s.session_hibernated", "jid": str(session.jid)})
        try:
            with trio.move_on_after(self._resume_timeout):
                await self._wake.wait()
        finally:
            if not self._resumed:
                with trio.move_on_after(5) as scope:
                    scope.shield = True
                    await self._end_session(session)

    def _sm_leftovers(self) -> list[bytes]:
        """Stanzas the client never acknowledged, then those never written (in order)."""
        assert self.sm is not None
        leftovers = list(self.sm.unacked)
        self.sm.unacked.clear()
        while True:
            try:
                leftovers.append(self._outbox_recv.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return leftovers

    async def _reroute(self, session: Session, leftovers: list[bytes]) -> None:
        """§4: treat unacked stanzas as sent to an unavailable resource.

        Chat and normal messages with a body go to offline storage (XEP-0160, which stamps a
        delay); if it refuses them, and for iq requests, the sender gets service-unavailable.
        Carbon copies and our own messages (from the account itself) are dropped.
        """
        try:
            await self._reroute_each(session, leftovers)
        except Exception:
            self.log.exception("could not hand over the unacknowledged stanzas of %s", session.jid)

    async def _reroute_each(self, session: Session, leftovers: list[bytes]) -> None:
        for data in leftovers:
            if not is_stanza(data):
                continue
            try:
                el = etree.fromstring(data)
                sender = JID.parse(el.get("from", ""))
            except (etree.XMLSyntaxError, InvalidJID):
                continue
            st = Stanza(el, sender, session.jid.bare)
            kind, type_ = st.kind, st.type
            if kind == "message" and type_ in ("chat", "normal"):
                if sender.bare == session.jid.bare or not any(
                    etree.QName(child).localname == "body" for child in el
                ):
                    continue
                if await self.ctx.hooks.fire("message/offline", st):
                    continue
                await self.ctx.router.bounce(st, StanzaError(Condition.SERVICE_UNAVAILABLE))
            elif kind == "iq" and type_ in ("get", "set"):
                await self.ctx.router.bounce(st, StanzaError(Condition.SERVICE_UNAVAILABLE))


def _decisive(group: BaseExceptionGroup) -> BaseException | None:
    """The error that ended a connection: a stream error first, then anything not Cancelled."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)

    walk(group)
    return next((e for e in leaves if isinstance(e, StreamError)), leaves[0] if leaves else None)


def _version_ok(version: str) -> bool:
    """RFC 6120 §4.7.5: numeric major.minor; we answer "1.0" to any version from 1.0 up."""
    major, dot, minor = version.partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        return False
    return int(major) >= 1


def _b64(text: str | None) -> bytes:
    """Decode SASL data; ``=`` is an empty response (RFC 6120 §6.4.2)."""
    if not text or text.strip() == "=":
        return b""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SaslFailure("incorrect-encoding") from None


def _localpart(username: str) -> str:
    try:
        return prepare_localpart(username)
    except InvalidJID:
        raise SaslFailure("not-authorized") from None


def _attr(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")
            .replace('"', "&quot;"))


def _copy(el: etree._Element) -> etree._Element:
    from copy import deepcopy

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

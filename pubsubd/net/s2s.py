"""Server-to-server streams (RFC 6120 §4-§5, XEP-0220 Server Dialback): the federation shell.

Two directions, each one-way (XEP-0220 §2.3):

* :class:`OutgoingLink` carries our stanzas from one local domain to one remote domain: resolve
  (static route, DNS SRV, then the domain on port 5269), connect, STARTTLS when offered,
  dialback, then drain a bounded queue. Stanzas wait in the queue while the link is set up and
  are bounced with the RFC 6120 §8.3.3 condition of the failure if it never comes up.
* :class:`IncomingStream` accepts a peer's stream: it offers STARTTLS, verifies the peer's
  dialback keys by asking the authoritative server of the claimed domain, answers verification
  requests about our own keys, and routes stanzas only for verified domain pairs.

Stanzas travel in ``jabber:server`` on the wire and in ``jabber:client`` inside the server.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import trio
from lxml import etree

from feeds.netguard import AddressPolicy, IPAddress, ResolveError
from feeds.netguard import resolve as resolve_host
from pubsubd import ns
from pubsubd.config import S2SConfig
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError, StreamCondition, StreamError
from pubsubd.jid import JID, InvalidJID
from pubsubd.net.exception_groups import decisive
from pubsubd.net.idle_watch import idle_watch
from pubsubd.stream import dialback
from pubsubd.stream.parser import (
    ElementReceived,
    StreamClosed,
    StreamEvent,
    StreamOpened,
    StreamParser,
)

log = logging.getLogger(__name__)

READ_SIZE = 65536
DEFAULT_PORT = 5269  # RFC 6120 §3.2.2: the fallback when there is no SRV record
T_STARTTLS = ns.clark(ns.TLS, "starttls")
T_PROCEED = ns.clark(ns.TLS, "proceed")
_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)
_CLIENT_DECL = f'xmlns="{ns.CLIENT}"'.encode()
_SERVER_DECL = f'xmlns="{ns.SERVER}"'.encode()


# --- wire helpers ----------------------------------------------------------------------------

def server_bytes(element: etree._Element) -> bytes:
    """Serialize a stanza for a server stream: its content namespace becomes ``jabber:server``.

    RFC 6120 §4.8.3: the content namespace is per stream. Only the top element's declaration
    changes; embedded ``jabber:client`` content (XEP-0297 forwarded messages) keeps its own.
    """
    data = etree.tostring(element, with_tail=False)
    head_end = data.find(b">")
    at = data.find(_CLIENT_DECL, 0, head_end)
    if at >= 0:
        return data[:at] + _SERVER_DECL + data[at + len(_CLIENT_DECL):]
    top = etree.Element(ns.clark(ns.SERVER, etree.QName(element).localname),
                        attrib=dict(element.attrib), nsmap={None: ns.SERVER})
    top.text = element.text
    for child in element:
        copy = etree.fromstring(etree.tostring(child, with_tail=False))
        if isinstance(copy.tag, str) and etree.QName(copy).namespace == ns.CLIENT:
            copy.tag = ns.clark(ns.SERVER, etree.QName(copy).localname)
        top.append(copy)
    etree.cleanup_namespaces(top)
    return etree.tostring(top)


def stream_header(from_: str | None, to: str | None, stream_id: str | None = None,
                  version: bool = True) -> bytes:
    """An s2s stream header; ``xmlns:db`` announces dialback support (XEP-0220 §2.4.1)."""
    attrs = ""
    if from_:
        attrs += f" from={quoteattr(from_)}"  # RFC 6120 §4.7.1: 'from' on s2s streams
    if to:
        attrs += f" to={quoteattr(to)}"
    if stream_id:
        attrs += f" id={quoteattr(stream_id)}"
    if version:
        attrs += " version='1.0'"
    return (f"<?xml version='1.0'?><stream:stream xmlns='{ns.SERVER}' xmlns:db='{ns.DIALBACK}' "
            f"xmlns:stream='{ns.STREAM}'{attrs}>").encode()


class PeerGone(Exception):
    """The peer closed its stream, sent a stream error, or dropped the connection."""

    def __init__(self, reason: str, condition: str | None = None) -> None:
        super().__init__(reason)
        self.condition = condition  # the peer's stream error condition, if it sent one


class Wire:
    """One s2s TCP (or TLS) connection: parsed events in, bytes out (one writer at a time)."""

    def __init__(self, stream: trio.abc.Stream, max_stanza_bytes: int) -> None:
        self.stream = stream
        self.max_stanza_bytes = max_stanza_bytes
        self.parser = StreamParser(max_stanza_bytes, internal_ns=ns.CLIENT)
        self._events: deque[StreamEvent] = deque()
        self._send_lock = trio.Lock()
        self.stream_id: str | None = None  # the id of the peer's current stream header
        self.closed = False

    def restart(self, stream: trio.abc.Stream) -> None:
        """RFC 6120 §5.4.3.3: after TLS, both sides start a fresh stream."""
        self.stream = stream
        self.parser = StreamParser(self.max_stanza_bytes, internal_ns=ns.CLIENT)
        self._events.clear()

    async def send(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(data)

    async def next_event(self) -> StreamEvent:
        while not self._events:
            self.parser.check()
            data = await self.stream.receive_some(READ_SIZE)
            if not data:
                raise PeerGone("connection closed by the peer")
            self._events.extend(self.parser.feed(bytes(data)))
        return self._events.popleft()

    async def next_element(self) -> etree._Element:
        """The next first-level element; a close or a stream error raises :class:`PeerGone`."""
        event = await self.next_event()
        match event:
            case ElementReceived(element=el):
                if el.tag == ns.STREAM_ERROR:
                    condition = next((etree.QName(c).localname for c in el
                                      if isinstance(c.tag, str)
                                      and etree.QName(c).namespace == ns.STREAMS_ERR
                                      and etree.QName(c).localname != "text"), None)
                    raise PeerGone(f"stream error {condition}", condition)
                return el
            case StreamClosed():
                raise PeerGone("stream closed by the peer")
            case StreamOpened():
                raise StreamError(StreamCondition.INVALID_XML, "unexpected stream header")
        raise AssertionError(event)

    async def expect_header(self) -> StreamOpened:
        event = await self.next_event()
        if not isinstance(event, StreamOpened):
            raise PeerGone("no stream header")
        if event.default_ns != ns.SERVER:
            raise StreamError(StreamCondition.INVALID_NAMESPACE, "expected jabber:server")
        self.stream_id = event.attrs.get("id")
        return event

    async def aclose(self, tail: bytes = b"</stream:stream>") -> None:
        """Close politely (RFC 6120 §4.4), even while being cancelled."""
        if self.closed:
            return
        self.closed = True
        with trio.move_on_after(2) as scope:
            scope.shield = True
            try:
                if tail:
                    await self.send(tail)
            except (*_TRANSPORT_ERRORS, trio.BusyResourceError):
                pass
            try:
                await self.stream.aclose()
            except _TRANSPORT_ERRORS:
                pass


class LinkFailure(Exception):
    """An outgoing stream could not be set up; ``condition`` is what queued stanzas bounce with."""

    def __init__(self, condition: Condition, reason: str) -> None:
        super().__init__(reason)
        self.condition = condition


def client_tls_context(verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 7590 §3
    if not verify:
        # Self-signed peers: TLS still encrypts, and dialback proves the identity (XEP-0220 §1).
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _srv_targets(domain: str) -> list[tuple[str, int]]:
    """RFC 6120 §3.2.1: ``_xmpp-server._tcp`` SRV records in order; the domain itself on 5269
    when there are none (§3.2.2). Runs in a thread: resolvers block."""
    import dns.exception
    import dns.resolver

    try:
        answers = dns.resolver.resolve(f"_xmpp-server._tcp.{domain}", "SRV", lifetime=5.0)
    except dns.exception.DNSException:
        return [(domain, DEFAULT_PORT)]
    records = sorted(answers, key=lambda r: (r.priority, -r.weight))
    if len(records) == 1 and str(records[0].target) == ".":
        return []  # RFC 6120 §3.2.1 step 5 note: "." means the service is decidedly not offered
    return [(str(r.target).rstrip("."), int(r.port)) for r in records]


# --- the service (the router's RemoteRouter) --------------------------------------------------

class S2SService:
    """Federation for one server: outgoing links per domain pair, incoming streams, dialback."""

    def __init__(self, config: S2SConfig, router: Router, secret: str,
                 server_tls: ssl.SSLContext | None, max_stanza_bytes: int) -> None:
        self.config = config
        self.router = router
        self.secret = secret
        self.server_tls = server_tls
        self.client_tls = client_tls_context(not config.allow_unverified_certificates)
        self.max_stanza_bytes = max_stanza_bytes
        self.links: dict[tuple[str, str], OutgoingLink] = {}
        self.incoming: set[IncomingStream] = set()
        self._nursery: trio.Nursery | None = None
        self.resolver: Callable[[str], list[tuple[str, int]]] = _srv_targets
        # Where DNS may send us (the feed fetcher's policy): a remote domain is whatever a user
        # addresses, so without it the server could be made to connect to its own loopback
        # or LAN services.
        self.address_policy = AddressPolicy.from_strings(config.allow_hosts)
        self.pending_verifications = 0

    def is_local(self, domain: str) -> bool:
        """A domain we speak for: served domains and in-process components (pubsub.*)."""
        return domain in self.router.domains or domain in self.router.components

    # -- outgoing ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Own the outgoing links' tasks for the server's lifetime."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await trio.sleep_forever()

    async def send(self, st: Stanza) -> bool:
        """RemoteRouter: queue ``st`` on the link for its domain pair; False if not federating."""
        if st.to is None or self._nursery is None:
            return False
        local = st.from_.domain
        if not self.is_local(local):
            return False  # RFC 6120 §10.4: only our own domains send to remote ones; no relaying
        remote = st.to.domain
        link = self.links.get((local, remote))
        if link is None or link.done:
            link = OutgoingLink(self, local, remote)
            self.links[(local, remote)] = link
            self._nursery.start_soon(link.run)
        if not link.offer(server_bytes(st.element), st):
            raise StanzaError(Condition.RESOURCE_CONSTRAINT,
                              f"too many stanzas waiting for {remote}")
        return True

    async def resolve(self, domain: str) -> list[tuple[str, int]]:
        route = self.config.routes.get(domain)
        if route is not None:
            host, _, port = route.rpartition(":")
            return [(host.strip("[]"), int(port))]
        return await trio.to_thread.run_sync(self.resolver, domain, abandon_on_cancel=True)

    async def open_stream(self, local: str, remote: str) -> Wire:
        """Connect to ``remote``'s server and negotiate up to (not including) dialback."""
        try:
            targets = await self.resolve(remote)
        except OSError as exc:
            raise LinkFailure(Condition.REMOTE_SERVER_NOT_FOUND,
                              f"resolving {remote}: {exc}") from None
        stream = await self._connect(remote, targets)
        wire = Wire(stream, self.max_stanza_bytes)
        try:
            features = await self._open(wire, local, remote)
            starttls = features is not None and features.find(T_STARTTLS) is not None
            if starttls:
                await wire.send(f"<starttls xmlns='{ns.TLS}'/>".encode())
                answer = await wire.next_element()
                if answer.tag != T_PROCEED:
                    raise LinkFailure(Condition.REMOTE_SERVER_TIMEOUT, "STARTTLS refused")
                tls = trio.SSLStream(wire.stream, self.client_tls, server_hostname=remote)
                await tls.do_handshake()
                wire.restart(tls)
                await self._open(wire, local, remote)
            elif self.config.require_tls:
                # RFC 7590 §3: our policy requires an encrypted stream.
                raise LinkFailure(Condition.REMOTE_SERVER_TIMEOUT, f"{remote} does not offer TLS")
        except BaseException:
            await wire.aclose()
            raise
        return wire

    async def _connect(self, remote: str, targets: list[tuple[str, int]]) -> trio.abc.Stream:
        if not targets:
            raise LinkFailure(Condition.REMOTE_SERVER_NOT_FOUND, f"{remote} offers no s2s service")
        problem = "no address"
        timed_out = False
        trusted = remote in self.config.routes  # an operator's static route is taken as written
        for host, port in targets:
            try:
                with trio.fail_after(self.config.connect_timeout):
                    if trusted:
                        return await trio.open_tcp_stream(host, port)
                    for address in await self._allowed_addresses(host, port):
                        try:
                            return await trio.open_tcp_stream(str(address), port)
                        except OSError as exc:
                            problem = f"connecting to {host}:{port}: {exc.strerror or exc}"
                    continue
            except LinkFailure as refused:  # resolved to nothing, or to nothing allowed
                problem = str(refused)
            except trio.TooSlowError:
                problem, timed_out = f"connecting to {host}:{port} timed out", True
            except OSError as exc:
                problem = f"connecting to {host}:{port}: {exc.strerror or exc}"
        # RFC 6120 §8.3.3.16 / §8.3.3.17: not found (no answer at all) versus timed out.
        raise LinkFailure(Condition.REMOTE_SERVER_TIMEOUT if timed_out
                          else Condition.REMOTE_SERVER_NOT_FOUND, problem)

    async def _allowed_addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host`` the policy allows; LinkFailure when there are none.

        Connecting to exactly the addresses checked keeps DNS rebinding out."""
        try:
            addresses = await resolve_host(host, port)
        except ResolveError as exc:
            raise LinkFailure(Condition.REMOTE_SERVER_NOT_FOUND, str(exc)) from None
        if self.address_policy.host_allowed(host):
            return list(addresses)
        allowed = [a for a in addresses if self.address_policy.address_allowed(a)]
        if not allowed:
            log.warning("s2s: refusing to connect to %s:%d (no public address)", host, port)
            raise LinkFailure(Condition.REMOTE_SERVER_NOT_FOUND,
                              f"{host} has no public address (s2s.allow_hosts)")
        return allowed

    async def _open(self, wire: Wire, local: str, remote: str) -> etree._Element | None:
        """Send our header, read the peer's and its features (None for a pre-1.0 peer)."""
        await wire.send(stream_header(local, remote))
        try:
            opened = await wire.expect_header()
            if opened.version is None:
                return None
            features = await wire.next_element()
        except PeerGone as gone:
            if gone.condition == StreamCondition.HOST_UNKNOWN.value:
                raise LinkFailure(Condition.REMOTE_SERVER_NOT_FOUND,
                                  f"{remote} is not served there") from None
            raise LinkFailure(Condition.REMOTE_SERVER_TIMEOUT, str(gone)) from None
        if features.tag != ns.STREAM_FEATURES:
            raise LinkFailure(Condition.REMOTE_SERVER_TIMEOUT, "expected stream features")
        return features

    async def verify_key(self, local: str, remote: str, stream_id: str,
                         key: str) -> tuple[dialback.Verdict, str | None]:
        """Ask ``remote``'s authoritative server whether ``key`` is its key for our stream
        (XEP-0220 §2.1.2, on a connection of its own that is closed right after)."""
        try:
            with trio.fail_after(self.config.handshake_timeout):
                wire = await self.open_stream(local, remote)
                try:
                    await wire.send(dialback.element("verify", local, remote, key=key,
                                                     id_=stream_id))
                    while True:
                        el = await wire.next_element()
                        if el.tag != ns.DB_VERIFY:
                            continue
                        answer = dialback.parse(el)
                        # XEP-0220 §2.1.2: the answer must correlate with our request.
                        if (answer.from_, answer.to, answer.id) != (remote, local, stream_id):
                            continue
                        if answer.type == "valid":
                            return "valid", None
                        if answer.type == "error":
                            # XEP-0220 §2.5: the authority does not know the domain.
                            return "error", "remote-server-not-found"
                        return "invalid", None
                finally:
                    await wire.aclose()
        except trio.TooSlowError:
            return "error", "remote-server-timeout"
        except LinkFailure as failure:
            # XEP-0220 §2.5, table 1: which dialback error the initiating server hears.
            if failure.condition is Condition.REMOTE_SERVER_NOT_FOUND:
                return "error", "remote-connection-failed"
            return "error", "remote-server-timeout"
        except (PeerGone, StreamError, dialback.DialbackFormatError, *_TRANSPORT_ERRORS):
            return "error", "remote-server-timeout"

    def forget(self, link: OutgoingLink) -> None:
        if self.links.get((link.local, link.remote)) is link:
            del self.links[(link.local, link.remote)]

    async def aclose(self) -> None:
        """Graceful shutdown: close every link with ``</stream:stream>`` (RFC 6120 §4.4)."""
        links = list(self.links.values())
        for link in links:
            link.stop()
        with trio.move_on_after(3):
            for link in links:
                await link.finished.wait()

    # -- incoming ---------------------------------------------------------------------------

    async def handle_incoming(self, stream: trio.abc.Stream, peer: str) -> None:
        """The ``s2s`` listener kind."""
        conn = IncomingStream(self, stream, peer)
        self.incoming.add(conn)
        try:
            await conn.run()
        finally:
            self.incoming.discard(conn)


# --- outgoing ------------------------------------------------------------------------------

@dataclass(slots=True)
class _Queued:
    data: bytes
    stanza: Stanza


class OutgoingLink:
    """Our stanzas from ``local`` to ``remote``: one authenticated stream, one bounded queue."""

    def __init__(self, service: S2SService, local: str, remote: str) -> None:
        self.service = service
        self.local = local
        self.remote = remote
        send, recv = trio.open_memory_channel[_Queued](service.config.max_queue)
        self._send: trio.MemorySendChannel[_Queued] = send
        self._recv: trio.MemoryReceiveChannel[_Queued] = recv
        self.ready = False
        self.done = False
        self.finished = trio.Event()  # set once the link's task has fully ended
        self._scope = trio.CancelScope()
        self.log = logging.LoggerAdapter(log, {"peer": remote})

    def offer(self, data: bytes, st: Stanza) -> bool:
        try:
            self._send.send_nowait(_Queued(data, st))
        except trio.WouldBlock:
            return False
        return True

    def stop(self) -> None:
        self._scope.cancel()

    async def run(self) -> None:
        wire: Wire | None = None
        try:
            with self._scope:
                try:
                    cfg = self.service.config
                    with trio.fail_after(cfg.connect_timeout + cfg.handshake_timeout):
                        wire = await self.service.open_stream(self.local, self.remote)
                        await self._dialback(wire)
                except LinkFailure as failure:
                    await self._fail(failure.condition, str(failure))
                    return
                except trio.TooSlowError:
                    await self._fail(Condition.REMOTE_SERVER_TIMEOUT, "set-up took too long")
                    return
                except (PeerGone, StreamError, *_TRANSPORT_ERRORS) as exc:
                    await self._fail(Condition.REMOTE_SERVER_TIMEOUT,
                                     str(exc) or type(exc).__name__)
                    return
                self.ready = True
                self.log.info("s2s link %s -> %s established", self.local, self.remote)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader, wire, nursery.cancel_scope)
                    await self._writer(wire)
                    nursery.cancel_scope.cancel()
        finally:
            self.done = True
            self.service.forget(self)
            self._send.close()
            if wire is not None:
                await wire.aclose()
            await self._requeue()
            self.finished.set()

    async def _dialback(self, wire: Wire) -> None:
        """XEP-0220 §2.1.1: send our key, wait for the receiving server's verdict."""
        if not wire.stream_id:
            raise LinkFailure(Condition.REMOTE_SERVER_TIMEOUT, "the peer's stream has no id")
        key = dialback.dialback_key(self.service.secret, self.remote, self.local, wire.stream_id)
        await wire.send(dialback.element("result", self.local, self.remote, key=key))
        while True:
            el = await wire.next_element()
            if el.tag != ns.DB_RESULT:
                continue
            answer = dialback.parse(el)
            if (answer.from_, answer.to) != (self.remote, self.local) or answer.is_request:
                continue
            if answer.type == "valid":
                return
            condition = dialback.BOUNCE_CONDITION.get(answer.type or "", "remote-server-timeout")
            raise LinkFailure(Condition(condition),
                              f"dialback {answer.type} ({answer.condition or 'no condition'})")

    async def _writer(self, wire: Wire) -> None:
        """Drain the queue into one ``send_all`` per batch; return after idling too long."""
        idle = self.service.config.idle_timeout
        try:
            while True:
                with trio.move_on_after(idle):
                    first = await self._recv.receive()
                    batch = [first.data]
                    while True:
                        try:
                            batch.append(self._recv.receive_nowait().data)
                        except trio.WouldBlock:
                            break
                    await wire.send(b"".join(batch))
                    continue
                self.log.debug("closing idle s2s link %s -> %s", self.local, self.remote)
                return
        except _TRANSPORT_ERRORS as exc:
            self.log.info("s2s link %s -> %s lost: %s", self.local, self.remote, exc)

    async def _reader(self, wire: Wire, scope: trio.CancelScope) -> None:
        """Nothing but dialback answers and whitespace is expected back; watch for the close."""
        try:
            while True:
                el = await wire.next_element()
                self.log.debug("ignoring %s on outgoing stream to %s", el.tag, self.remote)
        except (PeerGone, StreamError, *_TRANSPORT_ERRORS) as exc:
            self.log.info("s2s link %s -> %s closed: %s", self.local, self.remote, exc)
        finally:
            scope.cancel()

    async def _fail(self, condition: Condition, reason: str) -> None:
        """RFC 6120 §8.3.3: give queued stanzas back to their senders with ``condition``."""
        self.log.warning("s2s link %s -> %s failed: %s", self.local, self.remote, reason)
        self.done = True
        self.service.forget(self)
        self._send.close()
        while True:
            try:
                item = self._recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            await self.service.router.bounce(item.stanza, StanzaError(condition, reason))

    async def _requeue(self) -> None:
        """Stanzas left when an established link closed go out on a fresh one."""
        with trio.CancelScope(shield=True):
            while True:
                try:
                    item = self._recv.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    return
                if not self.ready:
                    await self.service.router.bounce(
                        item.stanza, StanzaError(Condition.REMOTE_SERVER_TIMEOUT))
                    continue
                try:
                    if not await self.service.send(item.stanza):
                        await self.service.router.bounce(
                            item.stanza, StanzaError(Condition.REMOTE_SERVER_NOT_FOUND))
                except StanzaError as err:
                    await self.service.router.bounce(item.stanza, err)


# --- incoming ------------------------------------------------------------------------------

class IncomingStream:
    """A peer server's stream to us: STARTTLS, dialback, then its stanzas to the router."""

    def __init__(self, service: S2SService, stream: trio.abc.Stream, peer: str) -> None:
        self.service = service
        self.wire = Wire(stream, service.max_stanza_bytes)
        self.peer = peer
        self.secure = False
        self.stream_id = ""
        self.local_domain: str | None = None
        self.header_sent = False
        self.pairs = dialback.DomainPairs()
        self._pending_error: StreamError | None = None
        self._scope = trio.CancelScope()
        self._finished = False
        # Silence, as the idle watch sees it (see _serve).
        self._waiting_input = False
        self._last_event = trio.current_time()
        self._idle_scope: trio.CancelScope | None = None
        self.log = logging.LoggerAdapter(log, {"peer": peer})

    def close_with(self, error: StreamError | None) -> None:
        if self._pending_error is None:
            self._pending_error = error
        self._scope.cancel()

    async def run(self) -> None:
        try:
            with self._scope:
                try:
                    async with trio.open_nursery() as nursery:
                        await self._serve(nursery)
                        nursery.cancel_scope.cancel()
                except BaseExceptionGroup as group:
                    leaf = decisive(group)
                    if leaf is None:
                        raise
                    raise leaf from None
        except StreamError as err:
            self._pending_error = self._pending_error or err
        except PeerGone as gone:
            self.log.debug("s2s peer %s: %s", self.peer, gone)
        except _TRANSPORT_ERRORS as exc:
            self.log.debug("s2s connection from %s lost: %s", self.peer, exc)
            self.wire.closed = True
            await self._finish()
            return
        except Exception:
            self.log.exception("internal error on s2s stream from %s", self.peer)
            self._pending_error = StreamError(StreamCondition.INTERNAL_SERVER_ERROR)
        finally:
            if not self._finished:
                if trio.current_effective_deadline() == float("-inf") and not self._pending_error:
                    # Cancelled from outside: the server is stopping (RFC 6120 §4.9.3.20).
                    self._pending_error = StreamError(StreamCondition.SYSTEM_SHUTDOWN)
                await self._finish()

    async def _finish(self) -> None:
        self._finished = True
        tail = b""
        if not self.header_sent:
            tail += stream_header(self.local_domain or next(iter(self.service.router.domains)),
                                  None, secrets.token_hex(8))
        if self._pending_error is not None:
            self.log.info("stream error %s sent to %s", self._pending_error.condition.value,
                          self.peer)
            tail += self._pending_error.to_bytes()
        await self.wire.aclose(tail + b"</stream:stream>")

    async def _serve(self, nursery: trio.Nursery) -> None:
        """Serve the stream's events. A stream that sends nothing for ``handshake_timeout``
        before a domain pair is verified, or ``idle_timeout`` after, is closed with
        connection-timeout (RFC 6120 §4.9.3.4); the idle watch looks after the silence
        (see :mod:`pubsubd.net.idle_watch`), rather than a deadline set for every event."""
        cfg = self.service.config
        watch = idle_watch()
        watch.add(self, min(cfg.idle_timeout, cfg.handshake_timeout))
        try:
            with trio.CancelScope() as idle:
                self._idle_scope = idle
                while True:
                    self._waiting_input = True
                    event = await self.wire.next_event()
                    self._waiting_input = False  # handling what arrived is not idleness
                    self._last_event = trio.current_time()
                    match event:
                        case StreamOpened():
                            await self._on_header(event)
                        case StreamClosed():
                            return
                        case ElementReceived(element=el):
                            await self._on_element(el, nursery)
        finally:
            watch.discard(self)
            self._idle_scope = None
        raise StreamError(StreamCondition.CONNECTION_TIMEOUT, "idle for too long")

    def look(self, now: float) -> bool:
        """Time the stream out if it has been silent too long while we wait for its input
        (asked by the idle watch); True once it is."""
        cfg = self.service.config
        limit = cfg.idle_timeout if self.pairs else cfg.handshake_timeout
        if self._waiting_input and now - self._last_event >= limit:
            if self._idle_scope is not None:
                self._idle_scope.cancel()
            return True
        return False

    async def _on_header(self, header: StreamOpened) -> None:
        to = header.to
        self.local_domain = to if to and self.service.is_local(to) else None
        self.stream_id = secrets.token_hex(12)  # a new id for every stream, restarts included
        our_domain = self.local_domain or next(iter(self.service.router.domains))
        await self.wire.send(stream_header(our_domain, header.from_, self.stream_id,
                                           header.version is not None))
        self.header_sent = True
        # RFC 6120 §4.8.5 / §4.9.3.10: jabber:server and the 'stream' prefix on s2s streams.
        if header.default_ns != ns.SERVER:
            raise StreamError(StreamCondition.INVALID_NAMESPACE, "expected jabber:server")
        if header.stream_prefix != "stream":
            raise StreamError(StreamCondition.BAD_NAMESPACE_PREFIX, "use the 'stream' prefix")
        if self.local_domain is None:
            # RFC 6120 §4.9.3.6
            raise StreamError(StreamCondition.HOST_UNKNOWN, f"{to} is not served here")
        if header.version is not None:
            await self.wire.send(etree.tostring(self._features()))

    def _features(self) -> etree._Element:
        cfg = self.service.config
        features = etree.Element(ns.STREAM_FEATURES, nsmap={"stream": ns.STREAM})
        if not self.secure and self.service.server_tls is not None:
            starttls = etree.SubElement(features, T_STARTTLS, nsmap={None: ns.TLS})
            if cfg.require_tls:
                etree.SubElement(starttls, ns.clark(ns.TLS, "required"))
        if self.secure or not cfg.require_tls:
            # XEP-0220 §2.4.2: dialback with error handling.
            feature = etree.SubElement(features, ns.clark(ns.DIALBACK_FEATURE, "dialback"),
                                       nsmap={None: ns.DIALBACK_FEATURE})
            etree.SubElement(feature, ns.clark(ns.DIALBACK_FEATURE, "errors"))
        return features

    async def _on_element(self, el: etree._Element, nursery: trio.Nursery) -> None:
        tag = el.tag
        if tag in ns.STANZA_TAGS:
            await self._on_stanza(el)
        elif tag in (ns.DB_RESULT, ns.DB_VERIFY):
            try:
                request = dialback.parse(el)
            except dialback.DialbackFormatError as exc:
                raise StreamError(StreamCondition.IMPROPER_ADDRESSING, str(exc)) from None
            if not request.is_request:
                return  # XEP-0220 §2.2: answers belong on outgoing streams (no XEP-0288 here)
            if request.kind == "verify":
                # XEP-0220 §2.2.2: we are the authoritative server for request.to.
                await self.wire.send(dialback.answer_verify(request, self.service.secret,
                                                            self.service.is_local))
            else:
                await self._on_result(request, nursery)
        elif tag == T_STARTTLS:
            await self._starttls()
        elif tag == ns.STREAM_ERROR:
            raise PeerGone("the peer sent a stream error")
        else:
            # RFC 6120 §4.9.3.23
            raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE)

    async def _starttls(self) -> None:
        tls = self.service.server_tls
        if self.secure or tls is None:
            # RFC 6120 §5.4.2.2: failure, then close.
            await self.wire.send(f"<failure xmlns='{ns.TLS}'/>".encode())
            raise PeerGone("STARTTLS refused")
        await self.wire.send(f"<proceed xmlns='{ns.TLS}'/>".encode())
        stream = trio.SSLStream(self.wire.stream, tls, server_side=True)
        with trio.fail_after(self.service.config.handshake_timeout):
            await stream.do_handshake()
        self.wire.restart(stream)
        self.secure = True
        self.header_sent = False

    async def _on_result(self, request: dialback.DialbackElement, nursery: trio.Nursery) -> None:
        """XEP-0220 §2.2.1: a key for (sender, target); verify it with the sender's authority."""
        sender, target = request.from_, request.to
        if self.service.config.require_tls and not self.secure:
            await self.wire.send(dialback.element("result", target, sender, type_="error",
                                                  condition="policy-violation"))
            return
        if not self.service.is_local(target):
            await self.wire.send(dialback.element("result", target, sender, type_="error",
                                                  condition="item-not-found"))
            return
        if self.service.is_local(sender):
            return
        config = self.service.config
        if (self.pairs.size() >= config.max_domain_pairs
                or self.service.pending_verifications >= config.max_pending_verifications):
            # Each key check costs a connection to the claimed domain: bounded, per stream and
            # server-wide (XEP-0220 §2.5 lists resource-constraint among the errors).
            await self.wire.send(dialback.element("result", target, sender, type_="error",
                                                  condition="resource-constraint"))
            return
        if not self.pairs.begin(sender, target):
            return
        self.service.pending_verifications += 1
        nursery.start_soon(self._verify_pair, request, self.stream_id)

    async def _verify_pair(self, request: dialback.DialbackElement, stream_id: str) -> None:
        sender, target = request.from_, request.to
        try:
            verdict, condition = await self.service.verify_key(target, sender, stream_id,
                                                               request.key)
        finally:
            self.service.pending_verifications -= 1
        self.pairs.finish(sender, target, verdict == "valid")
        if verdict == "error":
            await self.wire.send(dialback.element("result", target, sender, type_="error",
                                                  condition=condition))
            return
        await self.wire.send(dialback.element("result", target, sender, type_=verdict))
        if verdict == "valid":
            self.log.info("s2s stream from %s verified for %s -> %s", self.peer, sender, target)
        elif not self.pairs:
            # XEP-0220 §2.2.1: an invalid key on a stream with no verified pair closes it.
            self.log.warning("dialback key for %s from %s is invalid", sender, self.peer)
            self.close_with(StreamError(StreamCondition.NOT_AUTHORIZED, "dialback key invalid"))

    async def _on_stanza(self, el: etree._Element) -> None:
        """RFC 6120 §8.1.1.2 / §4.9.3.9: both addresses present, the pair verified."""
        raw_from, raw_to = el.get("from"), el.get("to")
        if not raw_from or not raw_to:
            raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "'from' and 'to' are required")
        try:
            from_ = JID.parse(raw_from)
        except InvalidJID:
            raise StreamError(StreamCondition.INVALID_FROM, "malformed 'from'") from None
        if not self.pairs.knows_sender(from_.domain):
            raise StreamError(StreamCondition.INVALID_FROM, f"{from_.domain} is not verified")
        try:
            to = JID.parse(raw_to)
        except InvalidJID as exc:
            await self.service.router.bounce(Stanza(el, from_, None, None),
                                             StanzaError(Condition.JID_MALFORMED, str(exc)))
            return
        if not self.pairs.allows(from_.domain, to.domain):
            if not self.service.is_local(to.domain):
                raise StreamError(StreamCondition.HOST_UNKNOWN, f"{to.domain} is not served here")
            raise StreamError(StreamCondition.INVALID_FROM,
                              f"{from_.domain} is not verified for {to.domain}")
        await self.service.router.route(Stanza(el, from_, to, None))

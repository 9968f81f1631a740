"""External components (XEP-0114, ``jabber:component:accept``): the trio shell of both sides.

* :class:`ExternalComponent` is what the router sees for one component domain: the connections
  currently authenticated for it. Stanzas to the domain go to one of them, chosen by a stable
  hash of the sender's bare JID: a user's stanzas always reach the same process while the set
  of connections is unchanged (their order and any per-user state in the component survive),
  and no bookkeeping is needed. With no connection, stanzas bounce with
  ``<service-unavailable/>``: the domain is ours and known, its service is just not there
  (RFC 6120 §8.3.3.19), unlike ``remote-server-not-found`` for domains we cannot reach.
* :class:`AcceptedComponent` serves one incoming component stream: handshake, then stanzas both
  ways, checking that the component only speaks for its own domain.
* :class:`HostLink` is the other direction: ``pubsubd component`` connecting to another server.

Stanzas travel in ``jabber:component:accept`` on the wire and ``jabber:client`` inside.
"""

from __future__ import annotations

import logging
import ssl
import zlib
from collections.abc import Awaitable, Callable, Mapping

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.config import ComponentOfConfig
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError, StreamCondition, StreamError
from pubsubd.jid import JID, InvalidJID
from pubsubd.net.exception_groups import decisive
from pubsubd.stream.component_handshake import (
    HANDSHAKE_TAGS,
    AcceptHandshake,
    ConnectHandshake,
)
from pubsubd.stream.parser import ElementReceived, StreamClosed, StreamOpened, StreamParser

log = logging.getLogger(__name__)

READ_SIZE = 65536
OUTBOX = 1000  # stanzas queued for a component that does not read, before it is cut off
_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)
_CLIENT_DECL = f'xmlns="{ns.CLIENT}"'.encode()
_COMPONENT_DECL = f'xmlns="{ns.COMPONENT}"'.encode()


def component_bytes(element: etree._Element) -> bytes:
    """Serialize a stanza for a component stream (content namespace ``jabber:component:accept``,
    RFC 6120 §4.8.3 applied to XEP-0114 streams)."""
    data = etree.tostring(element, with_tail=False)
    head_end = data.find(b">")
    at = data.find(_CLIENT_DECL, 0, head_end)
    if at >= 0:
        return data[:at] + _COMPONENT_DECL + data[at + len(_CLIENT_DECL):]
    from pubsubd.net.s2s import server_bytes  # the general case: rebuild the top element

    data = server_bytes(element)
    server_decl = f'xmlns="{ns.SERVER}"'.encode()
    at = data.find(server_decl, 0, data.find(b">"))
    return data[:at] + _COMPONENT_DECL + data[at + len(server_decl):]


class Link:
    """One authenticated component connection, as seen by its pool: a bounded outbox."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.outbox_send, self.outbox_receive = trio.open_memory_channel[bytes](OUTBOX)
        self.overflowed = trio.Event()

    def send(self, element: etree._Element) -> None:
        try:
            self.outbox_send.send_nowait(component_bytes(element))
        except trio.WouldBlock:
            self.overflowed.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


class ExternalComponent:
    """A component domain served by external processes; the router's :class:`Component`."""

    def __init__(self, domain: str, *, subdomains: bool, max_connections: int) -> None:
        self.domain = domain
        self.subdomains = subdomains
        self.max_connections = max_connections
        self.links: list[Link] = []
        self.delivered = 0  # stanzas handed to a connection (tests, metrics)

    def owns(self, jid: JID) -> bool:
        """May the component send from ``jid``? Its domain, a JID at it, or a subdomain's."""
        return jid.domain == self.domain or (
            self.subdomains and jid.domain.endswith("." + self.domain))

    def pick(self, sender: JID) -> Link:
        # Stable across processes and restarts (unlike hash()): crc32 of the bare JID.
        key = zlib.crc32(str(sender.bare).encode("utf-8"))
        return self.links[key % len(self.links)]

    async def receive(self, stanza: Stanza) -> None:
        if not self.links:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, f"{self.domain} is not connected")
        self.pick(stanza.from_).send(stanza.element)
        self.delivered += 1


class AcceptedComponent:
    """One component's stream to us (XEP-0114 §3)."""

    def __init__(self, stream: trio.abc.Stream, peer: str, *, router: Router,
                 pools: Mapping[str, ExternalComponent], secrets_by_domain: Mapping[str, str],
                 max_stanza_bytes: int, handshake_timeout: float) -> None:
        self.stream = stream
        self.peer = peer
        self.router = router
        self.pools = pools
        self.handshake = AcceptHandshake(secrets_by_domain)
        self.parser = StreamParser(max_stanza_bytes, internal_ns=ns.CLIENT)
        self.handshake_timeout = handshake_timeout
        self.pool: ExternalComponent | None = None
        self.link: Link | None = None
        self.header_sent = False

    async def run(self) -> None:
        error: StreamError | None = None
        try:
            try:
                async with trio.open_nursery() as nursery:
                    await self._serve(nursery)
            except BaseExceptionGroup as group:
                leaf = decisive(group)
                if leaf is None:  # only cancellations: the server is stopping
                    error = StreamError(StreamCondition.SYSTEM_SHUTDOWN)
                    raise
                raise leaf from None
        except StreamError as err:
            error = err
        except _TRANSPORT_ERRORS as exc:
            log.debug("component connection from %s lost: %s", self.peer, exc)
        except trio.Cancelled:
            error = StreamError(StreamCondition.SYSTEM_SHUTDOWN)  # the server is stopping
            raise
        except Exception:
            log.exception("internal error on the component stream from %s", self.peer)
            error = StreamError(StreamCondition.INTERNAL_SERVER_ERROR)
        finally:
            await self._close(error)

    async def _serve(self, nursery: trio.Nursery) -> None:
        try:
            with trio.fail_after(self.handshake_timeout):
                await self._authenticate()
        except trio.TooSlowError:
            raise StreamError(StreamCondition.CONNECTION_TIMEOUT, "no handshake in time") from None
        assert self.link is not None
        nursery.start_soon(self._write, self.link)
        await self._read()
        nursery.cancel_scope.cancel()

    async def _events(self) -> list[StreamOpened | ElementReceived | StreamClosed]:
        data = await self.stream.receive_some(READ_SIZE)
        if not data:
            raise trio.BrokenResourceError("closed by the component")
        return self.parser.feed(bytes(data))

    async def _authenticate(self) -> None:
        while True:
            for event in await self._events():
                if isinstance(event, StreamOpened):
                    await self.stream.send_all(self.handshake.reply_header(event.to))
                    self.header_sent = True
                    self.handshake.on_header(event)
                elif isinstance(event, StreamClosed):
                    raise trio.BrokenResourceError("closed before the handshake")
                elif event.element.tag in HANDSHAKE_TAGS and self.handshake.domain:
                    answer = self.handshake.on_handshake(event.element.text)
                    self._join(self.handshake.domain)
                    await self.stream.send_all(answer)
                    log.info("component %s connected from %s", self.handshake.domain, self.peer)
                    return
                else:
                    raise StreamError(StreamCondition.NOT_AUTHORIZED, "handshake first")

    def _join(self, domain: str) -> None:
        pool = self.pools[domain]
        if len(pool.links) >= pool.max_connections:
            # XEP-0114 §3: the domain is already connected (as often as allowed).
            raise StreamError(StreamCondition.CONFLICT, f"{domain} is connected already")
        self.pool = pool
        self.link = Link(f"{domain} from {self.peer}")
        pool.links.append(self.link)

    async def _write(self, link: Link) -> None:
        async with link.outbox_receive:
            async for data in link.outbox_receive:
                await self.stream.send_all(data)
                if link.overflowed.is_set():
                    raise StreamError(StreamCondition.POLICY_VIOLATION,
                                      "too many stanzas waiting for this component")

    async def _read(self) -> None:
        while True:
            for event in await self._events():
                if isinstance(event, StreamClosed):
                    return
                if isinstance(event, ElementReceived) and event.element.tag in ns.STANZA_TAGS:
                    await self._on_stanza(event.element)

    async def _on_stanza(self, el: etree._Element) -> None:
        assert self.pool is not None
        raw_from, raw_to = el.get("from"), el.get("to")
        if not raw_from or not raw_to:
            # XEP-0114 §3: a component addresses every stanza itself.
            raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "'from' and 'to' are required")
        try:
            from_ = JID.parse(raw_from)
        except InvalidJID:
            raise StreamError(StreamCondition.INVALID_FROM, f"bad 'from': {raw_from}") from None
        if not self.pool.owns(from_):
            # RFC 6120 §4.9.3.9: a component speaks only for its own domain.
            raise StreamError(StreamCondition.INVALID_FROM,
                              f"{raw_from} is not at {self.pool.domain}")
        try:
            to = JID.parse(raw_to)
        except InvalidJID as exc:
            await self.router.bounce(Stanza(el, from_, None),
                                     StanzaError(Condition.JID_MALFORMED, str(exc)))
            return
        await self.router.route(Stanza(el, from_, to))

    async def _close(self, error: StreamError | None) -> None:
        if self.pool is not None and self.link is not None:
            if self.link in self.pool.links:
                self.pool.links.remove(self.link)
            self.link.outbox_send.close()
            log.info("component %s disconnected (%s)", self.pool.domain, self.peer)
        tail = b""
        if not self.header_sent:
            tail += self.handshake.reply_header(None)
        if error is not None:
            log.info("stream error %s sent to component at %s", error.condition.value, self.peer)
            tail += error.to_bytes()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await self.stream.send_all(tail + b"</stream:stream>")
            except _TRANSPORT_ERRORS:
                pass
            try:
                await self.stream.aclose()
            except _TRANSPORT_ERRORS:
                pass


class HostLink:
    """``pubsubd component``: our stream to the host server's component port (XEP-0114 §3,
    initiator side) and the router's remote side: every stanza for a domain other than ours
    leaves through it. It reconnects after ``reconnect_delay`` whenever the stream ends;
    stanzas wait in a bounded queue meanwhile (beyond it they bounce)."""

    def __init__(self, settings: ComponentOfConfig, *, max_stanza_bytes: int,
                 on_stanza: Callable[[Stanza], Awaitable[None]]) -> None:
        self.settings = settings
        self.max_stanza_bytes = max_stanza_bytes
        self.on_stanza = on_stanza
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[bytes](OUTBOX)
        self.connected = False

    async def send(self, stanza: Stanza) -> bool:
        """RemoteRouter: queue for the host; False (the router bounces) when the queue is full."""
        try:
            self._outbox_send.send_nowait(component_bytes(stanza.element))
        except trio.WouldBlock:
            return False
        return True

    async def run(self) -> None:
        cfg = self.settings
        while True:
            try:
                await self._connect_once()
            except StreamError as err:
                log.error("the host server refused component %s: %s", cfg.domain, err)
            except (*_TRANSPORT_ERRORS, trio.TooSlowError) as exc:
                log.warning("component link to %s:%d: %s", cfg.host, cfg.port, exc or "lost")
            finally:
                self.connected = False
            await trio.sleep(cfg.reconnect_delay)

    async def _connect_once(self) -> None:
        cfg = self.settings
        with trio.fail_after(30):
            stream = await trio.open_tcp_stream(cfg.host, cfg.port)
        async with stream:
            parser = StreamParser(self.max_stanza_bytes, internal_ns=ns.CLIENT)
            handshake = ConnectHandshake(cfg.domain, cfg.secret)
            await stream.send_all(handshake.opening())
            events: list[StreamOpened | ElementReceived | StreamClosed] = []

            async def next_event() -> StreamOpened | ElementReceived | StreamClosed:
                while not events:
                    data = await stream.receive_some(READ_SIZE)
                    if not data:
                        raise trio.BrokenResourceError("closed by the host server")
                    events.extend(parser.feed(bytes(data)))
                return events.pop(0)

            with trio.fail_after(30):
                while not self.connected:
                    event = await next_event()
                    if isinstance(event, StreamOpened):
                        await stream.send_all(handshake.on_header(event))
                    elif isinstance(event, StreamClosed):
                        raise trio.BrokenResourceError("stream closed during the handshake")
                    elif event.element.tag == ns.STREAM_ERROR:
                        raise _stream_error(event.element)
                    elif handshake.succeeded(event.element.tag):
                        self.connected = True
            log.info("connected to %s:%d as component %s", cfg.host, cfg.port, cfg.domain)

            async def write() -> None:
                async for data in self._outbox_receive:
                    await stream.send_all(data)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                while True:
                    event = await next_event()
                    if isinstance(event, StreamClosed):
                        break
                    if isinstance(event, ElementReceived):
                        if event.element.tag == ns.STREAM_ERROR:
                            raise _stream_error(event.element)
                        if event.element.tag in ns.STANZA_TAGS:
                            await self._inbound(event.element)
                nursery.cancel_scope.cancel()
            with trio.move_on_after(1):
                await stream.send_all(b"</stream:stream>")

    async def _inbound(self, el: etree._Element) -> None:
        try:
            from_ = JID.parse(el.get("from") or "")
            to = JID.parse(el.get("to") or "")
        except InvalidJID:
            log.debug("dropping a stanza with bad addresses from the host server")
            return
        if to.domain != self.settings.domain:
            log.debug("dropping a stanza for %s: not ours", to)  # the host's routing bug
            return
        await self.on_stanza(Stanza(el, from_, to))


def _stream_error(el: etree._Element) -> StreamError:
    condition = next((etree.QName(c).localname for c in el
                      if etree.QName(c).namespace == ns.STREAMS_ERR
                      and etree.QName(c).localname != "text"), "undefined-condition")
    try:
        return StreamError(StreamCondition(condition), el.findtext(ns.clark(ns.STREAMS_ERR,
                                                                             "text")))
    except ValueError:
        return StreamError(StreamCondition.UNDEFINED_CONDITION, condition)

"""XMPP over WebSocket (RFC 7395) and XEP-0156 discovery, served on one HTTP listener.

The client connection (:class:`~pubsubd.net.c2s.C2SConnection`) speaks the TCP binding: a
``<stream:stream>`` header, first-level elements, ``</stream:stream>``, restarts after SASL.
Rather than teach it a second framing, :class:`WebSocketStream` is a ``trio.abc.Stream`` that
translates in both directions: each text message from the client (one complete element,
RFC 7395 §3.3.3) becomes the bytes of a classic stream, and the server's bytes are cut back
into one message per top-level element. The translations are sans-I/O and live in
:mod:`pubsubd.stream.websocket_framing`, tested without sockets.

HTTP requests are parsed once, with h11 (the helpers of :mod:`pubsubd.net.http`); an upgrade
request for :data:`WEBSOCKET_PATH` is then handed to wsproto (``initiate_upgrade_connection``)
and everything else is answered here: the host-meta documents, or 404.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import h11
import trio
from lxml import etree
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import Request as UpgradeRequest
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from pubsubd import ns
from pubsubd.core.context import ServerContext
from pubsubd.errors import StreamCondition, StreamError
from pubsubd.net.c2s import C2SConnection
from pubsubd.net.http import (
    MAX_REQUEST_BYTES,
    BodyTooLarge,
    Handler,
    Request,
    Response,
    next_request,
    request_view,
    respond,
)
from pubsubd.net.listener import Listener
from pubsubd.stream.websocket_framing import (
    CLOSE_MESSAGE,
    STREAM_END,
    ServerFramer,
    client_frame_to_stream,
)

log = logging.getLogger(__name__)

WEBSOCKET_KINDS = ("websocket", "websocket_tls")
WEBSOCKET_PATH = "/xmpp-websocket"
BOSH_PATH = "/http-bind"  # XEP-0206, served by pubsubd.net.bosh
SUBPROTOCOL = "xmpp"  # RFC 7395 §3.1
HOST_META = "/.well-known/host-meta"
HOST_META_JSON = "/.well-known/host-meta.json"
READ_SIZE = 65536
CLOSE_TIMEOUT = 2.0  # seconds for the closing handshake before the TCP connection is dropped


# --- the trio stream over an established WebSocket -----------------------------------------

class WebSocketStream(trio.abc.Stream):
    """Classic XMPP stream bytes over an established WebSocket connection.

    ``receive_some`` returns the translation of one client message at a time, so a stream
    restart never finds the next stream's header mixed with the old stream's last element.
    WebSocket pings are answered, and a ping or pong from the client reads as a whitespace
    keep-alive, so a browser (which cannot send pings, but answers ours) counts as alive for
    the idle timeout. The reader and the writer tasks share the wsproto connection; a lock
    keeps the frames they write whole and in order.
    """

    def __init__(self, transport: trio.abc.Stream, ws: WSConnection, *,
                 max_message_bytes: int, over_tls: bool, received: bytes = b"") -> None:
        """``received``: bytes that arrived after the upgrade request, not yet read by ``ws``."""
        self.transport = transport
        self.over_tls = over_tls
        self._ws = ws
        self._max_message_bytes = max_message_bytes
        self._framer = ServerFramer()
        self._received = received
        self._incoming: deque[bytes] = deque()
        self._partial: list[str] = []
        self._partial_bytes = 0
        self._send_lock = trio.Lock()
        self._eof = False
        self._client_closed_stream = False  # the client sent <close/> (RFC 7395 §3.6)
        self._close_code: int = CloseReason.NORMAL_CLOSURE
        self._failed = False  # the client broke the WebSocket protocol
        self._closing = False
        self._closed = False

    # trio.abc.Stream --------------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("the WebSocket stream is closed")
        while not self._incoming:
            if self._eof:
                return b""
            await self._pump()
        data = self._incoming.popleft()
        if max_bytes is not None and len(data) > max_bytes:
            self._incoming.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the WebSocket stream is closed")
        data = bytes(data)
        if data.isspace() and not self._framer.pending:
            await self._send(Ping())  # RFC 7395 §3.8: a ping, never a whitespace keep-alive
            return
        messages = self._framer.feed(data)
        if messages:
            await self._send(*(Message(data=message) for message in messages))

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Close the WebSocket (RFC 6455 §7.1), then the transport, whatever happens."""
        if self._closed:
            return
        self._closing = True
        try:
            with trio.move_on_after(CLOSE_TIMEOUT) as scope:
                scope.shield = True
                await self._close_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError,
                StreamError):
            pass
        finally:
            self._closed = True
            with trio.move_on_after(CLOSE_TIMEOUT) as scope:
                scope.shield = True
                await self.transport.aclose()
            if scope.cancelled_caught:
                await trio.aclose_forcefully(self.transport)

    # internals ----------------------------------------------------------------------------

    async def _close_handshake(self) -> None:
        if (self._client_closed_stream and not self._framer.closed
                and self._ws.state is ConnectionState.OPEN):
            # RFC 7395 §3.6: a <close/> is answered by a <close/>, even while negotiating
            # (where the client connection just drops the stream).
            await self._send(Message(data=CLOSE_MESSAGE))
            self._framer.closed = True
        if self._client_closed_stream and self._ws.state is ConnectionState.OPEN:
            # RFC 7395 §3.6: the party that closed the XMPP stream starts the WebSocket
            # closing handshake; give the client a moment to do so before we do.
            with trio.move_on_after(CLOSE_TIMEOUT / 2):
                while not self._eof and self._ws.state is ConnectionState.OPEN:
                    await self._pump()
        if self._ws.state is ConnectionState.OPEN:
            await self._send(CloseConnection(code=self._close_code))
        if self._failed:
            return
        # RFC 6455 §7.1.1: the server should wait for the client's Close before the TCP close.
        while not self._eof and self._ws.state is not ConnectionState.CLOSED:
            await self._pump()

    async def _send(self, *events: Event) -> None:
        async with self._send_lock:
            try:
                data = b"".join(self._ws.send(event) for event in events)
            except LocalProtocolError:
                raise trio.BrokenResourceError("the WebSocket is closed") from None
            await self.transport.send_all(data)

    async def _pump(self) -> None:
        """Read from the transport once and act on the WebSocket events it completes."""
        if self._ws.state is ConnectionState.CLOSED:
            self._eof = True
            return
        data, self._received = self._received, b""
        if not data:
            data = bytes(await self.transport.receive_some(READ_SIZE))
        self._ws.receive_data(data or None)  # None: the TCP connection ended without a Close
        for event in self._ws.events():
            await self._on_event(event)

    async def _on_event(self, event: Event) -> None:
        match event:
            case TextMessage():
                if not self._closing:
                    self._on_text(event)
            case BytesMessage():
                if not self._closing:
                    # RFC 7395 §3.2: data frames are text; RFC 6455 §7.4.1: 1003 refuses a type.
                    self._close_code = CloseReason.UNSUPPORTED_DATA
                    raise StreamError(StreamCondition.BAD_FORMAT,
                                      "binary messages are not used (RFC 7395 §3.2)")
            case Ping():
                await self._send(event.response())
                self._incoming.append(b" ")
            case Pong():
                self._incoming.append(b" ")
            case CloseConnection():
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    await self._send(event.response())
                elif self._ws.state is ConnectionState.OPEN:
                    # wsproto's report of a broken frame (e.g. 1007, text that is not UTF-8):
                    # RFC 6455 §7.1.7, fail the connection with that code and do not wait.
                    self._close_code = event.code
                    self._failed = True
                self._eof = True

    def _on_text(self, event: TextMessage) -> None:
        self._partial.append(event.data)
        self._partial_bytes += len(event.data.encode("utf-8"))
        if self._partial_bytes > self._max_message_bytes:
            # RFC 6120 §13.12 (4) for the stanza, RFC 6455 §7.4.1 (1009) for the message.
            self._close_code = CloseReason.MESSAGE_TOO_BIG
            raise StreamError(StreamCondition.POLICY_VIOLATION,
                              f"message larger than {self._max_message_bytes} bytes")
        if not event.message_finished:
            return
        text = "".join(self._partial)
        self._partial.clear()
        self._partial_bytes = 0
        data = client_frame_to_stream(text)
        if data == STREAM_END:
            self._client_closed_stream = True
        self._incoming.append(data)


class WebSocketC2S(C2SConnection):
    """A client stream carried by a WebSocket.

    It counts as secure, like a direct-TLS stream: RFC 7395 §3.9 forbids offering STARTTLS,
    TLS belongs to the WebSocket (``wss``), and a plain ``ws`` listener is only allowed on
    loopback (:func:`pubsubd.config.validate`), reachable from this host alone — typically a
    TLS-terminating reverse proxy. Channel binding is offered only over our own TLS: behind a
    proxy, the client's TLS session is not one we could bind to.
    """

    def __init__(self, ctx: ServerContext, stream: WebSocketStream, peer: str) -> None:
        super().__init__(ctx, stream, peer, direct_tls=True)
        self._over_tls = stream.over_tls

    def _channel_bindings(self) -> list[str]:
        return super()._channel_bindings() if self._over_tls else []


# --- the HTTP side: upgrade or discovery ----------------------------------------------------

@dataclass(frozen=True, slots=True)
class WebSocketSite:
    """What one WebSocket listener needs to answer its HTTP requests."""

    over_tls: bool
    max_message_bytes: int  # config.limits.max_stanza_bytes
    timeout: float  # seconds for the HTTP request before the upgrade
    domain: str  # host of the advertised URLs when a listener has a wildcard address
    listeners: Sequence[Listener]  # the server's bound listeners (host-meta lists ours)
    bosh: bool = False  # BOSH is served at BOSH_PATH (XEP-0206) and advertised in host-meta


SessionRunner = Callable[[WebSocketStream], Awaitable[None]]


async def serve_websocket(stream: trio.abc.Stream, site: WebSocketSite,
                          run_session: SessionRunner, bosh: Handler | None = None,
                          peer: str = "") -> None:
    """Answer HTTP requests on ``stream`` until one upgrades to XMPP; then run the session.
    ``bosh`` answers the requests for :data:`BOSH_PATH` (they wait for the session's output)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    upgraded: WebSocketStream | None = None
    try:
        while upgraded is None:
            request: h11.Request | None = None
            body = bytearray()
            with trio.move_on_after(site.timeout):
                request = await next_request(conn, stream, body, site.max_message_bytes)
            if request is None:
                return
            view = request_view(request, bytes(body), peer)
            if view.path == BOSH_PATH and bosh is not None:
                await respond(conn, stream, request, await bosh(view))
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
                continue
            if view.path == WEBSOCKET_PATH and _asks_upgrade(view):
                upgraded = await _upgrade(stream, conn, request, site)
                if upgraded is None:
                    return
                break
            await respond(conn, stream, request, answer(view, site))
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError,
            ssl.SSLError, OSError, BodyTooLarge):
        return
    finally:
        if upgraded is None:
            await _close_quietly(stream)
    await run_session(upgraded)


def _asks_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.get("upgrade", "").lower()


async def _upgrade(stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request,
                   site: WebSocketSite) -> WebSocketStream | None:
    """Complete the opening handshake (RFC 6455 §4.2.2) with the xmpp subprotocol, or refuse."""
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.initiate_upgrade_connection(list(request.headers), request.target)
    except RemoteProtocolError as exc:  # a broken handshake: wsproto names the status (400/426)
        hint = exc.event_hint if isinstance(exc.event_hint, RejectConnection) else None
        await stream.send_all(ws.send(hint or RejectConnection()))
        return None
    upgrade = next(iter(ws.events()))
    assert isinstance(upgrade, UpgradeRequest)
    if SUBPROTOCOL not in upgrade.subprotocols:
        # RFC 7395 §3.1: without 'xmpp' no XMPP subprotocol connection can be established.
        body = b"the 'xmpp' WebSocket subprotocol (RFC 7395) is required\n"
        headers = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"%d" % len(body)),
                   (b"Connection", b"close")]
        await stream.send_all(ws.send(RejectConnection(status_code=400, headers=headers,
                                                       has_body=True))
                              + ws.send(RejectData(data=body)))
        return None
    # No extensions: permessage-deflate would make frames depend on each other, and compressing
    # secrets next to attacker-chosen text under TLS invites CRIME-style attacks. The Origin is
    # not checked: authentication is in-band SASL, so no ambient credential can be abused.
    await stream.send_all(ws.send(AcceptConnection(subprotocol=SUBPROTOCOL)))
    received, _ = conn.trailing_data
    return WebSocketStream(stream, ws, max_message_bytes=site.max_message_bytes,
                           over_tls=site.over_tls, received=bytes(received))


async def _close_quietly(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(CLOSE_TIMEOUT) as scope:
        scope.shield = True
        try:
            await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            pass
    if scope.cancelled_caught:
        await trio.aclose_forcefully(stream)


# --- XEP-0156 discovery -----------------------------------------------------------------------

def answer(request: Request, site: WebSocketSite) -> Response:
    """The response to a plain HTTP request on a WebSocket listener."""
    if request.path == WEBSOCKET_PATH:
        return Response(426, b"connect with a WebSocket and the 'xmpp' subprotocol\n",
                        headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")])
    if request.path not in (HOST_META, HOST_META_JSON):
        return Response(404, b"not found\n")
    if request.method not in ("GET", "HEAD"):
        return Response(405, b"method not allowed\n", headers=[("Allow", "GET, HEAD")])
    urls = endpoint_urls(site, request.headers.get("host"))
    bosh_urls = bosh_endpoint_urls(site, request.headers.get("host")) if site.bosh else []
    # XEP-0156 §3: CORS, so web clients served from another origin can read the document
    # ("*" never carries cookies or HTTP credentials).
    cors = [("Access-Control-Allow-Origin", "*")]
    if request.path == HOST_META_JSON:
        return Response(200, host_meta_json(urls, bosh_urls), "application/json", cors)
    return Response(200, host_meta_xrd(urls, bosh_urls), "application/xrd+xml; charset=utf-8",
                    cors)


def endpoint_urls(site: WebSocketSite, host_header: str | None = None) -> list[str]:
    """The ``ws(s)://`` URLs of the server's WebSocket listeners, secure ones first.

    A document served over TLS lists only ``wss`` endpoints, so discovery never offers a
    client a weaker connection method than the one it used (XEP-0156 §4). A listener on a
    wildcard address is named by the host the client asked for.
    """
    requested = _hostname(host_header) or site.domain
    urls: list[str] = []
    for kind, scheme in (("websocket_tls", "wss"), ("websocket", "ws")):
        if scheme == "ws" and site.over_tls:
            continue
        for listener in site.listeners:
            if listener.name == kind:
                host = _url_host(listener.address, requested)
                urls.append(f"{scheme}://{host}:{listener.bound_port}{WEBSOCKET_PATH}")
    return urls


def bosh_endpoint_urls(site: WebSocketSite, host_header: str | None = None) -> list[str]:
    """The ``http(s)://`` BOSH URLs of the same listeners, chosen as :func:`endpoint_urls`."""
    return [url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
            .removesuffix(WEBSOCKET_PATH) + BOSH_PATH
            for url in endpoint_urls(site, host_header)]


def _links(urls: Sequence[str], bosh_urls: Sequence[str]) -> list[tuple[str, str]]:
    return ([(ns.ALT_CONNECTIONS_WEBSOCKET, url) for url in urls]
            + [(ns.ALT_CONNECTIONS_XBOSH, url) for url in bosh_urls])


def host_meta_xrd(urls: Sequence[str], bosh_urls: Sequence[str] = ()) -> bytes:
    """XEP-0156 §2.3 / RFC 6415: the XRD host-meta document."""
    xrd = etree.Element(ns.clark(ns.XRD, "XRD"), nsmap={None: ns.XRD})
    for rel, url in _links(urls, bosh_urls):
        etree.SubElement(xrd, ns.clark(ns.XRD, "Link"), rel=rel, href=url)
    return etree.tostring(xrd, xml_declaration=True, encoding="utf-8")


def host_meta_json(urls: Sequence[str], bosh_urls: Sequence[str] = ()) -> bytes:
    """XEP-0156 §2.3 / RFC 6415 Appendix A: the JRD host-meta document."""
    links = [{"rel": rel, "href": url} for rel, url in _links(urls, bosh_urls)]
    return json.dumps({"links": links}).encode()


_HOST_CHARS = re.compile(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]")


def _hostname(header: str | None) -> str | None:
    """The host of a Host header (RFC 9110 §7.2) without its port; None if it looks odd."""
    if not header:
        return None
    host = header.strip()
    if host.startswith("["):
        host = host[:host.find("]") + 1]
    else:
        host = host.partition(":")[0]
    return host if _HOST_CHARS.fullmatch(host) else None


def _url_host(address: str, requested: str) -> str:
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return requested
    return f"[{address}]" if ip.version == 6 else address

"""BOSH (XEP-0124/XEP-0206) at ``/http-bind`` on the WebSocket listeners: the trio shell.

As for WebSocket, the client connection (:class:`~pubsubd.net.c2s.C2SConnection`) runs
unchanged over a :class:`BoshStream`, a ``trio.abc.Stream`` whose reads are the payloads of
the client's requests (in rid order, a stream header for the creation and each restart) and
whose writes are cut into elements and handed to the session's next response. The rules of
the binding (rid window, hold and wait, retransmission, overactivity, inactivity) are the
sans-I/O :class:`~pubsubd.stream.bosh.BoshSession`; this module keeps the sessions by sid,
runs a client connection per session, and lets each HTTP request wait for its answer.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence

import trio
from lxml import etree

from pubsubd.core.context import ServerContext
from pubsubd.net.c2s import C2SConnection
from pubsubd.net.http import Request, Response
from pubsubd.stream.bosh import (
    BoshError,
    BoshLimits,
    BoshRequest,
    BoshSession,
    parse_request,
    stream_header,
    terminate,
)
from pubsubd.stream.websocket_framing import CLOSE_MESSAGE, ServerFramer

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/xml; charset=utf-8"


class BoshStream(trio.abc.Stream):
    """The classic stream bytes of one BOSH session, for a client connection to read and write."""

    def __init__(self, session: BoshSession, domain: str, *, over_tls: bool) -> None:
        self.session = session
        self.over_tls = over_tls
        self._domain = domain
        send, recv = trio.open_memory_channel[bytes](math.inf)
        self._inbox_send: trio.MemorySendChannel[bytes] = send
        self._inbox_recv: trio.MemoryReceiveChannel[bytes] = recv
        self._framer = ServerFramer()
        self._changed = trio.Event()
        self._header_due = True  # the creation request stands for the first stream header

    # trio.abc.Stream --------------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await self._inbox_recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.session.ended is not None:
            raise trio.BrokenResourceError("the BOSH session is over")
        for message in self._framer.feed(bytes(data)):
            if message == CLOSE_MESSAGE:
                self.session.end()  # XEP-0206 §6: the stream's end ends the session
            elif message.startswith("<open "):
                opened = etree.fromstring(message)
                self.session.stream_from = opened.get("from", "")
                self.session.stream_id = opened.get("id", "")
            elif message.startswith("<stream:error"):
                self.session.end("remote-stream-error", (message,))  # XEP-0206 §7
            else:
                self.session.push([message])
        self._notify()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    # the HTTP side ----------------------------------------------------------------------------

    def close(self) -> None:
        self.session.end()
        self._inbox_send.close()
        self._notify()

    async def exchange(self, request: BoshRequest) -> bytes:
        """Take one request and wait for its response."""
        log.debug("bosh %s: rid %d", self.session.sid, request.rid)
        try:
            accepted = self.session.receive(request, trio.current_time())
        except BoshError:
            self.close()  # the session's terminate body is its answer
            assert self.session.ended is not None
            return self.session.ended
        for ready in accepted.in_order:
            self._forward(ready)
        self.session.advance(trio.current_time())
        self._notify()
        ticket = accepted.ticket
        while ticket not in self.session.responses:
            changed = self._changed
            with trio.move_on_at(self.session.next_deadline()):
                await changed.wait()
            self.session.advance(trio.current_time())
        return self.session.responses.pop(ticket)

    async def watch(self) -> None:
        """Answer requests whose ``wait`` ran out, and end the session when it goes idle."""
        while self.session.ended is None:
            changed = self._changed
            with trio.move_on_at(self.session.next_deadline()):
                await changed.wait()
            self.session.advance(trio.current_time())
            self._notify()
        self.close()

    def _forward(self, request: BoshRequest) -> None:
        if self._header_due or request.restart:  # XEP-0206 §5: a restart is a new header
            self._header_due = False
            self._inbox_send.send_nowait(stream_header(request, self._domain))
        if request.payloads:
            self._inbox_send.send_nowait(b"".join(request.payloads))
        elif not request.restart:
            self._inbox_send.send_nowait(b" ")  # an empty request shows the client is alive
        if request.type == "terminate":
            self._inbox_send.send_nowait(b"</stream:stream>")  # XEP-0206 §6

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


class BoshC2S(C2SConnection):
    """A client stream carried by BOSH; secure on the same terms as :class:`WebSocketC2S`
    (``https`` on a TLS listener, or a plain listener that only loopback can reach)."""

    def __init__(self, ctx: ServerContext, stream: BoshStream, peer: str) -> None:
        super().__init__(ctx, stream, peer, direct_tls=True)

    def _channel_bindings(self) -> list[str]:
        return []  # the TLS session of one HTTP request is not the session's channel


SessionRunner = Callable[[BoshC2S], Awaitable[None]]


class BoshManager:
    """The BOSH sessions of the server, by sid, and the ``/http-bind`` request handler."""

    def __init__(self, ctx: ServerContext, limits: BoshLimits, *,
                 cors_origins: Sequence[str], run_session: SessionRunner) -> None:
        self.ctx = ctx
        self.limits = limits
        self.cors_origins = tuple(cors_origins)
        self._run_session = run_session
        self._streams: dict[str, BoshStream] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self) -> None:
        """Own the sessions' tasks until cancelled (at shutdown)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await trio.sleep_forever()

    async def handle(self, request: Request, *, over_tls: bool) -> Response:
        cors = self._cors(request)
        if request.method == "OPTIONS":  # a CORS preflight
            return Response(204 if cors else 403, headers=[
                *cors, ("Access-Control-Allow-Methods", "POST, OPTIONS"),
                ("Access-Control-Allow-Headers", "Content-Type"),
                ("Access-Control-Max-Age", "86400")])
        if request.method != "POST":
            return Response(405, b"BOSH (XEP-0124): POST a <body/>\n",
                            headers=[("Allow", "POST, OPTIONS"), *cors])
        try:
            bosh_request = parse_request(request.body)
        except BoshError as err:
            # XEP-0124 §17.1: a request that cannot be a <body/> gets an HTTP error.
            return Response(400, f"{err}\n".encode(), headers=cors)
        if bosh_request.sid is None:
            stream = self._create(bosh_request, request.peer, over_tls)
        else:
            found = self._streams.get(bosh_request.sid)
            if found is None:  # XEP-0124 §17.2: an unknown sid
                return Response(200, terminate("item-not-found"), CONTENT_TYPE, cors)
            stream = found
        if stream is None:
            return Response(200, terminate("remote-connection-failed"), CONTENT_TYPE, cors)
        return Response(200, await stream.exchange(bosh_request), CONTENT_TYPE, cors)

    def _create(self, request: BoshRequest, peer: str, over_tls: bool) -> BoshStream | None:
        if self._nursery is None or self.ctx.shutting_down:
            return None
        sid = secrets.token_urlsafe(18)
        session = BoshSession(sid, request, self.limits, trio.current_time())
        stream = BoshStream(session, self.ctx.config.primary_domain, over_tls=over_tls)
        self._streams[sid] = stream
        self._nursery.start_soon(self._serve, sid, stream, peer)
        return stream

    async def _serve(self, sid: str, stream: BoshStream, peer: str) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.watch)
                try:
                    await self._run_session(BoshC2S(self.ctx, stream, peer))
                finally:
                    stream.close()
        finally:
            del self._streams[sid]

    def _cors(self, request: Request) -> list[tuple[str, str]]:
        """CORS for the configured browser origins (or any, with "*")."""
        origin = request.headers.get("origin")
        if not origin or not self.cors_origins:
            return []
        if "*" in self.cors_origins:
            return [("Access-Control-Allow-Origin", "*")]
        if origin in self.cors_origins:
            return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return []

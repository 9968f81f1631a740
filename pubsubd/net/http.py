"""A minimal HTTP/1.1 server loop (h11) for the server's small endpoints.

The metrics endpoint and the demo sample-feed server both need the same thing: read requests on
a connection, answer each with a complete response, keep the connection alive while the client
wants it, and give up on slow or malformed clients. Handlers only map a request to a response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11
import trio

MAX_REQUEST_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024  # a larger request body is answered 413 and ends the connection


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-cased names
    query: str = ""  # the raw query string, without "?"
    body: bytes = b""  # collected up to the server's ``max_body``
    peer: str = ""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain"
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


class BodyTooLarge(Exception):
    """A request body (announced or received) beyond the server's ``max_body``."""


async def serve_http(stream: trio.abc.Stream, handler: Handler, *,
                     timeout: float = 30.0,  # noqa: ASYNC109 - per request, not overall
                     max_body: int = MAX_BODY_BYTES, peer: str = "") -> None:
    """Answer requests on ``stream`` until the client is done, slow (``timeout``) or broken.
    Request bodies up to ``max_body`` bytes reach the handler (larger: 413)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    try:
        async with stream:
            while True:
                with trio.move_on_after(timeout):
                    body = bytearray() if max_body else None
                    try:
                        request = await next_request(conn, stream, body, max_body)
                    except BodyTooLarge:
                        # RFC 9110 §15.5.14; the unread body makes the connection unusable.
                        await stream.send_all(conn.send(h11.Response(status_code=413, headers=[
                            ("Content-Length", "0"), ("Connection", "close")])))
                        await stream.send_all(conn.send(h11.EndOfMessage()))
                        return
                    if request is None:
                        return
                    view = request_view(request, bytes(body or b""), peer)
                    await respond(conn, stream, request, await handler(view))
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
                    continue
                return
    except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        return


def request_view(request: h11.Request, body: bytes = b"", peer: str = "") -> Request:
    path, _, query = request.target.decode("ascii", "replace").partition("?")
    return Request(
        method=request.method.decode("ascii", "replace"),
        path=path,
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers},
        query=query,
        body=body,
        peer=peer,
    )


async def respond(conn: h11.Connection, stream: trio.abc.Stream, request: h11.Request,
                   response: Response) -> None:
    headers = [("Content-Type", response.content_type), *response.headers]
    if response.status != 304:  # RFC 9110 §15.4.5: a 304 has no content
        headers.append(("Content-Length", str(len(response.body))))
    await stream.send_all(conn.send(h11.Response(status_code=response.status, headers=headers)))
    if response.body and response.status != 304 and request.method != b"HEAD":
        await stream.send_all(conn.send(h11.Data(data=response.body)))
    await stream.send_all(conn.send(h11.EndOfMessage()))


async def next_request(conn: h11.Connection, stream: trio.abc.Stream,
                       body: bytearray | None = None, max_body: int = 0) -> h11.Request | None:
    """The next complete request; None when closed. Its body is read and ignored, or, given
    ``body``, collected there (:class:`BodyTooLarge` beyond ``max_body`` bytes)."""
    request: h11.Request | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(bytes(data))
            if not data and conn.their_state is not h11.DONE:
                return None
            continue
        if isinstance(event, h11.Request):
            request = event
            if body is not None:
                length = dict(event.headers).get(b"content-length", b"0")
                if int(length) > max_body:  # h11 checked it is a number
                    raise BodyTooLarge
        elif isinstance(event, h11.Data) and body is not None:
            if len(body) + len(event.data) > max_body:
                raise BodyTooLarge
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None

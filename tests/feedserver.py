"""A real local HTTP/1.1 server for feed tests, on trio and h11.

Tests describe what each path answers with :meth:`FeedServer.set` (or the helpers for redirects
and errors), may change it between polls, and read back what clients sent in
:attr:`FeedServer.requests`. Validators are automatic: every document gets an ETag from its
content and a Last-Modified from the moment it was set, and conditional requests get a 304.

    async with open_feed_server() as server:
        server.set("/feed.xml", RSS, content_type="application/rss+xml")
        result = await fetcher.fetch(server.url("/feed.xml"))
"""

from __future__ import annotations

import email.utils
import gzip as gzip_module
import hashlib
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h11
import trio

REASONS = {
    200: b"OK", 301: b"Moved Permanently", 302: b"Found", 304: b"Not Modified",
    307: b"Temporary Redirect", 308: b"Permanent Redirect", 404: b"Not Found", 410: b"Gone",
    429: b"Too Many Requests", 500: b"Internal Server Error", 503: b"Service Unavailable",
}


@dataclass(slots=True)
class Route:
    body: bytes
    status: int = 200
    content_type: str = "application/xml"
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    encoding: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunk_size: int = 16384


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]


class FeedServer:
    """Serves programmable routes on 127.0.0.1; start it with ``nursery.start(server.serve)``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def set(
        self,
        path: str,
        body: bytes | str = b"",
        *,
        content_type: str = "application/xml",
        status: int = 200,
        headers: dict[str, str] | None = None,
        validators: bool = True,
        encoding: str | None = None,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        chunk_size: int = 16384,
    ) -> Route:
        """Make ``path`` answer with ``body``; ``encoding`` is "gzip" or "deflate" to compress."""
        data = body.encode() if isinstance(body, str) else body
        route = Route(
            body=data,
            status=status,
            content_type=content_type,
            headers=dict(headers or {}),
            encoding=encoding,
            delay=delay,
            chunk_delay=chunk_delay,
            chunk_size=chunk_size,
        )
        if validators and status == 200:
            route.etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
            route.last_modified = email.utils.formatdate(time.time(), usegmt=True)
        self.routes[path] = route
        return route

    def redirect(self, path: str, location: str, status: int = 301) -> Route:
        return self.set(path, status=status, headers={"Location": location}, validators=False)

    def fail(self, path: str, status: int, *, retry_after: str | None = None) -> Route:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return self.set(path, b"error\n", content_type="text/plain", status=status, headers=headers)

    def hits(self, path: str) -> int:
        return sum(1 for seen in self.requests if seen.path == path)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._connection, listeners, handler_nursery=nursery)

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._next_request(conn, stream)
                if request is None:
                    return
                await self._respond(conn, stream, request)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    async def _next_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> h11.Request | None:
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data and request is None:
                    return None
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request
    ) -> None:
        path = request.target.decode()
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        self.requests.append(Seen(request.method.decode(), path, headers))
        route = self.routes.get(path) or Route(b"not found\n", 404, "text/plain")
        if route.delay:
            await trio.sleep(route.delay)
        out = [("Content-Type", route.content_type), *route.headers.items()]
        if route.etag:
            out.append(("ETag", route.etag))
        if route.last_modified:
            out.append(("Last-Modified", route.last_modified))
        status = route.status
        if status == 200 and _not_modified(route, headers):
            status = 304
        body = route.body if status not in (304,) else b""
        if body and route.encoding == "gzip":
            body = gzip_module.compress(body)
            out.append(("Content-Encoding", "gzip"))
        elif body and route.encoding == "deflate":
            body = zlib.compress(body)
            out.append(("Content-Encoding", "deflate"))
        if status != 304:
            out.append(("Content-Length", str(len(body))))
        await _send(conn, stream, h11.Response(
            status_code=status, headers=out, reason=REASONS.get(status, b"")
        ))
        for start in range(0, len(body), route.chunk_size):
            if route.chunk_delay and start:
                await trio.sleep(route.chunk_delay)
            await _send(conn, stream, h11.Data(data=body[start:start + route.chunk_size]))
        await _send(conn, stream, h11.EndOfMessage())


def _not_modified(route: Route, headers: dict[str, str]) -> bool:
    if "if-none-match" in headers:  # RFC 9110 §13.2.2: If-None-Match wins
        tags = [t.strip() for t in headers["if-none-match"].split(",")]
        return route.etag is not None and (route.etag in tags or "*" in tags)
    since = headers.get("if-modified-since")
    if since and route.last_modified:
        try:
            return email.utils.parsedate_to_datetime(
                route.last_modified
            ) <= email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


async def _send(conn: h11.Connection, stream: trio.SocketStream, event: h11.Event) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


@asynccontextmanager
async def open_feed_server() -> AsyncIterator[FeedServer]:
    """Run a :class:`FeedServer` for the duration of the block."""
    server = FeedServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()

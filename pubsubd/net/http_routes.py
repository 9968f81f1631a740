"""Paths that modules serve on the server's HTTP listeners, by prefix.

A module registers a prefix (``/feeds/``, ``/websub/``...) with :meth:`HttpRoutes.add`; the
``metrics`` listener answers those paths beside its own, and a listener of kind ``http`` serves
only them, for what may face the public (feeds, WebSub) without exposing the metrics.
"""

from __future__ import annotations

import trio

from pubsubd.net.http import Handler, Request, Response, serve_http

REQUEST_TIMEOUT = 30.0  # seconds for one request on an ``http`` listener


class HttpRoutes:
    """Prefix → handler; the longest matching prefix wins."""

    def __init__(self) -> None:
        self._routes: dict[str, Handler] = {}

    def add(self, prefix: str, handler: Handler) -> None:
        self._routes[prefix] = handler

    def find(self, path: str) -> Handler | None:
        best = ""
        for prefix in self._routes:
            if path.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self._routes.get(best) if best else None

    async def respond(self, request: Request) -> Response:
        handler = self.find(request.path)
        if handler is None:
            return Response(404, b"not found\n")
        return await handler(request)

    async def serve(self, stream: trio.abc.Stream, peer: str) -> None:
        """The connection handler of ``http`` listeners."""
        await serve_http(stream, self.respond, timeout=REQUEST_TIMEOUT, peer=peer)

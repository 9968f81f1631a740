"""A WebSub hub and a plain HTTP server for tests, both real local HTTP servers on trio.

:class:`TestHub` follows W3C WebSub as a hub would: it accepts a subscription request with 202,
verifies the intent by a GET on the callback with a challenge, and, when asked by the test,
distributes content signed with the subscriber's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

import httpx
import trio

from pubsubd.net.http import Request, Response, serve_http


async def serve(handler: Callable[[Request], Awaitable[Response]], nursery: trio.Nursery) -> int:
    """Serve ``handler`` on 127.0.0.1 in ``nursery``; the port."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]

    async def connection(stream: trio.SocketStream) -> None:
        await serve_http(stream, handler, timeout=10.0)

    nursery.start_soon(trio.serve_listeners, connection, listeners)
    return port


@dataclass
class Subscription:
    topic: str
    callback: str
    secret: str
    lease_seconds: str


@dataclass
class TestHub:
    __test__ = False
    port: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    verified: dict[str, Subscription] = field(default_factory=dict)  # callback → subscription
    changed: trio.Event = field(default_factory=trio.Event)
    nursery: trio.Nursery | None = None
    refuse: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hub"

    async def start(self, nursery: trio.Nursery) -> TestHub:
        self.nursery = nursery
        self.port = await serve(self.handle, nursery)
        return self

    async def handle(self, request: Request) -> Response:
        form = dict(parse_qsl(request.body.decode()))
        self.requests.append(form)
        self._changed()
        if self.refuse:
            return Response(400, b"no\n")
        assert self.nursery is not None
        self.nursery.start_soon(self._verify, form)
        return Response(202, b"")

    async def _verify(self, form: dict[str, str]) -> None:
        challenge = secrets.token_hex(8)
        params = {"hub.mode": form["hub.mode"], "hub.topic": form["hub.topic"],
                  "hub.challenge": challenge}
        if form["hub.mode"] == "subscribe":
            params["hub.lease_seconds"] = form.get("hub.lease_seconds", "600")
        async with httpx.AsyncClient() as client:
            response = await client.get(form["hub.callback"] + "?" + urlencode(params))
        if response.status_code == 200 and response.text == challenge:
            if form["hub.mode"] == "subscribe":
                self.verified[form["hub.callback"]] = Subscription(
                    form["hub.topic"], form["hub.callback"], form.get("hub.secret", ""),
                    params["hub.lease_seconds"])
            else:
                self.verified.pop(form["hub.callback"], None)
        self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.changed.wait()

    async def distribute(self, sub: Subscription, body: bytes, *, secret: str | None = None,
                         content_type: str = "application/atom+xml") -> httpx.Response:
        """POST ``body`` to the subscriber, signed with its secret (or ``secret``)."""
        key = sub.secret if secret is None else secret
        signature = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": content_type, "X-Hub-Signature": f"sha256={signature}",
                   "Link": f'<{self.url}>; rel="hub", <{sub.topic}>; rel="self"'}
        async with httpx.AsyncClient() as client:
            return await client.post(sub.callback, content=body, headers=headers)

"""The WebSub subscriber of polled feeds, on our HTTP listeners (see feeds.websub_subscriber).

It serves the callbacks at ``<public_url>/websub/cb/<token>`` and reaches hubs through the
guarded transport with the feed fetcher's address policy. The feed module hands it to its
poller (``Poller(..., push=receiver.subscriber)``) and attaches the poller's ``ingest``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import httpx

from feeds.fetch import DEFAULT_USER_AGENT
from feeds.guarded_transport import GuardedTransport
from feeds.netguard import AddressPolicy
from feeds.push import LeaseStore
from feeds.websub_subscriber import SubscriberConfig, WebSubSubscriber
from pubsubd.config import FeedsConfig, HttpConfig, WebSubConfig
from pubsubd.core.module import Module
from pubsubd.net.http import Request, Response
from pubsubd.net.http_routes import HttpRoutes

CALLBACK_PATH = "/websub/cb/"


class WebSubSubscriberModule(Module):
    name = "websub_subscriber"

    def __init__(self, *, settings: WebSubConfig, http: HttpConfig, feeds: FeedsConfig,
                 store: LeaseStore, routes: HttpRoutes) -> None:
        super().__init__()
        self.settings = settings
        self.http = http
        self.feeds = feeds
        self.store = store
        self.routes = routes
        self.subscriber: WebSubSubscriber | None = None  # None: feeds are only polled

    def setup(self) -> None:
        public = (self.http.public_url or "").rstrip("/")
        if not (self.settings.subscribe and self.feeds.enabled and public):
            return
        cfg = self.settings
        self.client = httpx.AsyncClient(
            transport=GuardedTransport(AddressPolicy.from_strings(self.feeds.allow_hosts), 8),
            follow_redirects=False, trust_env=False, timeout=self.feeds.total_timeout,
            headers={"User-Agent": DEFAULT_USER_AGENT})
        self.subscriber = WebSubSubscriber(self.store, self.client, SubscriberConfig(
            callback_base=public + CALLBACK_PATH, lease_seconds=cfg.lease,
            renew_before=cfg.renew_before, verify_timeout=cfg.verify_timeout,
            poll_interval_with_push=cfg.poll_interval_with_push))
        self.routes.add(CALLBACK_PATH, self.respond)

    async def respond(self, request: Request) -> Response:
        if self.subscriber is None:
            return Response(404, b"")
        token = request.path[len(CALLBACK_PATH):]
        status, body = await self.subscriber.callback(
            request.method, token, dict(parse_qsl(request.query, keep_blank_values=True)),
            request.headers, request.body)
        return Response(status, body)

    async def run(self) -> None:
        if self.subscriber is not None:
            await self.subscriber.run()

    async def stop(self) -> None:
        if self.subscriber is not None:
            await self.client.aclose()

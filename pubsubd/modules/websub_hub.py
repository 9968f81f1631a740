"""A W3C WebSub hub for our own nodes: a publish reaches web subscribers at once.

Subscribers POST ``hub.mode``/``hub.topic``/``hub.callback`` (§5.1) to ``<public_url>/websub/hub``
for one of our node feeds (``/feeds/<node>.atom|rss|json`` of an open node). The hub answers
202 and verifies the intent by a GET on the callback with a challenge (§5.3) before storing the
subscription, with its lease clamped to the configured bounds. When an item is published to a
node, each format's subscribers get the new document in a POST (§7) with ``Link`` headers
naming hub and topic and, when they gave a secret, an ``X-Hub-Signature`` HMAC (§8). A callback
answering 410 is dropped. Callbacks are URLs chosen by strangers, so every request to them goes
through the guarded transport of feed fetches: no private address unless configured.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import trio

from feeds.guarded_transport import GuardedTransport
from feeds.netguard import AddressPolicy
from feeds.render import FORMATS
from pubsubd.config import WebSubConfig
from pubsubd.core.module import Module
from pubsubd.modules.node_feeds_http import HUB_PATH, NodeFeedsModule
from pubsubd.modules.xep0060_pubsub import PubSubComponent
from pubsubd.net.http import Request, Response
from pubsubd.net.http_routes import HttpRoutes
from pubsubd.pubsub.model import AccessModel
from pubsubd.storage.interfaces import HubSubscription, HubSubscriptionStore

MAX_SECRET_BYTES = 199  # §5.1: "MUST be less than 200 bytes"
EXPIRY_TICK = 60.0
# A feed poll publishes its new entries one by one: publishes this close together are pushed
# as one document.
COALESCE = 0.05


class WebSubHubModule(Module):
    name = "websub_hub"

    def __init__(self, *, settings: WebSubConfig, feeds: NodeFeedsModule,
                 pubsub: PubSubComponent, store: HubSubscriptionStore, routes: HttpRoutes,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.feeds = feeds
        self.pubsub = pubsub
        self.store = store
        self.routes = routes
        self.clock = clock
        self.enabled = False
        self._send, self._receive = trio.open_memory_channel[tuple[str, float]](10_000)
        # When each (topic, callback) subscribed in this process: a publish made before then
        # is not pushed to it (it reads the feed itself on subscribing). Subscriptions loaded
        # from storage after a restart predate every publish of this process.
        self._subscribed_at: dict[tuple[str, str], float] = {}
        self.distributed = 0  # successful deliveries, for tests and metrics
        self._pending: trio.Nursery | None = None  # verifications and deliveries run here

    def setup(self) -> None:
        self.enabled = bool(self.settings.hub and self.pubsub.enabled and self.feeds.public_url)
        if self.settings.hub and not self.feeds.public_url:
            self.log.info("WebSub hub off: http.public_url is not set")
        if not self.enabled:
            return
        self.routes.add(HUB_PATH, self.respond)
        self.pubsub.published_handlers.append(self.node_published)
        policy = AddressPolicy.from_strings(self.settings.hub_allow_callback_hosts)
        self.client = httpx.AsyncClient(
            transport=GuardedTransport(policy, 16), follow_redirects=False, trust_env=False,
            timeout=self.settings.hub_timeout,
            headers={"User-Agent": "pubsubd WebSub hub"})

    # -- subscription requests (§5.1) ---------------------------------------------------------

    async def respond(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(405, b"POST a WebSub subscription request\n",
                            headers=[("Allow", "POST")])
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        mode = form.get("hub.mode", "")
        topic = form.get("hub.topic", "")
        callback = form.get("hub.callback", "")
        secret = form.get("hub.secret") or None
        if mode not in ("subscribe", "unsubscribe"):
            return Response(400, b"hub.mode must be subscribe or unsubscribe\n")
        parts = urlsplit(callback)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return Response(400, b"hub.callback must be an http(s) URL\n")
        if secret is not None and len(secret.encode()) > MAX_SECRET_BYTES:
            return Response(400, b"hub.secret must be less than 200 bytes\n")
        named = self.feeds.parse_topic(topic)
        node = await self.feeds.readable_node(named[0]) if named else None
        if node is None or node.config.access_model is not AccessModel.OPEN:
            return Response(400, b"hub.topic is not a feed of an open node of this server\n")
        if mode == "subscribe" and \
                await self.store.count_subscriptions() >= self.settings.hub_max_subscriptions:
            return Response(503, b"too many subscriptions\n", headers=[("Retry-After", "3600")])
        lease = self._lease(form.get("hub.lease_seconds", ""))
        if self._pending is None:
            return Response(503, b"starting\n", headers=[("Retry-After", "5")])
        assert named is not None
        self._pending.start_soon(self._verify, mode, topic, callback, secret, lease,
                                 self.feeds.topic_url(*named))
        return Response(202, b"")

    def _lease(self, requested: str) -> int:
        cfg = self.settings
        seconds = int(requested) if requested.isdigit() else cfg.hub_lease
        return max(cfg.hub_min_lease, min(cfg.hub_max_lease, seconds))

    async def _verify(self, mode: str, topic: str, callback: str, secret: str | None,
                      lease: int, canonical: str) -> None:
        """§5.3: the subscriber must echo the challenge before anything changes.

        The subscriber is asked about the topic as it wrote it; the subscription is stored
        under the topic as distribution spells it (``canonical``), whatever the escaping."""
        challenge = secrets.token_urlsafe(24)
        params = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
        if mode == "subscribe":
            params["hub.lease_seconds"] = str(lease)
        joiner = "&" if urlsplit(callback).query else "?"
        try:
            response = await self.client.get(callback + joiner + urlencode(params))
            body = await response.aread()
        except Exception as exc:
            self.log.info("WebSub verification of %s failed: %s", callback, exc)
            return
        if not 200 <= response.status_code < 300 or body.decode("utf-8", "replace") != challenge:
            self.log.info("WebSub %s of %s not confirmed (%s)", mode, callback,
                          response.status_code)
            return
        if mode == "subscribe":
            await self.store.put_subscription(
                HubSubscription(canonical, callback, secret, self.clock() + lease))
            self._subscribed_at.setdefault((canonical, callback), trio.current_time())
            self.log.info("WebSub subscription of %s to %s verified for %d s",
                          callback, topic, lease)
        else:
            await self.store.delete_subscription(canonical, callback)
            self.log.info("WebSub subscription of %s to %s ended", callback, topic)

    # -- content distribution (§7) ----------------------------------------------------------

    async def node_published(self, node_id: str) -> None:
        try:
            self._send.send_nowait((node_id, trio.current_time()))
        except trio.WouldBlock:
            self.log.warning("WebSub distribution queue full; %s not pushed", node_id)

    async def distribute(self, node_id: str, published_at: float | None = None) -> None:
        node = await self.feeds.readable_node(node_id)
        if node is None or node.config.access_model is not AccessModel.OPEN:
            return
        now = self.clock()
        for kind in FORMATS:
            topic = self.feeds.topic_url(node_id, kind)
            subs = [sub for sub in await self.store.subscriptions_for(topic, now)
                    if published_at is None
                    or self._subscribed_at.get((sub.topic, sub.callback), 0.0) <= published_at]
            if not subs:
                continue
            doc = await self.feeds.document(node, kind)
            for sub in subs:
                assert self._pending is not None  # distribute runs inside run()
                self._pending.start_soon(self._deliver, sub, doc.body, doc.content_type)

    async def _deliver(self, sub: HubSubscription, body: bytes, content_type: str) -> None:
        headers = {
            "Content-Type": content_type,
            "Link": f'<{self.feeds.public_url}{HUB_PATH}>; rel="hub", <{sub.topic}>; rel="self"',
        }
        if sub.secret:
            digest = hmac.new(sub.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = f"sha256={digest}"
        try:
            response = await self.client.post(sub.callback, content=body, headers=headers)
            await response.aclose()
        except Exception as exc:
            self.log.info("WebSub delivery to %s failed: %s", sub.callback, exc)
            return
        if response.status_code == 410:
            await self.store.delete_subscription(sub.topic, sub.callback)
        elif 200 <= response.status_code < 300:
            self.distributed += 1
        else:
            self.log.info("WebSub delivery to %s: HTTP %s", sub.callback, response.status_code)

    # -- background -------------------------------------------------------------------------

    async def run(self) -> None:
        if not self.enabled:
            return
        async with trio.open_nursery() as nursery:
            self._pending = nursery
            nursery.start_soon(self._expire)
            async for node_id, published_at in self._receive:
                await trio.sleep(COALESCE)
                nodes = {node_id: published_at}  # several publishes to a node: one push
                while True:
                    try:
                        more, at = self._receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    nodes[more] = max(at, nodes.get(more, at))
                for node in sorted(nodes):
                    try:
                        await self.distribute(node, nodes[node])
                    except Exception:
                        self.log.exception("WebSub distribution for %s failed", node)

    async def _expire(self) -> None:
        while True:
            await self.store.expire_subscriptions(self.clock())
            await trio.sleep(EXPIRY_TICK)

    async def stop(self) -> None:
        if self.enabled:
            await self.client.aclose()

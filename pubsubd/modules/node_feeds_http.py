"""Every pubsub node readable on the web as Atom, RSS 2.0 and JSON Feed.

``GET /feeds/<node>.atom`` (or ``.rss``, ``.json``; the node name percent-encoded) renders the
node's newest items through the pubsub service's public API. Only nodes whose access model is
open are served, unless the request carries the configured token: a feed on the web has no
XMPP identity to check presence or roster access against. Responses carry an ETag and a
Last-Modified and answer conditional requests with 304 (RFC 9110 §13.1), and name the WebSub
hub that pushes them when there is one (W3C WebSub §4).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

from feeds.render import FORMATS, FeedMeta, SourceItem, render
from pubsubd.config import HttpConfig
from pubsubd.core.module import Module
from pubsubd.modules.xep0060_pubsub import PubSubComponent
from pubsubd.net.http import Request, Response
from pubsubd.net.http_routes import HttpRoutes
from pubsubd.pubsub.errors import PubSubError
from pubsubd.pubsub.model import AccessModel, Node

PREFIX = "/feeds/"
HUB_PATH = "/websub/hub"


@dataclass(frozen=True, slots=True)
class NodeDocument:
    body: bytes
    content_type: str
    etag: str
    last_modified: str  # an HTTP-date, "" for an empty node


class NodeFeedsModule(Module):
    name = "node_feeds"

    def __init__(self, *, settings: HttpConfig, pubsub: PubSubComponent, routes: HttpRoutes,
                 hub_enabled: bool) -> None:
        super().__init__()
        self.settings = settings
        self.pubsub = pubsub
        self.routes = routes
        self.hub_enabled = hub_enabled  # documents name our hub only if it runs

    def setup(self) -> None:
        if self.settings.node_feeds and self.pubsub.enabled:
            self.routes.add(PREFIX, self.respond)

    @property
    def public_url(self) -> str:
        return (self.settings.public_url or "").rstrip("/")

    def topic_url(self, node: str, kind: str, base: str | None = None) -> str:
        return f"{base or self.public_url}{PREFIX}{quote(node, safe='')}.{kind}"

    def parse_topic(self, url: str) -> tuple[str, str] | None:
        """(node, kind) of one of our feed URLs, None for anything else."""
        start = self.public_url + PREFIX
        if not self.public_url or not url.startswith(start) or "?" in url:
            return None
        return split_name(url[len(start):])

    async def readable_node(self, node_id: str, token: str = "") -> Node | None:
        """The leaf node if the web may read it: open, or any with the configured token."""
        try:
            node = await self.pubsub.service.get_node(node_id)
        except PubSubError:
            return None
        if node.is_collection:
            return None
        configured = self.settings.node_feeds_token
        if configured and token and hmac.compare_digest(configured.encode(), token.encode()):
            return node
        return node if node.config.access_model is AccessModel.OPEN else None

    async def document(self, node: Node, kind: str, base: str | None = None) -> NodeDocument:
        service = self.pubsub.service
        # The service itself asks: access was decided above, by the rules of the web.
        found = await service.items(service.service, node.node_id,
                                    max_items=self.settings.node_feed_items)
        items = sorted((i for g in found.groups for i in g.items),
                       key=lambda i: i.seq, reverse=True)
        cfg = node.config
        hub = f"{self.public_url}{HUB_PATH}" if self.hub_enabled and self.public_url else None
        meta = FeedMeta(title=cfg.title or node.node_id, description=cfg.description,
                        self_url=self.topic_url(node.node_id, kind, base), hub=hub)
        body = render(kind, meta, [SourceItem(i.item_id, i.payload, i.published) for i in items])
        newest = max((i.published for i in items), default=None)
        return NodeDocument(
            body, FORMATS[kind], '"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            email.utils.format_datetime(newest, usegmt=True) if newest else "")

    async def respond(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers=[("Allow", "GET, HEAD")])
        named = split_name(request.path[len(PREFIX):])
        if named is None:
            return Response(404, b"not found: /feeds/<node>.atom, .rss or .json\n")
        node_id, kind = named
        query = dict(parse_qsl(request.query))
        auth = request.headers.get("authorization", "")
        token = query.get("token", "") or auth.removeprefix("Bearer ").strip()
        node = await self.readable_node(node_id, token)
        if node is None:
            return Response(404, b"no such feed\n")  # closed nodes are not revealed
        base = self.public_url or f"http://{request.headers.get('host', 'localhost')}"
        doc = await self.document(node, kind, base)
        headers = [("ETag", doc.etag), ("Cache-Control", "no-cache"),
                   ("Access-Control-Allow-Origin", "*"),
                   ("Link", f'<{self.topic_url(node_id, kind, base)}>; rel="self"')]
        if self.hub_enabled and self.public_url and node.config.access_model is AccessModel.OPEN:
            headers.append(("Link", f'<{self.public_url}{HUB_PATH}>; rel="hub"'))
        if doc.last_modified:
            headers.append(("Last-Modified", doc.last_modified))
        if not_modified(request.headers, doc):
            return Response(304, b"", doc.content_type, headers)
        return Response(200, doc.body, doc.content_type, headers)


def split_name(name: str) -> tuple[str, str] | None:
    base, dot, kind = name.rpartition(".")
    if not dot or kind not in FORMATS or not base:
        return None
    return unquote(base), kind


def not_modified(headers: dict[str, str], doc: NodeDocument) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if "if-none-match" in headers:
        tags = [t.strip().removeprefix("W/") for t in headers["if-none-match"].split(",")]
        return doc.etag in tags or "*" in tags
    since = headers.get("if-modified-since")
    if since and doc.last_modified:
        try:
            return email.utils.parsedate_to_datetime(doc.last_modified) <= \
                email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False

"""Parse feed documents with feedparser, off the event loop and without any network access.

feedparser is pure Python and may take tens of milliseconds on a large feed, so it runs in a
worker thread behind a :class:`trio.CapacityLimiter`. It is only ever given bytes wrapped in a
file object, so it can never decide to open a URL or a file. Entity declarations are removed
from the document first: feedparser keeps "safe-looking" internal entities, which still allow a
quadratic blow-up, and a feed has no legitimate use for its own DTD. The one exception kept:
short internal entities whose value is plain text (no markup, no other reference) are expanded
by :func:`expand_simple_entities` within a fixed budget, so a guid written ``&id;`` is not
left literally in an item id, while nesting and blow-ups stay impossible.

JSON Feed documents (jsonfeed.org, which feedparser does not read) go to :mod:`feeds.jsonfeed`
and come back as the same :class:`ParsedFeed`.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Any

import feedparser
import trio
from lxml import etree

from feeds.html import one_line, to_text

_PROLOG_END = re.compile(rb"<[A-Za-z_]")
_DOCTYPE = re.compile(rb"<!DOCTYPE[^\[>]*(\[.*?\]\s*)?>", re.DOTALL | re.IGNORECASE)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_ENTITY_DECL = re.compile(rb'<!ENTITY\s+([A-Za-z_][\w.-]*)\s+(?:"([^"%&<]*)"|\'([^\'%&<]*)\')\s*>')
_ENTITY_REF = re.compile(rb"&([A-Za-z_][\w.-]*);")
_XML_PREDEFINED = frozenset({b"amp", b"lt", b"gt", b"quot", b"apos"})
MAX_ENTITY_VALUE = 256  # bytes of one expandable entity value
MAX_ENTITY_GROWTH = 64 * 1024  # bytes all expansions may add to a document

_limiter = trio.CapacityLimiter(2)


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """The parts of a feed document the rest of the pipeline needs."""

    title: str
    link: str
    base: str
    version: str
    entries: list[Any]
    ttl_minutes: int | None = None
    skip_hours: frozenset[int] = frozenset()
    skip_days: frozenset[int] = frozenset()
    bozo: str = ""
    feed: dict[str, Any] = field(default_factory=dict)
    # WebSub (W3C WebSub §4): the hubs the feed advertises and its canonical "self" URL.
    hubs: tuple[str, ...] = ()
    self_url: str = ""

    @property
    def is_feed(self) -> bool:
        """False when the document was not recognisably a feed at all."""
        return bool(self.version) or bool(self.entries) or bool(self.title)


def strip_doctype(data: bytes) -> bytes:
    """Remove the DOCTYPE (with any internal subset) from the prolog only."""
    match = _PROLOG_END.search(data)
    end = match.start() if match else len(data)
    head = data[:end]
    if b"<!DOCTYPE" not in head.upper():
        return data
    return _DOCTYPE.sub(b"", head) + data[end:]


def expand_simple_entities(data: bytes) -> bytes:
    """Expand the prolog's plain-text internal entities in the body, within a fixed budget.

    Only ``<!ENTITY name "text">`` whose text holds no ``&``, ``%`` or ``<`` and is at most
    :data:`MAX_ENTITY_VALUE` bytes qualifies, so an expansion never expands further; once the
    expansions would add more than :data:`MAX_ENTITY_GROWTH` bytes, the rest stay unexpanded.
    """
    match = _PROLOG_END.search(data)
    end = match.start() if match else len(data)
    head = data[:end]
    if b"<!ENTITY" not in head:
        return data
    values: dict[bytes, bytes] = {}
    for decl in _ENTITY_DECL.finditer(head):
        name, value = decl.group(1), decl.group(2) if decl.group(2) is not None else decl.group(3)
        if name not in _XML_PREDEFINED and name not in values and len(value) <= MAX_ENTITY_VALUE:
            values[name] = value.replace(b">", b"&gt;")
    if not values:
        return data
    budget = MAX_ENTITY_GROWTH

    def expand(ref: re.Match[bytes]) -> bytes:
        nonlocal budget
        value = values.get(ref.group(1))
        if value is None or len(value) > budget:
            return ref.group(0)
        budget -= len(value)
        return value

    return head + _ENTITY_REF.sub(expand, data[end:])


def parse_bytes(data: bytes, *, url: str = "", content_type: str = "") -> ParsedFeed:
    """Parse synchronously (for threads, the CLI and benchmarks)."""
    from feeds import jsonfeed  # it builds ParsedFeed values, so it imports this module

    if jsonfeed.looks_like_json_feed(data, content_type):
        parsed = jsonfeed.parse_json_feed(data, url=url)
        if parsed is not None:
            return parsed
    data = strip_doctype(expand_simple_entities(data))
    # No Content-Location: feedparser would resolve relative guids against it, and a guid must
    # not change when the feed moves. normalize.py resolves links against ``url`` instead.
    headers: dict[str, str] = {}
    if content_type:
        headers["content-type"] = content_type
    result = feedparser.parse(
        io.BytesIO(data),
        response_headers=headers,
        # normalize.py sanitizes and resolves links itself, with lxml, under our own rules.
        resolve_relative_uris=False,
        sanitize_html=False,
    )
    feed = dict(result.get("feed", {}))
    ttl, skip_hours, skip_days = _rss_hints(data)
    bozo = ""
    if result.get("bozo"):
        exc = result.get("bozo_exception")
        bozo = f"{type(exc).__name__}: {exc}" if exc else "malformed document"
    title = str(feed.get("title", ""))
    if str((feed.get("title_detail") or {}).get("type", "")).lower() in ("text/html", "html"):
        title = one_line(to_text(title))
    hubs, self_url = _websub_links(feed)
    return ParsedFeed(
        title=title,
        link=str(feed.get("link", "")),
        base=url,
        version=str(result.get("version", "")),
        entries=list(result.get("entries", [])),
        ttl_minutes=ttl,
        skip_hours=skip_hours,
        skip_days=skip_days,
        bozo=bozo,
        feed=feed,
        hubs=hubs,
        self_url=self_url,
    )


def _websub_links(feed: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """``<link rel="hub">`` and ``<link rel="self">`` of the feed (W3C WebSub §4)."""
    hubs: list[str] = []
    self_url = ""
    for link in feed.get("links") or []:
        href = str(link.get("href") or "").strip()
        rel = str(link.get("rel") or "")
        if not href.startswith(("http://", "https://")):
            continue
        if rel == "hub" and href not in hubs:
            hubs.append(href)
        elif rel == "self" and not self_url:
            self_url = href
    return tuple(hubs), self_url


async def parse(
    data: bytes,
    *,
    url: str = "",
    content_type: str = "",
    limiter: trio.CapacityLimiter | None = None,
) -> ParsedFeed:
    """Parse in a worker thread so the event loop never stalls on a large feed."""
    return await trio.to_thread.run_sync(
        lambda: parse_bytes(data, url=url, content_type=content_type),
        limiter=limiter or _limiter,
    )


def _rss_hints(data: bytes) -> tuple[int | None, frozenset[int], frozenset[int]]:
    """RSS 2.0 ``<ttl>``, ``<skipHours>`` and ``<skipDays>``, which feedparser ignores."""
    if b"<ttl" not in data and b"<skip" not in data:
        return None, frozenset(), frozenset()
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, recover=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None, frozenset(), frozenset()
    if root is None:
        return None, frozenset(), frozenset()
    channel = root.find("channel")
    if channel is None:
        return None, frozenset(), frozenset()
    ttl: int | None = None
    text = (channel.findtext("ttl") or "").strip()
    if text.isdigit():
        ttl = int(text)
    hours = {
        int(h.text.strip())
        for h in channel.iterfind("skipHours/hour")
        if h.text and h.text.strip().isdigit() and 0 <= int(h.text.strip()) <= 24
    }
    # RSS 2.0 counts hours 0-23 in GMT; some feeds write 24 for midnight.
    hours = {h % 24 for h in hours}
    days = {
        DAYS.index(d.text.strip().capitalize())
        for d in channel.iterfind("skipDays/day")
        if d.text and d.text.strip().capitalize() in DAYS
    }
    return ttl, frozenset(hours), frozenset(days)

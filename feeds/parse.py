"""Parse feed documents with feedparser, off the event loop and without any network access.

feedparser is pure Python and may take tens of milliseconds on a large feed, so it runs in a
worker thread behind a :class:`trio.CapacityLimiter`. It is only ever given bytes wrapped in a
file object, so it can never decide to open a URL or a file. Entity declarations are removed
from the document first: feedparser keeps "safe-looking" internal entities, which still allow a
quadratic blow-up, and a feed has no legitimate use for its own DTD.
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


def parse_bytes(data: bytes, *, url: str = "", content_type: str = "") -> ParsedFeed:
    """Parse synchronously (for threads, the CLI and benchmarks)."""
    data = strip_doctype(data)
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
    )


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

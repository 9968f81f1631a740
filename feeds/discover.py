"""Find the feeds a web page advertises with ``<link rel="alternate">``.

Users paste the address of a site more often than the address of its feed; the page's head
names its feeds (the RSS autodiscovery convention), which is what this reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree
from lxml import html as lxml_html

from feeds.html import safe_url

FEED_TYPES = {
    "application/rss+xml": "rss",
    "application/atom+xml": "atom",
    "application/rdf+xml": "rdf",
    "application/feed+json": "json",
}


@dataclass(frozen=True, slots=True)
class FeedCandidate:
    url: str
    type: str
    title: str = ""


def looks_like_feed(body: bytes) -> bool:
    """Cheap sniff of the first bytes: a feed's root element, not an HTML page."""
    head = body[:1024].lstrip().lower()
    if head.startswith(b"{"):
        return b"jsonfeed.org/version" in head  # JSON Feed §3: "version" is required
    return any(tag in head for tag in (b"<rss", b"<feed", b"<rdf:rdf")) and b"<html" not in head


def discover(page: bytes | str, base_url: str) -> list[FeedCandidate]:
    """Feed links of an HTML page, in page order, absolute, without duplicates.

    Only http(s) targets are kept. Atom and RSS come before RDF and JSON feeds, because they are
    what the rest of the pipeline handles best.
    """
    if not page:
        return []
    try:
        doc = lxml_html.document_fromstring(page)
    except (etree.ParserError, ValueError):
        return []
    base = base_url
    for base_el in doc.iterfind(".//base[@href]"):
        base = safe_url(base_el.get("href", ""), base_url) or base_url
        break
    found: list[FeedCandidate] = []
    seen: set[str] = set()
    for link in doc.iter("link", "a"):
        rels = (link.get("rel") or "").lower().split()
        kind = FEED_TYPES.get((link.get("type") or "").split(";")[0].strip().lower())
        if "alternate" not in rels or kind is None or link.tag == "a":
            continue
        url = safe_url(link.get("href") or "", base)
        if not url or not url.startswith(("http://", "https://")) or url in seen:
            continue
        seen.add(url)
        found.append(FeedCandidate(url, kind, " ".join((link.get("title") or "").split())))
    order = {"atom": 0, "rss": 0, "rdf": 1, "json": 2}
    return sorted(found, key=lambda c: order[c.type])

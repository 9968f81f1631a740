"""Write feeds (Atom 1.0, RSS 2.0, JSON Feed 1.1) from pubsub items, for readers on the web.

Items of feed nodes carry Atom ``<entry>`` payloads (:mod:`feeds.normalize` made them) and so
do XEP-0277 microblog nodes; any other payload becomes an entry titled by its item id whose
text is the payload's text. Each document names itself (``rel="self"``) and, when given, the
WebSub hub that pushes it (W3C WebSub §4).
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape as html_escape

from lxml import etree

ATOM_NS = "http://www.w3.org/2005/Atom"
_A = f"{{{ATOM_NS}}}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False)
FORMATS = {
    "atom": "application/atom+xml; charset=utf-8",
    "rss": "application/rss+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class SourceItem:
    """A pubsub item as the renderer needs it."""

    item_id: str
    payload: str
    published: datetime


@dataclass(frozen=True, slots=True)
class FeedMeta:
    title: str
    self_url: str  # this document's URL, also its id
    description: str = ""
    hub: str | None = None
    home_url: str = ""


@dataclass(slots=True)
class _Entry:
    id: str
    title: str
    updated: str
    published: str
    links: list[tuple[str, str, str, str]] = field(default_factory=list)  # rel, href, type, len
    author: str = ""
    summary: str = ""
    content: str = ""
    content_is_html: bool = True
    categories: list[str] = field(default_factory=list)
    atom: etree._Element | None = None

    def link(self, rel: str = "alternate") -> str:
        return next((href for r, href, _, _ in self.links if r == rel), "")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry(item: SourceItem) -> _Entry:
    stamp = _iso(item.published)
    root: etree._Element | None = None
    if item.payload:
        try:
            root = etree.fromstring(item.payload.encode(), _PARSER)
        except etree.XMLSyntaxError:
            root = None
    if root is None or root.tag != _A + "entry":
        text = " ".join("".join(root.itertext()).split()) if root is not None else ""
        return _Entry(id=f"urn:pubsub-item:{item.item_id}", title=item.item_id, updated=stamp,
                      published=stamp, content=text, content_is_html=False)
    entry = _Entry(
        id=root.findtext(_A + "id") or f"urn:pubsub-item:{item.item_id}",
        title=root.findtext(_A + "title") or item.item_id,
        updated=root.findtext(_A + "updated") or stamp,
        published=root.findtext(_A + "published") or root.findtext(_A + "updated") or stamp,
        author=root.findtext(f"{_A}author/{_A}name") or "",
        summary=root.findtext(_A + "summary") or "",
        categories=[c.get("term", "") for c in root.iterfind(_A + "category") if c.get("term")],
        atom=root,
    )
    for link in root.iterfind(_A + "link"):
        entry.links.append((link.get("rel", "alternate"), link.get("href", ""),
                            link.get("type", ""), link.get("length", "")))
    content = root.find(_A + "content")
    if content is not None:
        entry.content = content.text or ""
        entry.content_is_html = content.get("type", "text") in ("html", "xhtml")
    return entry


def render(kind: str, meta: FeedMeta, items: Sequence[SourceItem]) -> bytes:
    """The document of format ``kind`` ("atom", "rss" or "json"), newest item first."""
    entries = [_entry(item) for item in items]
    if kind == "atom":
        return _atom(meta, entries)
    if kind == "rss":
        return _rss(meta, entries)
    if kind == "json":
        return _json(meta, entries)
    raise ValueError(f"unknown feed format {kind!r}")


def _atom(meta: FeedMeta, entries: list[_Entry]) -> bytes:
    feed = etree.Element(_A + "feed", nsmap={None: ATOM_NS})
    etree.SubElement(feed, _A + "id").text = meta.self_url
    etree.SubElement(feed, _A + "title").text = meta.title
    if meta.description:
        etree.SubElement(feed, _A + "subtitle").text = meta.description
    # RFC 4287 §4.2.15: the feed's updated is its latest change.
    etree.SubElement(feed, _A + "updated").text = max(
        (e.updated for e in entries), default="1970-01-01T00:00:00Z")
    etree.SubElement(feed, _A + "link", rel="self", href=meta.self_url,
                     type="application/atom+xml")
    if meta.home_url:
        etree.SubElement(feed, _A + "link", rel="alternate", href=meta.home_url)
    if meta.hub:
        etree.SubElement(feed, _A + "link", rel="hub", href=meta.hub)
    for entry in entries:
        if entry.atom is not None:
            feed.append(entry.atom)
            continue
        el = etree.SubElement(feed, _A + "entry")
        etree.SubElement(el, _A + "id").text = entry.id
        etree.SubElement(el, _A + "title").text = entry.title
        etree.SubElement(el, _A + "updated").text = entry.updated
        etree.SubElement(el, _A + "content", type="text").text = entry.content
    return etree.tostring(feed, xml_declaration=True, encoding="utf-8")


def _rfc822(stamp: str) -> str:
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return stamp
    return email.utils.format_datetime(when, usegmt=True)


def _rss(meta: FeedMeta, entries: list[_Entry]) -> bytes:
    rss = etree.Element("rss", version="2.0", nsmap={"atom": ATOM_NS})
    channel = etree.SubElement(rss, "channel")
    etree.SubElement(channel, "title").text = meta.title
    etree.SubElement(channel, "link").text = meta.home_url or meta.self_url
    etree.SubElement(channel, "description").text = meta.description or meta.title
    etree.SubElement(channel, _A + "link", rel="self", href=meta.self_url,
                     type="application/rss+xml")
    if meta.hub:
        etree.SubElement(channel, _A + "link", rel="hub", href=meta.hub)
    for entry in entries:
        item = etree.SubElement(channel, "item")
        etree.SubElement(item, "title").text = entry.title
        if entry.link():
            etree.SubElement(item, "link").text = entry.link()
        etree.SubElement(item, "guid", isPermaLink="false").text = entry.id
        etree.SubElement(item, "pubDate").text = _rfc822(entry.published)
        if entry.author:
            # RSS 2.0 <author> is an e-mail address; a name goes in dc:creator.
            etree.SubElement(item, "{http://purl.org/dc/elements/1.1/}creator").text = entry.author
        text = entry.content if entry.content_is_html else html_escape(entry.content)
        etree.SubElement(item, "description").text = text or html_escape(entry.summary)
        for term in entry.categories:
            etree.SubElement(item, "category").text = term
        for rel, href, type_, length in entry.links:
            if rel == "enclosure":  # RSS 2.0 allows one enclosure per item
                etree.SubElement(item, "enclosure", url=href,
                                 type=type_ or "application/octet-stream", length=length or "0")
                break
    return etree.tostring(rss, xml_declaration=True, encoding="utf-8")


def _json(meta: FeedMeta, entries: list[_Entry]) -> bytes:
    doc: dict[str, object] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": meta.title,
        "feed_url": meta.self_url,
    }
    if meta.home_url:
        doc["home_page_url"] = meta.home_url
    if meta.description:
        doc["description"] = meta.description
    if meta.hub:
        doc["hubs"] = [{"type": "WebSub", "url": meta.hub}]
    items = []
    for entry in entries:
        item: dict[str, object] = {"id": entry.id, "title": entry.title,
                                   "date_published": entry.published,
                                   "date_modified": entry.updated}
        if entry.link():
            item["url"] = entry.link()
        key = "content_html" if entry.content_is_html else "content_text"
        item[key] = entry.content or entry.summary
        if entry.summary:
            item["summary"] = entry.summary
        if entry.author:
            item["authors"] = [{"name": entry.author}]
        if entry.categories:
            item["tags"] = entry.categories
        attachments = [
            {"url": href, "mime_type": type_ or "application/octet-stream",
             **({"size_in_bytes": int(length)} if length.isdigit() else {})}
            for rel, href, type_, length in entry.links if rel == "enclosure"
        ]
        if attachments:
            item["attachments"] = attachments
        items.append(item)
    doc["items"] = items
    return json.dumps(doc, ensure_ascii=False, indent=1).encode()

"""Turn feedparser entries into :class:`Entry` values with stable ids and an Atom 1.0 form.

Whatever the source format (RSS 0.9x/1.0/2.0, Atom 0.3/1.0), every entry comes out the same:
an id that stays the same across polls and is safe as an XMPP pubsub item id, RFC 3339 dates,
sanitized HTML with absolute links, a plain-text summary, and a serialized Atom ``<entry>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape as escape_html
from typing import Any
from urllib.parse import urljoin

from lxml import etree

from feeds import html
from feeds.model import Entry, Link
from feeds.parse import ParsedFeed

log = logging.getLogger(__name__)

ATOM_NS = "http://www.w3.org/2005/Atom"
_A = f"{{{ATOM_NS}}}"
MAX_ITEM_ID = 200
# Printable ASCII without spaces: survives every XMPP client, URL and log line unchanged.
_SAFE_ITEM_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_ITEM_ID}}}")
_IRI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
SUMMARY_CHARS = 300
HTML_TYPES = ("text/html", "application/xhtml+xml", "html", "xhtml")


class SkipEntry(Exception):
    """An entry with nothing stable to identify it by; the message says why."""


@dataclass(frozen=True, slots=True)
class NormalizedFeed:
    entries: list[Entry]
    skipped: list[str] = field(default_factory=list)
    duplicates: int = 0

    @property
    def warning(self) -> str:
        """A one-line account of what was wrong, for the feed's status (empty when all is well)."""
        parts = []
        if self.skipped:
            parts.append(f"{len(self.skipped)} entries skipped ({self.skipped[0]})")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate ids ignored")
        return "; ".join(parts)


def rfc3339(when: time.struct_time | float) -> str:
    """UTC timestamp as RFC 3339 (feedparser's ``*_parsed`` values are already UTC)."""
    if isinstance(when, float | int):
        when = time.gmtime(when)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", when)


def safe_item_id(raw: str) -> str:
    """``raw`` if it is a safe pubsub item id, else a stable hash of it."""
    raw = raw.strip()
    if _SAFE_ITEM_ID.fullmatch(raw):
        return raw
    return "sha256-" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _text_of(entry: Mapping[str, Any], key: str) -> str:
    """A text construct as plain text, whether the feed declared it text or HTML."""
    value = str(entry.get(key) or "")
    detail = entry.get(f"{key}_detail") or {}
    kind = str(detail.get("type", "")).lower()
    if kind in HTML_TYPES or (not kind and ("<" in value or "&" in value)):
        return html.one_line(html.to_text(value))
    return html.one_line(html.xml_safe(value))


def _link_list(entry: Mapping[str, Any], base: str) -> tuple[tuple[Link, ...], tuple[Link, ...]]:
    links: list[Link] = []
    enclosures: list[Link] = []
    seen: set[tuple[str, str]] = set()
    raw_links = list(entry.get("links") or [])
    if entry.get("link") and not raw_links:
        raw_links.append({"href": entry["link"], "rel": "alternate"})
    raw_links.extend(
        {**e, "rel": "enclosure"} for e in entry.get("enclosures") or [] if e.get("href")
    )
    for raw in raw_links:
        href = html.safe_url(str(raw.get("href") or ""), base)
        rel = str(raw.get("rel") or "alternate")
        if not href or (rel, href) in seen:
            continue
        seen.add((rel, href))
        length = str(raw.get("length") or "").strip()
        link = Link(
            href=href,
            rel=rel,
            type=str(raw.get("type") or ""),
            title=html.xml_safe(str(raw.get("title") or "")),
            length=int(length) if length.isdigit() else None,
        )
        (enclosures if rel == "enclosure" else links).append(link)
    return tuple(links), tuple(enclosures)


def _author(entry: Mapping[str, Any], feed: Mapping[str, Any]) -> tuple[str, str, str]:
    """The entry's author, else the feed's (RFC 4287 §4.2.1 lets entries inherit it)."""
    if not (entry.get("author_detail") or entry.get("author")):
        entry = feed
    detail = entry.get("author_detail") or {}
    name = html.one_line(html.xml_safe(str(detail.get("name") or entry.get("author") or "")))
    return name, str(detail.get("email") or ""), str(detail.get("href") or "")


def _content(entry: Mapping[str, Any], base: str) -> tuple[str, str]:
    """(sanitized HTML content, plain-text summary)."""
    contents = list(entry.get("content") or [])
    contents.sort(key=lambda c: str(c.get("type", "")) not in HTML_TYPES)
    content_html = ""
    if contents:
        first = contents[0]
        value = str(first.get("value") or "")
        cbase = str(first.get("base") or "") or base
        if str(first.get("type", "")).lower() in HTML_TYPES:
            content_html = html.sanitize(value, urljoin(base, cbase))
        else:
            content_html = html.sanitize(_escape_text(value))
    summary = str(entry.get("summary") or "")
    sdetail = entry.get("summary_detail") or {}
    sbase = urljoin(base, str(sdetail.get("base") or "")) if sdetail.get("base") else base
    summary_is_html = str(sdetail.get("type", "text/html")).lower() in HTML_TYPES
    if not content_html and summary:
        content_html = html.sanitize(summary if summary_is_html else _escape_text(summary), sbase)
    if summary:
        text = html.to_text(summary) if summary_is_html else html.xml_safe(summary)
    else:
        text = html.to_text(content_html)
    return content_html, html.one_line(text)


def _escape_text(text: str) -> str:
    return escape_html(text).replace("\n", "<br>")


def _dates(entry: dict[str, Any], fetched_at: float) -> tuple[str, str]:
    # dict.get: feedparser's own lookup of a missing "updated_parsed" falls back with a warning.
    published = dict.get(entry, "published_parsed") or dict.get(entry, "created_parsed")
    updated = dict.get(entry, "updated_parsed")
    pub = rfc3339(published) if published else ""
    upd = rfc3339(updated) if updated else ""
    fallback = rfc3339(fetched_at)
    return pub or upd or fallback, upd or pub or fallback


def _hash(*parts: object) -> str:
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def normalize_entry(
    entry: Mapping[str, Any],
    *,
    base: str,
    fetched_at: float,
    feed_url: str = "",
    feed: Mapping[str, Any] | None = None,
) -> Entry:
    """One feedparser entry → :class:`Entry`; raises :class:`SkipEntry` if it has no identity."""
    title = _text_of(entry, "title")
    links, enclosures = _link_list(entry, base)
    main_link = next((link.href for link in links if link.rel == "alternate"), "")
    content_html, summary_text = _content(entry, base)
    source_id = html.xml_safe(str(entry.get("id") or "")).strip()
    if not source_id:
        if not (main_link or title or summary_text or enclosures):
            raise SkipEntry("entry without id, link, title, text or enclosure")
        if main_link or title or summary_text:
            # No id: the hash of what identifies it to a reader (the text as a last resort).
            key = f"{main_link}\n{title}" if main_link or title else summary_text
            source_id = "sha256-" + hashlib.sha256(key.encode()).hexdigest()
        else:
            # Only an enclosure (a bare podcast episode): its URL is what identifies it.
            source_id = enclosures[0].href
    item_id = safe_item_id(source_id)
    published, updated = _dates(dict(entry), fetched_at)
    author, email, uri = _author(entry, feed or {})
    categories = tuple(
        dict.fromkeys(
            html.one_line(html.xml_safe(str(t.get("term") or t.get("label") or "")))
            for t in entry.get("tags") or []
            if t.get("term") or t.get("label")
        )
    )
    if not title:
        title = html.truncate(summary_text, 80) if summary_text else main_link
    if not title and enclosures:
        title = enclosures[0].title or enclosures[0].href.rsplit("/", 1)[-1] or enclosures[0].href
    atom_id = source_id if _IRI_SCHEME.fullmatch(source_id) else (
        # Atom ids must be IRIs (RFC 4287 §4.2.6); a bare guid becomes a stable UUID URN.
        uuid.uuid5(uuid.NAMESPACE_URL, f"{feed_url}#{source_id}").urn
    )
    atom_xml = _atom_entry(
        atom_id=atom_id,
        title=title,
        links=links + enclosures,
        published=published,
        updated=updated,
        author=(author, email, uri),
        categories=categories,
        summary=summary_text,
        content_html=content_html,
    )
    return Entry(
        item_id=item_id,
        title=title,
        links=links,
        published=published,
        updated=updated,
        author=author,
        categories=categories,
        summary_text=summary_text,
        content_html=content_html,
        enclosures=enclosures,
        atom_xml=atom_xml,
        body_text=body_text(title, main_link, summary_text),
        content_hash=_hash(
            title, [(lk.rel, lk.href) for lk in links], summary_text, content_html,
            [(e.href, e.type, e.length) for e in enclosures], categories, author,
        ),
        source_id=source_id,
    )


def body_text(title: str, link: str, summary: str, limit: int = SUMMARY_CHARS) -> str:
    """The plain-text message body for clients that ignore payloads."""
    lines = [title] if title else []
    if link:
        lines.append(link)
    short = html.truncate(summary, limit)
    if short and short != title:
        lines.append(short)
    return "\n".join(lines)


def _atom_entry(
    *,
    atom_id: str,
    title: str,
    links: Sequence[Link],
    published: str,
    updated: str,
    author: tuple[str, str, str],
    categories: Sequence[str],
    summary: str,
    content_html: str,
) -> str:
    """Serialize an RFC 4287 entry (§4.1.2: id, title and updated are required)."""
    root = etree.Element(_A + "entry", nsmap={None: ATOM_NS})
    etree.SubElement(root, _A + "id").text = atom_id
    etree.SubElement(root, _A + "title", type="text").text = title
    for link in links:
        el = etree.SubElement(root, _A + "link", rel=link.rel, href=link.href)
        if link.type:
            el.set("type", link.type)
        if link.title:
            el.set("title", link.title)
        if link.length is not None:
            el.set("length", str(link.length))
    etree.SubElement(root, _A + "published").text = published
    etree.SubElement(root, _A + "updated").text = updated
    name, email, uri = author
    if name or email:
        author_el = etree.SubElement(root, _A + "author")
        etree.SubElement(author_el, _A + "name").text = name or email
        if email:
            etree.SubElement(author_el, _A + "email").text = email
        if uri:
            etree.SubElement(author_el, _A + "uri").text = uri
    for term in categories:
        etree.SubElement(root, _A + "category", term=term)
    if summary:
        etree.SubElement(root, _A + "summary", type="text").text = summary
    if content_html:
        etree.SubElement(root, _A + "content", type="html").text = content_html
    return etree.tostring(root, encoding="unicode")


def normalize_feed(parsed: ParsedFeed, *, fetched_at: float, base: str = "") -> NormalizedFeed:
    """All entries of a parsed feed, in document order, first occurrence of each id kept."""
    base = base or parsed.base
    feed_base = base or str(parsed.feed.get("link") or "")
    entries: list[Entry] = []
    skipped: list[str] = []
    ids: set[str] = set()
    duplicates = 0
    for index, raw in enumerate(parsed.entries):
        try:
            entry = normalize_entry(
                raw, base=feed_base, fetched_at=fetched_at, feed_url=base, feed=parsed.feed
            )
        except SkipEntry as exc:
            skipped.append(f"entry {index + 1}: {exc}")
            log.info("feed %s: skipped entry %d: %s", base, index + 1, exc)
            continue
        except (ValueError, TypeError) as exc:  # a value lxml refuses, a broken date...
            skipped.append(f"entry {index + 1}: {exc}")
            log.warning("feed %s: cannot normalize entry %d: %s", base, index + 1, exc)
            continue
        if entry.item_id in ids:
            duplicates += 1
            continue
        ids.add(entry.item_id)
        entries.append(entry)
    return NormalizedFeed(entries, skipped, duplicates)

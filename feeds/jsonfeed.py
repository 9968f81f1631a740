"""JSON Feed 1.0 and 1.1 (https://www.jsonfeed.org/version/1.1/) read into a :class:`ParsedFeed`.

feedparser reads only XML feeds. The JSON Feed packages on PyPI are small and little used or
long unmaintained, while the format is one JSON object: it is read here, by the spec. Items
come out shaped like feedparser entries (the keys :mod:`feeds.normalize` reads), so every
later stage treats a JSON Feed exactly like RSS or Atom.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from feeds.parse import ParsedFeed

VERSION_PREFIX = "https://jsonfeed.org/version/"
CONTENT_TYPES = ("application/feed+json", "application/json")
MAX_ITEMS = 10_000


def looks_like_json_feed(data: bytes, content_type: str = "") -> bool:
    """A JSON object that names a jsonfeed.org version (in its first 4 KiB), or a JSON type."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"{"):
        return False
    mime = content_type.split(";")[0].strip().lower()
    return mime in CONTENT_TYPES or b"jsonfeed.org/version" in head


def parse_json_feed(data: bytes, *, url: str = "") -> ParsedFeed | None:
    """The feed, or None when ``data`` is not a JSON Feed (the XML parser may try it then)."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))  # JSON Feed §1: UTF-8
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith(VERSION_PREFIX):
        return None
    version = "json11" if str(doc["version"]).rstrip("/").endswith("1.1") else "json10"
    items = doc.get("items")
    bozo = "" if isinstance(items, list) else "JSON Feed without an items array"
    feed_authors = _authors(doc)
    feed: dict[str, Any] = {
        "title": _str(doc.get("title")),
        "title_detail": {"type": "text/plain"},
        "link": _str(doc.get("home_page_url")),
        "subtitle": _str(doc.get("description")),
        "language": _str(doc.get("language")),
        "links": _feed_links(doc),
    }
    if feed_authors:
        feed["author_detail"] = feed_authors[0]
        feed["author"] = feed_authors[0]["name"]
    entries = [
        _entry(item) for item in (items if isinstance(items, list) else [])[:MAX_ITEMS]
        if isinstance(item, dict)
    ]
    hubs = tuple(
        _str(hub.get("url")) for hub in doc.get("hubs") or []
        if isinstance(hub, dict) and _str(hub.get("type")).lower() == "websub"
        and _str(hub.get("url")).startswith(("http://", "https://"))
    )
    return ParsedFeed(
        title=feed["title"], link=feed["link"], base=url, version=version, entries=entries,
        bozo=bozo, feed=feed, hubs=hubs, self_url=_str(doc.get("feed_url")),
    )


def _str(value: object) -> str:
    """Strings as they are, numbers as text (JSON Feed 1.0 ids were sometimes numbers)."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value).strip()
    return ""


def _feed_links(doc: dict[str, Any]) -> list[dict[str, str]]:
    links = []
    if _str(doc.get("home_page_url")):
        links.append({"rel": "alternate", "href": _str(doc["home_page_url"])})
    if _str(doc.get("feed_url")):
        links.append({"rel": "self", "href": _str(doc["feed_url"])})
    return links


def _authors(obj: dict[str, Any]) -> list[dict[str, str]]:
    """1.1 ``authors`` (a list), else 1.0 ``author`` (one object)."""
    raw = obj.get("authors")
    if not isinstance(raw, list):
        raw = [obj["author"]] if isinstance(obj.get("author"), dict) else []
    return [
        {"name": _str(a.get("name")), "href": _str(a.get("url"))}
        for a in raw if isinstance(a, dict) and (_str(a.get("name")) or _str(a.get("url")))
    ]


def _date(value: object) -> time.struct_time | None:
    """An RFC 3339 date (JSON Feed §4) as a UTC struct_time, like feedparser's ``*_parsed``."""
    text = _str(value)
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).timetuple()


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    """One item in the shape of a feedparser entry."""
    entry: dict[str, Any] = {"id": _str(item.get("id"))}
    if "title" in item:
        entry["title"] = _str(item.get("title"))
        entry["title_detail"] = {"type": "text/plain"}
    links = []
    if _str(item.get("url")):
        links.append({"rel": "alternate", "href": _str(item["url"])})
    if _str(item.get("external_url")):
        links.append({"rel": "related", "href": _str(item["external_url"])})
    entry["links"] = links
    content = []
    if _str(item.get("content_html")):
        content.append({"type": "text/html", "value": _str(item["content_html"])})
    if _str(item.get("content_text")):
        content.append({"type": "text/plain", "value": _str(item["content_text"])})
    entry["content"] = content
    if _str(item.get("summary")):
        entry["summary"] = _str(item["summary"])
        entry["summary_detail"] = {"type": "text/plain"}
    for key, source in (("published_parsed", "date_published"),
                        ("updated_parsed", "date_modified")):
        parsed = _date(item.get(source))
        if parsed is not None:
            entry[key] = parsed
    authors = _authors(item)
    if authors:
        entry["author_detail"] = authors[0]
        entry["author"] = authors[0]["name"]
    entry["tags"] = [{"term": _str(t)} for t in item.get("tags") or [] if _str(t)]
    entry["enclosures"] = [
        {"href": _str(a.get("url")), "type": _str(a.get("mime_type")),
         "length": _str(a.get("size_in_bytes")), "title": _str(a.get("title"))}
        for a in item.get("attachments") or []
        if isinstance(a, dict) and _str(a.get("url"))
    ]
    return entry

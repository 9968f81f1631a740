"""OPML 2.0 subscription lists: import (folders become groups) and export.

OPML is how feed readers exchange subscriptions; an ``<outline>`` with an ``xmlUrl`` is a feed,
and an outline without one is a folder whose title names the group of the feeds inside it.
Parsing refuses DTDs and entities, since the file comes from users.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from importlib import resources

from lxml import etree


class OpmlError(ValueError):
    """The document is not usable OPML."""


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    url: str
    title: str = ""
    site_link: str = ""
    group: str = ""


def parse_opml(data: bytes | str) -> list[OpmlFeed]:
    """The feeds of an OPML document; nested folders are joined with "/" into one group."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    raw = data.encode() if isinstance(data, str) else data
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as exc:
        raise OpmlError(f"not well-formed: {exc}") from exc
    if root.tag != "opml":
        raise OpmlError(f"root element is <{root.tag}>, not <opml>")
    body = root.find("body")
    if body is None:
        raise OpmlError("no <body>")
    feeds: list[OpmlFeed] = []
    seen: set[str] = set()

    def walk(parent: etree._Element, path: tuple[str, ...]) -> None:
        for outline in parent.iterfind("outline"):
            title = (outline.get("title") or outline.get("text") or "").strip()
            url = (outline.get("xmlUrl") or "").strip()
            if url:
                if url.startswith(("http://", "https://")) and url not in seen:
                    seen.add(url)
                    site = (outline.get("htmlUrl") or "").strip()
                    feeds.append(OpmlFeed(url, title, site, "/".join(path)))
            else:
                walk(outline, (*path, title) if title else path)

    walk(body, ())
    return feeds


def export_opml(
    feeds: Iterable[OpmlFeed], *, title: str = "Feeds", now: float | None = None
) -> str:
    """An OPML 2.0 document with one folder per group (in first-seen order)."""
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateCreated").text = formatdate(now, usegmt=True)
    body = etree.SubElement(root, "body")
    folders: dict[str, etree._Element] = {}
    for feed in feeds:
        parent = body
        if feed.group:
            if feed.group not in folders:
                folders[feed.group] = etree.SubElement(
                    body, "outline", text=feed.group, title=feed.group
                )
            parent = folders[feed.group]
        outline = etree.SubElement(
            parent, "outline", type="rss", text=feed.title or feed.url, xmlUrl=feed.url
        )
        if feed.title:
            outline.set("title", feed.title)
        if feed.site_link:
            outline.set("htmlUrl", feed.site_link)
    return etree.tostring(root, encoding="unicode", pretty_print=True)


def default_catalogue() -> list[OpmlFeed]:
    """The catalogue shipped with the package."""
    return parse_opml(resources.files("feeds").joinpath("catalogue/default.opml").read_bytes())


def sample_feed(name: str) -> bytes:
    """One of the sample feeds shipped with the package (``feeds/samples/<name>``)."""
    return resources.files("feeds").joinpath("samples", name).read_bytes()


def sample_names() -> list[str]:
    return sorted(
        p.name for p in resources.files("feeds").joinpath("samples").iterdir()
        if p.name.endswith(".xml")
    )

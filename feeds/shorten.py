"""Make an entry fit a size limit rather than drop it.

A pubsub service refuses payloads above its ``max_payload_size`` (XEP-0060 §7.1.3.5). An entry
too large to carry is still news: its id, title, links, dates and a summary are kept, and its
``<content>`` becomes a short note with a link to the full text on the site. Only if even that
skeleton is too big (a giant title, thousands of categories) are those cut in turn.
"""

from __future__ import annotations

import dataclasses
from html import escape

from lxml import etree

from feeds import html
from feeds.model import Entry

ATOM_NS = "http://www.w3.org/2005/Atom"
_A = f"{{{ATOM_NS}}}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
TITLE_CHARS = 300


def _size(root: etree._Element) -> int:
    return len(etree.tostring(root, encoding="unicode").encode())


def _note(link: str) -> str:
    if link:
        return (f'<p>This entry is too long to be carried here. '
                f'<a href="{escape(link)}">Read it in full on the site.</a></p>')
    return "<p>This entry is too long to be carried here; its full text was left out.</p>"


def shorten_entry(entry: Entry, limit: int) -> Entry | None:
    """``entry`` if its payload fits ``limit`` bytes, else a shortened copy that does, or
    ``None`` if nothing that still identifies the entry fits."""
    if len(entry.atom_xml.encode()) <= limit:
        return entry
    root = etree.fromstring(entry.atom_xml.encode(), _PARSER)
    for content in root.findall(_A + "content"):
        root.remove(content)
    note = etree.SubElement(root, _A + "content", type="html")
    note.text = _note(entry.link)
    summary_el = root.find(_A + "summary")
    summary = entry.summary_text
    # Halve the summary until it fits: a handful of serializations at most.
    while summary_el is not None and _size(root) > limit:
        summary = html.truncate(summary, len(summary) // 2) if len(summary) > 8 else ""
        if summary:
            summary_el.text = summary
        else:
            root.remove(summary_el)
            summary_el = None
    if _size(root) > limit:
        for category in root.findall(_A + "category"):
            root.remove(category)
    title = entry.title
    if _size(root) > limit and len(title) > TITLE_CHARS:
        title = html.truncate(title, TITLE_CHARS)
        title_el = root.find(_A + "title")
        if title_el is not None:
            title_el.text = title
    if _size(root) > limit:
        return None
    return dataclasses.replace(
        entry,
        title=title,
        summary_text=summary if summary_el is not None else "",
        content_html=note.text,
        atom_xml=etree.tostring(root, encoding="unicode"),
    )


__all__ = ["shorten_entry"]

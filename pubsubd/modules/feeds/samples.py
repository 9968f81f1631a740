"""A tiny HTTP server for the shipped sample feeds, so a newcomer sees entries flow offline.

With ``feeds.serve_samples`` on, pubsubd serves each ``feeds/samples/*.xml`` document on
``http://127.0.0.1:<feeds.samples_port>/<name>`` and adds a generated entry to every sample
every ``feeds.samples_new_entry_every`` seconds, so a subscriber soon sees a notification arrive.
The address is allow-listed for exactly this port, not for the whole loopback interface. The
index page advertises the feeds with ``<link rel="alternate">``, so subscribing to the page
exercises feed discovery too.
"""

from __future__ import annotations

import hashlib
import html
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

import trio
from lxml import etree

from feeds.opml import OpmlFeed, sample_feed, sample_names
from pubsubd.config import FeedsConfig
from pubsubd.net.http import Request, Response, serve_http

log = logging.getLogger(__name__)

ATOM = "http://www.w3.org/2005/Atom"
HOST = "127.0.0.1"
KEEP_GENERATED = 20
_SECURE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@dataclass(slots=True)
class SampleDocument:
    """One sample feed with the entries generated since start-up prepended."""

    name: str
    original: bytes
    base: str = "http://localhost/"  # where the sample server is reached; links point there
    generated: list[tuple[str, str, float]] = field(default_factory=list)  # (id, title, when)
    body: bytes = b""
    etag: str = ""

    def __post_init__(self) -> None:
        self.render()

    @property
    def is_atom(self) -> bool:
        return etree.fromstring(self.original, _SECURE_PARSER).tag == f"{{{ATOM}}}feed"

    @property
    def title(self) -> str:
        root = etree.fromstring(self.original, _SECURE_PARSER)
        found = root.findtext(f"{{{ATOM}}}title") or root.findtext("channel/title")
        return (found or self.name).strip()

    def add_entry(self, now: float, serial: int) -> None:
        stamp = datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S")
        entry_id = f"{self.name}-generated-{int(now)}-{serial}"
        self.generated.insert(0, (entry_id, f"Sample entry {serial} at {stamp} UTC", now))
        del self.generated[KEEP_GENERATED:]
        self.render()

    def render(self) -> None:
        # The shipped documents link to http://localhost/...; served here, they link to pages
        # of this server, so that a reader's click on an entry leads somewhere.
        original = self.original.replace(b"http://localhost/", self.base.encode())
        root = etree.fromstring(original, _SECURE_PARSER)
        if root.tag == f"{{{ATOM}}}feed":
            _add_atom_entries(root, self.name, self.generated, self.base)
        else:
            _add_rss_items(root, self.name, self.generated, self.base)
        self.body = etree.tostring(root, xml_declaration=True, encoding="utf-8")
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


def entry_page(document: bytes, link: str) -> bytes | None:
    """A small HTML page for the entry of ``document`` whose link is ``link``, if any."""
    root = etree.fromstring(document, _SECURE_PARSER)
    for entry in root.iter(f"{{{ATOM}}}entry", "item"):
        atom = entry.tag == f"{{{ATOM}}}entry"
        href = (entry.find(f"{{{ATOM}}}link").get("href", "")  # type: ignore[union-attr]
                if atom and entry.find(f"{{{ATOM}}}link") is not None
                else entry.findtext("link") or "")
        if href != link:
            continue
        title = entry.findtext(f"{{{ATOM}}}title" if atom else "title") or ""
        text = (entry.findtext(f"{{{ATOM}}}summary") if atom
                else entry.findtext("description")) or ""
        return (f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head><body>"
                f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
                "<p><a href=\"/\">All sample feeds</a></p></body></html>").encode()
    return None


def _add_atom_entries(root: etree._Element, name: str,
                      generated: list[tuple[str, str, float]], base: str) -> None:
    first = root.find(f"{{{ATOM}}}entry")
    position = list(root).index(first) if first is not None else len(root)
    for entry_id, title, when in reversed(generated):
        entry = etree.Element(f"{{{ATOM}}}entry")
        stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for tag, text in (("title", title), ("id", f"urn:pubsubd:sample:{entry_id}"),
                          ("updated", stamp),
                          ("summary", f"A generated entry of {name}, to show delivery.")):
            etree.SubElement(entry, f"{{{ATOM}}}{tag}").text = text
        etree.SubElement(entry, f"{{{ATOM}}}link", href=f"{base}{name}/{entry_id}")
        root.insert(position, entry)
    updated = root.find(f"{{{ATOM}}}updated")
    if generated and updated is not None:
        updated.text = datetime.fromtimestamp(generated[0][2], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _add_rss_items(root: etree._Element, name: str,
                   generated: list[tuple[str, str, float]], base: str) -> None:
    channel = root.find("channel")
    if channel is None:
        return
    first = channel.find("item")
    position = list(channel).index(first) if first is not None else len(channel)
    for entry_id, title, when in reversed(generated):
        item = etree.Element("item")
        etree.SubElement(item, "title").text = title
        etree.SubElement(item, "link").text = f"{base}{name}/{entry_id}"
        etree.SubElement(item, "guid", isPermaLink="false").text = entry_id
        etree.SubElement(item, "pubDate").text = format_datetime(
            datetime.fromtimestamp(when, UTC), usegmt=True
        )
        etree.SubElement(item, "description").text = f"A generated entry of {name}."
        channel.insert(position, item)


class SampleFeedServer:
    """Serves the sample feeds on loopback; bound at set-up so the port is known early."""

    def __init__(self, sock: socket.socket, every: float) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.every = every
        self.documents = {
            name: SampleDocument(name, sample_feed(name), self.base_url)
            for name in sample_names()
        }
        self._serial = 0

    @classmethod
    def bind(cls, config: FeedsConfig) -> SampleFeedServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, config.samples_port))
        sock.listen(16)
        sock.setblocking(False)
        return cls(sock, config.samples_new_entry_every)

    @property
    def endpoint(self) -> tuple[str, int]:
        return (HOST, self.port)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def catalogue(self) -> list[OpmlFeed]:
        return [OpmlFeed(self.base_url + name, doc.title, self.base_url, "Samples")
                for name, doc in self.documents.items()]

    def add_entries(self) -> None:
        self._serial += 1
        now = time.time()
        for doc in self.documents.values():
            doc.add_entry(now, self._serial)

    def index_page(self) -> bytes:
        links = "".join(
            f'<link rel="alternate" type="application/{"atom" if d.is_atom else "rss"}+xml" '
            f'title="{html.escape(d.title)}" href="/{html.escape(n)}">'
            for n, d in self.documents.items()
        )
        items = "".join(f'<li><a href="/{html.escape(n)}">{html.escape(d.title)}</a></li>'
                        for n, d in self.documents.items())
        return (f"<!DOCTYPE html><html><head><title>pubsubd sample feeds</title>{links}</head>"
                f"<body><ul>{items}</ul></body></html>").encode()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._generate)
            task_status.started(self.port)
            await trio.serve_listeners(self._connection, [listener], handler_nursery=nursery)

    async def _generate(self) -> None:
        while True:
            await trio.sleep(self.every)
            self.add_entries()

    async def _connection(self, stream: trio.SocketStream) -> None:
        await serve_http(stream, self._respond)

    def _entry_page(self, path: str) -> Response:
        link = self.base_url + path.lstrip("/")
        for doc in self.documents.values():
            page = entry_page(doc.body, link)
            if page is not None:
                return Response(200, page, "text/html; charset=utf-8")
        return Response(404, b"not found\n")

    async def _respond(self, request: Request) -> Response:
        doc = self.documents.get(request.path.lstrip("/"))
        if request.path == "/":
            return Response(200, self.index_page(), "text/html; charset=utf-8")
        if doc is None:
            return self._entry_page(request.path)
        content_type = "application/atom+xml" if doc.is_atom else "application/rss+xml"
        headers = [("ETag", doc.etag), ("Cache-Control", "max-age=0")]
        tags = [t.strip() for t in request.headers.get("if-none-match", "").split(",")]
        if doc.etag in tags:
            return Response(304, b"", content_type, headers)  # RFC 9110 §13.1.2
        return Response(200, doc.body, content_type, headers)

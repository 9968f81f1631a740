"""RFC 7395 framing, sans I/O: client WebSocket messages to classic stream bytes, and back.

The client connection speaks the TCP binding (a ``<stream:stream>`` header, first-level
elements, ``</stream:stream>``). These translations let it run unchanged over a WebSocket:
:func:`client_frame_to_stream` turns one client message into stream bytes and
:class:`ServerFramer` cuts the server's stream bytes into one message per element. The trio
shell that moves the bytes is :mod:`pubsubd.net.websocket`.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import quoteattr

from lxml import etree

from pubsubd import ns
from pubsubd.errors import StreamCondition, StreamError

CLOSE_MESSAGE = f"<close xmlns='{ns.FRAMING}'/>"
STREAM_END = b"</stream:stream>"


# --- client → server: one message becomes classic stream bytes ------------------------------

# Each message is parsed on its own to check it is one element. No DTD ever reaches this parser
# (see client_frame_to_stream) and entities are never resolved; the stream parser behind it
# applies the rest of RFC 6120 §11 (no comments, no processing instructions).
_FRAME_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                huge_tree=False, remove_comments=False, remove_pis=False)
_XML_DECLARATION = re.compile(rb"<\?xml[^>]*\?>")
_T_OPEN = ns.clark(ns.FRAMING, "open")
_T_CLOSE = ns.clark(ns.FRAMING, "close")
# The <open/> attributes carried over to the stream header (RFC 7395 §3.3.1 / RFC 6120 §4.7).
_HEADER_ATTRIBUTES = (("to", "to"), ("from", "from"), ("version", "version"),
                      (ns.XML_LANG, "xml:lang"))


def client_frame_to_stream(message: str) -> bytes:
    """The classic stream bytes for one client message (RFC 7395 §3.3).

    ``<open/>`` becomes a ``<stream:stream>`` header, ``<close/>`` becomes ``</stream:stream>``
    and any other element passes through unchanged: it carries its own namespace declarations.
    A message that is not exactly one element raises a :class:`StreamError`.
    """
    data = message.encode("utf-8").strip()
    if not data:
        # RFC 7395 §3.8 forbids whitespace keep-alives; one is harmless, so it is read as the
        # liveness it was meant to show rather than ending the stream.
        return b" "
    if b"<!DOCTYPE" in data:
        raise StreamError(StreamCondition.RESTRICTED_XML, "DTDs are not allowed")  # RFC 6120 §11.1
    try:
        root = etree.fromstring(data, _FRAME_PARSER)
    except (etree.XMLSyntaxError, ValueError):
        raise StreamError(
            StreamCondition.NOT_WELL_FORMED,
            "each WebSocket message must be one complete XML element (RFC 7395 §3.3.3)",
        ) from None
    if root.getprevious() is not None or root.getnext() is not None:
        raise StreamError(StreamCondition.RESTRICTED_XML,
                          "comments and processing instructions are not allowed")
    if root.tag == _T_OPEN:
        return _stream_header(root)
    if root.tag == _T_CLOSE:
        return STREAM_END
    if etree.QName(root).localname in ("open", "close"):
        # RFC 7395 §3.3.2: a stream header outside the framing namespace.
        raise StreamError(StreamCondition.INVALID_NAMESPACE,
                          f"<open/> and <close/> must be qualified by {ns.FRAMING}")
    declaration = _XML_DECLARATION.match(data)
    return data[declaration.end():].lstrip() if declaration else data


def _stream_header(open_el: etree._Element) -> bytes:
    attributes = "".join(
        f" {name}={quoteattr(value)}"
        for key, name in _HEADER_ATTRIBUTES
        if (value := open_el.get(key)) is not None
    )
    return f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAM}'{attributes}>".encode()


# --- server → client: classic stream bytes become one message per element -------------------

_TAG = re.compile(rb"""<(?:[^>"']|"[^"]*"|'[^']*')*>""")  # one tag, quotes respected
_TAG_NAME = re.compile(rb"</?([^\s/>]+)")
_ATTRIBUTE = re.compile(rb"""([^\s=/>]+)\s*=\s*(?:"[^"]*"|'[^']*')""")


class ServerFramer:
    """Cut the server's stream bytes into WebSocket messages (RFC 7395 §3.3.3).

    Input is what our own serializer writes (escaped text and attributes), possibly several
    elements in one chunk or an element split over chunks. The stream header becomes
    ``<open/>``, ``</stream:stream>`` becomes ``<close/>``, and each other top-level element
    gets the namespace declarations it inherited from the stream header, so every message is
    a namespace-well-formed document on its own. Whitespace between elements is dropped.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self.closed = False  # the <close/> message has been produced

    @property
    def pending(self) -> bool:
        """An element has begun but is not complete yet."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[str]:
        buffer = self._buffer + data
        messages: list[str] = []
        pos = 0
        while True:
            start = buffer.find(b"<", pos)
            if start < 0:
                pos = len(buffer)  # whitespace (keep-alives) between elements is not sent
                break
            end = _element_end(buffer, start)
            if end < 0:
                pos = start
                break
            message = self._translate(buffer[start:end])
            if message is not None:
                messages.append(message)
            pos = end
        self._buffer = buffer[pos:]
        return messages

    def _translate(self, chunk: bytes) -> str | None:
        if chunk.startswith(b"<?"):
            return None  # the XML declaration before a stream header (§3.3.3: not recommended)
        if chunk.startswith(b"</"):
            self.closed = True  # only </stream:stream> can close at the top level
            return CLOSE_MESSAGE
        name = _name_of(chunk)
        if name == b"stream:stream":
            return _open_message(chunk)
        return _declare_namespaces(chunk, name).decode("utf-8")


def _element_end(buffer: bytes, start: int) -> int:
    """Where the top-level item starting at ``start`` ends, or -1 when it is incomplete."""
    if buffer.startswith(b"<?", start):
        close = buffer.find(b"?>", start)
        return -1 if close < 0 else close + 2
    depth = 0
    pos = start
    while True:
        lt = buffer.find(b"<", pos)
        if lt < 0:
            return -1
        if buffer.startswith(b"<![CDATA[", lt) or buffer.startswith(b"<!--", lt):
            terminator = b"]]>" if buffer[lt + 2:lt + 3] == b"[" else b"-->"
            close = buffer.find(terminator, lt)
            if close < 0:
                return -1
            pos = close + len(terminator)
            continue
        match = _TAG.match(buffer, lt)
        if match is None:
            return -1
        tag = match.group()
        pos = match.end()
        if tag.startswith(b"</"):
            depth -= 1
        elif tag.endswith(b"/>"):
            pass
        elif depth == 0 and _name_of(tag) == b"stream:stream":
            return pos  # the stream header: its element stays open for the whole stream
        else:
            depth += 1
        if depth <= 0:
            return pos


def _name_of(tag: bytes) -> bytes:
    match = _TAG_NAME.match(tag)
    return match.group(1) if match else b""


def _open_message(header: bytes) -> str:
    """``<stream:stream ...>`` → ``<open xmlns=framing .../>`` with the same attributes."""
    stream = etree.fromstring(header[:-1].rstrip(b"/") + b"/>", _FRAME_PARSER)
    opened = etree.Element(_T_OPEN, nsmap={None: ns.FRAMING})
    for key in ("from", "to", "id", "version", ns.XML_LANG):
        value = stream.get(key)
        if value is not None:
            opened.set(key, value)
    return etree.tostring(opened, encoding="unicode")


def _declare_namespaces(element: bytes, name: bytes) -> bytes:
    """Add the declaration the element relied on from the stream header, if it lacks it."""
    head = _TAG.match(element)
    assert head is not None
    declared = {m.group(1) for m in _ATTRIBUTE.finditer(element, 1 + len(name), head.end())}
    prefix, colon, _ = name.partition(b":")
    if colon:
        if prefix != b"stream" or b"xmlns:stream" in declared:
            return element
        # RFC 7395 §3.3.3: stream features and errors must declare the stream prefix.
        declaration = f" xmlns:stream='{ns.STREAM}'".encode()
    elif b"xmlns" in declared:
        return element
    else:
        declaration = f" xmlns='{ns.CLIENT}'".encode()  # a stanza written for the stream default
    cut = 1 + len(name)
    return element[:cut] + declaration + element[cut:]

"""Incremental XML stream parser: bytes in, stream events out (sans-I/O).

RFC 6120 §11 restricts the XML an XMPP entity may send: no comments, processing instructions,
DTDs or entity references other than the predefined ones. lxml is told never to resolve entities
or touch the network, and the prolog is inspected before the parser sees it, so billion-laughs
and external-entity tricks never expand. Each top-level child of the stream root is detached
once complete, so the tree never grows with the length of the stream.

An idle stream need not keep lxml's parser: a push parser holds about 11 KiB (its context and
input buffer), most of what an idle client connection costs. Between stanzas the parser can be
*parked* (:meth:`StreamParser.park`): lxml's parser and the stream root are dropped, and the
next bytes that are not just whitespace get a fresh parser, primed with a header declaring the
same namespaces, so the stanzas that follow parse exactly as before.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from lxml import etree

from pubsubd import ns
from pubsubd.errors import StreamCondition, StreamError

DEFAULT_MAX_STANZA_BYTES = 256 * 1024
_SLICE = 16 * 1024
_RECENT = 64
_WHITESPACE = b" \t\r\n"  # XML's S production
_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")
_DECLARATIONS = (b"<!DOCTYPE", b"<!ENTITY", b"<!ELEMENT", b"<!ATTLIST", b"<!NOTATION")
_ENCODING_DECL = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer's stream header (RFC 6120 §4.7)."""

    attrs: dict[str, str]
    default_ns: str | None
    stream_prefix: str | None

    @property
    def to(self) -> str | None:
        return self.attrs.get("to")

    @property
    def from_(self) -> str | None:
        return self.attrs.get("from")

    @property
    def version(self) -> str | None:
        return self.attrs.get("version")

    @property
    def lang(self) -> str | None:
        return self.attrs.get(ns.XML_LANG)


@dataclass(frozen=True, slots=True)
class ElementReceived:
    """One complete first-level element: a stanza or a negotiation element."""

    element: etree._Element
    # The tags of its children as they arrived, in order, when the parser noted them (a
    # stream whose elements keep their namespaces): the parser sees each child begin anyway,
    # and a hook that only asks which children a stanza has need not walk the tree for it.
    children: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The peer sent ``</stream:stream>`` (RFC 6120 §4.4)."""


StreamEvent = StreamOpened | ElementReceived | StreamClosed


class StreamParser:
    """Feed bytes with :meth:`feed`; get back the events they complete.

    Raises :class:`StreamError` with the RFC 6120 §4.9.3 condition for any violation; after that
    the parser is unusable and the stream must be closed.
    """

    def __init__(self, max_stanza_bytes: int = DEFAULT_MAX_STANZA_BYTES, *,
                 internal_ns: str | None = None, note_children: bool = False) -> None:
        """``internal_ns``: hand out content-namespace elements in this namespace instead, so
        a server stream's ``jabber:server`` stanzas reach the router as ``jabber:client``
        (RFC 6120 §4.8.3: the two content namespaces carry the same stanzas).
        ``note_children``: tell each element's child tags (:attr:`ElementReceived.children`;
        not with ``internal_ns``, which may change them)."""
        self.max_stanza_bytes = max_stanza_bytes
        self.internal_ns = internal_ns
        self._parser: etree.XMLPullParser | None = _take_lxml_parser()
        self._depth = 0
        self._root: etree._Element | None = None
        self._opened = False
        self._prolog = b""
        self._stanza_bytes = 0
        self._closed = False
        self._content_ns: str | None = None
        self._completed = 0  # first-level elements finished so far
        self._failed: StreamError | None = None
        self._recent = b""  # the last bytes seen, to name the error lxml reports vaguely
        # Parking (see the module docstring): False once a CDATA section, comment or
        # processing instruction was seen, as a '<' inside one is no tag; the header that
        # re-opens the stream and its closing tag while parked.
        self._parkable = True
        self._reopen: tuple[bytes, bytes] | None = None
        # The current first-level element's child tags (see ElementReceived.children), noted
        # only where they are the tags the element is handed out with.
        self._children: list[str] | None = (
            [] if note_children and internal_ns is None else None)

    @property
    def opened(self) -> bool:
        return self._opened

    @property
    def parked(self) -> bool:
        """True while lxml's parser is released (see :meth:`park`)."""
        return self._parser is None

    def park(self) -> bool:
        """Release lxml's parser if the stream rests between two stanzas; True if parked.

        Only when nothing is pending inside lxml: the stream is open, no error, every
        first-level element complete and the bytes seen end with a complete end tag or
        empty-element tag, then whitespace at most. Otherwise (mid-stanza, a tag split
        across reads) it keeps the parser and returns False.
        """
        if self._parser is None:
            return True
        root = self._root
        if (root is None or self._closed or self._failed is not None or self._depth != 1
                or not self._parkable or not _ends_with_complete_tag(self._recent)):
            return False
        self._reopen = _reopening(root.prefix, etree.QName(root).localname,
                                  tuple(root.nsmap.items()))
        parser, self._parser, self._root = self._parser, None, None
        _give_back(parser, self._reopen[1])
        self._stanza_bytes = 0
        return True

    def release(self) -> None:
        """The stream is over (closed, restarted, failed): give lxml's parser back for reuse.

        The stream parser must not be fed again.
        """
        parser, self._parser, root, self._root = self._parser, None, self._root, None
        if parser is None:
            return
        if root is None or self._closed or self._failed is not None:
            closing = b""
        else:
            closing = _reopening(root.prefix, etree.QName(root).localname, ())[1]
        _give_back(parser, closing)

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Parse ``data``; return the events it completes.

        When an error follows complete events in the same chunk, those events are returned
        first and the error is raised by the next :meth:`feed` or :meth:`check` call, so a
        caller can act on every stanza that arrived before the violation.
        """
        self.check()
        if self._closed:
            return []
        data = bytes(data)  # lxml refuses bytearray/memoryview (some trio streams give those)
        if self._parser is None:
            rest = data.strip(_WHITESPACE)
            if not rest:
                return []  # a whitespace keep-alive (RFC 6120 §4.6.1) needs no parser
            assert self._reopen is not None
            if rest == self._reopen[1]:
                self._closed = True  # RFC 6120 §4.4, without waking a parser for it
                return [StreamClosed()]
            self._unpark()
        out: list[StreamEvent] = []
        try:
            if not self._opened:
                self._check_prolog(data)
            # Feed in slices so the size limit is enforced even when a whole oversized stanza
            # arrives in one read; the slice bounds how far past the limit a stanza may get.
            for start in range(0, len(data), _SLICE):
                chunk = data[start:start + _SLICE]
                self._feed_chunk(chunk, out)
                if self._closed:
                    break  # RFC 6120 §4.4: nothing after </stream:stream> is read
        except StreamError as err:
            if not out:
                self._failed = err
                raise
            self._failed = err
        return out

    def check(self) -> None:
        """Raise the error found after the events last returned, if any."""
        if self._failed is not None:
            raise self._failed

    def _unpark(self) -> None:
        """A fresh lxml parser, inside a stream root like the one the peer opened."""
        assert self._reopen is not None
        parser = _take_lxml_parser()
        parser.feed(self._reopen[0])
        for _event, el in parser.read_events():
            self._root = el
        self._parser = parser

    def _feed_chunk(self, chunk: bytes, out: list[StreamEvent]) -> None:
        recent = self._recent + chunk
        completed_before = self._completed
        opened_before = self._opened
        if self._parkable and _hides_markup(recent if opened_before else _no_declaration(recent)):
            self._parkable = False
        self._recent = recent[-_RECENT:]
        assert self._parser is not None
        try:
            self._parser.feed(chunk)
            self._collect(out)
        except etree.XMLSyntaxError as exc:
            self._collect(out)  # the events lxml queued before the error still count
            if self._closed:
                return  # junk after </stream:stream> is never read
            raise _syntax_error(exc, self._recent) from None
        except ValueError as exc:
            # lxml refuses names with an undeclared prefix: not namespace-well-formed.
            raise StreamError(StreamCondition.NOT_WELL_FORMED, str(exc)) from None
        # Count every byte lxml holds since the last boundary (the stream header or a stanza
        # complete), whatever the depth: an unfinished start tag -- the stream header's or a
        # stanza's -- is buffered by lxml before any event says a tag began, so a count kept
        # only inside stanzas lets one endless attribute grow memory without limit.
        if not opened_before and self._opened:
            self._recent = _no_declaration(self._recent)  # not a processing instruction
        if self._completed != completed_before or (opened_before != self._opened):
            # A boundary fell in this chunk: only bytes after its last '>' can belong to
            # what follows (a '>' inside an attribute value undercounts by at most one slice).
            self._stanza_bytes = len(chunk) - (chunk.rfind(b">") + 1)
        else:
            self._stanza_bytes += len(chunk)
        if self._stanza_bytes > self.max_stanza_bytes:
            # RFC 6120 §13.12 (4): a server may limit stanza size; policy-violation says so
            # (§4.9.3.18), before and after authentication alike.
            raise StreamError(
                StreamCondition.POLICY_VIOLATION,
                f"stanza or stream header larger than {self.max_stanza_bytes} bytes",
            )

    def _check_prolog(self, data: bytes) -> None:
        """Refuse DTDs and foreign encodings before lxml ever processes them."""
        prolog = self._prolog + data
        if prolog.startswith(_BOMS) or b"\x00" in prolog[:4]:
            # RFC 6120 §11.6: UTF-16/32 (with or without a byte order mark) is not UTF-8.
            raise StreamError(StreamCondition.UNSUPPORTED_ENCODING, "only UTF-8 is supported")
        head = prolog
        start = prolog.find(b"<stream")
        if start < 0:
            start = _first_element_start(prolog)
        if start >= 0:
            head = prolog[:start]
        if b"<!" in head:
            # RFC 6120 §11.1: no DTD, no entity declarations.
            raise StreamError(StreamCondition.RESTRICTED_XML, "DTDs are not allowed")
        match = _ENCODING_DECL.search(head)
        if match and match.group(1).lower() not in (b"utf-8", b"utf8"):
            # RFC 6120 §11.6: UTF-8 only.
            raise StreamError(StreamCondition.UNSUPPORTED_ENCODING, "only UTF-8 is supported")
        self._prolog = prolog[-16:] if start < 0 else b""

    def _collect(self, out: list[StreamEvent]) -> None:
        assert self._parser is not None
        children = self._children
        for event, el in self._parser.read_events():
            if event in ("comment", "pi"):
                # RFC 6120 §11.1
                raise StreamError(
                    StreamCondition.RESTRICTED_XML,
                    "comments and processing instructions are not allowed",
                )
            if event == "start":
                depth = self._depth = self._depth + 1
                if depth == 3:
                    if children is not None:
                        children.append(el.tag)
                elif depth == 1:
                    out.append(self._open(el))
                elif depth == 2 and el.prefix is not None and (
                    etree.QName(el).namespace == self._content_ns
                ):
                    # RFC 6120 §4.8.5: no prefixes on content-namespace elements.
                    raise StreamError(StreamCondition.BAD_NAMESPACE_PREFIX,
                                      "the content namespace must not be prefixed")
            elif event == "end":
                self._depth -= 1
                if self._depth == 1:
                    root = self._root
                    assert root is not None
                    root.text = None
                    self._completed += 1
                    element = _detach(root, el, self._content_ns, self.internal_ns)
                    if children is None:
                        out.append(ElementReceived(element))
                    else:
                        out.append(ElementReceived(element, tuple(children)))
                        children.clear()
                elif self._depth == 0:
                    self._closed = True
                    out.append(StreamClosed())
                    return

    def _open(self, root: etree._Element) -> StreamOpened:
        self._root = root
        self._opened = True
        qname = etree.QName(root)
        if qname.localname != "stream" or qname.namespace != ns.STREAM:
            # RFC 6120 §4.9.3.10: wrong stream namespace
            raise StreamError(StreamCondition.INVALID_NAMESPACE, "expected a stream header")
        self._content_ns = root.nsmap.get(None)
        attrs = {str(k): str(v) for k, v in root.attrib.items()}
        return StreamOpened(attrs=attrs, default_ns=root.nsmap.get(None), stream_prefix=root.prefix)


class _Pool(threading.local):
    """lxml parsers given back by parked streams, for the next stream that needs one.

    Every element lxml builds keeps a reference to the parser that built it, copies included,
    and with it the parser's context: a stanza kept from a parked stream (a presence, say)
    would keep about 6 KiB alive per connection. Parsers shared through this pool make that a
    handful in all; reusing one is also cheaper than setting up a new one. Per thread, as an
    lxml parser must stay with the thread that uses it.
    """

    def __init__(self) -> None:
        self.parsers: list[etree.XMLPullParser] = []


_POOL = _Pool()
_POOL_SIZE = 64


def _take_lxml_parser() -> etree.XMLPullParser:
    parsers = _POOL.parsers
    return parsers.pop() if parsers else _new_lxml_parser()


def _give_back(parser: etree.XMLPullParser, closing: bytes) -> None:
    """End the document ``parser`` is in (with its root's closing tag) and pool it."""
    try:
        if closing:
            parser.feed(closing)
        parser.close()
        for _ in parser.read_events():
            pass
    except (etree.LxmlError, ValueError):
        return  # not reusable (an unfinished or broken document): left to the collector
    parsers = _POOL.parsers
    if len(parsers) < _POOL_SIZE:
        parsers.append(parser)


def _new_lxml_parser() -> etree.XMLPullParser:
    return etree.XMLPullParser(
        events=("start", "end", "comment", "pi"),
        # No DTD ever reaches lxml (see _check_prolog), so only the five predefined entities
        # can resolve; an undefined one is then a syntax error rather than a silent stall.
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
    )


@lru_cache(maxsize=64)
def _reopening(prefix: str | None, localname: str,
               nsmap: tuple[tuple[str | None, str], ...]) -> tuple[bytes, bytes]:
    """The start tag that re-opens a parked stream, and the tag that closes it.

    It declares the namespaces the peer's header declared, with the same prefixes, so the
    stanzas that follow resolve (and are copied out) exactly as under the original root.
    Streams are alike, so the few distinct headers are shared by every parked connection.
    """
    name = f"{prefix}:{localname}" if prefix else localname
    decls = "".join(f" xmlns:{p}={_quote(uri)}" if p else f" xmlns={_quote(uri)}"
                    for p, uri in nsmap)
    return f"<{name}{decls}>".encode(), f"</{name}>".encode()


def _quote(value: str) -> str:
    return "'" + (value.replace("&", "&amp;").replace("<", "&lt;")
                  .replace("'", "&apos;")) + "'"


def _hides_markup(data: bytes) -> bool:
    """A CDATA section, comment, DTD or processing instruction starts in ``data``.

    Inside those a '<' starts no tag, so the tail of the stream no longer tells whether
    lxml is between two stanzas; such a stream is never parked.
    """
    return b"<!" in data or b"<?" in data


def _no_declaration(data: bytes) -> bytes:
    """``data`` without a leading XML declaration (RFC 6120 §11.5 allows one)."""
    start = data.lstrip(_WHITESPACE)
    if start.startswith(b"<?xml"):
        end = start.find(b"?>")
        return start[end + 2:] if end >= 0 else start
    return data


def _ends_with_complete_tag(recent: bytes) -> bool:
    """The bytes seen end with a complete end tag or empty-element tag, then whitespace.

    ``recent`` holds the last bytes fed; '<' appears in XML only to start markup (the stream
    was checked for CDATA and comments), so the last '<' starts the last tag, and quotes
    decide whether a '>' closes it or sits in an attribute value.
    """
    tail = recent.rstrip(_WHITESPACE)
    start = tail.rfind(b"<")
    if start < 0 or not tail.endswith(b">"):
        return False
    tag = tail[start:]
    if tag.startswith(b"</"):
        return tag.find(b">") == len(tag) - 1
    if not tag.endswith(b"/>"):
        return False  # a start tag opens an element: not between stanzas
    quote = 0
    for i, byte in enumerate(tag):
        if quote:
            if byte == quote:
                quote = 0
        elif byte in (0x22, 0x27):  # " and '
            quote = byte
        elif byte == 0x3E:  # '>' outside quotes must close this very tag
            return i == len(tag) - 1
    return False


def _detach(root: etree._Element, el: etree._Element, content_ns: str | None,
            internal_ns: str | None = None) -> etree._Element:
    """Take a complete first-level element out of the stream root, as a tree of its own.

    Simply removed from the root, a content-namespace element would be serialized by lxml with
    an invented ``ns0:`` prefix, which RFC 6120 §4.8.5 forbids on the wire. A deep copy made
    while it is still attached declares the in-scope namespaces it uses, keeping the content
    namespace the default; that costs about a third of rebuilding the element (the hot path of
    every stanza a client sends).
    """
    if (content_ns is None or (internal_ns is not None and internal_ns != content_ns)
            or not el.tag.startswith("{" + content_ns + "}")):
        root.remove(el)
        return _rehome(el, content_ns, internal_ns)  # also refuses an undeclared prefix
    copy = el.__deepcopy__(None)  # what copy.deepcopy calls, without its memo bookkeeping
    copy.tail = None
    root.remove(el)
    return copy


def _rehome(el: etree._Element, content_ns: str | None,
            internal_ns: str | None = None) -> etree._Element:
    """Give a detached element its own default-namespace declaration.

    Detached from the stream root, lxml would invent an ``ns0:`` prefix for the content namespace,
    which RFC 6120 §4.8.5 forbids on the wire; a fresh top element keeps it the default. With
    ``internal_ns``, the element and its descendants in the content namespace move to it.
    """
    if content_ns is None or etree.QName(el).namespace != content_ns:
        el.tail = None
        return el
    target = internal_ns or content_ns
    tag = el.tag if target == content_ns else f"{{{target}}}{etree.QName(el).localname}"
    top = etree.Element(tag, attrib=dict(el.attrib), nsmap={None: target})
    top.text = el.text
    top.extend(list(el))
    if target != content_ns:
        prefix = f"{{{content_ns}}}"
        for node in top.iterdescendants():
            if isinstance(node.tag, str) and node.tag.startswith(prefix):
                node.tag = f"{{{target}}}{node.tag[len(prefix):]}"
        etree.cleanup_namespaces(top)
    return top


def _first_element_start(data: bytes) -> int:
    """Index of the first ``<`` that starts an element (not ``<?`` or ``<!``), or -1."""
    i = data.find(b"<")
    while i >= 0:
        nxt = data[i + 1 : i + 2]
        if nxt and nxt not in (b"?", b"!"):
            return i
        if not nxt:
            return -1
        i = data.find(b"<", i + 1)
    return -1


def _syntax_error(exc: etree.XMLSyntaxError, recent: bytes) -> StreamError:
    msg = str(exc)
    if any(decl in recent for decl in _DECLARATIONS):
        # RFC 6120 §11.1: a DTD or declaration after the stream header.
        return StreamError(StreamCondition.RESTRICTED_XML, "DTDs are not allowed")
    if "Entity" in msg or "entity" in msg:
        # RFC 6120 §11.1: only the five predefined entities may be referenced.
        return StreamError(StreamCondition.RESTRICTED_XML, "entity references are not allowed")
    if "Document labelled UTF-16" in msg or "encoding" in msg.lower():
        return StreamError(StreamCondition.UNSUPPORTED_ENCODING, "only UTF-8 is supported")
    return StreamError(StreamCondition.NOT_WELL_FORMED, msg.split("(")[0].strip() or None)

"""Fuzz targets: the stream parser, SASL, JIDs, data forms and the feed normalizer.

Each property states what must hold for *any* input: the documented error or a result, never
another exception, and the same outcome however the bytes are split. Inputs that once broke a
property are pinned with ``@example`` as regression tests.
"""

from __future__ import annotations

import base64

from hypothesis import example, given
from hypothesis import strategies as st
from lxml import etree

from feeds.normalize import normalize_feed
from feeds.parse import parse_bytes
from pubsubd.errors import StreamError
from pubsubd.jid import JID, InvalidJID, prepare_resourcepart
from pubsubd.stream.parser import ElementReceived, StreamParser
from pubsubd.stream.sasl import PlainServer, SaslFailure, ScramServer
from pubsubd.xml.forms import Form, FormError

from .conftest import INPUTS

HEADER = (b"<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
SEEDS = [
    b"<message to='a@example.org' id='1'><body>hi &amp; bye</body></message>",
    b"<iq type='get' id='2'><query xmlns='jabber:iq:version'/></iq>",
    b"<presence><status><![CDATA[<x>]]></status><c xmlns='http://jabber.org/protocol/caps'"
    b" hash='sha-1' node='n' ver='v'/></presence>",
    b"</stream:stream>",
]
XMLISH = st.lists(st.sampled_from([b"<", b">", b"/", b"='", b"'", b"\"", b"&", b";", b"a", b"x:y",
                                   b" ", b"<!--", b"<?", b"<!DOCTYPE", b"]]>", b"\x00", b"\xc3",
                                   b"xmlns='jabber:client'", b"&#0;", b"&lt;", *SEEDS]),
                  max_size=40).map(b"".join)
BODY = st.one_of(st.binary(max_size=600), XMLISH)


def _run(data: bytes, splits: list[int], limit: int, *,
         park: bool = False) -> tuple[list[bytes], str | None]:
    """Feed ``data`` cut at ``splits``; the stanzas received and the error, if any.

    With ``park``, the parser is asked to park after every piece (as an idle connection's is).
    """
    parser = StreamParser(limit)
    received: list[bytes] = []
    cuts = [0, *sorted({s % (len(data) + 1) for s in splits}), len(data)]
    try:
        for start, end in zip(cuts, cuts[1:], strict=False):
            for event in parser.feed(data[start:end]):
                if isinstance(event, ElementReceived):
                    received.append(etree.tostring(event.element))
            if park:
                parser.park()
        parser.check()
    except StreamError as err:
        return received, err.condition.value
    return received, None


@given(body=BODY, splits=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
@example(body=b"<message a='" + b"x" * 20_000 + b"'/>", splits=[])  # grew without limit
@example(body=b"", splits=[])
def test_stream_parser_never_fails_otherwise(body: bytes, splits: list[int]) -> None:
    INPUTS["stream parser"] += 1
    data = HEADER + body
    whole = _run(data, [], 10_000)
    split = _run(data, splits, 10_000)
    # Only StreamError escapes (checked by _run); with no error, splitting changes nothing.
    if whole[1] is None and split[1] is None:
        assert whole[0] == split[0]


SPLIT_SEEDS = st.lists(st.sampled_from([*SEEDS, b" ", b"\n", b"<![CDATA[ <a/> ]]>",
                                        b"<!-- <x/> -->", b"<r xmlns='urn:xmpp:sm:3'/>",
                                        b"<a xmlns='urn:xmpp:sm:3' h='1'/>"]),
                       max_size=12).map(b"".join)


@given(body=st.one_of(SPLIT_SEEDS, BODY),
       splits=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
@example(body=b"<iq a='/>'/>", splits=[len(HEADER) + 9])  # a '>' inside an attribute value
@example(body=b"<presence/><!-- <a/> -->", splits=[len(HEADER) + 20])  # a '<' in a comment
def test_parking_between_pieces_changes_nothing(body: bytes, splits: list[int]) -> None:
    """However the bytes are split, parking after each piece gives the same outcome."""
    INPUTS["stream parser parking"] += 1
    data = HEADER + body
    assert _run(data, splits, 10_000, park=True) == _run(data, splits, 10_000)


@given(st.binary(max_size=300))
@example(b"a" * 300)  # once: buffered without limit (60 kB here, 1.5 GB in the report)
def test_unfinished_header_is_bounded(junk: bytes) -> None:
    INPUTS["stream header"] += 1
    head = HEADER[:HEADER.index(b" version=")]
    payload = junk.replace(b">", b"") * 200  # a start tag that never ends
    received, error = _run(head + payload, [7, 500], 10_000)
    assert received == []
    if len(payload) > 10_000 + 16 * 1024:  # the limit, plus the one slice it may overshoot by
        assert error is not None, "an unfinished header was buffered past the limit"


@given(st.binary(max_size=800))
@example(b"\0user\0pass")
def test_sasl_plain(message: bytes) -> None:
    INPUTS["sasl plain"] += 1
    try:
        authzid, authcid, password = PlainServer.check(message)
    except SaslFailure:
        return
    assert authcid and password


SCRAM_FIRST = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda g, u, n, x: f"{g},,n={u},r={n}{x}".encode(),
              st.sampled_from(["n", "y", "p=tls-exporter", "p=x", "", "n,a=u"]),
              st.text(max_size=20), st.text(max_size=30), st.text(max_size=20)),
)


@given(first=SCRAM_FIRST, final=st.binary(max_size=300), plus=st.booleans())
def test_sasl_scram(first: bytes, final: bytes, plus: bool) -> None:
    INPUTS["sasl scram"] += 1
    server = ScramServer("SHA-256", plus)
    try:
        server.start(first)
        server.server_first(None)
        server.finish(base64.b64encode(final) if final[:1] == b"c" else final)
    except SaslFailure:
        return


@given(st.text(max_size=80))
@example("a@b/\u00a0c")  # once: prepared to a space-led resource that did not parse again
@example("a@b/c\u2003")
def test_jid_parse_round_trips(text: str) -> None:
    INPUTS["jid"] += 1
    try:
        jid = JID.parse(text)
    except InvalidJID:
        return
    assert JID.parse(str(jid)) == jid
    if jid.resource is not None:
        assert prepare_resourcepart(jid.resource) == jid.resource


@given(st.text(max_size=40))
@example("\u00a0phone")
def test_prepared_resources_make_valid_jids(resource: str) -> None:
    INPUTS["resource"] += 1
    try:
        prepared = prepare_resourcepart(resource)
    except InvalidJID:
        return
    assert JID.parse(f"user@example.org/{prepared}").resource == prepared


FORM_XML = st.lists(st.sampled_from([
    "<field var='FORM_TYPE' type='hidden'><value>urn:x</value></field>",
    "<field var='a' type='boolean'><value>maybe</value></field>",
    "<field var='b' type='list-multi'><value>1</value><value>2</value></field>",
    "<field var='c' type='jid-single'><value>@@</value></field>",
    "<field type='fixed'><value>x</value></field>", "<field/>", "<field var='d' type='nope'/>",
    "<field var='e'><option><value>o</value></option></field>", "<title>t</title>",
    "<reported><field var='r'/></reported>", "<item><field var='r'><value>v</value></field></item>",
]), max_size=8)


@given(type_=st.sampled_from(["form", "submit", "result", "cancel", "bogus", ""]),
       fields=FORM_XML)
def test_data_forms(type_: str, fields: list[str]) -> None:
    INPUTS["data forms"] += 1
    el = etree.fromstring(f"<x xmlns='jabber:x:data' type='{type_}'>{''.join(fields)}</x>")
    try:
        form = Form.from_element(el)
    except FormError:
        return
    again = Form.from_element(form.to_element())  # what we send we read back alike
    assert again.form_type == form.form_type


FEED = st.one_of(
    st.binary(max_size=1500),
    st.builds(lambda items: (
        "<rss version='2.0'><channel><title>t</title>" + "".join(
            f"<item><title>{t}</title><link>{link}</link><guid>{g}</guid>"
            f"<description>{d}</description><pubDate>{p}</pubDate></item>"
            for t, link, g, d, p in items) + "</channel></rss>").encode(errors="replace"),
        st.lists(st.tuples(
            st.text(max_size=30).map(lambda s: s.replace("<", "&lt;").replace("&", "&amp;")),
            st.sampled_from(["http://a/", "javascript:alert(1)", "/rel", "", "http://[::1", "x"]),
            st.text(max_size=20).map(lambda s: s.replace("<", "").replace("&", "")),
            st.sampled_from(["&lt;b&gt;x&lt;/b&gt;", "&lt;script&gt;x&lt;/script&gt;",
                             "&lt;a href='javascript:1'&gt;y&lt;/a&gt;", "plain", ""]),
            st.sampled_from(["Mon, 01 Jan 2024 00:00:00 GMT", "yesterday", "", "9999-99-99"])),
            max_size=4)),
)


@given(FEED)
def test_feed_normalizer(data: bytes) -> None:
    INPUTS["feed normalizer"] += 1
    parsed = parse_bytes(data, url="https://example.org/feed")
    feed = normalize_feed(parsed, fetched_at=0.0, base="https://example.org/feed")
    for entry in feed.entries:
        # What reaches clients is well-formed XML, with no script and no script URL.
        atom = etree.fromstring(entry.atom_xml.encode())
        assert atom.tag == "{http://www.w3.org/2005/Atom}entry"
        assert "<script" not in entry.content_html.lower()
        assert all(not link.href.lower().startswith("javascript:") for link in entry.links)

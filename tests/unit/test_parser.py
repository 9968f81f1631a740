"""The sans-I/O stream parser: bytes in, events out, RFC 6120 §4 and §11 violations refused."""

from __future__ import annotations

import time

import pytest
from lxml import etree

from pubsubd import ns
from pubsubd.errors import StreamCondition, StreamError
from pubsubd.stream.parser import (
    ElementReceived,
    StreamClosed,
    StreamEvent,
    StreamOpened,
    StreamParser,
)

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='de'>"
)
STANZAS = (
    b"<message to='a@example.org' id='1'><body>caf\xc3\xa9 &amp; &lt;tea&gt; &#x263A;</body>"
    b"</message> \n"
    b"<iq type='get' id='2'><query xmlns='jabber:iq:version'/></iq>"
    b"<presence><status><![CDATA[<x>]]></status></presence>"
)
WELL_FORMED = HEADER + STANZAS + b"</stream:stream>"


def feed_all(parser: StreamParser, data: bytes, step: int | None = None) -> list[StreamEvent]:
    """Feed ``data`` whole or in ``step``-byte pieces; raise any error found."""
    events: list[StreamEvent] = []
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        events += parser.feed(data[i:i + step])
    parser.check()
    return events


def error_of(data: bytes, *, step: int | None = None, limit: int | None = None) -> StreamCondition:
    parser = StreamParser() if limit is None else StreamParser(limit)
    with pytest.raises(StreamError) as info:
        feed_all(parser, data, step)
    return info.value.condition


def summary(events: list[StreamEvent]) -> list[str]:
    out = []
    for event in events:
        match event:
            case StreamOpened():
                out.append(f"open to={event.to} lang={event.lang}")
            case ElementReceived(element=el):
                out.append(etree.tostring(el, encoding="unicode"))
            case StreamClosed():
                out.append("close")
    return out


def test_whole_stream_gives_header_stanzas_and_close() -> None:
    events = feed_all(StreamParser(), WELL_FORMED)
    assert isinstance(events[0], StreamOpened)
    assert events[0].default_ns == ns.CLIENT and events[0].stream_prefix == "stream"
    assert events[0].version == "1.0"
    text = summary(events)
    assert text[0] == "open to=example.org lang=de"
    # Content-namespace elements serialize without a prefix (RFC 6120 §4.8.5).
    assert text[1].startswith('<message xmlns="jabber:client" to="a@example.org" id="1">')
    assert "café &amp; &lt;tea&gt; \u263a" in text[1]
    assert text[2].startswith('<iq xmlns="jabber:client"')
    assert "&lt;x&gt;" in text[3]
    assert text[4] == "close"


def test_every_split_point_gives_the_same_events() -> None:
    expected = summary(feed_all(StreamParser(), WELL_FORMED))
    for cut in range(1, len(WELL_FORMED)):
        parser = StreamParser()
        events = parser.feed(WELL_FORMED[:cut]) + parser.feed(WELL_FORMED[cut:])
        parser.check()
        assert summary(events) == expected, cut


def test_byte_by_byte_gives_the_same_events() -> None:
    expected = summary(feed_all(StreamParser(), WELL_FORMED))
    assert summary(feed_all(StreamParser(), WELL_FORMED, step=1)) == expected


def test_tree_does_not_grow_with_the_stream() -> None:
    parser = StreamParser()
    parser.feed(HEADER)
    for _ in range(1000):
        parser.feed(b"<message><body>x</body></message>")
    root = parser._root
    assert root is not None and len(root) == 0


def test_bytes_after_close_are_ignored() -> None:
    events = feed_all(StreamParser(), HEADER + b"</stream:stream><junk", step=None)
    assert summary(events)[-1] == "close"


@pytest.mark.parametrize("step", [None, 1, 7])
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(HEADER + b"<!-- hello -->", id="comment"),
        pytest.param(HEADER + b"<message><!-- hi --></message>", id="comment-in-stanza"),
        pytest.param(HEADER + b"<?php evil() ?>", id="pi"),
        pytest.param(b"<?xml version='1.0'?><!DOCTYPE stream>" + HEADER[21:], id="doctype"),
        pytest.param(HEADER + b"<!DOCTYPE foo>", id="doctype-after-header"),
        pytest.param(b"<?xml version='1.0'?><!ENTITY x 'y'>" + HEADER[21:], id="entity-decl"),
        pytest.param(HEADER + b"<message><body>&nbsp;</body></message>", id="undefined-entity"),
    ],
)
def test_restricted_xml(data: bytes, step: int | None) -> None:
    # RFC 6120 §11.1
    assert error_of(data, step=step) is StreamCondition.RESTRICTED_XML


BILLION_LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE stream:stream ["
    b"<!ENTITY lol 'lol'>"
    + b"".join(
        f"<!ENTITY lol{i} '{('&lol' + str(i - 1) + ';') * 10 if i > 1 else '&lol;' * 10}'>".encode()
        for i in range(1, 10)
    )
    + b"]>" + HEADER[21:] + b"<message><body>&lol9;</body></message>"
)
XXE = (
    b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
    + HEADER[21:] + b"<message><body>&xxe;</body></message>"
)


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
@pytest.mark.parametrize("step", [None, 1])
def test_entity_attacks_are_refused_quickly(payload: bytes, step: int | None) -> None:
    started = time.monotonic()
    assert error_of(payload, step=step) is StreamCondition.RESTRICTED_XML
    assert time.monotonic() - started < 2


def test_entity_reference_in_stanza_is_never_expanded() -> None:
    # No DTD can be declared, so an entity from anywhere is an undefined one.
    data = HEADER + b"<message><body>&xxe;</body></message>"
    assert error_of(data) is StreamCondition.RESTRICTED_XML


@pytest.mark.parametrize("step", [None, 1000])
def test_stanza_over_the_size_limit_is_a_policy_violation(step: int | None) -> None:
    big = HEADER + b"<message><body>" + b"x" * 20_000 + b"</body></message>"
    assert error_of(big, limit=10_000, step=step) is StreamCondition.POLICY_VIOLATION


def test_many_small_stanzas_do_not_add_up_to_the_limit() -> None:
    parser = StreamParser(10_000)
    parser.feed(HEADER)
    events: list[StreamEvent] = []
    for _ in range(50):
        events += parser.feed(b"<message><body>" + b"x" * 500 + b"</body></message>  ")
    parser.check()
    assert len(events) == 50


@pytest.mark.parametrize("step", [None, 1000, 70_000])
def test_unfinished_stream_header_is_bounded(step: int | None) -> None:
    # A header that never closes its start tag: lxml buffers every attribute before any
    # event tells the parser a tag began.
    head = HEADER[: HEADER.index(b" version=")]
    attrs = b"".join(b" a%d='%s'" % (i, b"x" * 4000) for i in range(10))
    assert error_of(head + attrs, limit=10_000, step=step) is StreamCondition.POLICY_VIOLATION


@pytest.mark.parametrize("step", [None, 1000, 70_000])
def test_unfinished_stanza_start_tag_is_bounded(step: int | None) -> None:
    data = HEADER + b"<message to='a@example.org' a='" + b"x" * 40_000 + b"'><body/></message>"
    assert error_of(data, limit=10_000, step=step) is StreamCondition.POLICY_VIOLATION


def test_many_stanzas_in_one_chunk_stay_within_the_limit() -> None:
    parser = StreamParser(10_000)
    events = parser.feed(HEADER + (b"<message><body>" + b"x" * 500 + b"</body></message>") * 60)
    parser.check()
    assert len(events) == 61


def test_default_limit_is_256_kib() -> None:
    assert StreamParser().max_stanza_bytes == 256 * 1024
    big = HEADER + b"<message><body>" + b"x" * (300 * 1024) + b"</body></message>"
    assert error_of(big) is StreamCondition.POLICY_VIOLATION


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(HEADER + b"<message><body>no end</message>", id="mismatched-tag"),
        pytest.param(HEADER + b"<message to='a' to='b'/>", id="duplicate-attribute"),
        pytest.param(HEADER + b"<message><body>\x01</body></message>", id="control-char"),
        pytest.param(b"hello", id="not-xml"),
        pytest.param(HEADER + b"<foo:message/>", id="undeclared-prefix"),
    ],
)
@pytest.mark.parametrize("step", [None, 1])
def test_broken_xml_is_not_well_formed(data: bytes, step: int | None) -> None:
    assert error_of(data, step=step) is StreamCondition.NOT_WELL_FORMED


def test_stanzas_before_an_error_in_the_same_chunk_are_delivered() -> None:
    parser = StreamParser()
    events = parser.feed(HEADER + b"<message id='ok'/><message><body></message>")
    assert [type(e) for e in events] == [StreamOpened, ElementReceived]
    with pytest.raises(StreamError) as info:
        parser.check()
    assert info.value.condition is StreamCondition.NOT_WELL_FORMED
    with pytest.raises(StreamError):
        parser.feed(b"<presence/>")  # the parser stays failed


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("<?xml version='1.0' encoding='UTF-16'?><stream:stream>".encode("utf-16"),
                     id="utf16-with-bom"),
        pytest.param("<stream:stream xmlns:stream='x'>".encode("utf-16-le"), id="utf16-le"),
        pytest.param("<stream:stream xmlns:stream='x'>".encode("utf-16-be"), id="utf16-be"),
        pytest.param(b"<?xml version='1.0' encoding='ISO-8859-1'?>" + HEADER[21:],
                     id="latin1-decl"),
        pytest.param(HEADER + b"<message><body>caf\xe9</body></message>", id="latin1-bytes"),
    ],
)
def test_other_encodings_are_unsupported(data: bytes) -> None:
    # RFC 6120 §11.6
    assert error_of(data) is StreamCondition.UNSUPPORTED_ENCODING


def test_wrong_stream_namespace() -> None:
    data = HEADER.replace(b"http://etherx.jabber.org/streams", b"http://wrong.example/")
    assert error_of(data) is StreamCondition.INVALID_NAMESPACE


def test_other_stream_prefix_is_reported_for_the_negotiation_layer() -> None:
    data = (HEADER.replace(b"stream:stream", b"foobar:stream")
            .replace(b"xmlns:stream", b"xmlns:foobar"))
    (opened,) = feed_all(StreamParser(), data)
    assert isinstance(opened, StreamOpened) and opened.stream_prefix == "foobar"


def test_prefixed_content_namespace_is_a_bad_namespace_prefix() -> None:
    # RFC 6120 §4.8.5: <foo:message xmlns:foo='jabber:client'> is illegal.
    data = HEADER + b"<foo:message xmlns:foo='jabber:client'><foo:body>x</foo:body></foo:message>"
    assert error_of(data) is StreamCondition.BAD_NAMESPACE_PREFIX


def test_extension_namespaces_keep_their_own_declarations() -> None:
    data = HEADER + b"<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>"
    events = feed_all(StreamParser(), data)
    iq = events[1]
    assert isinstance(iq, ElementReceived)
    assert iq.element.tag == ns.C_IQ
    assert iq.element[0].tag == "{urn:xmpp:ping}ping"


# --- parking: an idle stream releases lxml's parser between stanzas ----------------------

S2S_HEADER = (
    b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
    b"xmlns:db='jabber:server:dialback' to='example.org' version='1.0'>"
)


def test_a_stream_between_stanzas_parks_and_goes_on_alike() -> None:
    parser = StreamParser()
    feed_all(parser, HEADER + b"<presence/>")
    assert parser.park() and parser.parked
    message = b"<message to='a@example.org'><body>hi</body></message>"
    (event,) = parser.feed(message)
    assert not parser.parked
    assert summary([event]) == summary(feed_all(StreamParser(), HEADER + message)[1:])


def test_prefixes_declared_on_the_header_still_resolve_after_parking() -> None:
    # XEP-0220: db: is declared on the stream header and used by first-level elements.
    parser = StreamParser(internal_ns=ns.CLIENT)
    feed_all(parser, S2S_HEADER + b"<db:verify from='a.example' to='example.org' id='1'>k"
             b"</db:verify>")
    assert parser.park()
    result, message = parser.feed(b"<db:result from='a.example' to='example.org'>key"
                                  b"</db:result><message from='a@a.example' to='b@example.org'/>")
    assert isinstance(result, ElementReceived) and isinstance(message, ElementReceived)
    assert result.element.tag == "{jabber:server:dialback}result"
    assert message.element.tag == ns.C_MESSAGE  # jabber:server handed out as jabber:client


def test_stanzas_kept_from_parked_streams_share_a_few_lxml_parsers() -> None:
    # lxml ties every element (copies too) to the parser that built it; one parser per kept
    # stanza would keep each connection's parser context alive after it parked.
    kept = []
    for i in range(50):
        parser = StreamParser()
        (_, presence) = feed_all(parser, HEADER + f"<presence id='{i}'/>".encode())
        assert isinstance(presence, ElementReceived) and parser.park()
        kept.append(presence.element)
    assert len({id(el.getroottree().parser) for el in kept}) <= 2
    assert [el.get("id") for el in kept] == [str(i) for i in range(50)]


def test_whitespace_keepalives_and_the_close_need_no_parser() -> None:
    parser = StreamParser()
    feed_all(parser, HEADER + b"<presence/>")
    assert parser.park()
    assert parser.feed(b" \n ") == [] and parser.parked  # RFC 6120 §4.6.1 keep-alive
    assert parser.feed(b" </stream:stream>") == [StreamClosed()]
    assert parser.feed(b"<presence/>") == []  # nothing after the close is read


@pytest.mark.parametrize("pending", [
    b"<message to='a@example.org'>",  # inside a stanza
    b"<presence",  # a start tag split across reads
    b"<presence a='/>",  # '/>' inside an attribute value
    b"<presence/> tail",  # text after the last tag
])
def test_nothing_pending_in_lxml_is_a_condition_for_parking(pending: bytes) -> None:
    parser = StreamParser()
    feed_all(parser, HEADER + pending)
    assert not parser.park() and not parser.parked


def test_streams_with_cdata_or_comments_are_never_parked() -> None:
    parser = StreamParser()
    feed_all(parser, HEADER + b"<message><body><![CDATA[<x/>]]></body></message>")
    assert not parser.park()


def test_a_stream_is_parked_only_once_open() -> None:
    assert not StreamParser().park()
    parser = StreamParser()
    feed_all(parser, HEADER)
    assert not parser.park()  # right after the header: not after a complete stanza yet


@pytest.mark.parametrize("step", [None, 1, 7])
def test_noted_children_are_each_elements_child_tags_in_order(step: int | None) -> None:
    parser = StreamParser(note_children=True)
    events = feed_all(parser, HEADER + b"<message><body>x<b xmlns='urn:y'/></body>"
                      b"<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
                      b"<presence/><iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
                      step)
    noted = [e.children for e in events if isinstance(e, ElementReceived)]
    assert noted == [
        # grandchildren (the <b/> in the body) are not children
        (ns.C_BODY, "{http://jabber.org/protocol/chatstates}active"),
        (),
        ("{jabber:iq:roster}query",),
    ]
    assert all(tuple(child.tag for child in e.element) == e.children
               for e in events if isinstance(e, ElementReceived))


def test_children_are_noted_across_parking_and_only_when_asked() -> None:
    parser = StreamParser(note_children=True)
    feed_all(parser, HEADER + b"<message><body>a</body></message>")
    assert parser.park()
    (event,) = parser.feed(b"<message><subject>s</subject><body>b</body></message>")
    assert isinstance(event, ElementReceived)
    assert event.children == ("{jabber:client}subject", ns.C_BODY)
    plain = feed_all(StreamParser(), HEADER + b"<message><body>a</body></message>")
    assert [e.children for e in plain if isinstance(e, ElementReceived)] == [None]
    # A server stream's stanzas move to jabber:client: their tags as parsed would mislead.
    server = StreamParser(internal_ns=ns.CLIENT, note_children=True)
    header = HEADER.replace(b"jabber:client", b"jabber:server")
    got = feed_all(server, header + b"<message><body>a</body></message>")
    assert [e.children for e in got if isinstance(e, ElementReceived)] == [None]

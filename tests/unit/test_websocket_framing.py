"""RFC 7395 framing, sans sockets: client messages → classic stream bytes, and back."""

from __future__ import annotations

import pytest
from lxml import etree

from pubsubd import ns
from pubsubd.errors import StreamCondition, StreamError
from pubsubd.net.listener import Listener
from pubsubd.net.websocket import (
    WebSocketSite,
    endpoint_urls,
    host_meta_json,
    host_meta_xrd,
)
from pubsubd.stream.parser import ElementReceived, StreamClosed, StreamOpened, StreamParser
from pubsubd.stream.websocket_framing import CLOSE_MESSAGE, ServerFramer, client_frame_to_stream

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' from='localhost' to='a@localhost/r' "
    "id='abc' version='1.0' xml:lang='en'>"
)


def parse(message: str) -> etree._Element:
    """Every server message must be a standalone, namespace-well-formed document."""
    return etree.fromstring(message.encode())


# --- client → server --------------------------------------------------------------------------

def test_open_becomes_a_stream_header_the_stream_parser_accepts() -> None:
    header = client_frame_to_stream(
        f"<open xmlns='{FRAMING}' to='localhost' version='1.0' xml:lang='fr-CA'/>"
    )
    events = StreamParser().feed(header)
    assert len(events) == 1 and isinstance(events[0], StreamOpened)
    opened = events[0]
    assert opened.to == "localhost" and opened.version == "1.0" and opened.lang == "fr-CA"
    assert opened.default_ns == ns.CLIENT and opened.stream_prefix == "stream"


def test_open_attributes_are_escaped() -> None:
    header = client_frame_to_stream(f"<open xmlns='{FRAMING}' to='a&amp;b&lt;' version='1.0'/>")
    (opened,) = StreamParser().feed(header)
    assert isinstance(opened, StreamOpened) and opened.to == "a&b<"


def test_close_becomes_the_stream_end_and_elements_pass_through() -> None:
    parser = StreamParser()
    parser.feed(client_frame_to_stream(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"))
    message = "<message xmlns='jabber:client' to='b@localhost'><body>hi &amp; bye</body></message>"
    assert client_frame_to_stream(message) == message.encode()
    (received,) = parser.feed(client_frame_to_stream(message))
    assert isinstance(received, ElementReceived)
    assert received.element.tag == ns.clark(ns.CLIENT, "message")
    assert received.element.findtext(ns.clark(ns.CLIENT, "body")) == "hi & bye"
    (closed,) = parser.feed(client_frame_to_stream(f"<close xmlns='{FRAMING}'/>"))
    assert isinstance(closed, StreamClosed)


def test_an_xml_declaration_in_a_message_is_dropped() -> None:
    data = client_frame_to_stream("<?xml version='1.0'?><presence xmlns='jabber:client'/>")
    assert data == b"<presence xmlns='jabber:client'/>"


@pytest.mark.parametrize("message", [
    "<message xmlns='jabber:client'/><message xmlns='jabber:client'/>",  # two elements
    "<message xmlns='jabber:client'><body>half",  # an incomplete element
    "just text",
    "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
])
def test_a_message_that_is_not_one_element_is_a_stream_error(message: str) -> None:
    with pytest.raises(StreamError) as caught:
        client_frame_to_stream(message)
    assert caught.value.condition is StreamCondition.NOT_WELL_FORMED


def test_open_outside_the_framing_namespace_is_invalid_namespace() -> None:
    # RFC 7395 §3.3.2
    with pytest.raises(StreamError) as caught:
        client_frame_to_stream("<open xmlns='jabber:client' to='localhost' version='1.0'/>")
    assert caught.value.condition is StreamCondition.INVALID_NAMESPACE


def test_dtds_and_comments_are_refused() -> None:
    with pytest.raises(StreamError) as caught:
        client_frame_to_stream("<!DOCTYPE x [<!ENTITY a 'b'>]><message xmlns='jabber:client'/>")
    assert caught.value.condition is StreamCondition.RESTRICTED_XML
    with pytest.raises(StreamError) as caught:
        client_frame_to_stream("<message xmlns='jabber:client'/><!-- hi -->")
    assert caught.value.condition is StreamCondition.RESTRICTED_XML


# --- server → client --------------------------------------------------------------------------

def test_header_becomes_open_with_the_framing_namespace() -> None:
    framer = ServerFramer()
    (message,) = framer.feed(HEADER.encode())
    el = parse(message)
    assert el.tag == ns.clark(FRAMING, "open")
    assert el.attrib == {"from": "localhost", "to": "a@localhost/r", "id": "abc",
                         "version": "1.0", ns.XML_LANG: "en"}


def test_features_and_errors_declare_the_stream_prefix() -> None:
    framer = ServerFramer()
    data = (HEADER + "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
            "</stream:features>").encode()
    opened, features = framer.feed(data)
    assert parse(features).tag == ns.STREAM_FEATURES
    error, close = framer.feed(
        b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"</stream:error></stream:stream>"
    )
    assert parse(error).tag == ns.STREAM_ERROR
    assert close == CLOSE_MESSAGE and framer.closed
    assert parse(close).tag == ns.clark(FRAMING, "close")


def test_already_declared_prefix_is_left_alone() -> None:
    framer = ServerFramer()
    data = (f"<stream:features xmlns:stream='{ns.STREAM}'>"
            "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:features>")
    assert framer.feed(data.encode()) == [data]


def test_joined_stanzas_are_split_one_per_message() -> None:
    # The session writer joins everything queued into one send_all.
    framer = ServerFramer()
    data = (
        b"<message xmlns='jabber:client' to='a@localhost/r' id='1'><body>a &lt;b&gt; /&gt;</body>"
        b"<x xmlns='urn:x'><y/><y a='1'/></x></message>"
        b"<presence xmlns='jabber:client' from='b@localhost/x'/>"
        b"<iq type='result' id='2' to='a@localhost/r'><query xmlns='jabber:iq:roster'>"
        b"<item jid='c@localhost' name='I &gt; you'/></query></iq>"
    )
    messages = framer.feed(data)
    assert [etree.QName(parse(m)).localname for m in messages] == ["message", "presence", "iq"]
    assert all(etree.QName(parse(m)).namespace == ns.CLIENT for m in messages)
    assert parse(messages[0]).findtext(f"{{{ns.CLIENT}}}body") == "a <b> />"
    # the iq had no xmlns of its own: it gets the stream's content namespace
    assert parse(messages[2])[0][0].get("name") == "I > you"


def test_an_element_split_over_writes_is_sent_once_complete() -> None:
    framer = ServerFramer()
    data = "<message xmlns='jabber:client' to='a@localhost' id='x&gt;y'><body>é</body></message>"
    raw = data.encode()
    assert framer.feed(raw[:10]) == []
    assert framer.pending
    assert framer.feed(raw[10:40]) == []
    assert framer.feed(raw[40:]) == [data]
    assert not framer.pending


def test_attribute_values_with_markup_characters_do_not_end_a_tag() -> None:
    framer = ServerFramer()
    data = "<message xmlns='jabber:client' to='a@localhost/x>y' id=\"a/>b\"><body/></message>"
    assert framer.feed(data.encode()) == [data]


def test_prefixed_elements_and_whitespace_keepalives() -> None:
    framer = ServerFramer()
    data = (b" \n<sm:r xmlns:sm='urn:xmpp:sm:3'/>  "
            b"<a xmlns='urn:xmpp:sm:3' h='3'/> ")
    assert framer.feed(data) == ["<sm:r xmlns:sm='urn:xmpp:sm:3'/>",
                                 "<a xmlns='urn:xmpp:sm:3' h='3'/>"]
    assert framer.feed(b" ") == [] and not framer.pending


# --- XEP-0156 documents ------------------------------------------------------------------------

def test_host_meta_documents_list_the_websocket_links() -> None:
    urls = ["wss://localhost:5281/xmpp-websocket", "ws://127.0.0.1:5280/xmpp-websocket"]
    xrd = etree.fromstring(host_meta_xrd(urls))
    links = xrd.findall(f"{{{ns.XRD}}}Link")
    assert [link.get("href") for link in links] == urls
    assert {link.get("rel") for link in links} == {"urn:xmpp:alt-connections:websocket"}
    import json

    jrd = json.loads(host_meta_json(urls))
    assert jrd == {"links": [{"rel": "urn:xmpp:alt-connections:websocket", "href": u}
                             for u in urls]}


def site(*listeners: tuple[str, str, int], over_tls: bool = False) -> WebSocketSite:
    bound = []
    for kind, address, port in listeners:
        listener = Listener(address, 0, _no_handler, 10, kind)
        listener.bound_port = port
        bound.append(listener)
    return WebSocketSite(over_tls, 65536, 5.0, "example.org", bound)


async def _no_handler(stream: object, peer: str) -> None:
    raise AssertionError("never called")


def test_endpoint_urls_name_each_websocket_listener_secure_first() -> None:
    listeners = (("c2s", "127.0.0.1", 5222), ("websocket", "127.0.0.1", 5280),
                 ("websocket_tls", "::", 5281), ("websocket_tls", "2001:db8::1", 443))
    assert endpoint_urls(site(*listeners), "chat.example.org:5281") == [
        "wss://chat.example.org:5281/xmpp-websocket",  # wildcard: the host the client asked
        "wss://[2001:db8::1]:443/xmpp-websocket",
        "ws://127.0.0.1:5280/xmpp-websocket",
    ]
    # Served over TLS: never the plain endpoint. An odd Host falls back to the domain.
    assert endpoint_urls(site(*listeners, over_tls=True), "x'><evil") == [
        "wss://example.org:5281/xmpp-websocket",
        "wss://[2001:db8::1]:443/xmpp-websocket",
    ]
    assert endpoint_urls(site(*listeners), "[::1]:5281")[0] == "wss://[::1]:5281/xmpp-websocket"

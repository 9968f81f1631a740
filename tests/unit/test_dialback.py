"""Server Dialback without sockets: XEP-0185 keys, the db elements, verification answers, and
the content-namespace switch between jabber:server on the wire and jabber:client inside."""

from __future__ import annotations

import pytest
from lxml import etree

from pubsubd import ns
from pubsubd.net.s2s import server_bytes
from pubsubd.stream import dialback
from pubsubd.stream.parser import ElementReceived, StreamParser
from pubsubd.xml import builders


def test_keys_match_the_xep_0220_examples() -> None:
    # XEP-0220 §2.1.1 Example 1 and §2.2.2 (receiving, originating, stream id).
    assert dialback.dialback_key("s3cr3tf0rd14lb4ck", "montague.example", "capulet.example",
                                 "D60000229F") == (
        "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3")
    assert dialback.dialback_key("d14lb4ck43v3r", "capulet.example", "montague.example",
                                 "417GAF25") == (
        "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d")


def test_key_validity_depends_on_every_input() -> None:
    key = dialback.dialback_key("secret", "r.example", "o.example", "id1")
    assert dialback.key_is_valid("secret", "r.example", "o.example", "id1", f"\n  {key} \n")
    assert not dialback.key_is_valid("other", "r.example", "o.example", "id1", key)
    assert not dialback.key_is_valid("secret", "x.example", "o.example", "id1", key)
    assert not dialback.key_is_valid("secret", "r.example", "o.example", "id2", key)
    assert len(dialback.new_secret()) == 64 and dialback.new_secret() != dialback.new_secret()


def test_elements_round_trip() -> None:
    data = dialback.element("result", "o.example", "r.example", key="abc")
    assert data.startswith(b"<db:result")
    req = dialback.parse(etree.fromstring(data))
    assert (req.kind, req.from_, req.to, req.key, req.is_request) == (
        "result", "o.example", "r.example", "abc", True)
    err = dialback.parse(etree.fromstring(dialback.element(
        "verify", "r.example", "o.example", id_="s1", type_="error", condition="item-not-found")))
    assert (err.kind, err.id, err.type, err.condition) == (
        "verify", "s1", "error", "item-not-found")


@pytest.mark.parametrize("xml", [
    b"<db:result xmlns:db='jabber:server:dialback' to='r.example'>k</db:result>",
    b"<db:verify xmlns:db='jabber:server:dialback' from='a' to='b'>k</db:verify>",  # no id
    b"<db:other xmlns:db='jabber:server:dialback' from='a' to='b'/>",
])
def test_malformed_requests_are_refused(xml: bytes) -> None:
    with pytest.raises(dialback.DialbackFormatError):
        dialback.parse(etree.fromstring(xml))


def test_authoritative_answers() -> None:
    local = {"o.example"}.__contains__
    key = dialback.dialback_key("secret", "r.example", "o.example", "sid")

    def ask(to: str, key: str) -> dialback.DialbackElement:
        request = dialback.parse(etree.fromstring(dialback.element(
            "verify", "r.example", to, key=key, id_="sid")))
        return dialback.parse(etree.fromstring(dialback.answer_verify(request, "secret", local)))

    valid = ask("o.example", key)
    # XEP-0220 §2.2.2: from and to swapped, id copied.
    assert (valid.from_, valid.to, valid.id, valid.type) == (
        "o.example", "r.example", "sid", "valid")
    assert ask("o.example", "0" * 64).type == "invalid"
    unknown = ask("elsewhere.example", key)
    assert (unknown.type, unknown.condition) == ("error", "item-not-found")


def test_domain_pairs_are_authorized_one_by_one() -> None:
    pairs = dialback.DomainPairs()
    assert not pairs and pairs.begin("o.example", "r.example")
    assert not pairs.begin("o.example", "r.example")  # already in progress
    assert not pairs.allows("o.example", "r.example")
    pairs.finish("o.example", "r.example", True)
    assert pairs and pairs.allows("o.example", "r.example")
    assert not pairs.allows("o.example", "pubsub.r.example")
    assert pairs.knows_sender("o.example") and not pairs.knows_sender("evil.example")
    assert pairs.begin("x.example", "r.example")
    pairs.finish("x.example", "r.example", False)
    assert not pairs.knows_sender("x.example") and pairs.begin("x.example", "r.example")


def test_outgoing_stanzas_switch_content_namespace_only_at_the_top() -> None:
    msg = builders.message(to="b@r.example", from_="a@o.example", body="hi")
    fwd = builders.child(msg, "urn:xmpp:forward:0", "forwarded")
    inner = etree.SubElement(fwd, ns.C_MESSAGE, nsmap={None: ns.CLIENT})
    etree.SubElement(inner, ns.C_BODY).text = "inner"
    data = server_bytes(msg)
    parsed = etree.fromstring(data)
    assert parsed.tag == ns.clark(ns.SERVER, "message")
    assert parsed.find(ns.clark(ns.SERVER, "body")) is not None
    # XEP-0297: forwarded content keeps its own jabber:client namespace.
    assert parsed.find(f"{{urn:xmpp:forward:0}}forwarded/{ns.C_MESSAGE}/{ns.C_BODY}") is not None
    assert b"ns0:" not in data


def test_incoming_server_stanzas_become_client_stanzas() -> None:
    parser = StreamParser(internal_ns=ns.CLIENT)
    header = (b"<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
              b"xmlns:stream='http://etherx.jabber.org/streams' from='o.example' to='r.example' "
              b"version='1.0'>")
    events = parser.feed(header + b"<message from='a@o.example' to='b@r.example'><body>x</body>"
                         b"</message><db:result from='o.example' to='r.example'>k</db:result>")
    message, result = (e.element for e in events if isinstance(e, ElementReceived))
    assert message.tag == ns.C_MESSAGE and message.find(ns.C_BODY) is not None
    assert etree.tostring(message).startswith(b'<message xmlns="jabber:client"')
    assert result.tag == ns.DB_RESULT

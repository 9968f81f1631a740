"""XEP-0114 §3 handshake, both sides, without sockets."""

from __future__ import annotations

import hashlib

import pytest

from pubsubd.errors import StreamCondition, StreamError
from pubsubd.stream.component_handshake import AcceptHandshake, ConnectHandshake, digest
from pubsubd.stream.parser import StreamOpened, StreamParser

SECRETS = {"bridge.example.org": "s3cret"}


def header(xml: str) -> StreamOpened:
    events = StreamParser().feed(xml.encode())
    assert isinstance(events[0], StreamOpened)
    return events[0]


def component_header(to: str, xmlns: str = "jabber:component:accept") -> StreamOpened:
    return header(f"<stream:stream xmlns='{xmlns}' "
                  f"xmlns:stream='http://etherx.jabber.org/streams' to='{to}'>")


def test_digest_is_lowercase_hex_sha1_of_id_and_secret() -> None:
    expected = hashlib.sha1(b"3BF96D32sunshine").hexdigest()
    assert digest("3BF96D32", "sunshine") == expected == expected.lower()


def test_server_accepts_the_right_digest() -> None:
    server = AcceptHandshake(SECRETS)
    accepted = server.on_header(component_header("bridge.example.org"))
    assert b'from="bridge.example.org"' in accepted.reply
    assert f'id="{accepted.stream_id}"'.encode() in accepted.reply
    given = hashlib.sha1((accepted.stream_id + "s3cret").encode()).hexdigest()
    assert server.on_handshake(given.upper()) == b"<handshake xmlns='jabber:component:accept'/>"


def test_wrong_digest_is_not_authorized() -> None:
    server = AcceptHandshake(SECRETS)
    accepted = server.on_header(component_header("bridge.example.org"))
    wrong = hashlib.sha1((accepted.stream_id + "guess").encode()).hexdigest()
    with pytest.raises(StreamError) as err:
        server.on_handshake(wrong)
    assert err.value.condition is StreamCondition.NOT_AUTHORIZED


def test_unknown_component_domain_is_host_unknown() -> None:
    with pytest.raises(StreamError) as err:
        AcceptHandshake(SECRETS).on_header(component_header("other.example.org"))
    assert err.value.condition is StreamCondition.HOST_UNKNOWN


def test_client_namespace_is_invalid_namespace() -> None:
    with pytest.raises(StreamError) as err:
        AcceptHandshake(SECRETS).on_header(component_header("bridge.example.org",
                                                            "jabber:client"))
    assert err.value.condition is StreamCondition.INVALID_NAMESPACE


def test_component_side_answers_the_servers_id() -> None:
    side = ConnectHandshake("bridge.example.org", "s3cret")
    assert b'to="bridge.example.org"' in side.opening()
    reply = side.on_header(header(
        "<stream:stream xmlns='jabber:component:accept' "
        "xmlns:stream='http://etherx.jabber.org/streams' from='bridge.example.org' id='abc'>"))
    assert reply == f"<handshake>{hashlib.sha1(b'abcs3cret').hexdigest()}</handshake>".encode()

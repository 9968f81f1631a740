"""Raw sockets against the real server: each bad input gets its exact error (RFC 6120 §4.9,
§8.3), the stream is closed where the spec says, and another session is served all along."""

from __future__ import annotations

import base64
import re
import socket
import time
from collections.abc import Iterator

import pytest
from harness import STREAM_HEADER, RawClient, ServerProcess

STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"


@pytest.fixture(scope="module")
def watcher(shared_server: ServerProcess) -> Iterator[RawClient]:
    """A logged-in session that must keep being served while others misbehave."""
    shared_server.add_user("watcher")
    client = RawClient(shared_server)
    client.login("watcher")
    yield client
    client.close()


def still_served(client: RawClient) -> None:
    tag = f"p{time.monotonic_ns()}"
    client.send(f"<iq type='get' id='{tag}'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert 'type="result"' in client.read_until(f'id="{tag}"/>'.encode())


def stream_error(text: str) -> str:
    """The condition of the stream error in ``text``, checking the stream is closed after it."""
    match = re.search(rf"<stream:error><([a-z-]+) xmlns='{STREAMS}'", text)
    assert match, text
    assert text.rstrip().endswith("</stream:stream>"), text  # RFC 6120 §4.9.1.1
    return match.group(1)


def header(server: ServerProcess, **changes: str) -> str:
    text = STREAM_HEADER.format(domain=server.domain)
    for old, new in changes.items():
        text = text.replace(old.replace("_", " "), new)
    return text


def secured(server: ServerProcess) -> RawClient:
    """A client past STARTTLS, before authentication."""
    client = RawClient(server)
    client.open()
    client.starttls()
    client.open()
    return client


# --- stream level (RFC 6120 §4.9.3) --------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "condition"),
    [
        ("<?xml version='1.0'?><stream:stream to='nowhere.example' xmlns='jabber:client' "
         "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>", "host-unknown"),
        ("<?xml version='1.0'?><stream:stream to='{d}' xmlns='jabber:server' "
         "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>", "invalid-namespace"),
        ("<?xml version='1.0'?><stream:stream to='{d}' xmlns='jabber:client' "
         "xmlns:stream='http://wrong.example/'>", "invalid-namespace"),
        ("<?xml version='1.0'?><foobar:stream to='{d}' xmlns='jabber:client' "
         "xmlns:foobar='http://etherx.jabber.org/streams' version='1.0'>", "bad-namespace-prefix"),
        ("<?xml version='1.0'?><stream:stream to='{d}' xmlns='jabber:client' "
         "xmlns:stream='http://etherx.jabber.org/streams' version='0.9'>", "unsupported-version"),
        ("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;'>]>",
         "restricted-xml"),
        ("<?xml version='1.0' encoding='UTF-16'?>", "unsupported-encoding"),
        ("<?xml version='1.0'?><stream:stream to='{d}' xmlns='jabber:client' "
         "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><!-- hi -->",
         "restricted-xml"),
        ("<?xml version='1.0'?><stream:stream to='{d}' xmlns='jabber:client' "
         "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><?pi x?>",
         "restricted-xml"),
        ("<?xml version='1.0'?><stream:stream to='{d}' xmlns='jabber:client' "
         "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><a><b></a>",
         "not-well-formed"),
    ],
    ids=["host-unknown", "content-ns", "stream-ns", "prefix", "version", "dtd", "utf16",
         "comment", "pi", "not-well-formed"],
)
def test_bad_stream_input(shared_server: ServerProcess, watcher: RawClient, data: str,
                          condition: str) -> None:
    client = RawClient(shared_server)
    client.send(data.replace("{d}", shared_server.domain))
    text = client.read_all()
    # RFC 6120 §4.9.1.2: even for a bad header, our header comes first.
    assert text.startswith("<?xml version='1.0'?><stream:stream ")
    assert f"from='{shared_server.domain}'" in text
    assert stream_error(text) == condition
    client.close()
    still_served(watcher)


def test_starttls_is_required(shared_server: ServerProcess, watcher: RawClient) -> None:
    client = RawClient(shared_server)
    features = client.open()
    assert "<required/>" in features and "<mechanisms" not in features
    client.send("<message to='watcher@localhost'><body>in clear</body></message>")
    assert stream_error(client.read_all()) == "policy-violation"
    still_served(watcher)


def test_stanza_before_auth_is_not_authorized(shared_server: ServerProcess,
                                             watcher: RawClient) -> None:
    client = secured(shared_server)
    client.send("<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert stream_error(client.read_all()) == "not-authorized"
    still_served(watcher)


def test_oversized_stanza_is_a_policy_violation(shared_server: ServerProcess,
                                                watcher: RawClient) -> None:
    shared_server.add_user("big")
    client = RawClient(shared_server)
    client.login("big")
    client.send("<message to='watcher@localhost'><body>" + "x" * (300 * 1024) + "</body></message>")
    assert stream_error(client.read_all()) == "policy-violation"
    still_served(watcher)


def test_resource_conflict_new_session_wins(shared_server: ServerProcess,
                                            watcher: RawClient) -> None:
    shared_server.add_user("twin")
    old = RawClient(shared_server)
    assert old.login("twin", resource="same") == "twin@localhost/same"
    new = RawClient(shared_server)
    assert new.login("twin", resource="same") == "twin@localhost/same"
    assert stream_error(old.read_all()) == "conflict"
    still_served(new)
    still_served(watcher)
    new.close()


def test_client_vanishing_mid_stanza(shared_server: ServerProcess, watcher: RawClient) -> None:
    shared_server.add_user("ghost")
    ghost = RawClient(shared_server)
    jid = ghost.login("ghost")
    ghost.send("<message to='watcher@localhost/raw'><body>half a sta")
    ghost.sock.shutdown(socket.SHUT_RDWR)
    ghost.close()
    still_served(watcher)
    # The session is gone: an iq to its full JID is answered for it (RFC 6121 §8.5.3.2.1).
    shared_server.wait_for_log(f"session {jid} closed")  # it notices the closed socket
    watcher.send(f"<iq type='get' id='g' to='{jid}'><ping xmlns='urn:xmpp:ping'/></iq>")
    reply = watcher.read_until(b"</iq>", timeout=5)
    assert "service-unavailable" in reply
    assert "Traceback" not in shared_server.log()


# --- stanza level (RFC 6120 §8, §10) --------------------------------------------------------

@pytest.fixture(scope="module")
def user(shared_server: ServerProcess) -> Iterator[tuple[RawClient, str]]:
    shared_server.add_user("stanzas")
    client = RawClient(shared_server)
    jid = client.login("stanzas")
    yield client, jid
    client.close()


def ask(client: RawClient, data: str, id_: str) -> str:
    client.send(data)
    return client.read_until(b"</iq>" if data.startswith("<iq") else b"</message>")


def test_unknown_iq_namespace_is_service_unavailable(user: tuple[RawClient, str]) -> None:
    client, _ = user
    for to in ("", " to='localhost'", " to='stanzas@localhost'"):
        reply = ask(client, f"<iq type='get' id='u1'{to}><query xmlns='urn:example:nope'/></iq>",
                    "u1")
        assert 'type="error"' in reply and 'id="u1"' in reply
        assert "<service-unavailable" in reply and '<error type="cancel">' in reply


def test_iq_result_is_never_answered(user: tuple[RawClient, str]) -> None:
    client, _ = user
    client.send("<iq type='result' id='r1' to='localhost'/>")
    client.send("<iq type='error' id='r2' to='localhost'><error type='cancel'>"
                "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    client.send("<iq type='result' to='localhost'/>")  # not even without an id
    # The next thing we get is the answer to the ping, nothing for the results.
    client.send("<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    reply = client.read_until(b'id="after"/>')
    assert "r1" not in reply and "r2" not in reply and reply.count("<iq") == 1


@pytest.mark.parametrize(
    "data",
    [
        "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq type='get' id='two' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
        "<query xmlns='jabber:iq:version'/></iq>",
        "<iq type='set' id='none' to='localhost'/>",
        "<iq type='bogus' id='bogus' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    ],
    ids=["no-id", "two-children", "no-child", "bad-type"],
)
def test_malformed_iq_is_bad_request(user: tuple[RawClient, str], data: str) -> None:
    client, _ = user
    reply = ask(client, data, "")
    assert "<bad-request" in reply and '<error type="modify">' in reply


def test_message_to_unknown_local_user(user: tuple[RawClient, str]) -> None:
    client, _ = user
    reply = ask(client,
                "<message to='nobody@localhost' id='m1' type='chat'><body>x</body></message>", "m1")
    assert 'type="error"' in reply and "<service-unavailable" in reply
    assert 'from="nobody@localhost"' in reply


def test_message_to_remote_domain(user: tuple[RawClient, str]) -> None:
    client, _ = user
    reply = ask(client, "<message to='romeo@remote.example' id='m2'><body>x</body></message>", "m2")
    assert "<remote-server-not-found" in reply and '<error type="cancel">' in reply


@pytest.mark.parametrize("to", ["@localhost", "a@b@localhost", "localhost/",
                                "x" * 1100 + "@localhost"])
def test_malformed_address_is_jid_malformed(user: tuple[RawClient, str], to: str) -> None:
    client, _ = user
    reply = ask(client, f"<message to='{to}' id='j'><body>x</body></message>", "j")
    assert "<jid-malformed" in reply and '<error type="modify">' in reply


def test_from_is_stamped_so_nobody_can_spoof(shared_server: ServerProcess, watcher: RawClient,
                                             user: tuple[RawClient, str]) -> None:
    client, jid = user
    client.send("<message to='watcher@localhost/raw' from='admin@localhost/x' id='s1'>"
                "<body>trust me</body></message>")
    got = watcher.read_until(b"</message>")
    assert f'from="{jid}"' in got and "admin@localhost" not in got


def test_negotiation_elements_after_binding(shared_server: ServerProcess) -> None:
    shared_server.add_user("again")
    client = RawClient(shared_server)
    client.login("again")
    token = base64.b64encode(b"\0again\0password1").decode()
    client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    assert stream_error(client.read_all()) == "policy-violation"


def test_client_closing_its_stream_gets_ours_closed(shared_server: ServerProcess) -> None:
    shared_server.add_user("polite")
    client = RawClient(shared_server)
    client.login("polite")
    client.send("</stream:stream>")
    assert client.read_all().rstrip().endswith("</stream:stream>")


def test_direct_tls_listener(shared_server: ServerProcess) -> None:
    # XEP-0368: TLS from the first byte, then the usual stream without STARTTLS.
    shared_server.add_user("direct")
    client = RawClient(shared_server, tls=True)
    features = client.open()
    assert "starttls" not in features and "<mechanism>PLAIN</mechanism>" in features
    token = base64.b64encode(b"\0direct\0password1").decode()
    client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    client.read_until(b"<success")
    client.open()
    client.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert "<jid>direct@localhost/" in client.read_until(b"</iq>")
    still_served(client)
    client.close()

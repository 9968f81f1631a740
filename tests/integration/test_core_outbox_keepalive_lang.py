"""Connection hygiene on a server with a tiny outbox and a short keep-alive interval: a client
that never reads is cut off (the server stays healthy), an idle client gets whitespace
keep-alives (RFC 6120 §4.6.1), and the stream's xml:lang is stamped on its stanzas (§4.7.4)."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import pytest
from harness import STREAM_HEADER, RawClient, ServerProcess

OUTBOX = 8
KEEPALIVE = 0.5


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("tight"), extra={
        "limits": {"outbox_stanzas": OUTBOX, "keepalive_interval": KEEPALIVE}})
    srv.start()
    try:
        yield srv
    finally:
        if srv.alive():
            srv.kill()


def slow_reader(server: ServerProcess) -> RawClient:
    """A raw client whose socket has a tiny receive window, so unread data backs up fast."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.c2s_port))
    client = RawClient.__new__(RawClient)
    client.server, client.sock, client.buffer = server, sock, b""
    return client


def login_with_lang(server: ServerProcess, local: str, lang: str) -> RawClient:
    """Like RawClient.login, but every stream header carries ``xml:lang``."""
    header = STREAM_HEADER.format(domain=server.domain).replace(
        "version='1.0'>", f"version='1.0' xml:lang='{lang}'>")
    client = RawClient(server)
    client.send(header)
    client.read_until(b"</stream:features>")
    client.starttls()
    client.send(header)
    client.read_until(b"</stream:features>")
    token = base64.b64encode(f"\0{local}\0password1".encode()).decode()
    client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    client.read_until(b"<success")
    client.send(header)
    client.read_until(b"</stream:features>")
    client.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                "<resource>raw</resource></bind></iq>")
    client.read_until(b"</iq>")
    return client


def test_client_that_never_reads_is_disconnected(tight: ServerProcess) -> None:
    tight.add_user("sink")
    tight.add_user("flood")
    victim = slow_reader(tight)
    victim.login("sink")
    flooder = RawClient(tight)
    flooder.login("flood")
    body = "x" * 32768
    for n in range(400):  # ~13 MB: far more than the socket buffers and the outbox hold
        try:
            flooder.send(f"<message to='sink@localhost/raw' id='m{n}'>"
                         f"<body>{body}</body></message>")
        except OSError:
            break
    tight.wait_for_log("outbox of sink@localhost/raw is full")
    # The session is gone: an IQ to it now bounces (RFC 6121 §8.5.3.2.1) ...
    flooder.send("<iq type='get' id='gone' to='sink@localhost/raw'><ping xmlns='urn:xmpp:ping'/>"
                 "</iq>")
    reply = flooder.read_until(b"</iq>", timeout=10)
    while "gone" not in reply:  # skip the bounces of messages that arrived after the cut
        reply = flooder.read_until(b"</iq>", timeout=10)
    assert "service-unavailable" in reply
    # ... its connection was closed (read_all returns at the end of the connection; the
    # stream error itself may not fit into a window the client never drains), and the server
    # goes on serving everyone else.
    assert "<message" in victim.read_all(timeout=15)
    tight.add_user("fine")
    other = RawClient(tight)
    other.login("fine")
    other.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert 'type="result"' in other.read_until(b'id="p1"/>')
    for client in (victim, flooder, other):
        client.close()


def test_idle_client_gets_whitespace_keepalives(tight: ServerProcess) -> None:
    tight.add_user("idle")
    client = RawClient(tight)
    client.login("idle")
    client.sock.settimeout(KEEPALIVE * 4)  # bounded: the first keep-alive ends the wait
    data = client.buffer + client.sock.recv(4096)
    assert data and not data.strip(), data  # only whitespace between stanzas
    client.close()


def test_idle_stream_with_unacknowledged_stanzas_gets_an_ack_request(
    tight: ServerProcess,
) -> None:
    """XEP-0198 §4: with stanzas awaiting acknowledgement, the keep-alive of a silent stream is
    a request for an ack, so the client's answer clears the queue."""
    tight.add_user("acker")
    client = RawClient(tight)
    client.login("acker")
    client.send("<enable xmlns='urn:xmpp:sm:3'/>")
    client.read_until(b"<enabled")
    client.send(f"<iq type='get' id='p1' to='{tight.domain}'><ping xmlns='urn:xmpp:ping'/></iq>")
    client.read_until(b"id=\"p1\"")  # the answer, counted as sent and not yet acknowledged
    # Bounded: the first keep-alive after KEEPALIVE seconds of silence is this request.
    client.read_until(b"<r xmlns='urn:xmpp:sm:3'/>", timeout=KEEPALIVE * 4)
    client.send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
    client.close()


def test_stream_language_is_stamped_on_routed_stanzas(tight: ServerProcess) -> None:
    tight.add_user("speaker")
    tight.add_user("hearer")
    speaker = login_with_lang(tight, "speaker", "de")
    hearer = RawClient(tight)
    hearer.login("hearer")
    speaker.send("<message to='hearer@localhost/raw' id='l1'><body>Hallo</body></message>")
    got = hearer.read_until(b"</message>")
    assert "xml:lang='de'" in got or 'xml:lang="de"' in got, got
    # a stanza's own xml:lang wins over the stream's
    speaker.send("<message to='hearer@localhost/raw' id='l2' xml:lang='fr'><body>Salut</body>"
                 "</message>")
    got = hearer.read_until(b"</message>")
    assert "Salut" in got and ("xml:lang='fr'" in got or 'xml:lang="fr"' in got), got
    for client in (speaker, hearer):
        client.close()

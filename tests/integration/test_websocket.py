"""XMPP over WebSocket (RFC 7395) and XEP-0156 discovery against the real server.

The WebSocket client is written here with wsproto over a plain (or TLS) socket, so each frame
the server sends is seen exactly as a browser would see it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import secrets
import signal
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ServerProcess, connect, disconnect, run
from lxml import etree
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from pubsubd.config import ConfigError, loads

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
STREAM = "http://etherx.jabber.org/streams"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
CLIENT = "jabber:client"
STREAMS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
XRD = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
PATH = "/xmpp-websocket"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
CLOSE = f"<close xmlns='{FRAMING}'/>"


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class WSClient:
    """A blocking WebSocket client: one call, one frame."""

    def __init__(self, port: int, *, tls: bool = False, subprotocols: tuple[str, ...] = ("xmpp",),
                 path: str = PATH) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock: socket.socket = (tls_context().wrap_socket(sock, server_hostname="localhost")
                                    if tls else sock)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: deque[Event] = deque()
        self.pings = 0
        self.send_event(Request(host="localhost", target=path, subprotocols=list(subprotocols)))
        self.handshake = self.next_event()

    def send_event(self, event: Event) -> None:
        self.sock.sendall(self.ws.send(event))

    def send(self, text: str) -> None:
        self.send_event(Message(data=text))

    def _read(self, timeout: float) -> None:
        self.sock.settimeout(max(timeout, 0.01))
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, Ping):
                self.pings += 1
                self.send_event(event.response())
            else:
                self.events.append(event)

    def next_event(self, timeout: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout
        while not self.events:
            self._read(deadline - time.monotonic())
        return self.events.popleft()

    def recv(self, timeout: float = 10.0) -> str:
        """The next complete text message."""
        parts: list[str] = []
        while True:
            event = self.next_event(timeout)
            assert isinstance(event, TextMessage), f"expected a text message, got {event!r}"
            parts.append(event.data)
            if event.message_finished:
                return "".join(parts)

    def recv_xml(self, timeout: float = 10.0) -> etree._Element:
        """The next message, parsed on its own: RFC 7395 §3.3.3 says it must parse alone."""
        text = self.recv(timeout)
        assert text.startswith("<"), text
        return etree.fromstring(text.encode())

    def recv_tag(self, localname: str) -> etree._Element:
        while True:
            el = self.recv_xml()
            if etree.QName(el).localname == localname:
                return el

    def open(self, to: str = "localhost") -> etree._Element:
        """Send <open/>; check the server's <open/>; return its features."""
        self.send(OPEN.replace("'localhost'", f"'{to}'"))
        opened = self.recv_xml()
        assert opened.tag == f"{{{FRAMING}}}open"
        assert opened.get("version") == "1.0" and opened.get("from") == "localhost"
        assert opened.get("id")
        return self.recv_xml()

    def close(self) -> None:
        self.sock.close()


def mechanisms(features: etree._Element) -> list[str]:
    return [m.text or "" for m in features.iter(f"{{{SASL}}}mechanism")]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def plain_auth(client: WSClient, local: str, password: str = "password1") -> etree._Element:
    token = b64(b"\0" + local.encode() + b"\0" + password.encode())
    client.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
    return client.recv_xml()


def scram_sha256(client: WSClient, local: str, password: str = "password1", *,
                 mechanism: str = "SCRAM-SHA-256", gs2: str = "n,,",
                 cbind: bytes = b"") -> etree._Element:
    """RFC 5802 by hand; returns <success/> (whose server signature is checked) or <failure/>."""
    bare = f"n={local},r={secrets.token_urlsafe(18)}"
    client.send(f"<auth xmlns='{SASL}' mechanism='{mechanism}'>{b64((gs2 + bare).encode())}</auth>")
    challenge = client.recv_xml()
    assert challenge.tag == f"{{{SASL}}}challenge", etree.tostring(challenge)
    first = base64.b64decode(challenge.text or "").decode()
    attrs = dict(part.split("=", 1) for part in first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    without_proof = f"c={b64(gs2.encode() + cbind)},r={attrs['r']}"
    auth_message = f"{bare},{first},{without_proof}".encode()
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    client.send(f"<response xmlns='{SASL}'>{b64(f'{without_proof},p={b64(proof)}'.encode())}"
                "</response>")
    outcome = client.recv_xml()
    if outcome.tag == f"{{{SASL}}}success":
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        expected = b64(hmac.digest(server_key, auth_message, "sha256"))
        assert base64.b64decode(outcome.text or "").decode() == f"v={expected}"
    return outcome


def bind(client: WSClient, resource: str) -> str:
    features = client.open()
    assert features.find(f"{{{BIND}}}bind") is not None
    client.send(f"<iq xmlns='{CLIENT}' type='set' id='bind1'><bind xmlns='{BIND}'>"
                f"<resource>{resource}</resource></bind></iq>")
    result = client.recv_xml()
    assert result.get("type") == "result", etree.tostring(result)
    return result.findtext(f".//{{{BIND}}}jid") or ""


def stream_error(client: WSClient, close_code: int = 1000) -> str:
    """The condition of the stream error the server sends, after checking it closes properly:
    <close/>, then the WebSocket close with ``close_code`` (RFC 6455 §7.4.1)."""
    error = client.recv_xml()
    assert error.tag == f"{{{STREAM}}}error", etree.tostring(error)
    condition = etree.QName(error[0]).localname
    closing = client.recv_xml()
    assert closing.tag == f"{{{FRAMING}}}close"
    event = client.next_event()
    assert isinstance(event, CloseConnection)  # the server starts the WebSocket close
    assert event.code == close_code
    client.send_event(event.response())
    return condition


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("ws"), extra={
        "listeners": [
            {"kind": "c2s", "address": "127.0.0.1", "port": 0},
            {"kind": "c2s_tls", "address": "127.0.0.1", "port": 0},
            {"kind": "websocket", "address": "127.0.0.1", "port": 0},
            {"kind": "websocket_tls", "address": "127.0.0.1", "port": 0},
        ],
        "limits": {"keepalive_interval": 1.0, "max_stanza_bytes": 20000},
    })
    proc.start()
    proc.ws_port = proc.port("websocket")  # type: ignore[attr-defined]
    proc.wss_port = proc.port("websocket_tls")  # type: ignore[attr-defined]
    for local in ("alice", "bob", "carol", "dave"):
        proc.add_user(local)
    try:
        yield proc
    finally:
        if proc.alive():
            proc.kill()


def test_login_message_ping_and_close_over_plain_websocket(srv: Any) -> None:
    alice = WSClient(srv.ws_port)
    assert isinstance(alice.handshake, AcceptConnection)
    assert alice.handshake.subprotocol == "xmpp"
    features = alice.open()
    assert features.tag == f"{{{STREAM}}}features"
    # RFC 7395 §3.9: no STARTTLS; no channel binding to a TLS session that is not ours.
    assert features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is None
    offered = mechanisms(features)
    assert "SCRAM-SHA-256" in offered and "PLAIN" in offered
    assert not any(m.endswith("-PLUS") for m in offered)
    assert scram_sha256(alice, "alice").tag == f"{{{SASL}}}success"
    full = bind(alice, "web")
    assert full == "alice@localhost/web"
    alice.send(f"<presence xmlns='{CLIENT}'/>")

    async def exchange() -> None:
        bob = await connect(srv, "bob@localhost")
        received: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        bob.add_event_handler(
            "message", lambda msg: received.done() or received.set_result(msg))
        bob.send_message(mto=full, mbody="hello over tcp", mtype="chat")
        message = await asyncio.to_thread(alice.recv_tag, "message")
        assert message.get("from") == str(bob.boundjid)
        assert message.findtext(f"{{{CLIENT}}}body") == "hello over tcp"
        alice.send(f"<message xmlns='{CLIENT}' to='bob@localhost' type='chat' id='m2'>"
                   "<body>hello over websocket &amp; more</body></message>")
        reply = await asyncio.wait_for(received, 10)
        assert reply["body"] == "hello over websocket & more"
        assert str(reply["from"]) == full
        await disconnect(bob)

    run(exchange())
    # XEP-0199 over the stream, then WebSocket pings both ways.
    alice.send(f"<iq xmlns='{CLIENT}' type='get' id='p1' to='localhost'>"
               "<ping xmlns='urn:xmpp:ping'/></iq>")
    assert alice.recv_tag("iq").get("type") == "result"
    alice.send_event(Ping(b"are you there"))
    while True:
        event = alice.next_event()
        if isinstance(event, Pong):
            assert event.payload == b"are you there"
            break
    # The whitespace keep-alive (every second here) arrives as a ping, never as text.
    deadline = time.monotonic() + 5
    while not alice.pings and time.monotonic() < deadline:
        try:
            alice._read(0.5)
        except TimeoutError:
            pass
    assert alice.pings
    assert all(not isinstance(e, TextMessage) or e.data.startswith("<") for e in alice.events)
    # RFC 7395 §3.6: <close/> answered by <close/>; we then close the WebSocket.
    alice.events.clear()
    alice.send(CLOSE)
    assert alice.recv_tag("close").tag == f"{{{FRAMING}}}close"
    alice.send_event(CloseConnection(code=1000))
    assert isinstance(alice.next_event(), CloseConnection)
    assert alice.sock.recv(10) == b""
    alice.close()


def test_scram_plus_over_websocket_tls(srv: Any) -> None:
    carol = WSClient(srv.wss_port, tls=True)
    assert isinstance(carol.handshake, AcceptConnection)
    features = carol.open()
    assert features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is None
    assert "SCRAM-SHA-256-PLUS" in mechanisms(features)
    der = carol.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    assert der
    outcome = scram_sha256(carol, "carol", mechanism="SCRAM-SHA-256-PLUS",
                           gs2="p=tls-server-end-point,,", cbind=hashlib.sha256(der).digest())
    assert outcome.tag == f"{{{SASL}}}success"
    assert bind(carol, "tls") == "carol@localhost/tls"
    carol.close()


def test_plain_auth_then_a_frame_that_is_not_one_element_is_a_stream_error(srv: Any) -> None:
    dave = WSClient(srv.ws_port)
    dave.open()
    assert plain_auth(dave, "dave").tag == f"{{{SASL}}}success"
    bind(dave, "x")
    dave.send(f"<presence xmlns='{CLIENT}'/><presence xmlns='{CLIENT}'/>")
    assert stream_error(dave) == "not-well-formed"
    dave.close()


def test_stream_errors_while_opening_follow_the_open(srv: Any) -> None:
    # RFC 7395 §3.5: the <open/> first, then the error in its own message, then <close/>.
    client = WSClient(srv.ws_port)
    client.send(OPEN.replace("'localhost'", "'elsewhere.example'"))
    assert client.recv_xml().tag == f"{{{FRAMING}}}open"
    assert stream_error(client) == "host-unknown"
    client.close()
    client = WSClient(srv.ws_port)
    client.send("<open xmlns='jabber:client' to='localhost' version='1.0'/>")
    assert client.recv_xml().tag == f"{{{FRAMING}}}open"
    assert stream_error(client) == "invalid-namespace"
    client.close()
    # A <close/> before authentication is answered with <close/> too (RFC 7395 §3.6).
    client = WSClient(srv.ws_port)
    client.open()
    client.send(CLOSE)
    assert client.recv_xml().tag == f"{{{FRAMING}}}close"
    client.send_event(CloseConnection(code=1000))
    assert isinstance(client.next_event(), CloseConnection)
    client.close()


def test_oversized_binary_and_invalid_messages_end_the_stream(srv: Any) -> None:
    client = WSClient(srv.ws_port)
    client.open()
    client.send(f"<message xmlns='{CLIENT}'><body>{'x' * 30000}</body></message>")
    assert stream_error(client, close_code=1009) == "policy-violation"  # 1009: too big
    client.close()
    client = WSClient(srv.ws_port)
    client.open()
    client.send_event(Message(data=b"<presence xmlns='jabber:client'/>"))  # RFC 7395 §3.2
    assert stream_error(client, close_code=1003) == "bad-format"  # 1003: unsupported data
    client.close()
    # Text that is not UTF-8 fails the WebSocket itself (RFC 6455 §8.1): close code 1007.
    client = WSClient(srv.ws_port)
    client.open()
    client.sock.sendall(bytes([0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28]))  # masked, zero key
    event = client.next_event()
    assert isinstance(event, CloseConnection) and event.code == 1007
    client.close()


@pytest.mark.parametrize("subprotocols", [(), ("mqtt",)])
def test_the_xmpp_subprotocol_is_required(srv: Any, subprotocols: tuple[str, ...]) -> None:
    client = WSClient(srv.ws_port, subprotocols=subprotocols)
    assert isinstance(client.handshake, RejectConnection)
    assert client.handshake.status_code == 400
    client.close()


def get(srv: Any, path: str, *, tls: bool = False) -> http.client.HTTPResponse:
    conn: http.client.HTTPConnection
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", srv.wss_port, timeout=10,
                                           context=tls_context())
    else:
        conn = http.client.HTTPConnection("127.0.0.1", srv.ws_port, timeout=10)
    conn.request("GET", path)
    return conn.getresponse()


def test_host_meta_discovery(srv: Any) -> None:
    ws_url = f"ws://127.0.0.1:{srv.ws_port}{PATH}"
    wss_url = f"wss://127.0.0.1:{srv.wss_port}{PATH}"
    response = get(srv, "/.well-known/host-meta")
    assert response.status == 200
    assert response.getheader("Access-Control-Allow-Origin") == "*"
    xrd = etree.fromstring(response.read())
    links = xrd.findall(f"{{{XRD}}}Link")
    https_url = f"https://127.0.0.1:{srv.wss_port}/http-bind"
    http_url = f"http://127.0.0.1:{srv.ws_port}/http-bind"
    assert [(link.get("rel"), link.get("href")) for link in links] == [
        ("urn:xmpp:alt-connections:websocket", wss_url),
        ("urn:xmpp:alt-connections:websocket", ws_url),
        ("urn:xmpp:alt-connections:xbosh", https_url),  # BOSH beside WebSocket (XEP-0206)
        ("urn:xmpp:alt-connections:xbosh", http_url),
    ]
    response = get(srv, "/.well-known/host-meta.json")
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json"
    assert [link["href"] for link in json.loads(response.read())["links"]] == [
        wss_url, ws_url, https_url, http_url]
    # Over TLS, discovery never offers the weaker plain endpoint (XEP-0156 §4).
    response = get(srv, "/.well-known/host-meta.json", tls=True)
    assert [link["href"] for link in json.loads(response.read())["links"]] == [
        wss_url, https_url]
    assert get(srv, "/index.html").status == 404
    assert get(srv, PATH).status == 426  # the endpoint without an upgrade


def test_plain_websocket_listener_must_be_on_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        loads("listeners: [{kind: websocket, address: 0.0.0.0, port: 5280}]")
    config = loads("listeners: [{kind: websocket, address: 127.0.0.1, port: 5280}, "
                   "{kind: websocket_tls, address: 0.0.0.0, port: 5281}]")
    assert [listener.kind for listener in config.listeners] == ["websocket", "websocket_tls"]


def test_shutdown_closes_websocket_streams(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, extra={"listeners": [
        {"kind": "c2s", "address": "127.0.0.1", "port": 0},
        {"kind": "websocket", "address": "127.0.0.1", "port": 0},
    ]})
    proc.start()
    ws_port = proc.port("websocket")
    try:
        client = WSClient(ws_port)
        client.open()
        proc.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert stream_error(client) == "system-shutdown"  # RFC 6120 §4.9.3.20
        client.close()
        assert proc.proc.wait(15) == 0  # type: ignore[union-attr]
    finally:
        if proc.alive():
            proc.kill()

"""BOSH (XEP-0124 / XEP-0206) at /http-bind against the real server, with a raw HTTP client.

Each request is written by hand (httpx), so the rid of every request, repeated rids, gaps and
overactive clients are exactly what the test says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import RawClient, ServerProcess
from lxml import etree

BOSH = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
STREAM = "http://etherx.jabber.org/streams"
CLIENT = "jabber:client"
PING = "urn:xmpp:ping"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class BoshClient:
    """One BOSH session driven request by request."""

    def __init__(self, url: str, *, wait: int = 2, hold: int = 1) -> None:
        self.http = httpx.Client(timeout=30)
        self.url = url
        self.rid = secrets.randbelow(2**40) + 1000
        self.sid = ""
        self.wait = wait
        self.hold = hold
        self.received: list[etree._Element] = []  # payloads not yet consumed by expect()

    def post_raw(self, rid: int, payloads: str = "", **attrs: str) -> bytes:
        extra = "".join(f" {k.replace('xmpp_', 'xmpp:')}='{v}'" for k, v in attrs.items())
        sid = f" sid='{self.sid}'" if self.sid else ""
        data = (f"<body xmlns='{BOSH}' xmlns:xmpp='{XBOSH}' rid='{rid}'{sid}{extra}>"
                f"{payloads}</body>")
        response = self.http.post(self.url, content=data.encode(),
                                  headers={"Content-Type": "text/xml; charset=utf-8"})
        assert response.status_code == 200, response.text
        return response.content

    def post(self, payloads: str = "", **attrs: str) -> etree._Element:
        self.rid += 1
        body = etree.fromstring(self.post_raw(self.rid, payloads, **attrs))
        assert body.tag == f"{{{BOSH}}}body"
        self.received.extend(body)
        return body

    def create(self, **attrs: str) -> etree._Element:
        body = self.post(to="localhost", wait=str(self.wait), hold=str(self.hold),
                         xmpp_version="1.0", **{"xml:lang": "en", **attrs})
        self.sid = body.get("sid") or ""
        assert self.sid
        return body

    def expect(self, tag: str, payloads: str = "") -> etree._Element:
        """Send ``payloads``, then poll until a payload ``tag`` arrives; return it."""
        if payloads:
            self.post(payloads)
        for _ in range(20):
            for i, el in enumerate(self.received):
                if el.tag == tag:
                    del self.received[: i + 1]
                    return el
            body = self.post()
            assert body.get("type") != "terminate", etree.tostring(body)
        raise AssertionError(f"no {tag} arrived")

    def login(self, local: str, password: str = "password1", resource: str = "bosh") -> str:
        body = self.create()
        if body.find(f"{{{STREAM}}}features") is None:
            self.expect(f"{{{STREAM}}}features")
        token = b64(b"\0" + local.encode() + b"\0" + password.encode())
        self.expect(f"{{{SASL}}}success",
                    f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        return self.restart_and_bind(resource)

    def restart_and_bind(self, resource: str) -> str:
        restarted = self.post(xmpp_restart="true")  # XEP-0206 §5
        self.received.clear()
        assert restarted.find(f"{{{STREAM}}}features/{{{BIND}}}bind") is not None
        result = self.expect(f"{{{CLIENT}}}iq",
                             f"<iq xmlns='{CLIENT}' type='set' id='bind1'><bind xmlns='{BIND}'>"
                             f"<resource>{resource}</resource></bind></iq>")
        assert result.get("type") == "result"
        return result.findtext(f".//{{{BIND}}}jid") or ""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp: Path = tmp_path_factory.mktemp("bosh")
    proc = ServerProcess(tmp, extra={
        "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": 0},
                      {"kind": "c2s_tls", "address": "127.0.0.1", "port": 0},
                      {"kind": "websocket", "address": "127.0.0.1", "port": 0}],
        "bosh": {"cors_origins": ["http://app.example"], "max_wait": 5, "inactivity": 3},
    })
    proc.start()
    for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
        proc.add_user(user)
    try:
        yield proc
    finally:
        proc.stop()


def url(srv: ServerProcess) -> str:
    return f"http://127.0.0.1:{srv.ports['websocket']}/http-bind"


def test_session_creation_response(srv: ServerProcess) -> None:
    client = BoshClient(url(srv))
    body = client.create(ack="1")
    # XEP-0124 §7.2 / XEP-0206 §3
    assert body.get("wait") == "2" and body.get("hold") == "1"
    assert body.get("requests") == "2" and body.get("inactivity") == "3"
    assert body.get("from") == "localhost" and body.get("authid")
    assert body.get(f"{{{XBOSH}}}version") == "1.0"
    assert body.get(f"{{{XBOSH}}}restartlogic") == "true"
    assert body.get("ack") == str(client.rid)
    mechanisms = [m.text for m in body.iter(f"{{{SASL}}}mechanism")]
    assert "PLAIN" in mechanisms and "SCRAM-SHA-256" in mechanisms


def test_login_with_plain_and_message_round_trip(srv: ServerProcess) -> None:
    client = BoshClient(url(srv))
    jid = client.login("alice")
    assert jid == "alice@localhost/bosh"
    raw = RawClient(srv)
    raw_jid = raw.login("bob")
    client.post(f"<message xmlns='{CLIENT}' to='{raw_jid}' type='chat'><body>hi bob</body>"
                "</message>")
    assert "hi bob" in raw.read_until(b"</message>")
    raw.send(f"<message to='{jid}' type='chat'><body>hi alice</body></message>")
    reply = client.expect(f"{{{CLIENT}}}message")
    assert reply.findtext(f"{{{CLIENT}}}body") == "hi alice"
    raw.close()
    ended = client.post(type="terminate")  # XEP-0124 §13
    assert ended.get("type") == "terminate"


def test_login_with_scram(srv: ServerProcess) -> None:
    client = BoshClient(url(srv))
    client.create()
    password = "password1"
    bare = f"n=carol,r={secrets.token_urlsafe(18)}"
    challenge = client.expect(
        f"{{{SASL}}}challenge",
        f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{b64(('n,,' + bare).encode())}</auth>")
    first = base64.b64decode(challenge.text or "").decode()
    attrs = dict(part.split("=", 1) for part in first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    without_proof = f"c={b64(b'n,,')},r={attrs['r']}"
    auth_message = f"{bare},{first},{without_proof}".encode()
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    success = client.expect(
        f"{{{SASL}}}success",
        f"<response xmlns='{SASL}'>{b64(f'{without_proof},p={b64(proof)}'.encode())}</response>")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    expected = b64(hmac.digest(server_key, auth_message, "sha256"))
    assert base64.b64decode(success.text or "").decode() == f"v={expected}"
    assert client.restart_and_bind("scram") == "carol@localhost/scram"


def test_lost_response_is_sent_again(srv: ServerProcess) -> None:
    client = BoshClient(url(srv))
    client.login("dave")
    client.rid += 1
    ping = f"<iq xmlns='{CLIENT}' type='get' id='p1' to='localhost'><ping xmlns='{PING}'/></iq>"
    first = client.post_raw(client.rid, ping)
    assert b"p1" in first
    # XEP-0124 §14.3: the same rid again gets exactly the same response, and the ping is
    # not answered twice.
    assert client.post_raw(client.rid, ping) == first
    later = client.post()
    assert b"p1" not in etree.tostring(later)


def test_out_of_order_rids_are_processed_in_order(srv: ServerProcess) -> None:
    client = BoshClient(url(srv))
    client.login("erin")
    first, second = client.rid + 1, client.rid + 2
    client.rid = second
    responses: dict[int, bytes] = {}

    def send(rid: int, iq_id: str) -> None:
        responses[rid] = client.post_raw(
            rid, f"<iq xmlns='{CLIENT}' type='get' id='{iq_id}' to='localhost'>"
                 f"<ping xmlns='{PING}'/></iq>")

    later = threading.Thread(target=send, args=(second, "second"))
    later.start()  # it waits for the missing rid before its payload goes on
    srv.wait_for_log(f"bosh {client.sid}: rid {second}")
    send(first, "first")
    later.join(timeout=20)
    assert not later.is_alive()
    for rid in (first, second):
        client.received.extend(etree.fromstring(responses[rid]))
    results = [client.expect(f"{{{CLIENT}}}iq").get("id") for _ in range(2)]
    assert results == ["first", "second"]


def test_too_many_simultaneous_requests_is_a_policy_violation(srv: ServerProcess) -> None:
    client = BoshClient(url(srv))
    client.create()
    base = client.rid
    outcomes: list[Any] = []

    def send(rid: int) -> None:
        outcomes.append(etree.fromstring(client.post_raw(rid)))

    # rid base+1 never comes, so base+2 and base+3 wait unanswered; a third one is too many.
    waiting = [threading.Thread(target=send, args=(base + n,)) for n in (2, 3)]
    for thread in waiting:
        thread.start()
    srv.wait_for_log(f"bosh {client.sid}: rid {base + 2}")
    srv.wait_for_log(f"bosh {client.sid}: rid {base + 3}")
    body = etree.fromstring(client.post_raw(base + 4))
    assert body.get("condition") == "policy-violation"
    for thread in waiting:
        thread.join(timeout=10)
    assert all(o.get("type") == "terminate" for o in outcomes)


def test_polling_too_often_is_a_policy_violation(srv: ServerProcess) -> None:
    client = BoshClient(url(srv), wait=0, hold=0)
    created = client.create()
    assert created.find(f"{{{STREAM}}}features") is not None  # XEP-0206 §3: without delay
    first = client.post()  # an empty poll, answered empty at once
    assert first.get("type") is None and len(first) == 0
    second = client.post()  # XEP-0124 §12: again, before 'polling' seconds
    assert second.get("type") == "terminate"
    assert second.get("condition") == "policy-violation"


def test_unknown_sid_and_cors(srv: ServerProcess) -> None:
    http = httpx.Client()
    response = http.post(url(srv), content=f"<body xmlns='{BOSH}' rid='5' sid='nope'/>".encode(),
                         headers={"Origin": "http://app.example"})
    body = etree.fromstring(response.content)
    assert body.get("condition") == "item-not-found"
    assert response.headers["access-control-allow-origin"] == "http://app.example"
    preflight = http.options(url(srv), headers={"Origin": "http://app.example",
                                                "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["access-control-allow-methods"]
    other = http.options(url(srv), headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_host_meta_advertises_bosh(srv: ServerProcess) -> None:
    port = srv.ports["websocket"]
    document = httpx.get(f"http://127.0.0.1:{port}/.well-known/host-meta.json").json()
    links = {link["rel"]: link["href"] for link in document["links"]}
    assert links["urn:xmpp:alt-connections:xbosh"] == f"http://127.0.0.1:{port}/http-bind"
    assert links["urn:xmpp:alt-connections:websocket"].startswith("ws://")


def test_inactive_session_ends(srv: ServerProcess) -> None:
    client = BoshClient(url(srv))
    jid = client.login("frank")
    # XEP-0124 §10: with no request for 'inactivity' seconds the session (and stream) ends.
    srv.wait_for_log(f"session {jid} closed")
    gone = client.post()
    assert gone.get("type") == "terminate"
    assert gone.get("condition") == "item-not-found"

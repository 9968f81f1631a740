"""SCRAM-SHA-256-PLUS with tls-server-end-point channel binding (RFC 5802, RFC 5929 §4),
spoken by hand over a raw TLS socket, and the downgrade protection of RFC 5802 §6."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import socket
import ssl

from harness import RawClient, ServerProcess, disconnect, make_client, run

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def mechanisms(features: str) -> list[str]:
    return re.findall(r"<mechanism>([^<]+)</mechanism>", features)


def server_end_point(client: RawClient) -> bytes:
    """RFC 5929 §4.1: the certificate's hash (SHA-256 for SHA-256 signed certificates)."""
    der = client.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    assert der
    return hashlib.sha256(der).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def outcome(client: RawClient) -> str:
    """The server's <success/> or <failure/> element, whole."""
    text = client.read_until(b">")
    closing = b"</success>" if "<success" in text else b"</failure>"
    return text if text.endswith("/>") else text + client.read_until(closing)


def scram_sha256(client: RawClient, user: str, password: str, gs2: str, cbind: bytes,
                 mechanism: str) -> str:
    """Run one SCRAM-SHA-256(-PLUS) exchange; returns the server's final element."""
    bare = f"n={user},r={secrets.token_urlsafe(18)}"
    client.send(f"<auth xmlns='{SASL}' mechanism='{mechanism}'>{b64((gs2 + bare).encode())}</auth>")
    reply = client.read_until(b"</challenge>")
    first = base64.b64decode(reply.split(">", 1)[1].split("<", 1)[0]).decode()
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
    final = outcome(client)
    if "<success" in final:
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        expected = b64(hmac.digest(server_key, auth_message, "sha256"))
        body = base64.b64decode(final.split(">", 1)[1].split("<", 1)[0]).decode()
        assert body == f"v={expected}"  # the server proved it knows the password too
    return final


def test_plus_is_offered_and_authenticates(shared_server: ServerProcess) -> None:
    shared_server.add_user("cbuser", "s3cret-pw")
    plain = RawClient(shared_server)
    plain.open()
    plain.starttls()
    assert mechanisms(plain.open())[:2] == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]
    plain.close()
    client = RawClient(shared_server, tls=True)  # Direct TLS (XEP-0368)
    offered = mechanisms(client.open())
    expected = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1"}
    assert expected <= set(offered)
    final = scram_sha256(client, "cbuser", "s3cret-pw", "p=tls-server-end-point,,",
                         server_end_point(client), "SCRAM-SHA-256-PLUS")
    assert "<success" in final, final
    client.close()


def test_wrong_binding_and_downgrade_fail(shared_server: ServerProcess) -> None:
    shared_server.add_user("cbvictim", "s3cret-pw")
    client = RawClient(shared_server, tls=True)
    client.open()
    # Binding data of another TLS connection (a man in the middle's) does not match.
    final = scram_sha256(client, "cbvictim", "s3cret-pw", "p=tls-server-end-point,,",
                         hashlib.sha256(b"another certificate").digest(), "SCRAM-SHA-256-PLUS")
    assert "<failure" in final and "not-authorized" in final, final
    client.close()
    # "y": the client supports binding but believes the server does not — yet PLUS was offered,
    # so someone stripped it on the way (RFC 5802 §6): refused, whatever the proof.
    client = RawClient(shared_server, tls=True)
    client.open()
    bare = f"n=cbvictim,r={secrets.token_urlsafe(18)}"
    client.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{b64(('y,,' + bare).encode())}"
                "</auth>")
    answer = client.read_until(b"</failure>")
    assert "not-authorized" in answer and "<challenge" not in answer
    client.close()


# --- which bindings a connection offers (XEP-0440), and clients that try the others ---------

SASL_CB = "urn:xmpp:sasl-cb:0"


class TLSClient(RawClient):
    """A direct-TLS raw client pinned to one TLS version."""

    def __init__(self, server: ServerProcess, version: ssl.TLSVersion) -> None:
        self.server = server
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        raw = socket.create_connection(("127.0.0.1", server.tls_port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname=server.domain)
        self.buffer = b""


def binding_types(features: str) -> list[str]:
    """The XEP-0440 channel-binding types advertised in stream features."""
    advertised = re.search(rf"<sasl-channel-binding xmlns=['\"]{SASL_CB}['\"]>(.*?)"
                           r"</sasl-channel-binding>", features)
    assert advertised, features
    return re.findall(r"<channel-binding type=['\"]([^'\"]+)['\"]", advertised.group(1))


def failure(client: RawClient) -> str:
    return client.read_until(b"</failure>")


def test_tls13_offers_only_server_end_point_binding(shared_server: ServerProcess) -> None:
    client = TLSClient(shared_server, ssl.TLSVersion.TLSv1_3)
    features = client.open()
    assert client.sock.version() == "TLSv1.3"  # type: ignore[union-attr]
    # RFC 9266 §3: no tls-unique on TLS 1.3; tls-exporter cannot be computed here.
    assert binding_types(features) == ["tls-server-end-point"]
    assert mechanisms(features)[:2] == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]
    client.close()


def test_tls12_adds_tls_unique_and_binds_with_it(shared_server: ServerProcess) -> None:
    shared_server.add_user("cbunique", "s3cret-pw")
    client = TLSClient(shared_server, ssl.TLSVersion.TLSv1_2)
    features = client.open()
    assert sorted(binding_types(features)) == ["tls-server-end-point", "tls-unique"]
    unique = client.sock.get_channel_binding("tls-unique")  # type: ignore[union-attr]
    assert unique
    final = scram_sha256(client, "cbunique", "s3cret-pw", "p=tls-unique,,", unique,
                         "SCRAM-SHA-256-PLUS")
    assert "<success" in final, final
    client.close()


def test_no_binding_advertised_without_tls(shared_server: ServerProcess) -> None:
    client = RawClient(shared_server)
    features = client.open()
    assert SASL_CB not in features and "-PLUS" not in features
    client.close()


def test_a_client_walking_through_plus_mechanisms_still_gets_in(
        shared_server: ServerProcess) -> None:
    """Poezio's first login: the -PLUS variants with binding types TLS 1.3 cannot give, an
    abort and a malformed step, then plain SCRAM — the stream must survive all of them."""
    shared_server.add_user("cbwalker", "s3cret-pw")
    client = TLSClient(shared_server, ssl.TLSVersion.TLSv1_3)
    client.open()

    def plus_first(mechanism: str, kind: str) -> str:
        first = b64(f"p={kind},,n=cbwalker,r={secrets.token_urlsafe(18)}".encode())
        client.send(f"<auth xmlns='{SASL}' mechanism='{mechanism}'>{first}</auth>")
        return failure(client)

    client.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-512-PLUS'>biws</auth>")
    assert "<invalid-mechanism/>" in failure(client)
    for mechanism in ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"):
        for kind in ("tls-exporter", "tls-unique"):
            answer = plus_first(mechanism, kind)
            # A clear refusal that names the reason (RFC 5802 §7), not a wrong password.
            assert "<invalid-mechanism/>" in answer and "unsupported-channel-binding-type" \
                in answer, answer
    first = b64(f"n,,n=cbwalker,r={secrets.token_urlsafe(18)}".encode())
    client.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")
    client.read_until(b"</challenge>")
    client.send(f"<abort xmlns='{SASL}'/>")
    assert "<aborted/>" in failure(client)
    client.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{b64(b'no header')}</auth>")
    assert "<malformed-request/>" in failure(client)
    final = scram_sha256(client, "cbwalker", "s3cret-pw", "n,,", b"", "SCRAM-SHA-256")
    assert "<success" in final, final
    client.close()
    assert "authentication failed for cbwalker" not in shared_server.log()


def test_only_wrong_passwords_end_the_stream(shared_server: ServerProcess) -> None:
    shared_server.add_user("cbguess", "s3cret-pw")
    client = TLSClient(shared_server, ssl.TLSVersion.TLSv1_3)
    client.open()
    for _ in range(2):
        final = scram_sha256(client, "cbguess", "wrong", "n,,", b"", "SCRAM-SHA-256")
        assert "<not-authorized/>" in final and "<text" not in final, final
    client.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1-PLUS'>"
                f"{b64(b'p=tls-unique,,n=cbguess,r=abcdefgh')}</auth>")
    assert "<invalid-mechanism/>" in failure(client)  # does not use up the last retry
    scram_sha256(client, "cbguess", "wrong", "n,,", b"", "SCRAM-SHA-256")
    rest = client.read_all()
    assert "<policy-violation" in rest and "too many failed attempts" in rest, rest
    assert "authentication failed for cbguess" in shared_server.log()


def test_slixmpp_binds_with_tls_unique_under_tls12_and_logs_in_at_once_under_tls13(
        shared_server: ServerProcess) -> None:
    """slixmpp knows only tls-unique (Python's ssl has no exporter): -PLUS under TLS 1.2,
    plain SCRAM-SHA-256 under TLS 1.3, each on the first attempt."""
    jid = shared_server.add_user("cbslix")

    async def login(version: ssl.TLSVersion) -> str:
        client = make_client(jid, "password1")
        client.ssl_context.minimum_version = client.ssl_context.maximum_version = version
        failures: list[object] = []
        client.add_event_handler("failed_auth", failures.append)
        started = asyncio.get_running_loop().create_future()
        client.add_event_handler("session_start", lambda _: started.set_result(True))
        client.connect(host="127.0.0.1", port=shared_server.c2s_port)
        await asyncio.wait_for(started, 15)
        name: str = client.plugin["feature_mechanisms"].mech.name
        await disconnect(client)
        assert not failures
        return name

    assert run(login(ssl.TLSVersion.TLSv1_2)) == "SCRAM-SHA-256-PLUS"
    assert run(login(ssl.TLSVersion.TLSv1_3)) == "SCRAM-SHA-256"

"""SCRAM-SHA-256-PLUS with tls-server-end-point channel binding (RFC 5802, RFC 5929 §4),
spoken by hand over a raw TLS socket, and the downgrade protection of RFC 5802 §6."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from harness import RawClient, ServerProcess

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

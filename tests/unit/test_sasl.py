from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest

from pubsubd.stream.sasl import (
    PlainServer,
    SaslFailure,
    ScramCredentials,
    ScramServer,
    derive_scram_keys,
    mechanisms_offered,
    verify_password,
)

# Few iterations keep the suite fast; the RFC vectors below use their own 4096.
FAST = 64


def fixed(nonce: str) -> Callable[[], str]:
    return lambda: nonce


def binding(data: dict[str, bytes]) -> Callable[[str], bytes | None]:
    return data.get


class ScramClient:
    """A minimal client side of RFC 5802, written from the spec, to drive the server."""

    def __init__(
        self,
        hash_name: str,
        username: str,
        password: str,
        gs2_header: str = "n,,",
        binding_data: bytes = b"",
        nonce: str = "clientnonce123",
    ) -> None:
        self.algorithm = {"SHA-1": "sha1", "SHA-256": "sha256"}[hash_name]
        self.password = password.encode()
        self.gs2_header = gs2_header
        self.binding_data = binding_data
        name = username.replace("=", "=3D").replace(",", "=2C")
        self.first_bare = f"n={name},r={nonce}"

    def first(self) -> bytes:
        return (self.gs2_header + self.first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(item.split("=", 1) for item in server_first.decode().split(","))
        salted = hashlib.pbkdf2_hmac(
            self.algorithm, self.password, base64.b64decode(attrs["s"]), int(attrs["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", self.algorithm)
        stored_key = hashlib.new(self.algorithm, client_key).digest()
        cbind = base64.b64encode(self.gs2_header.encode() + self.binding_data).decode()
        without_proof = f"c={cbind},r={attrs['r']}"
        auth = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth, self.algorithm)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", self.algorithm)
        self.expected_verifier = b"v=" + base64.b64encode(
            hmac.digest(server_key, auth, self.algorithm)
        )
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def run(server: ScramServer, client: ScramClient, creds: ScramCredentials | None) -> bytes:
    server.start(client.first())
    return server.finish(client.final(server.server_first(creds)))


# --- RFC test vectors -------------------------------------------------------------------------


def test_rfc5802_example_exchange() -> None:
    # RFC 5802 §5
    creds = derive_scram_keys("pencil", "SHA-1", base64.b64decode("QSXCR+Q6sek8bf92"), 4096)
    server = ScramServer("SHA-1", False, nonce_factory=fixed("3rfcNHYJY1ZVvWVs7j"))
    assert server.start(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL") == "user"
    assert server.server_first(creds) == (
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    )
    final = server.finish(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    )
    assert final == b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="


def test_rfc7677_example_exchange() -> None:
    # RFC 7677 §3
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    creds = derive_scram_keys("pencil", "SHA-256", salt, 4096)
    server = ScramServer("SHA-256", False, nonce_factory=fixed("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"))
    server.start(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert server.server_first(creds) == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = server.finish(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


# --- full exchanges ---------------------------------------------------------------------------


@pytest.mark.parametrize("hash_name", ["SHA-1", "SHA-256"])
def test_exchange_succeeds_and_verifier_matches(hash_name: str) -> None:
    creds = derive_scram_keys("s3cret", hash_name, iterations=FAST)
    client = ScramClient(hash_name, "juliet", "s3cret")
    assert run(ScramServer(hash_name, False), client, creds) == client.expected_verifier


def test_wrong_password_is_not_authorized() -> None:
    creds = derive_scram_keys("s3cret", "SHA-256", iterations=FAST)
    with pytest.raises(SaslFailure) as info:
        run(ScramServer("SHA-256", False), ScramClient("SHA-256", "juliet", "guess"), creds)
    assert info.value.condition == "not-authorized"
    assert info.value.credentials  # counts toward the retry limit (RFC 6120 §6.4.5)


def test_unknown_user_looks_like_a_known_one_then_fails() -> None:
    client = ScramClient("SHA-256", "nobody", "x")
    first_a = ScramServer("SHA-256", False)
    first_a.start(client.first())
    challenge_a = dict(kv.split("=", 1) for kv in first_a.server_first(None).decode().split(","))
    first_b = ScramServer("SHA-256", False)
    first_b.start(client.first())
    challenge_b = dict(kv.split("=", 1) for kv in first_b.server_first(None).decode().split(","))
    # Same salt every time for one name, like a real account; standard iteration count.
    assert challenge_a["s"] == challenge_b["s"]
    assert len(base64.b64decode(challenge_a["s"])) == 16
    assert challenge_a["i"] == "4096"
    with pytest.raises(SaslFailure) as info:
        first_a.finish(client.final(b",".join(f"{k}={v}".encode() for k, v in challenge_a.items())))
    assert info.value.condition == "not-authorized"


def test_username_and_authzid_escaping() -> None:
    creds = derive_scram_keys("pw", "SHA-256", iterations=FAST)
    client = ScramClient("SHA-256", "a,b=c", "pw", gs2_header="n,a=x=2Cy=3D,")
    server = ScramServer("SHA-256", False)
    assert server.start(client.first()) == "a,b=c"
    assert server.authzid == "x,y="
    assert server.finish(client.final(server.server_first(creds))) == client.expected_verifier


# --- channel binding --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tls-exporter", "tls-server-end-point"])
def test_plus_with_matching_binding(kind: str) -> None:
    data = b"\x01binding-data\xff"
    creds = derive_scram_keys("pw", "SHA-256", iterations=FAST)
    client = ScramClient("SHA-256", "u", "pw", gs2_header=f"p={kind},,", binding_data=data)
    server = ScramServer("SHA-256", True, binding({kind: data}))
    assert run(server, client, creds) == client.expected_verifier
    assert server.channel_binding_type == kind


def test_plus_with_tampered_binding_fails() -> None:
    creds = derive_scram_keys("pw", "SHA-256", iterations=FAST)
    client = ScramClient(
        "SHA-256", "u", "pw", gs2_header="p=tls-exporter,,", binding_data=b"attacker's"
    )
    server = ScramServer("SHA-256", True, binding({"tls-exporter": b"real"}))
    with pytest.raises(SaslFailure, match="channel binding") as info:
        run(server, client, creds)
    assert info.value.condition == "not-authorized"
    assert not info.value.credentials  # the proof was right: no password guessing


def test_tampered_binding_with_a_wrong_password_is_a_credential_failure() -> None:
    creds = derive_scram_keys("pw", "SHA-256", iterations=FAST)
    client = ScramClient(
        "SHA-256", "u", "guess", gs2_header="p=tls-exporter,,", binding_data=b"attacker's"
    )
    server = ScramServer("SHA-256", True, binding({"tls-exporter": b"real"}))
    with pytest.raises(SaslFailure) as info:
        run(server, client, creds)
    assert info.value.credentials


def test_y_flag_when_plus_advertised_is_a_downgrade() -> None:
    # RFC 5802 §6: "y" while the server supports binding means -PLUS was stripped.
    server = ScramServer("SHA-256", False, binding({"tls-exporter": b"real"}))
    with pytest.raises(SaslFailure, match="downgrade") as info:
        server.start(b"y,,n=u,r=abc")
    assert info.value.condition == "not-authorized"


def test_y_flag_without_binding_support_is_accepted() -> None:
    creds = derive_scram_keys("pw", "SHA-1", iterations=FAST)
    client = ScramClient("SHA-1", "u", "pw", gs2_header="y,,")
    assert run(ScramServer("SHA-1", False), client, creds) == client.expected_verifier


def test_y_flag_with_explicit_binding_advertised() -> None:
    server = ScramServer("SHA-1", False, binding_advertised=True)
    with pytest.raises(SaslFailure, match="downgrade"):
        server.start(b"y,,n=u,r=abc")


@pytest.mark.parametrize(
    ("plus", "first"),
    [
        (True, b"n,,n=u,r=abc"),  # -PLUS chosen but no binding
        (False, b"p=tls-exporter,,n=u,r=abc"),  # binding without -PLUS
    ],
)
def test_binding_flag_must_match_mechanism(plus: bool, first: bytes) -> None:
    server = ScramServer("SHA-256", plus, binding({"tls-exporter": b"x"}))
    with pytest.raises(SaslFailure) as info:
        server.start(first)
    assert info.value.condition == "malformed-request"
    assert not info.value.credentials


@pytest.mark.parametrize("kind", ["tls-made-up", "tls-exporter"])
def test_unsupported_or_unavailable_binding_type(kind: str) -> None:
    # RFC 5802 §7 unsupported-channel-binding-type: refused like an unknown mechanism, so
    # the client moves on; it is no evidence of a wrong password.
    server = ScramServer("SHA-256", True, binding({"tls-server-end-point": b"x"}))
    with pytest.raises(SaslFailure, match="unsupported-channel-binding-type") as info:
        server.start(f"p={kind},,n=u,r=abc".encode())
    assert info.value.condition == "invalid-mechanism"
    assert not info.value.credentials


def test_for_mechanism() -> None:
    server = ScramServer.for_mechanism("SCRAM-SHA-1-PLUS", binding({"tls-exporter": b"x"}))
    assert (server.hash_name, server.plus, server.mechanism) == ("SHA-1", True, "SCRAM-SHA-1-PLUS")
    with pytest.raises(SaslFailure) as info:
        ScramServer.for_mechanism("SCRAM-MD5")
    assert info.value.condition == "invalid-mechanism"


# --- malformed messages -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        b"",
        b"n,,",
        b"x,,n=u,r=abc",
        b"n,,r=abc",
        b"n,,n=u",
        b"n,,n=,r=abc",
        b"n,,n=a=2Xb,r=abc",
        b"n,,n=u,r=a\x7fb",
        b"n,,m=ext,n=u,r=abc",
        b"n,b=x,n=u,r=abc",
        b"n,,n=\xff,r=abc",
    ],
)
def test_malformed_client_first(first: bytes) -> None:
    with pytest.raises(SaslFailure) as info:
        ScramServer("SHA-256", False).start(first)
    assert info.value.condition == "malformed-request"


def _started(creds: ScramCredentials) -> tuple[ScramServer, ScramClient, bytes]:
    client = ScramClient("SHA-256", "u", "pw")
    server = ScramServer("SHA-256", False, nonce_factory=fixed("SERVER"))
    server.start(client.first())
    return server, client, server.server_first(creds)


@pytest.mark.parametrize(
    ("final", "condition"),
    [
        (b"c=biws,r=clientnonce123SERVER", "malformed-request"),  # no proof
        (b"c=bi!s,r=clientnonce123SERVER,p=AAAA", "malformed-request"),
        (b"c=biws,r=clientnonce123SERVER,p=AAAA", "not-authorized"),  # short proof
        (b"r=clientnonce123SERVER,c=biws,p=AAAA", "malformed-request"),  # order
    ],
)
def test_malformed_client_final(final: bytes, condition: str) -> None:
    server, _, _ = _started(derive_scram_keys("pw", "SHA-256", iterations=FAST))
    with pytest.raises(SaslFailure) as info:
        server.finish(final)
    assert info.value.condition == condition


def test_nonce_mismatch_fails() -> None:
    server, client, server_first = _started(derive_scram_keys("pw", "SHA-256", iterations=FAST))
    tampered = server_first.replace(b"SERVER", b"OTHER")
    with pytest.raises(SaslFailure, match="nonce"):
        server.finish(client.final(tampered))


def test_steps_out_of_order_are_a_programming_error() -> None:
    server = ScramServer("SHA-256", False)
    with pytest.raises(RuntimeError):
        server.finish(b"c=biws,r=x,p=AAAA")


# --- slixmpp's client against our server, without sockets -------------------------------------


def _slixmpp_client(
    mechanism: str, tls_version: str | None, binding_data: bytes | None, proposed: bool
) -> object:
    from slixmpp.util.sasl.mechanisms import SCRAM

    credentials = {
        "username": b"juliet",
        "password": b"r0meo!",
        "authzid": b"",
        "channel_binding": binding_data,
    }
    security = {
        "encrypted": True,
        "unencrypted_scram": True,
        "tls_version": tls_version,
        "binding_proposed": proposed,
    }
    return SCRAM(mechanism, credentials, security)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_slixmpp_client_interoperates(mechanism: str) -> None:
    client = _slixmpp_client(mechanism, "TLSv1.3", None, proposed=False)
    hash_name = mechanism.removeprefix("SCRAM-")
    creds = derive_scram_keys("r0meo!", hash_name, iterations=FAST)
    # slixmpp sends "y" when the server did not offer -PLUS: accepted without binding support.
    server = ScramServer(hash_name, False)
    first = client.process()  # type: ignore[attr-defined]
    assert server.start(first) == "juliet"
    final = client.process(server.server_first(creds))  # type: ignore[attr-defined]
    client.process(server.finish(final))  # type: ignore[attr-defined]  # checks v=
    assert client._mutual_auth  # type: ignore[attr-defined]


def test_slixmpp_client_plus_tls_exporter_interoperates() -> None:
    data = b"exporter-keying-material-32-byte"
    client = _slixmpp_client("SCRAM-SHA-256-PLUS", "TLSv1.3", data, proposed=True)
    creds = derive_scram_keys("r0meo!", "SHA-256", iterations=FAST)
    server = ScramServer("SHA-256", True, binding({"tls-exporter": data}))
    server.start(client.process())  # type: ignore[attr-defined]
    assert server.channel_binding_type == "tls-exporter"
    final = client.process(server.server_first(creds))  # type: ignore[attr-defined]
    client.process(server.finish(final))  # type: ignore[attr-defined]
    assert client._mutual_auth  # type: ignore[attr-defined]


def test_slixmpp_client_plus_tls_unique_on_tls12_interoperates() -> None:
    # slixmpp binds with tls-unique below TLS 1.3, the only type Python's ssl gives it.
    data = b"finished-message"
    client = _slixmpp_client("SCRAM-SHA-1-PLUS", "TLSv1.2", data, proposed=True)
    creds = derive_scram_keys("r0meo!", "SHA-1", iterations=FAST)
    server = ScramServer("SHA-1", True, binding({"tls-unique": data}))
    server.start(client.process())  # type: ignore[attr-defined]
    assert server.channel_binding_type == "tls-unique"
    final = client.process(server.server_first(creds))  # type: ignore[attr-defined]
    client.process(server.finish(final))  # type: ignore[attr-defined]
    assert client._mutual_auth  # type: ignore[attr-defined]


def test_slixmpp_without_binding_while_plus_offered_sends_n_and_succeeds() -> None:
    # On TLS 1.3 slixmpp has no binding data, skips -PLUS and sends "n" (no downgrade claim).
    client = _slixmpp_client("SCRAM-SHA-256", "TLSv1.3", None, proposed=True)
    creds = derive_scram_keys("r0meo!", "SHA-256", iterations=FAST)
    server = ScramServer("SHA-256", False, binding({"tls-exporter": b"x"}))
    first = client.process()  # type: ignore[attr-defined]
    assert first.startswith(b"n,,")
    server.start(first)
    final = client.process(server.server_first(creds))  # type: ignore[attr-defined]
    client.process(server.finish(final))  # type: ignore[attr-defined]
    assert client._mutual_auth  # type: ignore[attr-defined]


def test_slixmpp_client_with_wrong_binding_is_rejected() -> None:
    client = _slixmpp_client("SCRAM-SHA-256-PLUS", "TLSv1.3", b"other", proposed=True)
    creds = derive_scram_keys("r0meo!", "SHA-256", iterations=FAST)
    server = ScramServer("SHA-256", True, binding({"tls-exporter": b"mine"}))
    server.start(client.process())  # type: ignore[attr-defined]
    final = client.process(server.server_first(creds))  # type: ignore[attr-defined]
    with pytest.raises(SaslFailure):
        server.finish(final)


# --- keys, PLAIN, offered mechanisms ----------------------------------------------------------


def test_derive_scram_keys_defaults_and_errors() -> None:
    a = derive_scram_keys("pw", "SHA-256", iterations=FAST)
    b = derive_scram_keys("pw", "SHA-256", iterations=FAST)
    assert a.salt != b.salt and len(a.salt) == 16
    assert len(a.stored_key) == len(a.server_key) == 32
    assert len(derive_scram_keys("pw", "SHA-1", iterations=FAST).stored_key) == 20
    assert derive_scram_keys("pw", "SHA-256").iterations == 4096
    with pytest.raises(ValueError):
        derive_scram_keys("pw", "MD5")
    with pytest.raises(ValueError):
        derive_scram_keys("", "SHA-256")


def test_password_is_normalized_before_hashing() -> None:
    # OpaqueString maps non-ASCII spaces to U+0020 and applies NFC.
    salt = b"0123456789abcdef"
    a = derive_scram_keys("pass\u00a0word\u0065\u0301", "SHA-256", salt, FAST)
    b = derive_scram_keys("pass word\u00e9", "SHA-256", salt, FAST)
    assert a == b


def test_verify_password() -> None:
    creds = derive_scram_keys("correct horse", "SHA-256", iterations=FAST)
    assert verify_password("correct horse", creds, "SHA-256")
    assert not verify_password("correct horsf", creds, "SHA-256")
    assert not verify_password("", creds, "SHA-256")
    sha1 = derive_scram_keys("correct horse", "SHA-1", iterations=FAST)
    assert verify_password("correct horse", sha1, "SHA-1")


def test_plain_check() -> None:
    assert PlainServer.check(b"\0juliet\0pw") == (None, "juliet", "pw")
    assert PlainServer.check(b"admin@x\0juliet\0p\xc3\xa9") == ("admin@x", "juliet", "p\u00e9")
    too_long = b"\0j\0" + b"p" * 256
    for bad in [b"juliet\0pw", b"\0\0pw", b"\0juliet\0", b"a\0b\0c\0d", b"\0j\0\xff", too_long]:
        with pytest.raises(SaslFailure) as info:
            PlainServer.check(bad)
        assert info.value.condition == "malformed-request"


def test_mechanisms_offered() -> None:
    assert mechanisms_offered(True, False, ["tls-exporter"]) == [
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "PLAIN",
    ]
    assert mechanisms_offered(True, False, []) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
    assert mechanisms_offered(True, False, ["tls-made-up"])[0] == "SCRAM-SHA-256"
    assert mechanisms_offered(False, False, ["tls-exporter"]) == ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    assert mechanisms_offered(False, True, []) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


def test_unknown_condition_is_rejected() -> None:
    with pytest.raises(ValueError):
        SaslFailure("nope")  # type: ignore[arg-type]

"""Sans-I/O server side of the SASL mechanisms we offer: SCRAM-SHA-*(-PLUS) and PLAIN.

Nothing here touches a socket or an event loop: the negotiation layer base64-decodes the
``<auth/>``/``<response/>`` payloads (RFC 6120 §6.4), feeds the bytes in, and turns the
returned bytes or the raised :class:`SaslFailure` into stanzas. Passwords are never stored:
an account keeps only :class:`ScramCredentials` (RFC 5802 §3), and PLAIN is checked by
re-deriving those keys (:func:`verify_password`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from precis_i18n import get_profile

__all__ = [
    "CHANNEL_BINDING_TYPES",
    "PlainServer",
    "SaslCondition",
    "SaslFailure",
    "ScramCredentials",
    "ScramServer",
    "default_nonce",
    "derive_scram_keys",
    "mechanisms_offered",
    "verify_password",
]

# RFC 6120 §6.5: the defined <failure/> conditions.
SaslCondition = Literal[
    "aborted",
    "account-disabled",
    "credentials-expired",
    "encryption-required",
    "incorrect-encoding",
    "invalid-authzid",
    "invalid-mechanism",
    "malformed-request",
    "mechanism-too-weak",
    "not-authorized",
    "temporary-auth-failure",
]
_CONDITIONS: Final = frozenset(get_args(SaslCondition))

# Binding types we verify, best first. tls-unique (RFC 5929 §3) is undefined for TLS 1.3
# (RFC 9266 §3): the caller's channel_binding callback must return None for it there. It is
# accepted on TLS 1.2 because clients built on Python's ssl module (slixmpp) only know it.
CHANNEL_BINDING_TYPES: Final = ("tls-exporter", "tls-server-end-point", "tls-unique")

_HASHES: Final = {"SHA-1": "sha1", "SHA-256": "sha256"}  # RFC 5802, RFC 7677
_DEFAULT_ITERATIONS: Final = 4096  # RFC 7677 §4: at least 4096
_SALT_BYTES: Final = 16
_PASSWORD_PROFILE = get_profile("OpaqueString")  # RFC 8265 successor of SASLprep (RFC 4013)
# Keyed hash that gives unknown users a stable salt, so probing a name twice does not
# reveal that it has no account (RFC 5802 §9 recommends hiding user existence).
_FAKE_SALT_KEY: Final = secrets.token_bytes(32)


class SaslFailure(Exception):
    """Authentication failed; ``condition`` is the RFC 6120 §6.5 element to send.

    ``credentials``: the client proved it does not know the password (a wrong proof or
    password, or an unknown user). Only such failures count toward the retry limit of
    RFC 6120 §6.4.5 and the guessing throttle; a malformed message or a channel-binding
    type the connection cannot give says nothing about the password.
    """

    def __init__(self, condition: SaslCondition, text: str | None = None, *,
                 credentials: bool = False) -> None:
        if condition not in _CONDITIONS:
            raise ValueError(f"unknown SASL condition {condition!r}")
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition: SaslCondition = condition
        self.text = text
        self.credentials = credentials


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What an account stores for one SCRAM hash (RFC 5802 §3): never the password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def _hashlib_name(hash_name: str) -> str:
    try:
        return _HASHES[hash_name.upper()]
    except KeyError:
        raise ValueError(f"unsupported SCRAM hash {hash_name!r}") from None


def _prepare_password(password: str) -> bytes:
    """Normalize a password before hashing (RFC 5802 §2.2 Normalize(); see module note)."""
    try:
        prepared: str = _PASSWORD_PROFILE.enforce(password)
    except UnicodeError as exc:
        raise ValueError(f"password not allowed: {exc}") from None
    return prepared.encode("utf-8")


def derive_scram_keys(
    password: str, hash_name: str, salt: bytes | None = None, iterations: int = _DEFAULT_ITERATIONS
) -> ScramCredentials:
    """Derive StoredKey and ServerKey from a password (RFC 5802 §3); ValueError if unusable."""
    algorithm = _hashlib_name(hash_name)
    if iterations < 1:
        raise ValueError("iterations must be positive")
    if salt is None:
        salt = secrets.token_bytes(_SALT_BYTES)
    salted = hashlib.pbkdf2_hmac(algorithm, _prepare_password(password), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", algorithm)
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(algorithm, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", algorithm),
    )


def verify_password(password: str, creds: ScramCredentials, hash_name: str = "SHA-256") -> bool:
    """True if ``password`` derives ``creds`` (how PLAIN is checked without stored passwords)."""
    try:
        derived = derive_scram_keys(password, hash_name, creds.salt, creds.iterations)
    except ValueError:
        return False
    return hmac.compare_digest(derived.stored_key, creds.stored_key)


def default_nonce() -> str:
    """A fresh server nonce: 24 printable characters without ',' (RFC 5802 §5.1 'r')."""
    return base64.b64encode(secrets.token_bytes(18)).decode("ascii")


def _no_channel_binding(_kind: str) -> bytes | None:
    return None


def mechanisms_offered(
    tls: bool, allow_plain_without_tls: bool, channel_bindings: list[str]
) -> list[str]:
    """Mechanism names to advertise, strongest first.

    -PLUS needs TLS and a binding type we can compute; PLAIN sends the password itself and so
    is kept for TLS unless the operator explicitly allows it (RFC 6120 §13.8, §6.4.1).
    """
    offered: list[str] = []
    if tls and any(kind in CHANNEL_BINDING_TYPES for kind in channel_bindings):
        offered += ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]
    offered += ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    if tls or allow_plain_without_tls:
        offered.append("PLAIN")
    return offered


def _decode_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslFailure("malformed-request", "not UTF-8") from None


def _unescape_saslname(value: str) -> str:
    """Undo RFC 5802 §5.1 saslname escaping ('=2C' is ',', '=3D' is '=')."""
    if not value:
        raise SaslFailure("malformed-request", "empty name")
    if "\0" in value:
        raise SaslFailure("malformed-request", "NUL in name")
    parts = value.split("=")
    out = [parts[0]]
    for part in parts[1:]:
        if part[:2] == "2C":
            out.append("," + part[2:])
        elif part[:2] == "3D":
            out.append("=" + part[2:])
        else:
            raise SaslFailure("malformed-request", "bad '=' escape in name")
    return "".join(out)


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SaslFailure("malformed-request", f"invalid base64 in {what}") from None


def _valid_nonce(nonce: str) -> bool:
    # RFC 5802 §7: printable = %x21-2B / %x2D-7E
    return bool(nonce) and all(0x21 <= ord(ch) <= 0x7E and ch != "," for ch in nonce)


def _attribute(item: str, key: str) -> str:
    if not item.startswith(key + "="):
        raise SaslFailure("malformed-request", f"expected attribute {key!r}")
    return item[len(key) + 1 :]


class ScramServer:
    """One server-side SCRAM exchange (RFC 5802 §5), single use.

    Call :meth:`start`, look the returned username up, then :meth:`server_first` with its
    credentials (``None`` if there is no such account), then :meth:`finish`.
    """

    def __init__(
        self,
        hash_name: str,
        plus: bool,
        channel_binding: Callable[[str], bytes | None] = _no_channel_binding,
        nonce_factory: Callable[[], str] = default_nonce,
        *,
        binding_advertised: bool | None = None,
    ) -> None:
        """``plus``: the client chose the -PLUS variant. ``channel_binding(type)`` returns the
        binding data of this connection, or None if that type is unavailable.
        ``binding_advertised``: whether -PLUS was offered on this connection; by default, it
        was iff any supported binding type is available (used to detect downgrades)."""
        self._algorithm = _hashlib_name(hash_name)
        self.hash_name = hash_name.upper()
        self.plus = plus
        self._channel_binding = channel_binding
        self._nonce_factory = nonce_factory
        if binding_advertised is None:
            binding_advertised = plus or any(
                channel_binding(kind) is not None for kind in CHANNEL_BINDING_TYPES
            )
        self._binding_advertised = binding_advertised
        self._step = 0
        self.username: str | None = None
        self.authzid: str | None = None
        self.channel_binding_type: str | None = None
        self._gs2_header = b""
        self._binding_data = b""
        self._client_first_bare = ""
        self._client_nonce = ""
        self._nonce = ""
        self._server_first = ""
        self._creds: ScramCredentials | None = None
        self._known_user = False

    @classmethod
    def for_mechanism(
        cls,
        mechanism: str,
        channel_binding: Callable[[str], bytes | None] = _no_channel_binding,
        nonce_factory: Callable[[], str] = default_nonce,
        *,
        binding_advertised: bool | None = None,
    ) -> ScramServer:
        """Build the server for a mechanism name such as ``SCRAM-SHA-256-PLUS``."""
        name = mechanism.upper()
        plus = name.endswith("-PLUS")
        if plus:
            name = name[: -len("-PLUS")]
        if not name.startswith("SCRAM-") or name[len("SCRAM-") :] not in _HASHES:
            raise SaslFailure("invalid-mechanism", mechanism)
        return cls(
            name[len("SCRAM-") :],
            plus,
            channel_binding,
            nonce_factory,
            binding_advertised=binding_advertised,
        )

    @property
    def mechanism(self) -> str:
        return f"SCRAM-{self.hash_name}" + ("-PLUS" if self.plus else "")

    def _advance(self, expected: int) -> None:
        if self._step != expected:
            raise RuntimeError("SCRAM steps called out of order")
        self._step = expected + 1

    def start(self, client_first: bytes) -> str:
        """Parse client-first-message; return the authentication identity (the username).

        The username comes back unescaped but not otherwise prepared: the caller applies
        its account-name rules (for XMPP, the localpart profile of RFC 7622 §3.3).
        """
        self._advance(0)
        text = _decode_utf8(client_first)
        flag, sep1, rest = text.partition(",")
        authzid, sep2, bare = rest.partition(",")
        if not (sep1 and sep2):
            raise SaslFailure("malformed-request", "missing GS2 header")
        self._check_gs2_flag(flag)
        if authzid:
            self.authzid = _unescape_saslname(_attribute(authzid, "a"))
        items = bare.split(",")
        if items[0].startswith("m="):
            # RFC 5802 §5.1: reserved for mandatory extensions; we support none.
            raise SaslFailure("malformed-request", "unsupported mandatory extension")
        if len(items) < 2:
            raise SaslFailure("malformed-request", "client-first-message too short")
        username = _unescape_saslname(_attribute(items[0], "n"))
        nonce = _attribute(items[1], "r")
        if not _valid_nonce(nonce):
            raise SaslFailure("malformed-request", "invalid client nonce")
        self._gs2_header = f"{flag},{authzid},".encode()
        self._client_first_bare = bare
        self._client_nonce = nonce
        self.username = username
        return username

    def _check_gs2_flag(self, flag: str) -> None:
        """Apply the channel-binding negotiation rules of RFC 5802 §6."""
        if flag == "n" or flag == "y":
            if self.plus:
                raise SaslFailure("malformed-request", "-PLUS mechanism without channel binding")
            if flag == "y" and self._binding_advertised:
                # The client supports binding but thinks we do not: -PLUS was stripped
                # from our feature list on the way (RFC 5802 §6, downgrade detection).
                raise SaslFailure("not-authorized", "channel binding downgrade detected")
            return
        if not flag.startswith("p="):
            raise SaslFailure("malformed-request", "invalid GS2 channel-binding flag")
        if not self.plus:
            raise SaslFailure("malformed-request", "channel binding requested without -PLUS")
        kind = flag[2:]
        data = self._channel_binding(kind) if kind in CHANNEL_BINDING_TYPES else None
        if data is None:
            # RFC 5802 §7 'unsupported-channel-binding-type': this connection cannot give that
            # binding (tls-unique under TLS 1.3, RFC 9266 §3). Like an unknown mechanism, it
            # says nothing about the password; the client can pick another mechanism.
            raise SaslFailure("invalid-mechanism",
                              f"unsupported-channel-binding-type {kind!r} on this connection")
        self.channel_binding_type = kind
        self._binding_data = data

    def server_first(self, creds: ScramCredentials | None) -> bytes:
        """Build server-first-message; ``None`` gives an unknown user a plausible challenge."""
        self._advance(1)
        if creds is None:
            assert self.username is not None
            salt = hmac.digest(_FAKE_SALT_KEY, self.username.encode(), "sha256")[:_SALT_BYTES]
            size = hashlib.new(self._algorithm).digest_size
            creds = ScramCredentials(
                salt, _DEFAULT_ITERATIONS, secrets.token_bytes(size), secrets.token_bytes(size)
            )
        else:
            self._known_user = True
        self._creds = creds
        server_nonce = self._nonce_factory()
        if not _valid_nonce(server_nonce):
            raise ValueError("nonce_factory produced an invalid nonce")
        self._nonce = self._client_nonce + server_nonce
        salt_b64 = base64.b64encode(creds.salt).decode("ascii")
        self._server_first = f"r={self._nonce},s={salt_b64},i={creds.iterations}"
        return self._server_first.encode("ascii")

    def finish(self, client_final: bytes) -> bytes:
        """Verify client-final-message; return server-final-message (``v=...``)."""
        self._advance(2)
        assert self._creds is not None
        text = _decode_utf8(client_final)
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise SaslFailure("malformed-request", "missing proof")
        items = without_proof.split(",")
        if len(items) < 2:
            raise SaslFailure("malformed-request", "client-final-message too short")
        binding = _b64decode(_attribute(items[0], "c"), "channel binding")
        nonce = _attribute(items[1], "r")
        proof = _b64decode(proof_b64, "proof")
        # RFC 5802 §6 / RFC 5929 / RFC 9266: c= is the GS2 header followed by the binding data.
        binding_ok = hmac.compare_digest(binding, self._gs2_header + self._binding_data)
        nonce_ok = hmac.compare_digest(nonce.encode(), self._nonce.encode())
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = hmac.digest(self._creds.stored_key, auth_message, self._algorithm)
        if len(proof) != len(signature):
            raise SaslFailure("not-authorized", "wrong proof length", credentials=True)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        key_ok = hmac.compare_digest(
            hashlib.new(self._algorithm, client_key).digest(), self._creds.stored_key
        )
        if not nonce_ok:
            raise SaslFailure("not-authorized", "nonce mismatch", credentials=True)
        if not (key_ok and self._known_user):
            raise SaslFailure("not-authorized", credentials=True)
        if not binding_ok:
            # The proof is right, so this is not password guessing: the client's TLS session
            # is not ours (a man in the middle, RFC 5929 §2) or it computed the binding wrongly.
            raise SaslFailure("not-authorized", "channel binding mismatch")
        verifier = hmac.digest(self._creds.server_key, auth_message, self._algorithm)
        return b"v=" + base64.b64encode(verifier)


class PlainServer:
    """PLAIN (RFC 4616): parse the message; the caller checks it with :func:`verify_password`."""

    _MAX_FIELD_OCTETS: Final = 255  # RFC 4616 §2

    @staticmethod
    def check(message: bytes) -> tuple[str | None, str, str]:
        """Split ``[authzid] NUL authcid NUL passwd`` into ``(authzid, authcid, password)``."""
        fields = message.split(b"\0")
        if len(fields) != 3:
            raise SaslFailure("malformed-request", "PLAIN needs exactly two NUL separators")
        for field in fields:
            if len(field) > PlainServer._MAX_FIELD_OCTETS:
                raise SaslFailure("malformed-request", "PLAIN field too long")
        authzid, authcid, password = (_decode_utf8(field) for field in fields)
        if not authcid or not password:
            raise SaslFailure("malformed-request", "empty PLAIN username or password")
        return (authzid or None, authcid, password)

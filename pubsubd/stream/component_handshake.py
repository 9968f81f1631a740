"""XEP-0114 component handshake, both sides, without I/O.

The component proves it knows the shared secret by sending the hex SHA-1 of the server's stream
id followed by the secret (XEP-0114 §3); the server answers an empty ``<handshake/>`` or closes
the stream with a stream error.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from pubsubd import ns
from pubsubd.errors import StreamCondition, StreamError
from pubsubd.stream.parser import StreamOpened

HANDSHAKE_TAGS = (ns.clark(ns.COMPONENT, "handshake"), ns.clark(ns.CLIENT, "handshake"))


def digest(stream_id: str, secret: str) -> str:
    """XEP-0114 §3: lowercase hex SHA-1 of the concatenated stream id and secret."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


def stream_header(domain: str, *, stream_id: str | None = None, initiator: bool) -> bytes:
    """The component stream header: ``to`` from the component, ``from`` and ``id`` from the
    server (XEP-0114 §3, Examples 1 and 2)."""
    attrs = f" to={quoteattr(domain)}" if initiator else f" from={quoteattr(domain)}"
    if stream_id is not None:
        attrs += f" id={quoteattr(stream_id)}"
    return (f"<?xml version='1.0'?><stream:stream xmlns='{ns.COMPONENT}' "
            f"xmlns:stream='{ns.STREAM}'{attrs}>").encode()


@dataclass(frozen=True, slots=True)
class Accepted:
    """The header was acceptable: send ``reply``, then wait for the handshake."""

    domain: str
    stream_id: str
    reply: bytes


class AcceptHandshake:
    """The server side: judge the header, then the handshake.

    ``secrets_by_domain`` maps each component domain to its secret. The caller sends the reply
    header even when :meth:`on_header` raises, so the stream error has a stream to live in.
    """

    def __init__(self, secrets_by_domain: Mapping[str, str]) -> None:
        self._secrets = secrets_by_domain
        self.stream_id = secrets.token_hex(12)
        self.domain: str | None = None

    def reply_header(self, requested: str | None) -> bytes:
        return stream_header(requested or "", stream_id=self.stream_id, initiator=False)

    def on_header(self, header: StreamOpened) -> Accepted:
        if header.default_ns != ns.COMPONENT:
            # RFC 6120 §4.9.3.10, applied to the component namespace.
            raise StreamError(StreamCondition.INVALID_NAMESPACE,
                              f"expected {ns.COMPONENT}")
        if header.stream_prefix != "stream":
            raise StreamError(StreamCondition.BAD_NAMESPACE_PREFIX, "use the 'stream' prefix")
        to = (header.to or "").lower()
        if to not in self._secrets:
            # XEP-0114 §3: a domain the server does not know as a component.
            raise StreamError(StreamCondition.HOST_UNKNOWN, f"{to or 'no domain'} is not a "
                              "component of this server")
        self.domain = to
        return Accepted(to, self.stream_id, self.reply_header(to))

    def on_handshake(self, value: str | None) -> bytes:
        """Check the handshake; the bytes of the success answer, or ``not-authorized``."""
        assert self.domain is not None, "on_header first"
        expected = digest(self.stream_id, self._secrets[self.domain])
        given = (value or "").strip().lower()
        # XEP-0114 §3: a wrong digest is a not-authorized stream error.
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise StreamError(StreamCondition.NOT_AUTHORIZED, "wrong handshake")
        return f"<handshake xmlns='{ns.COMPONENT}'/>".encode()


class ConnectHandshake:
    """The component side (``pubsubd component``): header, then the digest of the server's id."""

    def __init__(self, domain: str, secret: str) -> None:
        self.domain = domain
        self._secret = secret

    def opening(self) -> bytes:
        return stream_header(self.domain, initiator=True)

    def on_header(self, header: StreamOpened) -> bytes:
        if header.default_ns != ns.COMPONENT:
            raise StreamError(StreamCondition.INVALID_NAMESPACE, f"expected {ns.COMPONENT}")
        stream_id = header.attrs.get("id")
        if not stream_id:
            raise StreamError(StreamCondition.INVALID_XML, "the server sent no stream id")
        return f"<handshake>{digest(stream_id, self._secret)}</handshake>".encode()

    @staticmethod
    def succeeded(tag: str) -> bool:
        return tag in HANDSHAKE_TAGS

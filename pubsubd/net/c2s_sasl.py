"""SASL on a client stream (RFC 6120 §6): PLAIN, SCRAM with channel binding, retry limits.

A mixin of :class:`~pubsubd.net.c2s.C2SConnection`: the exchange reads and sets the
connection's negotiation state, so it lives on the connection rather than beside it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import ssl
from typing import TYPE_CHECKING

import trio
from cryptography import x509

from pubsubd import ns
from pubsubd.core.context import ServerContext
from pubsubd.errors import StreamCondition, StreamError
from pubsubd.jid import JID, InvalidJID, prepare_localpart
from pubsubd.logging_setup import ContextAdapter
from pubsubd.net.c2s_state import State, StreamRestart
from pubsubd.stream.sasl import (
    PlainServer,
    SaslFailure,
    ScramServer,
    mechanisms_offered,
    verify_password,
)

if TYPE_CHECKING:
    from lxml import etree

    from pubsubd.storage.accounts import Account

MAX_SASL_ATTEMPTS = 3  # RFC 6120 §6.4.5: allow a configurable number of retries (at least 2)
# Refusals that are not wrong credentials (unknown mechanism, malformed data, abort, a binding
# type the connection lacks): a client walks through its mechanisms with these, so the cap
# only stops a loop. Generous: a client may know a dozen mechanisms.
MAX_SASL_REFUSALS = 20


class SaslNegotiation:
    """The SASL steps of the negotiation; the connection owns (and initialises) the state."""

    ctx: ServerContext
    stream: trio.abc.Stream
    peer: str
    secure: bool
    state: State
    domain: str
    header_sent: bool
    stream_id: str | None
    authenticated: JID | None
    sasl_failures: int
    sasl_refusals: int
    _scram: ScramServer | None
    _scram_user: str
    _scram_account: Account | None

    if TYPE_CHECKING:
        @property
        def log(self) -> ContextAdapter: ...

        async def _send(self, data: bytes) -> None: ...

    def _channel_bindings(self) -> list[str]:
        """The channel-binding types this connection can give, advertised with XEP-0440.

        tls-server-end-point (RFC 5929 §4) binds to our certificate and works on every TLS
        version. tls-unique (RFC 5929 §3) is undefined for TLS 1.3 (RFC 9266 §3). tls-exporter
        (RFC 9266) would be the TLS 1.3 choice, but Python's ssl module cannot export keying
        material, so it is never offered rather than offered and failed.
        """
        if not self.secure:
            return []
        kinds = [kind for kind in ("tls-server-end-point", "tls-unique")
                 if self._channel_binding_data(kind) is not None]
        return kinds

    def _channel_binding_data(self, kind: str) -> bytes | None:
        if not self.secure:
            return None
        if kind == "tls-server-end-point" and self.ctx.tls_cert_der is not None:
            return server_end_point(self.ctx.tls_cert_der)
        if kind == "tls-unique" and isinstance(self.stream, trio.SSLStream):
            try:
                if self.stream.version() != "TLSv1.2":
                    return None  # RFC 9266 §3: not for TLS 1.3
                data: bytes | None = self.stream.get_channel_binding("tls-unique")
                return data
            except (ValueError, ssl.SSLError, AttributeError):
                return None
        return None

    def _mechanisms(self) -> list[str]:
        return mechanisms_offered(self.secure, self.ctx.config.auth.allow_plain_without_tls,
                                  self._channel_bindings())

    async def _auth(self, el: etree._Element) -> None:
        mechanism = el.get("mechanism", "")
        if mechanism not in self._mechanisms():
            await self._sasl_failure("invalid-mechanism", text=f"{mechanism!r} is not offered")
            return
        try:
            initial = _b64(el.text)
        except SaslFailure as failure:
            await self._sasl_refused(failure)
            return
        if mechanism == "PLAIN":
            await self._plain(initial)
        else:
            await self._scram_start(mechanism, initial)

    async def _sasl_abort(self) -> None:
        self._scram = None
        await self._sasl_failure("aborted")

    async def _plain(self, message: bytes) -> None:
        try:
            authzid, authcid, password = PlainServer.check(message)
            username = _localpart(authcid)
        except SaslFailure as failure:
            await self._sasl_refused(failure)
            return
        await self._throttle(username)
        account = await self.ctx.accounts.get(username, self.domain)
        creds = account.credentials.get("SHA-256") if account else None
        # One PBKDF2-SHA-256 derivation, off the event loop (the SHA-1 keys are not tried too).
        ok = creds is not None and await trio.to_thread.run_sync(
            verify_password, password, creds, "SHA-256"
        )
        if not ok:
            await self._sasl_failure("not-authorized", username=username, credentials=True)
            return
        await self._sasl_success(username, authzid, None, account)

    async def _scram_start(self, mechanism: str, client_first: bytes) -> None:
        try:
            scram = ScramServer.for_mechanism(
                mechanism, self._channel_binding_data,
                binding_advertised=bool(self._channel_bindings()),
            )
            username = _localpart(scram.start(client_first))
        except SaslFailure as failure:
            await self._sasl_refused(failure)
            return
        await self._throttle(username)
        account = await self.ctx.accounts.get(username, self.domain)
        creds = account.credentials.get(scram.hash_name) if account else None
        challenge = scram.server_first(creds)
        self._scram = scram
        self._scram_user = username
        self._scram_account = account
        self.state = State.SASL_SCRAM
        encoded = base64.b64encode(challenge).decode()
        await self._send(f"<challenge xmlns='{ns.SASL}'>{encoded}</challenge>".encode())

    async def _scram_final(self, el: etree._Element) -> None:
        scram, self._scram = self._scram, None
        assert scram is not None
        try:
            server_final = scram.finish(_b64(el.text))
        except SaslFailure as failure:
            await self._sasl_refused(failure, username=self._scram_user)
            return
        await self._sasl_success(self._scram_user, scram.authzid, server_final,
                                 self._scram_account)

    async def _throttle(self, username: str) -> None:
        delay = self.ctx.throttle.reserve(self.peer, username)  # shared by the IP's connections
        if delay > 0:
            await trio.sleep(delay)

    async def _sasl_success(self, username: str, authzid: str | None,
                            additional: bytes | None, account: Account | None) -> None:
        """``account`` is the record the credentials were checked against (read once)."""
        if account is None:
            await self._sasl_failure("not-authorized", username=username, credentials=True)
            return
        if not account.enabled:
            await self._sasl_failure("account-disabled")
            return
        jid = JID.from_parts(username, self.domain)
        if authzid:
            # RFC 6120 §6.4.6: an authzid must name the authenticated account itself.
            try:
                if JID.parse(authzid).bare != jid:
                    raise InvalidJID("other identity")
            except InvalidJID:
                await self._sasl_failure("invalid-authzid")
                return
        self.ctx.throttle.success(self.peer, username)
        self.authenticated = jid
        body = base64.b64encode(additional).decode() if additional else ""
        await self._send(f"<success xmlns='{ns.SASL}'>{body}</success>".encode())
        self.log.info("%s authenticated from %s", jid, self.peer,
                      extra={"event": "c2s.login", "jid": str(jid)})
        self.header_sent = False
        self.stream_id = None
        raise StreamRestart

    async def _sasl_refused(self, failure: SaslFailure, *, username: str | None = None) -> None:
        """Answer a failed step; only a credential failure is told the reason's details."""
        text = None if failure.credentials else failure.text
        await self._sasl_failure(failure.condition, credentials=failure.credentials,
                                 username=username if failure.credentials else None, text=text)

    async def _sasl_failure(self, condition: str, *, username: str | None = None,
                            credentials: bool = False, text: str | None = None) -> None:
        """Send ``<failure/>``; close the stream once the client used up its retries.

        RFC 6120 §6.4.5 allows retries and asks for a limit on them. Only ``credentials``
        failures (a wrong password or proof) count toward :data:`MAX_SASL_ATTEMPTS` and the
        guessing throttle: a client trying the -PLUS variants it cannot complete, aborting, or
        naming a mechanism we lack has guessed nothing. Those are capped separately and far
        more loosely, so a client looping on them cannot hold the connection forever.
        """
        self.state = State.EXPECT_AUTH
        if username is not None:
            self.ctx.throttle.failure(self.peer, username)
            self.log.warning("authentication failed for %s@%s from %s (%s)",
                             username, self.domain, self.peer, condition,
                             extra={"event": "c2s.login_failed",
                                    "jid": f"{username}@{self.domain}", "status": condition})
        elif condition != "aborted":
            self.log.info("SASL step refused from %s: %s%s", self.peer, condition,
                          f" ({text})" if text else "",
                          extra={"event": "c2s.sasl_refused", "status": condition})
        detail = f"<text xml:lang='en'>{_escape(text)}</text>" if text else ""
        await self._send(f"<failure xmlns='{ns.SASL}'><{condition}/>{detail}</failure>".encode())
        if credentials:
            self.sasl_failures += 1
            if self.sasl_failures >= MAX_SASL_ATTEMPTS:
                # RFC 6120 §6.4.5: after the allowed retries, close the stream.
                raise StreamError(StreamCondition.POLICY_VIOLATION, "too many failed attempts")
        else:
            self.sasl_refusals += 1
            if self.sasl_refusals >= MAX_SASL_REFUSALS:
                raise StreamError(StreamCondition.POLICY_VIOLATION,
                                  "too many refused authentication requests")


def _b64(text: str | None) -> bytes:
    """Decode SASL data; ``=`` is an empty response (RFC 6120 §6.4.2)."""
    if not text or text.strip() == "=":
        return b""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SaslFailure("incorrect-encoding") from None


def _localpart(username: str) -> str:
    try:
        return prepare_localpart(username)
    except InvalidJID:
        raise SaslFailure("not-authorized") from None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@functools.lru_cache(maxsize=4)
def server_end_point(certificate_der: bytes) -> bytes:
    """RFC 5929 §4.1: the certificate hashed with its signature's hash, MD5 and SHA-1 → SHA-256."""
    algorithm = x509.load_der_x509_certificate(certificate_der).signature_hash_algorithm
    name = algorithm.name if algorithm is not None else "sha256"
    if name in ("md5", "sha1") or name not in hashlib.algorithms_available:
        name = "sha256"
    return hashlib.new(name, certificate_der).digest()

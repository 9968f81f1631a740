"""SASL on a client stream (RFC 6120 §6): PLAIN, SCRAM with channel binding, retry limits.

A mixin of :class:`~pubsubd.net.c2s.C2SConnection`: the exchange reads and sets the
connection's negotiation state, so it lives on the connection rather than beside it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
from typing import TYPE_CHECKING

import trio

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
    log: ContextAdapter
    _scram: ScramServer | None
    _scram_user: str
    _scram_account: Account | None

    if TYPE_CHECKING:
        async def _send(self, data: bytes) -> None: ...

    def _channel_bindings(self) -> list[str]:
        if self.secure and self.ctx.tls_cert_der is not None:
            return ["tls-server-end-point"]
        return []

    def _channel_binding_data(self, kind: str) -> bytes | None:
        if not self.secure:
            return None
        if kind == "tls-server-end-point" and self.ctx.tls_cert_der is not None:
            # RFC 5929 §4.1: SHA-256 of the certificate (its signature uses SHA-256).
            return hashlib.sha256(self.ctx.tls_cert_der).digest()
        if kind == "tls-unique" and isinstance(self.stream, trio.SSLStream):
            # RFC 5929 §3; undefined for TLS 1.3 (RFC 9266), where this returns None.
            try:
                if self.stream.version() == "TLSv1.3":
                    return None
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
            await self._sasl_failure("invalid-mechanism", count=False)
            return
        try:
            initial = _b64(el.text)
        except SaslFailure as failure:
            await self._sasl_failure(failure.condition)
            return
        if mechanism == "PLAIN":
            await self._plain(initial)
        else:
            await self._scram_start(mechanism, initial)

    async def _sasl_abort(self) -> None:
        self._scram = None
        await self._sasl_failure("aborted", count=False)

    async def _plain(self, message: bytes) -> None:
        try:
            authzid, authcid, password = PlainServer.check(message)
            username = _localpart(authcid)
        except SaslFailure as failure:
            await self._sasl_failure(failure.condition)
            return
        await self._throttle(username)
        account = await self.ctx.accounts.get(username, self.domain)
        creds = account.credentials.get("SHA-256") if account else None
        # One PBKDF2-SHA-256 derivation, off the event loop (the SHA-1 keys are not tried too).
        ok = creds is not None and await trio.to_thread.run_sync(
            verify_password, password, creds, "SHA-256"
        )
        if not ok:
            await self._sasl_failure("not-authorized", username=username)
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
            await self._sasl_failure(failure.condition)
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
            await self._sasl_failure(failure.condition, username=self._scram_user)
            return
        await self._sasl_success(self._scram_user, scram.authzid, server_final,
                                 self._scram_account)

    async def _throttle(self, username: str) -> None:
        delay = self.ctx.throttle.delay_for(self.peer, username)
        if delay > 0:
            await trio.sleep(delay)

    async def _sasl_success(self, username: str, authzid: str | None,
                            additional: bytes | None, account: Account | None) -> None:
        """``account`` is the record the credentials were checked against (read once)."""
        if account is None:
            await self._sasl_failure("not-authorized", username=username)
            return
        if not account.enabled:
            await self._sasl_failure("account-disabled", count=False)
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

    async def _sasl_failure(self, condition: str, *, username: str | None = None,
                            count: bool = True) -> None:
        self.state = State.EXPECT_AUTH
        if username is not None:
            self.ctx.throttle.failure(self.peer, username)
            self.log.warning("authentication failed for %s@%s from %s (%s)",
                             username, self.domain, self.peer, condition,
                             extra={"event": "c2s.login_failed",
                                    "jid": f"{username}@{self.domain}", "status": condition})
        await self._send(f"<failure xmlns='{ns.SASL}'><{condition}/></failure>".encode())
        if count:
            self.sasl_failures += 1
            if self.sasl_failures >= MAX_SASL_ATTEMPTS:
                # RFC 6120 §6.4.5: after the allowed retries, close the stream.
                raise StreamError(StreamCondition.POLICY_VIOLATION, "too many failed attempts")


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

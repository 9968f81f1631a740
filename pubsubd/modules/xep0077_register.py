"""XEP-0077 In-Band Registration: new accounts (when enabled), password change, removal.

Registration happens before authentication, on the negotiation path of the connection, and
only once the stream is encrypted when TLS is required (XEP-0077 §11).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lxml import etree

from pubsubd import ns
from pubsubd.core.context import ServerContext
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import AlreadyAnswered, Router, Stanza
from pubsubd.core.session import SessionRegistry
from pubsubd.errors import Condition, StanzaError, StreamCondition, StreamError
from pubsubd.jid import InvalidJID, prepare_localpart
from pubsubd.rate_limit import RateLimiter
from pubsubd.storage.accounts import AccountExists, AccountStore
from pubsubd.xml import builders

if TYPE_CHECKING:
    from pubsubd.net.c2s import C2SConnection

QUERY = ns.clark(ns.REGISTER, "query")
USERNAME = ns.clark(ns.REGISTER, "username")
PASSWORD = ns.clark(ns.REGISTER, "password")
REMOVE = ns.clark(ns.REGISTER, "remove")
REGISTERED = ns.clark(ns.REGISTER, "registered")
MIN_PASSWORD = 6


class RegisterModule(Module):
    name = "register"
    features = (ns.REGISTER,)

    def __init__(self, *, open_registration: bool, ctx: ServerContext, router: Router,
                 accounts: AccountStore, hooks: HookBus, sessions: SessionRegistry,
                 rate: RateLimiter | None = None) -> None:
        super().__init__()
        self.open_registration = open_registration  # config registration.enabled
        self.rate = rate  # registration.rate per client address; None: unlimited
        self.ctx = ctx
        self.router = router
        self.accounts = accounts
        self.hooks = hooks
        self.sessions = sessions

    def setup(self) -> None:
        if self.open_registration:
            self.ctx.pre_auth_iq[QUERY] = self.pre_auth
        router = self.router
        router.add_iq_handler("self", "get", QUERY, self.get_registered)
        router.add_iq_handler("self", "set", QUERY, self.set_registered)
        router.add_iq_handler("host", "get", QUERY, self.get_registered)
        router.add_iq_handler("host", "set", QUERY, self.set_registered)

    # --- before authentication: create an account ------------------------------------------

    async def pre_auth(self, conn: C2SConnection, iq: etree._Element) -> etree._Element:
        try:
            payload = await self._pre_auth(conn, iq)
            reply = builders.iq_result(iq, payload)
        except StanzaError as err:
            reply = builders.error_reply(iq, err)
        reply.attrib.pop("from", None)
        return reply

    async def _pre_auth(self, conn: C2SConnection, iq: etree._Element) -> etree._Element | None:
        query = iq[0]
        if iq.get("type") == "get":
            # XEP-0077 §3.1: the fields required to register.
            result = builders.element(ns.REGISTER, "query")
            etree.SubElement(result, ns.clark(ns.REGISTER, "instructions")).text = (
                "Choose a username and password to register with this server."
            )
            etree.SubElement(result, USERNAME)
            etree.SubElement(result, PASSWORD)
            return result
        if iq.get("type") != "set":
            raise StanzaError(Condition.BAD_REQUEST)
        if query.find(REMOVE) is not None:
            raise StanzaError(Condition.REGISTRATION_REQUIRED)  # nothing to remove yet
        username, password = self._credentials(query)
        if self.rate is not None and not self.rate.allow(conn.peer):
            # RFC 6120 §8.3.3.18: resource-constraint (wait) — the client may try again later.
            self.log.warning("registration refused from %s: over registration.rate", conn.peer)
            raise StanzaError(Condition.RESOURCE_CONSTRAINT,
                              "too many accounts registered from your address; try later")
        try:
            await self.accounts.create(username, conn.domain, password)
        except AccountExists:
            # XEP-0077 §3.1: the username is taken.
            raise StanzaError(Condition.CONFLICT, "that username is taken") from None
        self.log.info("registered %s@%s from %s", username, conn.domain, conn.peer)
        return None

    def _credentials(self, query: etree._Element) -> tuple[str, str]:
        raw_user = query.findtext(USERNAME)
        password = query.findtext(PASSWORD)
        if not raw_user or not password:
            # XEP-0077 §3.1: required information missing.
            raise StanzaError(Condition.NOT_ACCEPTABLE, "username and password are required")
        try:
            username = prepare_localpart(raw_user)
        except InvalidJID as exc:
            raise StanzaError(Condition.JID_MALFORMED, f"invalid username: {exc}") from None
        if len(password) < MIN_PASSWORD:
            raise StanzaError(Condition.NOT_ACCEPTABLE,
                              f"the password needs at least {MIN_PASSWORD} characters")
        return username, password

    # --- after authentication: password change and removal ----------------------------------

    async def get_registered(self, st: Stanza) -> etree._Element:
        result = builders.element(ns.REGISTER, "query")
        etree.SubElement(result, REGISTERED)
        etree.SubElement(result, USERNAME).text = st.from_.local
        etree.SubElement(result, PASSWORD)
        return result

    async def set_registered(self, st: Stanza) -> None:
        if st.to is not None and st.to.local is None and st.to.domain != st.from_.domain:
            raise StanzaError(Condition.NOT_ALLOWED)
        query = st.element[0]
        user = st.from_
        assert user.local is not None
        if query.find(REMOVE) is not None:
            # XEP-0077 §3.2: cancel the registration, answer, then close the streams.
            await self.accounts.delete(user.local, user.domain)
            await self.hooks.notify("account/deleted", user.bare)
            self.log.info("account %s removed by its owner", user.bare)
            await self.router.reply(st, None)
            for session in self.sessions.resources(user.bare):
                session.close(StreamError(StreamCondition.NOT_AUTHORIZED, "account removed"))
            raise AlreadyAnswered
        username, password = self._credentials(query)
        if username != user.local:
            # XEP-0077 §3.3: one may change only one's own password.
            raise StanzaError(Condition.NOT_AUTHORIZED, "that is not your username")
        await self.accounts.set_password(user.local, user.domain, password)
        self.log.info("password changed for %s", user.bare)
        return None


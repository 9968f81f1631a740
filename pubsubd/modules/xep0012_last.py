"""XEP-0012 Last Activity: the server's uptime, and how long ago an account was last online.

An account's answer is for its presence subscribers only (§4); while any resource is
available the answer is 0 seconds. Logout times come from the account store, which this
module keeps current when a user's last resource goes away.
"""

from __future__ import annotations

import time

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.core.module import Module
from pubsubd.core.router import Stanza
from pubsubd.core.session import Session
from pubsubd.errors import Condition, StanzaError
from pubsubd.xml import builders

QUERY = ns.clark(ns.LAST, "query")


class LastActivityModule(Module):
    name = "last"
    features = (ns.LAST,)

    def setup(self) -> None:
        router = self.server.router
        router.add_iq_handler("host", "get", QUERY, self.uptime)
        router.add_iq_handler("bare", "get", QUERY, self.account)
        self.server.hooks.on("session/closed", self._closed)
        self._status: dict[str, str] = {}

    async def uptime(self, st: Stanza) -> etree._Element:
        seconds = int(trio.current_time() - self.server.started_at)  # §5: server uptime
        return builders.element(ns.LAST, "query", seconds=str(max(0, seconds)))

    async def account(self, st: Stanza) -> etree._Element:
        assert st.to is not None
        owner = st.to.bare
        presence = self.server.presence  # type: ignore[attr-defined]
        if presence.subscription(owner, st.from_.bare) not in ("from", "both"):
            raise StanzaError(Condition.FORBIDDEN)  # §4: subscribers only
        if presence.available_resources(owner):
            return builders.element(ns.LAST, "query", seconds="0")
        account = await self.server.accounts.get(owner.local or "", owner.domain)
        query = builders.element(ns.LAST, "query")
        last = account.last_logout if account is not None else None
        query.set("seconds", str(int(time.time() - last)) if last else "0")
        status = self._status.get(str(owner))
        if status:
            query.text = status
        return query

    async def _closed(self, session: Session) -> bool:
        owner = session.jid.bare
        stanza = session.presence.stanza
        status = stanza.findtext(ns.C_STATUS) if stanza is not None else None
        if status:
            self._status[str(owner)] = status
        if not self.server.sessions.resources(owner):
            await self.server.accounts.record_logout(owner.local or "", owner.domain)
        return False

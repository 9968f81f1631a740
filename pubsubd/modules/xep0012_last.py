"""XEP-0012 Last Activity: the server's uptime, and how long ago an account was last online.

An account's answer is for its presence subscribers (§4) and the account itself; while any
resource is available the answer is 0 seconds. Otherwise it is the time since the logout the
connection layer stamped in the account store, with the status of the user's last unavailable
presence.
"""

from __future__ import annotations

import time

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.core.lifecycle import ServerLifecycle
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.presence_view import PresenceView
from pubsubd.storage.accounts import AccountStore
from pubsubd.xml import builders

QUERY = ns.clark(ns.LAST, "query")


class LastActivityModule(Module):
    name = "last"
    features = (ns.LAST,)

    def __init__(self, *, router: Router, presence: PresenceView, accounts: AccountStore,
                 lifecycle: ServerLifecycle) -> None:
        super().__init__()
        self.router = router
        self.presence = presence
        self.accounts = accounts
        self.lifecycle = lifecycle

    def setup(self) -> None:
        router = self.router
        router.add_iq_handler("host", "get", QUERY, self.uptime)
        router.add_iq_handler("bare", "get", QUERY, self.account)

    async def uptime(self, st: Stanza) -> etree._Element:
        seconds = int(trio.current_time() - self.lifecycle.started_at)  # §5: server uptime
        return builders.element(ns.LAST, "query", seconds=str(max(0, seconds)))

    async def account(self, st: Stanza) -> etree._Element:
        # RFC 6120 §8.1.1.1: an IQ without 'to' is handled for the sender's own account.
        owner = (st.to or st.from_).bare
        presence = self.presence
        own = owner == st.from_.bare
        if not own and presence.subscription(owner, st.from_.bare) not in ("from", "both"):
            raise StanzaError(Condition.FORBIDDEN)  # §4: subscribers only (and the owner)
        if presence.available_resources(owner):
            return builders.element(ns.LAST, "query", seconds="0")
        account = await self.accounts.get(owner.local or "", owner.domain)
        last = account.last_logout if account is not None else None
        if last is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "never logged in")
        query = builders.element(ns.LAST, "query", seconds=str(max(0, int(time.time() - last))))
        unavailable = presence.last_unavailable(owner)
        status = unavailable[0].findtext(ns.C_STATUS) if unavailable is not None else None
        if status:
            query.text = status  # §4: the status of the last unavailable presence
        return query

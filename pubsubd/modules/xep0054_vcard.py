"""XEP-0054 vcard-temp: each account stores one vCard; anyone may read it."""

from __future__ import annotations

from lxml import etree

from pubsubd import ns
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.storage.interfaces import ImStore
from pubsubd.xml import builders

VCARD = ns.clark(ns.VCARD, "vCard")
MAX_VCARD_BYTES = 65536  # photos are the big part; larger ones belong in XEP-0084 avatars


class VCardModule(Module):
    name = "vcard"
    features = (ns.VCARD,)

    def __init__(self, *, store: ImStore, router: Router) -> None:
        super().__init__()
        self.store = store
        self.router = router

    def setup(self) -> None:
        router = self.router
        router.add_iq_handler("self", "get", VCARD, self.get)
        router.add_iq_handler("bare", "get", VCARD, self.get)
        router.add_iq_handler("self", "set", VCARD, self.set)
        router.add_iq_handler("bare", "set", VCARD, self.forbidden)

    async def get(self, st: Stanza) -> etree._Element:
        owner = (st.to or st.from_).bare
        data = await self.store.vcard(owner)
        if data is None:
            return builders.element(ns.VCARD, "vCard")  # XEP-0054 §3.1: empty when none
        return etree.fromstring(data)

    async def set(self, st: Stanza) -> None:
        data = etree.tostring(st.element[0])
        if len(data) > MAX_VCARD_BYTES:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "vCard too large")
        await self.store.set_vcard(st.from_.bare, data)

    async def forbidden(self, st: Stanza) -> None:
        raise StanzaError(Condition.FORBIDDEN)  # XEP-0054 §3.2: only one's own vCard

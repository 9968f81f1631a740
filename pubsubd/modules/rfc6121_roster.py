"""RFC 6121 §2: roster get, set and remove, roster pushes and roster versioning (§2.6).

Rosters live in :class:`ImStore` (in memory, written through to SQLite). The subscription
fields of an item are changed only by the presence module's state machine; this module
changes names and groups and removes items. Roster versions are a per-user counter; a client
whose version is still in the store's bounded change log gets only the changes, as pushes.
"""

from __future__ import annotations

import copy

from lxml import etree

from pubsubd import ns
from pubsubd.core.context import ServerContext
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import AlreadyAnswered, Router, Stanza
from pubsubd.core.session import Session, SessionRegistry
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID, InvalidJID
from pubsubd.storage.interfaces import ImStore, RosterItem
from pubsubd.xml import builders

QUERY = ns.clark(ns.ROSTER, "query")
ITEM = ns.clark(ns.ROSTER, "item")
GROUP = ns.clark(ns.ROSTER, "group")
MAX_TEXT = 1023  # server-configured limit of names and group names (§2.3.3)


def item_element(item: RosterItem, *, removed: bool = False) -> etree._Element:
    """The ``<item/>`` of a roster result or push (§2.1.2)."""
    el = etree.Element(ITEM, jid=str(item.contact))
    if removed:
        el.set("subscription", "remove")
        return el
    if item.name:
        el.set("name", item.name)
    el.set("subscription", item.subscription)
    if item.ask:
        el.set("ask", "subscribe")  # §2.1.2.2
    if item.approved:
        el.set("approved", "true")  # §2.1.2.1
    for group in item.groups:
        etree.SubElement(el, GROUP).text = group
    return el


class RosterModule(Module):
    name = "roster"
    features = ()  # roster versioning is announced as a stream feature (§2.6.1)

    def __init__(self, *, store: ImStore, router: Router, hooks: HookBus,
                 sessions: SessionRegistry, ctx: ServerContext, max_items: int) -> None:
        super().__init__()
        self.store = store
        self.router = router
        self.hooks = hooks
        self.sessions = sessions
        self.ctx = ctx
        self.max_items = max_items  # config limits.roster_max_items

    def setup(self) -> None:
        router = self.router
        router.add_iq_handler("self", "get", QUERY, self.get)
        router.add_iq_handler("self", "set", QUERY, self.set)
        # §2.1.5 security warning: only the account itself may read or change its roster.
        router.add_iq_handler("bare", "get", QUERY, self.forbidden)
        router.add_iq_handler("bare", "set", QUERY, self.forbidden)
        self.ctx.post_auth_features.append(builders.element(ns.ROSTERVER_FEATURE, "ver"))
        self.hooks.on("account/deleted", self._account_deleted)

    async def forbidden(self, st: Stanza) -> None:
        raise StanzaError(Condition.FORBIDDEN)

    async def get(self, st: Stanza) -> etree._Element | None:
        owner = st.from_.bare
        if st.origin is not None:
            st.origin.roster_requested = True  # §2.1.6: now an "interested resource"
        current = str(self.store.version(owner))
        asked = st.element[0].get("ver")
        if asked is not None and asked == current:
            return None  # §2.6.3: unchanged, pushes follow as usual
        if asked is not None and asked.isdigit() and st.origin is not None:
            changes = self.store.changes_since(owner, int(asked))
            if changes is not None:
                # §2.6.3: an empty result, then the changes as roster pushes to this resource.
                await self.router.reply(st, None)
                for version, contact in changes:
                    item = self.store.item(owner, contact)
                    item_el = item_element(item) if item is not None else \
                        item_element(RosterItem(contact), removed=True)
                    st.origin.send(self._push_iq(st.origin, item_el, version))
                raise AlreadyAnswered
        query = builders.element(ns.ROSTER, "query")
        if asked is not None:
            query.set("ver", current)
        for item in sorted(self.store.roster(owner).values(), key=lambda i: str(i.contact)):
            query.append(item_element(item))
        return query

    async def set(self, st: Stanza) -> None:
        owner = st.from_.bare
        items = st.element[0].findall(ITEM)
        if len(items) != 1:
            # RFC 6121 §2.1.5
            raise StanzaError(Condition.BAD_REQUEST, "a roster set carries exactly one item")
        el = items[0]
        try:
            contact = JID.parse(el.get("jid") or "").bare
        except InvalidJID:
            raise StanzaError(Condition.BAD_REQUEST, "invalid item jid") from None
        if el.get("subscription") == "remove":
            await self.remove(owner, contact)
            return None
        name = el.get("name") or None
        if name is not None and len(name) > MAX_TEXT:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "name too long")  # §2.3.3
        groups: list[str] = []
        for group_el in el.findall(GROUP):
            group = group_el.text or ""
            if not group or len(group) > MAX_TEXT:
                raise StanzaError(Condition.NOT_ACCEPTABLE, "empty or too long group")  # §2.3.3
            if group in groups:
                raise StanzaError(Condition.BAD_REQUEST, "duplicate group")  # §2.3.3
            groups.append(group)
        existing = self.store.item(owner, contact)
        if existing is None:
            self.check_room(owner)
            existing = RosterItem(contact)
        # §2.1.5: the 'subscription' a client sends (other than remove) is ignored.
        item = RosterItem(contact, name, tuple(groups), existing.subscription, existing.ask,
                          existing.approved)
        await self.save(owner, item)
        return None

    def check_room(self, owner: JID) -> None:
        """The per-user size limit, before adding a new item."""
        if len(self.store.roster(owner)) >= self.max_items:
            raise StanzaError(Condition.NOT_ALLOWED, "the roster is full")

    async def save(self, owner: JID, item: RosterItem) -> None:
        version = await self.store.put_item(owner, item)
        self.push(owner, item_element(item), version)

    async def remove(self, owner: JID, contact: JID) -> None:
        """§2.5: delete the item and cancel subscriptions in both directions."""
        item = self.store.item(owner, contact)
        if item is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND)  # §2.5.3
        version = await self.store.remove_item(owner, contact)
        self.push(owner, item_element(item, removed=True), version)
        router = self.router
        if item.subscription in ("to", "both") or item.ask:
            await router.send(builders.stanza("presence", from_=str(owner), to=str(contact),
                                              type_="unsubscribe"))  # §2.5.2 (1)
        pending_in = self.store.has_request(owner, contact)
        if item.subscription in ("from", "both") or pending_in:
            if pending_in:
                await self.store.set_request(owner, contact, None)
            await router.send(builders.stanza("presence", from_=str(owner), to=str(contact),
                                              type_="unsubscribed"))  # §2.5.2 (2)
            if item.subscription in ("from", "both"):
                # §3.2.2: the contact no longer sees the user, so tell it the user is gone.
                for session in self.sessions.resources(owner):
                    if session.presence.available:
                        await router.send(builders.stanza(
                            "presence", from_=str(session.jid), to=str(contact),
                            type_="unavailable"))

    def push(self, owner: JID, item_el: etree._Element, version: int) -> None:
        """§2.1.6: send the changed item to every interested resource of ``owner``."""
        for session in self.sessions.resources(owner):
            if not session.roster_requested:
                continue
            session.send(self._push_iq(session, item_el, version))

    @staticmethod
    def _push_iq(session: Session, item_el: etree._Element, version: int) -> etree._Element:
        iq = builders.iq("set", to=str(session.jid))
        query = builders.child(iq, ns.ROSTER, "query", ver=str(version))
        query.append(copy.deepcopy(item_el))
        return iq

    async def _account_deleted(self, bare: JID) -> bool:
        await self.store.forget(bare)
        return False

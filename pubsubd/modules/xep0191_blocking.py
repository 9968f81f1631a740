"""XEP-0191 Blocking Command: a per-user blocklist, enforced in both directions.

The blocklist is checked in the ``*/pre`` hooks, before any routing: inbound stanzas from a
blocked JID are dropped (presence silently, messages and IQ get/set with
``<service-unavailable/>``, §3.5) and a user's own stanzas to a blocked JID are refused with
``<not-acceptable/><blocked/>`` (§3.6); server-generated presence to a blocked JID is dropped.
Those hooks are on the bus only while someone blocks anyone, so that on a server where nobody
does, stanzas do not pay a call per hook to learn it.
"""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from pubsubd import ns
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.core.session import SessionRegistry
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID, InvalidJID
from pubsubd.modules.rfc6121_presence import PresenceModule
from pubsubd.storage.interfaces import BlocklistStore, ImStore
from pubsubd.xml import builders

BLOCKLIST = ns.clark(ns.BLOCKING, "blocklist")
BLOCK = ns.clark(ns.BLOCKING, "block")
UNBLOCK = ns.clark(ns.BLOCKING, "unblock")
ITEM = ns.clark(ns.BLOCKING, "item")
REQUESTED = "blocklist_requested"  # Session.features key: the resource asked for the list


def matches(blocked: set[str], jid: JID) -> bool:
    """XEP-0191 §3.1 with the XEP-0016 §2.1 order: full, bare, domain/resource, domain."""
    if not blocked:
        return False
    candidates = {str(jid), str(jid.bare), jid.domain}
    if jid.resource is not None:
        candidates.add(f"{jid.domain}/{jid.resource}")
    return not blocked.isdisjoint(candidates)


# (recipient, the sender when asked) → does the recipient block the sender? For deliveries
# that bypass the router's ``*/pre`` hooks: pubsub and PEP notifications go straight into
# session outboxes. The sender is only worked out for a recipient who blocks someone.
BlockedBy = Callable[[JID, Callable[[], JID]], bool]


def blocked_by(store: BlocklistStore) -> BlockedBy:
    """The check of :data:`BlockedBy` over ``store``: a dictionary lookup for an account that
    blocks nobody, the match of §3.1 only for one that does."""

    def blocked(recipient: JID, sender_of: Callable[[], JID]) -> bool:
        # §3.3: stanzas from a blocked JID are not delivered; one's own are never blocked.
        if not store.has_blocklist(recipient):
            return False
        sender = sender_of()
        return sender.bare != recipient.bare and matches(store.blocklist(recipient), sender)

    return blocked


class BlockingModule(Module):
    name = "blocking"
    features = (ns.BLOCKING,)

    def __init__(self, *, store: ImStore, presence: PresenceModule, router: Router,
                 hooks: HookBus, sessions: SessionRegistry) -> None:
        super().__init__()
        self.store = store
        self.presence = presence
        self.router = router
        self.hooks = hooks
        self.sessions = sessions

    def setup(self) -> None:
        router = self.router
        router.add_iq_handler("self", "get", BLOCKLIST, self.get)
        router.add_iq_handler("self", "set", BLOCK, self.block)
        router.add_iq_handler("self", "set", UNBLOCK, self.unblock)
        self._filtering = False
        self._hook()

    def _hook(self) -> None:
        """Filter stanzas while any blocklist is non-empty, and only then."""
        wanted = self.store.blocks_anyone()
        if wanted == self._filtering:
            return
        self._filtering = wanted
        for kind in ("message", "presence", "iq"):
            if wanted:
                self.hooks.on(f"{kind}/pre", self._filter, priority=100)
            else:
                self.hooks.off(f"{kind}/pre", self._filter)

    def is_blocked(self, owner: JID, other: JID) -> bool:
        return matches(self.store.blocklist(owner), other)

    async def _filter(self, st: Stanza) -> bool:
        to = st.to
        if to is None or not (self.store.has_blocklist(st.from_)
                              or self.store.has_blocklist(to)):
            return False  # the common case: neither party blocks anyone
        router = self.router
        if st.from_.local is not None and router.is_local(st.from_) and to is not None \
                and self.is_blocked(st.from_, to) and not _to_self(st):
            if st.origin is not None and st.type not in ("error", "result"):
                app = builders.element(ns.BLOCKING_ERRORS, "blocked")
                await router.bounce(st, StanzaError(Condition.NOT_ACCEPTABLE, app=app))  # §3.6
            return True
        if to is not None and to.local is not None and router.is_local(to) \
                and self.is_blocked(to, st.from_) and not _to_self(st):
            if st.kind == "message" or (st.kind == "iq" and st.type in ("get", "set")):
                await router.bounce(st, StanzaError(Condition.SERVICE_UNAVAILABLE))  # §3.5
            return True
        return False

    async def get(self, st: Stanza) -> etree._Element:
        if st.origin is not None:
            st.origin.features[REQUESTED] = True  # §3.3: this resource now gets pushes
        result = builders.element(ns.BLOCKING, "blocklist")
        for jid in sorted(self.store.blocklist(st.from_)):
            etree.SubElement(result, ITEM, jid=jid)
        return result

    async def block(self, st: Stanza) -> None:
        jids = _items(st.element[0])
        if not jids:
            raise StanzaError(Condition.BAD_REQUEST, "nothing to block")  # §3.3
        owner = st.from_.bare
        # §3.3: the blocked contacts see the user go offline, before the block hides it.
        for session in self.sessions.resources(owner):
            if session.presence.available:
                for jid in jids:
                    target = JID.parse(jid)
                    if target.local is not None:
                        el = builders.stanza("presence", from_=str(session.jid), to=jid,
                                             type_="unavailable")
                        await self.router.route(Stanza(el, session.jid, target, None))
        await self.store.block(owner, jids)
        self._hook()
        self._push(owner, st.element[0])

    async def unblock(self, st: Stanza) -> None:
        jids = _items(st.element[0])
        owner = st.from_.bare
        await self.store.unblock(owner, jids or None)  # §3.4: no items means everything
        self._hook()
        self._push(owner, st.element[0])
        # §3.4: contacts now see the user's presence again.
        for jid in (jids or []):
            target = JID.parse(jid)
            if self.presence.view.subscription(owner, target.bare) in ("from", "both"):
                await self.presence.send_current_presence(owner, target)

    def _push(self, owner: JID, payload: etree._Element) -> None:
        """§3.3, §3.4: every resource that asked for the blocklist sees the change."""
        for session in self.sessions.resources(owner):
            if not session.features.get(REQUESTED):
                continue
            iq = builders.iq("set", to=str(session.jid))
            iq.append(etree.fromstring(etree.tostring(payload)))
            session.send(iq)


def _items(el: etree._Element) -> list[str]:
    jids = []
    for item in el.findall(ITEM):
        try:
            jids.append(str(JID.parse(item.get("jid") or "")))
        except InvalidJID:
            raise StanzaError(Condition.JID_MALFORMED) from None
    return jids


def _to_self(st: Stanza) -> bool:
    return st.to is not None and st.to.bare == st.from_.bare

"""RFC 6121 §3 presence subscriptions and §4 presence exchange, for local users.

* Outbound subscription stanzas from a client are taken in the ``presence/pre`` hook, run through
  the pure state machine (:mod:`rfc6121_subscription_states`), stamped with the user's bare JID
  and routed — to a local user, a component (e.g. the pubsub service) or a peer server.
* Inbound ones arrive in ``presence/in`` and go through the same machine from the other side.
* Presence broadcast (``presence/out``), directed presence (``presence/directed``), probes and
  abrupt disconnects (``session/closed``) keep each session's :class:`PresenceState` current;
  :class:`PresenceView` (:attr:`PresenceModule.view`) exposes it to the rest of the server.
"""

from __future__ import annotations

import copy
import datetime
import time

from lxml import etree

from pubsubd import ns
from pubsubd.core.context import ServerContext
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.core.session import Session, SessionRegistry
from pubsubd.jid import JID, InvalidJID
from pubsubd.modules.rfc6121_roster import RosterModule
from pubsubd.modules.rfc6121_subscription_states import (
    SUBSCRIPTION_TYPES,
    Direction,
    SubState,
    transition,
)
from pubsubd.presence_view import PresenceView
from pubsubd.storage.accounts import AccountStore
from pubsubd.storage.interfaces import ImStore, RosterItem
from pubsubd.xml import builders

SHOW_VALUES = frozenset({"away", "chat", "dnd", "xa"})  # RFC 6121 §4.7.2.1


class PresenceModule(Module):
    name = "presence"
    features = ()  # pre-approval is a stream feature (§3.4)

    def __init__(self, *, store: ImStore, roster: RosterModule, router: Router, hooks: HookBus,
                 sessions: SessionRegistry, accounts: AccountStore, ctx: ServerContext) -> None:
        super().__init__()
        self.store = store
        self.roster = roster
        self.router = router
        self.hooks = hooks
        self.sessions = sessions
        self.accounts = accounts
        self.ctx = ctx
        self.view = PresenceView(sessions, store)

    def setup(self) -> None:
        hooks = self.hooks
        hooks.on("presence/pre", self._outbound_subscription)
        hooks.on("presence/out", self._broadcast)
        hooks.on("presence/directed", self._directed)
        hooks.on("presence/in", self._inbound)
        hooks.on("session/closed", self._session_closed)
        self.ctx.post_auth_features.append(builders.element(ns.PRE_APPROVAL_FEATURE, "sub"))

    # --- subscription state -----------------------------------------------------------------

    def state(self, owner: JID, contact: JID) -> SubState:
        item = self.store.item(owner, contact)
        pending_in = self.store.has_request(owner, contact)
        if item is None:
            return SubState(pending_in=pending_in)
        return SubState(item.subscription, item.ask, pending_in, item.approved)

    async def _apply(self, owner: JID, contact: JID, old: SubState, new: SubState,
                     request: bytes | None = None) -> None:
        """Persist a new state: the pending request, then the roster item with its push."""
        if new.pending_in and not old.pending_in and request is not None:
            await self.store.set_request(owner, contact, request)
        elif old.pending_in and not new.pending_in:
            await self.store.set_request(owner, contact, None)
        item = self.store.item(owner, contact)
        fields = (new.subscription, new.pending_out, new.approved)
        if item is None:
            # A.1 state 3: a pending inbound request alone does not create a roster item.
            if fields == ("none", False, False):
                return
            self.roster.check_room(owner)
            item = RosterItem(contact.bare)
        elif (item.subscription, item.ask, item.approved) == fields:
            return
        await self.roster.save(owner, RosterItem(item.contact, item.name, item.groups, *fields))

    # --- outbound subscription stanzas (§3, Appendix A.2) ---------------------------------

    async def _outbound_subscription(self, st: Stanza) -> bool:
        if st.origin is None or st.to is None:
            return False
        type_ = st.type
        if type_ == "probe":
            return True  # §4.3: probes are the server's business, not a client's
        if type_ not in SUBSCRIPTION_TYPES:
            return False
        owner, contact = st.from_.bare, st.to.bare
        old = self.state(owner, contact)
        out = transition(old, Direction.OUTBOUND, type_)
        await self._apply(owner, contact, old, out.new)
        if out.forward:
            # §3.1.2: the server stamps the user's bare JID and addresses the contact's bare JID.
            el = copy.deepcopy(st.element)
            el.set("from", str(owner))
            el.set("to", str(contact))
            await self.router.route(Stanza(el, owner, contact, None))
        if not old.has_from and out.new.has_from:
            await self.send_current_presence(owner, contact)  # §3.1.5
        elif old.has_from and not out.new.has_from:
            await self._send_unavailable(owner, contact)  # §3.2.2
        return True

    # --- inbound stanzas --------------------------------------------------------------------

    async def _inbound(self, st: Stanza) -> bool:
        assert st.to is not None
        type_ = st.type
        if type_ in SUBSCRIPTION_TYPES:
            await self._inbound_subscription(st)
        elif type_ == "probe":
            await self._probe(st)
        elif st.to.resource is not None:
            session = self.sessions.get(st.to)
            if session is not None:
                session.send(st.element)  # §8.5.3.1; otherwise silently dropped (§8.5.3.2.2)
        else:
            self._to_available(st.to, etree.tostring(st.element))  # §8.5.2.1.2
        return True

    def _to_available(self, owner: JID, data: bytes) -> None:
        for session in self.sessions.resources(owner):
            if session.presence.available:
                session.send(data)

    async def _inbound_subscription(self, st: Stanza) -> None:
        assert st.to is not None
        owner, contact, type_ = st.to.bare, st.from_.bare, st.type
        router = self.router
        if not await router.accounts.exists(owner):
            if type_ == "subscribe":
                await self._send_type(owner, contact, "unsubscribed")  # §3.1.3
            return
        old = self.state(owner, contact)
        out = transition(old, Direction.INBOUND, type_)
        el = copy.deepcopy(st.element)
        el.set("from", str(contact))  # §3.1.3: the user sees the contact's bare JID
        el.set("to", str(owner))
        data = etree.tostring(el)
        await self._apply(owner, contact, old, out.new, data if type_ == "subscribe" else None)
        if out.forward:
            # A request waits in storage too, and is re-delivered at the next initial presence.
            self._to_available(owner, data)
        if out.auto_reply is not None:
            await self._send_type(owner, contact, out.auto_reply)
        if not old.has_from and out.new.has_from:
            await self.send_current_presence(owner, contact)  # pre-approved (§3.4)
        elif old.has_from and not out.new.has_from:
            await self._send_unavailable(owner, contact)  # §3.3.3

    async def _probe(self, st: Stanza) -> None:
        """§4.3.2: answer with the last presence of every available resource."""
        assert st.to is not None
        owner, prober = st.to.bare, st.from_
        router = self.router
        trusted = prober.bare == owner or (prober.local is None and (
            prober.domain in router.domains or prober.domain in router.components))
        if not trusted and (not await router.accounts.exists(owner)
                            or not self.state(owner, prober.bare).has_from):
            await self._send_type(owner, prober.bare, "unsubscribed")  # §4.3.2 (1)
            return
        sessions = [s for s in self.sessions.resources(owner) if s.presence.available]
        if not sessions:
            await self._answer_probe_offline(owner, prober, st.id)
            return
        for session in sessions:
            await self._send_presence_of(session, prober)

    async def _answer_probe_offline(self, owner: JID, prober: JID, probe_id: str | None) -> None:
        """§4.3.2 (3): unavailable from the bare JID, carrying the last unavailable presence
        the user sent, and a XEP-0203 delay saying when it was generated."""
        last = self.view.last_unavailable(owner)
        if last is not None:
            el = copy.deepcopy(last[0])
            when: float | None = last[1]
        else:
            el = builders.stanza("presence", type_="unavailable", id_=probe_id or builders.new_id())
            account = await self.accounts.get(owner.local or "", owner.domain)
            when = account.last_logout if account is not None else None
        el.set("from", str(owner))  # the bare JID: no resource is available (§4.3.2)
        el.set("to", str(prober))
        if when is not None:
            for old in el.findall(ns.clark(ns.DELAY, "delay")):
                el.remove(old)
            delay = etree.SubElement(el, ns.clark(ns.DELAY, "delay"), nsmap={None: ns.DELAY})
            delay.set("from", owner.domain)
            delay.set("stamp", datetime.datetime.fromtimestamp(when, datetime.UTC)
                      .strftime("%Y-%m-%dT%H:%M:%S.%fZ"))  # XEP-0082 DateTime
        await self.router.route(Stanza(el, owner, prober, None))

    # --- presence broadcast (§4.2, §4.4, §4.5) ----------------------------------------------

    async def _broadcast(self, st: Stanza) -> bool:
        session = st.origin
        if session is None or session.closed:
            return True
        if st.type == "available":
            await self._available(session, st.element)
        elif st.type == "unavailable":
            await self._unavailable(session, st.element)
        return True  # other types without 'to' mean nothing (§4.7.1)

    async def _available(self, session: Session, el: etree._Element) -> None:
        state = session.presence
        initial = not state.initial_sent
        show = el.findtext(ns.C_SHOW)
        state.show = show if show in SHOW_VALUES else "online"
        state.priority = _priority(el.findtext(ns.C_PRIORITY))
        kept = copy.deepcopy(el)
        kept.attrib.pop("to", None)
        state.stanza = kept
        state.available = True
        state.initial_sent = True
        owner = session.jid.bare
        roster = self.store.roster(owner)
        if initial:
            # §4.2.2: probe every contact whose presence the user is subscribed to.
            for contact, item in roster.items():
                if item.subscription in ("to", "both"):
                    await self._send_type(owner, contact, "probe")
        for contact, item in roster.items():
            if item.subscription in ("from", "both"):
                await self._send_presence_of(session, contact)
        for own in self.sessions.resources(owner):
            if own.presence.available:
                await self._send_presence_of(session, own.jid)  # §4.2.2, §4.4.2
        if initial:
            for request in self.store.requests(owner).values():
                session.send(request)  # §3.1.3: pending requests, again
            await self.hooks.notify("presence/initial", session)
        await self.view.announce_available(session.jid, state.show)

    async def _unavailable(self, session: Session, el: etree._Element) -> None:
        state = session.presence
        was_available = state.available
        directed = set(state.directed_to)
        state.available = False
        state.initial_sent = False
        state.directed_to.clear()
        if not was_available and not directed:
            return
        owner = session.jid.bare
        targets: list[JID] = []
        if was_available:
            targets += [c for c, item in self.store.roster(owner).items()
                        if item.subscription in ("from", "both")]
            targets += [s.jid for s in self.sessions.resources(owner)
                        if s.presence.available and s is not session]
        for entry in directed:  # §4.6.3: undo directed presence
            try:
                targets.append(JID.parse(entry))
            except InvalidJID:
                continue
        template = copy.deepcopy(el)
        template.set("from", str(session.jid))
        if was_available:
            kept = copy.deepcopy(template)
            kept.attrib.pop("to", None)
            self.view.record_unavailable(session.jid, kept, time.time())
        for target in dict.fromkeys(targets):
            out = copy.deepcopy(template)
            out.set("to", str(target))
            await self.router.route(Stanza(out, session.jid, target, None))
        if was_available and not session.closed:
            # §4.5.2: "as well as to the resource that generated the unavailable presence"; on a
            # graceful logout it is the last stanza the client reads before the stream closes.
            own = copy.deepcopy(template)
            own.set("to", str(session.jid))
            session.send(own)
        if was_available:
            await self.view.announce_unavailable(session.jid)

    async def _directed(self, st: Stanza) -> bool:
        """§4.6: remember whom a user sent presence outside the roster, to undo it later."""
        session, to = st.origin, st.to
        assert session is not None and to is not None
        if st.type == "available":
            item = self.store.item(session.jid.bare, to.bare)
            if item is None or item.subscription not in ("from", "both"):
                session.presence.directed_to.add(str(to))
        else:
            session.presence.directed_to.discard(str(to))
        return False  # the router delivers it

    async def _session_closed(self, session: Session) -> bool:
        """§4.5.3: a stream that ends without unavailable presence counts as unavailable."""
        state = session.presence
        if state.available or state.directed_to:
            el = builders.stanza("presence", from_=str(session.jid), type_="unavailable")
            await self._unavailable(session, el)
        return False

    # --- sending ----------------------------------------------------------------------------

    async def _send_presence_of(self, session: Session, to: JID) -> None:
        """The session's last presence, addressed to ``to``."""
        if session.presence.stanza is None:
            return
        el = copy.deepcopy(session.presence.stanza)
        el.set("from", str(session.jid))
        el.set("to", str(to))
        if to.resource is not None and to.bare == session.jid.bare:
            target = self.sessions.get(to)
            if target is not None:
                target.send(el)
            return
        await self.router.route(Stanza(el, session.jid, to, None))

    async def send_current_presence(self, owner: JID, contact: JID) -> None:
        """Send ``contact`` the presence of each available resource of ``owner``."""
        for session in self.sessions.resources(owner):
            if session.presence.available:
                await self._send_presence_of(session, contact)

    async def _send_unavailable(self, owner: JID, contact: JID) -> None:
        for session in self.sessions.resources(owner):
            if session.presence.available:
                await self._send_type(session.jid, contact, "unavailable")

    async def _send_type(self, from_: JID, to: JID, type_: str) -> None:
        el = builders.stanza("presence", from_=str(from_), to=str(to), type_=type_,
                             id_=builders.new_id())
        await self.router.route(Stanza(el, from_, to, None))


def _priority(text: str | None) -> int:
    """§4.7.2.3: an integer from -128 to +127, zero when absent or invalid."""
    try:
        value = int((text or "0").strip())
    except ValueError:
        return 0
    return max(-128, min(127, value))

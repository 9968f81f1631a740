"""XEP-0280 Message Carbons: copies of a user's chats for the user's other resources.

Received copies are made in ``message/in`` (just before delivery, so the router's choice of
targets is known); sent copies in ``message/pre`` (as the client's message enters routing).
Those two hooks are on the bus only while some session has carbons enabled: most servers'
messages never pay for a feature nobody turned on.
"""

from __future__ import annotations

from lxml import etree

from pubsubd import ns
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.core.session import Session, SessionRegistry
from pubsubd.jid import JID
from pubsubd.stream.client_state import Deferrable
from pubsubd.xml import builders

ENABLE = ns.clark(ns.CARBONS, "enable")
DISABLE = ns.clark(ns.CARBONS, "disable")
PRIVATE = ns.clark(ns.CARBONS, "private")
NO_COPY = ns.clark(ns.HINTS, "no-copy")
CARBON_TAGS = frozenset({ns.clark(ns.CARBONS, "received"), ns.clark(ns.CARBONS, "sent")})


def eligible(st: Stanza) -> bool:
    """XEP-0280 §6.1: chat messages (and normal ones with a body), not private, not copies."""
    el = st.element
    if st.type == "chat" or (st.type == "normal" and el.find(ns.C_BODY) is not None):
        return (el.find(PRIVATE) is None and el.find(NO_COPY) is None
                and not any(child.tag in CARBON_TAGS for child in el))
    return False


class CarbonsModule(Module):
    name = "carbons"
    features = (ns.CARBONS,)

    def __init__(self, *, router: Router, hooks: HookBus, sessions: SessionRegistry) -> None:
        super().__init__()
        self.router = router
        self.hooks = hooks
        self.sessions = sessions

    def setup(self) -> None:
        # Bare JID → how many of its sessions enabled carbons. While some user has them on,
        # every message passes both hooks, and one dict lookup settles the other users.
        self._enabled: dict[JID, int] = {}
        router = self.router
        router.add_iq_handler("self", "set", ENABLE, self.enable)
        router.add_iq_handler("self", "set", DISABLE, self.disable)
        self.hooks.on("session/closed", self._closed)

    async def enable(self, st: Stanza) -> None:
        if st.origin is not None:
            self._set(st.origin, True)  # §4

    async def disable(self, st: Stanza) -> None:
        if st.origin is not None:
            self._set(st.origin, False)  # §5

    def _set(self, session: Session, enabled: bool) -> None:
        if session.carbons == enabled:
            return
        session.carbons = enabled
        bare = session.jid.bare
        was_used = bool(self._enabled)
        count = self._enabled.get(bare, 0) + (1 if enabled else -1)
        if count > 0:
            self._enabled[bare] = count
        else:
            self._enabled.pop(bare, None)
        if bool(self._enabled) != was_used:
            self._hook(bool(self._enabled))

    def _hook(self, on: bool) -> None:
        """Put the copying hooks on the bus while anyone has carbons on, else take them off."""
        if on:
            # Priority 50: after blocking (100) and archiving (60), whose stanza-id the copies
            # carry (XEP-0313 §3.5).
            self.hooks.on("message/in", self._received, priority=50)
            self.hooks.on("message/pre", self._sent, priority=50)
        else:
            self.hooks.off("message/in", self._received)
            self.hooks.off("message/pre", self._sent)

    async def _closed(self, session: Session) -> bool:
        self._set(session, False)
        return False

    async def _received(self, st: Stanza) -> bool:
        to = st.to
        if to is None or to.bare not in self._enabled or not eligible(st):
            return False
        if to.resource is not None:
            session = self.sessions.get(to)
            targets = [session] if session is not None else []
        else:
            targets = self.router.message_targets(to.bare, st.type)
        self._copy(to.bare, st, "received", exclude=targets)  # §6
        return False

    async def _sent(self, st: Stanza) -> bool:
        if st.origin is None or st.from_.bare not in self._enabled or not eligible(st):
            return False
        self._copy(st.from_.bare, st, "sent", exclude=[st.origin])  # §7
        return False

    def _copy(self, owner: JID, st: Stanza, direction: str, exclude: list[Session]) -> None:
        copies = [s for s in self.sessions.resources(owner)
                  if s.carbons and s.presence.available and s not in exclude]
        if not copies:
            return
        for session in copies:
            wrapper = builders.stanza("message", from_=str(owner), to=str(session.jid),
                                      type_=st.type)
            carbon = builders.child(wrapper, ns.CARBONS, direction)
            forwarded = builders.child(carbon, ns.FORWARD, "forwarded")
            copy = etree.fromstring(st.serialized())
            if direction == "sent" and st.archive_id is not None:
                # XEP-0313 §3.5: the id of the message in the owner's archive.
                builders.child(copy, ns.SID, "stanza-id", id=st.archive_id, by=str(owner))
            forwarded.append(copy)
            # XEP-0352: a copy may wait while that client is inactive if the message may.
            session.send(Deferrable(etree.tostring(wrapper)) if st.deferrable else wrapper)

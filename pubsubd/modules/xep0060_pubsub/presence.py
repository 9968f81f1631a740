"""The core's collaborator protocols (PresenceView, ContactsView, NotifyInterest,
PresenceSubscribers) answered from the server's presence interface.

The core speaks plain JID strings; :class:`PresenceView` speaks :class:`JID`. Without the IM
modules (a stripped-down server) presence falls back to the session registry and nobody is a
contact, which keeps the open access model working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pubsubd.jid import JID, InvalidJID

if TYPE_CHECKING:
    from pubsubd.core.router import Router
    from pubsubd.core.session import SessionRegistry
    from pubsubd.presence_view import PresenceView


def _jid(text: str) -> JID | None:
    try:
        return JID.parse(text)
    except InvalidJID:
        return None


class ServerPresence:
    """One object satisfying every collaborator protocol of :class:`PubSubService`."""

    def __init__(self, router: Router, sessions: SessionRegistry,
                 view: PresenceView | None) -> None:
        self.router = router
        self.sessions = sessions
        self.view = view  # None when the IM modules are not loaded

    # PresenceView
    def knows(self, bare: str) -> bool:
        """Presence is known for accounts of the served domains only."""
        jid = _jid(bare)
        return jid is not None and (self.router.is_local(jid) or (
            self.view is not None and self.view.tracks(jid)))

    def connected(self, full_jid: str) -> bool:
        """Whether ``full_jid`` is a bound session of ours (available or not yet)."""
        jid = _jid(full_jid)
        return jid is not None and jid.resource is not None and self.sessions.get(jid) is not None

    def available_resources(self, bare: str) -> dict[str, str]:
        jid = _jid(bare)
        if jid is None:
            return {}
        view = self.view
        if view is not None:
            return {str(full): show for full, show in view.available_resources(jid).items()}
        return {str(s.jid): s.presence.show for s in self.sessions.resources(jid)
                if s.presence.available}

    # ContactsView
    def subscription(self, owner_bare: str, contact_bare: str) -> str:
        owner, contact = _jid(owner_bare), _jid(contact_bare)
        view = self.view
        if view is None or owner is None or contact is None or owner.local is None:
            return "none"
        return str(view.subscription(owner.bare, contact.bare))

    def groups(self, owner_bare: str, contact_bare: str) -> frozenset[str]:
        owner, contact = _jid(owner_bare), _jid(contact_bare)
        view = self.view
        if view is None or owner is None or contact is None or owner.local is None:
            return frozenset()
        return frozenset(view.groups(owner.bare, contact.bare))

    # PresenceSubscribers (PEP)
    def presence_subscribers(self, owner_bare: str) -> list[str]:
        owner = _jid(owner_bare)
        view = self.view
        if view is None or owner is None:
            return []
        return [str(c) for c in view.presence_subscribers(owner)]

    # NotifyInterest (PEP): XEP-0163 §4.2 "+notify" in the resource's entity capabilities.
    def interested(self, full_jid: str, node: str) -> bool:
        view = self.view
        jid = _jid(full_jid)
        if view is None or jid is None:
            return False
        return bool(view.interested(jid, node))

    def subscribed_contacts(self, user_bare: str) -> list[str]:
        """Accounts whose presence ``user`` receives: their PEP events reach it (§4.3.4)."""
        user = _jid(user_bare)
        view = self.view
        if view is None or user is None:
            return []
        return [str(c) for c in view.presence_sources(user)]

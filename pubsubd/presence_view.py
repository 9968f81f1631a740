"""The one presence interface the rest of the server uses (pubsub, PEP, admin).

It answers from live session state (which resources are available, with which show value,
priority and XEP-0115 caps) and from the in-memory roster cache of the IM store (who is
subscribed to whom). The presence module calls :meth:`PresenceView.announce_available` and
:meth:`announce_unavailable`; everyone else only reads and subscribes to changes.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING

from pubsubd.core.bounded import BoundedMap
from pubsubd.jid import JID

if TYPE_CHECKING:
    from lxml import etree

    from pubsubd.core.session import Session, SessionRegistry
    from pubsubd.storage.interfaces import ImStore

log = logging.getLogger(__name__)

CAPS_CACHE_MAX = 10_000  # verified XEP-0115 ver strings remembered

AvailableCallback = Callable[[JID, str], Awaitable[None] | None]
UnavailableCallback = Callable[[JID], Awaitable[None] | None]


def _jid(value: JID | str) -> JID:
    return value if isinstance(value, JID) else JID.parse(value)


class PresenceView:
    """Read-only presence and roster facts, plus change notifications."""

    def __init__(self, sessions: SessionRegistry, store: ImStore) -> None:
        self._sessions = sessions
        self._store = store
        self._on_available: list[AvailableCallback] = []
        self._on_unavailable: list[UnavailableCallback] = []
        # XEP-0115 ver → features, filled by the caps module once a hash is verified.
        # Bounded: every client may announce ver strings of its own making.
        self.caps_features: MutableMapping[str, frozenset[str]] = BoundedMap(CAPS_CACHE_MAX)
        # Bare JID → (last unavailable presence received from the user, its wall-clock time):
        # what a probe of an offline user (RFC 6121 §4.3.2) and XEP-0012 report.
        self._last_unavailable: dict[JID, tuple[etree._Element, float]] = {}

    # --- presence -------------------------------------------------------------------------

    def _available_sessions(self, bare: JID | str) -> list[Session]:
        return [s for s in self._sessions.resources(_jid(bare).bare) if s.presence.available]

    def available_resources(self, bare: JID | str) -> dict[JID, str]:
        """Full JID → show ("online", "chat", "away", "xa", "dnd"); empty when offline."""
        return {s.jid: s.presence.show for s in self._available_sessions(bare)}

    def tracks(self, bare: JID | str) -> bool:
        """Is presence known for ``bare`` although it is no local account? (A component's
        view of the users whose presence its host server sends it.)"""
        return False

    def priority(self, full: JID | str) -> int | None:
        session = self._sessions.get(_jid(full))
        if session is None or not session.presence.available:
            return None
        return session.presence.priority

    def status(self, full: JID | str) -> str | None:
        session = self._sessions.get(_jid(full))
        stanza = session.presence.stanza if session is not None else None
        if stanza is None:
            return None
        from pubsubd import ns

        return stanza.findtext(ns.C_STATUS)

    def caps(self, full: JID | str) -> tuple[str, str, str] | None:
        """The (node, ver, hash) the resource advertised in its presence (XEP-0115)."""
        session = self._sessions.get(_jid(full))
        if session is None or not session.presence.available:
            return None
        return session.presence.caps

    def features(self, full: JID | str) -> frozenset[str] | None:
        """The disco features behind the resource's verified caps; None when unknown."""
        caps = self.caps(full)
        if caps is None:
            return None
        return self.caps_features.get(caps[1])

    def interested(self, full_jid: JID | str, node: str) -> bool:
        """XEP-0163 §4.2: did this resource ask for ``node`` notifications (``node+notify``)?"""
        features = self.features(full_jid)
        return features is not None and f"{node}+notify" in features

    def last_unavailable(self, bare: JID | str) -> tuple[etree._Element, float] | None:
        """The user's last unavailable presence (without 'to') and when it came (Unix time),
        or None if none since start-up."""
        return self._last_unavailable.get(_jid(bare).bare)

    def record_unavailable(self, full: JID, stanza: etree._Element, when: float) -> None:
        self._last_unavailable[full.bare] = (stanza, when)

    # --- roster facts ---------------------------------------------------------------------

    def subscription(self, owner_bare: JID | str, contact_bare: JID | str) -> str:
        """"none" | "to" | "from" | "both", from ``owner``'s roster."""
        item = self._store.item(_jid(owner_bare), _jid(contact_bare))
        return item.subscription if item is not None else "none"

    def groups(self, owner: JID | str, contact: JID | str) -> tuple[str, ...]:
        item = self._store.item(_jid(owner), _jid(contact))
        return item.groups if item is not None else ()

    def presence_subscribers(self, owner_bare: JID | str) -> list[JID]:
        """Contacts that receive ``owner``'s presence (subscription from or both)."""
        return [c for c, item in self._store.roster(_jid(owner_bare)).items()
                if item.subscription in ("from", "both")]

    def presence_sources(self, user_bare: JID | str) -> list[JID]:
        """Contacts whose presence ``user`` receives (subscription to or both): the accounts
        whose PEP events reach it (XEP-0163 §4.3.4)."""
        return [c for c, item in self._store.roster(_jid(user_bare)).items()
                if item.subscription in ("to", "both")]

    # --- change notifications -------------------------------------------------------------

    def on_available(self, callback: AvailableCallback) -> None:
        """Call ``callback(full_jid, show)`` whenever a resource becomes available or
        changes its show value."""
        self._on_available.append(callback)

    def on_unavailable(self, callback: UnavailableCallback) -> None:
        self._on_unavailable.append(callback)

    async def announce_available(self, full: JID, show: str) -> None:
        for callback in self._on_available:
            await _call(callback, full, show)

    async def announce_unavailable(self, full: JID) -> None:
        for callback in self._on_unavailable:
            await _call(callback, full)


async def _call(callback: Callable[..., Awaitable[None] | None], *args: object) -> None:
    """One failing listener must not break presence for everyone else."""
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("presence listener %r failed", callback)

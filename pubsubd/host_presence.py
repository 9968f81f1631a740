"""Presence as a component sees it (``pubsubd component``): what the host server sends.

A component has no sessions of its own. Users' presence reaches it when the host broadcasts
it: to contacts the user shares a presence subscription with (RFC 6121 §4.2.2, after the user
approved the service's subscription request) or as directed presence (§4.6). This view keeps
the last presence of each full JID seen that way, so pubsub delivers by presence and catches
users up when they come back, exactly as for local users. A user never seen is not tracked:
notifications are sent to it as to any remote subscriber.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lxml import etree

from pubsubd import ns
from pubsubd.core.session import SessionRegistry
from pubsubd.jid import JID
from pubsubd.presence_view import PresenceView, _jid
from pubsubd.storage.interfaces import ImStore

log = logging.getLogger(__name__)
_SHOWS = ("chat", "away", "xa", "dnd")


@dataclass(frozen=True, slots=True)
class RemoteResource:
    show: str
    priority: int
    status: str | None


class HostPresenceView(PresenceView):
    def __init__(self, sessions: SessionRegistry, store: ImStore) -> None:
        super().__init__(sessions, store)
        self._resources: dict[JID, dict[JID, RemoteResource]] = {}  # bare → full → presence

    def tracks(self, bare: JID | str) -> bool:
        return _jid(bare).bare in self._resources

    def available_resources(self, bare: JID | str) -> dict[JID, str]:
        return {full: r.show for full, r in self._resources.get(_jid(bare).bare, {}).items()}

    def priority(self, full: JID | str) -> int | None:
        jid = _jid(full)
        resource = self._resources.get(jid.bare, {}).get(jid)
        return resource.priority if resource is not None else None

    def status(self, full: JID | str) -> str | None:
        jid = _jid(full)
        resource = self._resources.get(jid.bare, {}).get(jid)
        return resource.status if resource is not None else None

    def caps(self, full: JID | str) -> tuple[str, str, str] | None:
        return None

    async def observe(self, from_: JID, element: etree._Element) -> None:
        """A presence stanza from the host: remember it and tell the listeners (pubsub)."""
        type_ = element.get("type")
        if from_.local is None or from_.resource is None or type_ not in (None, "unavailable"):
            return
        resources = self._resources.setdefault(from_.bare, {})
        if type_ == "unavailable":
            if resources.pop(from_, None) is not None:
                log.debug("unavailable: %s", from_)
                await self.announce_unavailable(from_)
            return
        show = element.findtext(ns.clark(ns.CLIENT, "show")) or "online"
        show = show if show in _SHOWS else "online"
        try:
            priority = int(element.findtext(ns.clark(ns.CLIENT, "priority")) or 0)
        except ValueError:
            priority = 0
        previous = resources.get(from_)
        resources[from_] = RemoteResource(show, priority,
                                          element.findtext(ns.clark(ns.CLIENT, "status")))
        if previous is None or previous.show != show:
            log.debug("available: %s (%s)", from_, show)
            await self.announce_available(from_, show)

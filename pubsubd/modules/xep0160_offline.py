"""XEP-0160 offline messages: kept durably, stamped (XEP-0203), delivered at the next initial
presence with a non-negative priority, in arrival order.

The router asks through ``message/offline`` only for messages that RFC 6121 §8.5.2.2 lets a
server store (normal and chat to a user with no available resource); over the per-user quota
we decline and the router answers ``<service-unavailable/>`` (XEP-0160 §3).
"""

from __future__ import annotations

import datetime

from lxml import etree

from pubsubd import ns
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import Stanza
from pubsubd.core.session import Session, SessionRegistry
from pubsubd.jid import JID
from pubsubd.metrics import Metrics
from pubsubd.presence_view import PresenceView
from pubsubd.storage.interfaces import ImStore

NO_STORE = ns.clark(ns.HINTS, "no-store")
NO_PERMANENT_STORE = ns.clark(ns.HINTS, "no-permanent-store")
DELAY = ns.clark(ns.DELAY, "delay")


def _own_delay(el: etree._Element, domain: str) -> etree._Element | None:
    """The XEP-0203 delay this server put on the message, if any."""
    for delay in el.findall(DELAY):
        if delay.get("from") == domain:
            return delay
    return None


def utc_stamp(when: datetime.datetime | None = None) -> str:
    """XEP-0082 DateTime in UTC, as XEP-0203 wants it."""
    when = when or datetime.datetime.now(datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class OfflineModule(Module):
    name = "offline"
    features = (ns.OFFLINE,)  # XEP-0160 §6 "msgoffline"

    def __init__(self, *, store: ImStore, presence: PresenceView, hooks: HookBus,
                 sessions: SessionRegistry, metrics: Metrics, max_messages: int) -> None:
        super().__init__()
        self.store = store
        self.presence = presence
        self.hooks = hooks
        self.sessions = sessions
        self.metrics = metrics
        self.max_messages = max_messages  # config limits.offline_max_messages

    def setup(self) -> None:
        self.hooks.on("message/offline", self._store)
        # Not only at initial presence: a resource that starts at a negative priority gets
        # its messages once it raises the priority (XEP-0160 §3).
        self.presence.on_available(self._available)

    async def _available(self, full: JID, show: str) -> None:
        session = self.sessions.get(full)
        if session is not None and not session.features.get("offline_delivered"):
            await self._deliver(session)

    async def _store(self, st: Stanza) -> bool:
        if st.type not in ("normal", "chat") or st.to is None:
            return False
        el = st.element
        if el.find(NO_STORE) is not None or el.find(NO_PERMANENT_STORE) is not None:
            return False  # XEP-0334 §4
        if el.find(ns.C_BODY) is None and el.find(ns.C_SUBJECT) is None:
            return True  # chat states and receipts alone are not worth keeping; drop quietly
        stored = etree.fromstring(st.serialized())  # with what message/in hooks added
        delay = _own_delay(stored, st.to.domain)
        if delay is None:
            delay = etree.SubElement(stored, DELAY, nsmap={None: ns.DELAY})
            delay.set("from", st.to.domain)  # XEP-0203 §3: the entity that delayed it
            delay.set("stamp", utc_stamp())
        # else: handed over by a session that lost it (XEP-0198 §4), already stamped with the
        # time of its first delivery, which is when it was sent, not when it was stored.
        delay.text = "Offline Storage"
        limit = self.max_messages
        return self.metrics.offline_stored(
            await self.store.store_offline(st.to.bare, etree.tostring(stored), limit))

    async def _deliver(self, session: Session) -> bool:
        if session.presence.priority < 0 or session.closed:
            return False  # XEP-0160 §3: only to a resource with non-negative priority
        session.features["offline_delivered"] = True
        for data in await self.store.take_offline(session.jid.bare):
            session.send(data)
        return False

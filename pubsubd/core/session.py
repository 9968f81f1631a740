"""Client sessions and the registry of bound resources.

A session owns a bounded outbox of serialized stanzas; its connection's writer task drains it.
Enqueueing never blocks: a client that stops reading fills its outbox and is disconnected with a
stream error instead of growing the server's memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import trio
from lxml import etree

from pubsubd.core.delivery_ledger import DeliveryLedger
from pubsubd.errors import StreamCondition, StreamError
from pubsubd.jid import JID

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PresenceState:
    """What RFC 6121 §4 keeps per resource: available or not, show, priority, the stanza."""

    available: bool = False
    show: str = "online"  # "online" when no <show/>, else away / chat / dnd / xa
    priority: int = 0
    stanza: etree._Element | None = None
    initial_sent: bool = False
    directed_to: set[str] = field(default_factory=set)
    caps: tuple[str, str, str] | None = None  # XEP-0115 (node, ver, hash)


SentObserver = Callable[["Session", bytes], None]
# Writes a stanza to the client at once if its connection can (see C2SConnection._write_now);
# False when it must be queued instead.
DirectWrite = Callable[[bytes], bool]


class Session:
    """One bound resource of a client connection (RFC 6120 §7)."""

    def __init__(self, jid: JID, outbox: trio.MemorySendChannel[bytes],
                 close: Callable[[StreamError], None], *, secure: bool = False,
                 direct: DirectWrite | None = None) -> None:
        self.jid = jid
        self.outbox = outbox
        # The connection's direct write, tried before the outbox: an idle plain-TCP stream
        # takes the bytes without waking its writer task (a task switch per stanza).
        self.direct = direct
        self._close = close
        self.presence = PresenceState()
        self.roster_requested = False  # RFC 6121 §2.1.6 "interested resource"
        self.carbons = False
        self.secure = secure
        self.closed = False
        self.displaced = False  # replaced by a newer session for the same full JID
        self.hibernated = False  # XEP-0198 §5: its connection dropped; it waits to be resumed
        self.features: dict[str, object] = {}  # per-session module state
        # Set by the registry: records messages for the XEP-0198 hand-over (delivery_ledger).
        self.deliveries: DeliveryLedger | None = None
        # Set by the registry: told of every stanza queued here (metrics, delivery counts).
        self.observers: list[SentObserver] = []

    def __repr__(self) -> str:
        return f"<Session {self.jid}>"

    @property
    def available(self) -> bool:
        return self.presence.available

    def send(self, stanza: etree._Element | bytes) -> bool:
        """Queue a stanza for this client; False if the session is gone or overloaded."""
        if self.closed:
            return False
        data = stanza if isinstance(stanza, bytes) else etree.tostring(stanza)
        direct = self.direct
        if direct is None or not direct(data):
            try:
                self.outbox.send_nowait(data)
            except trio.WouldBlock:
                log.warning("outbox of %s is full; disconnecting", self.jid)
                self.close(StreamError(StreamCondition.POLICY_VIOLATION,
                                       "too many unread stanzas"))
                return False
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        ledger = self.deliveries
        if ledger is not None and ledger.watching(self.jid.bare):
            ledger.queued(self, data)
        for observe in self.observers:
            observe(self, data)
        return True

    def rebind(self, close: Callable[[StreamError], None], *, secure: bool,
               direct: DirectWrite | None = None) -> None:
        """Hand the session to the connection that resumed it (XEP-0198 §5)."""
        self._close = close
        self.secure = secure
        self.direct = direct

    def close(self, error: StreamError) -> None:
        if not self.closed:
            self.closed = True
            self._close(error)


class SessionRegistry:
    """Bound resources by bare JID, for routing to full and bare addresses."""

    def __init__(self) -> None:
        self._by_bare: dict[JID, dict[str, Session]] = {}
        # XEP-0198 §5: sessions that may be resumed, by SM-ID (still bound meanwhile).
        self.resumable: dict[str, Session] = {}
        # XEP-0198 §4: who received what, so unacknowledged messages are handed over once.
        self.deliveries = DeliveryLedger()
        # Told of every stanza queued to any session, serialized (metrics, delivery counts);
        # a module adds its observer here instead of wrapping sessions' outboxes.
        self.sent_observers: list[SentObserver] = []

    def add(self, session: Session) -> Session | None:
        """Register ``session``; return a session it displaced (same full JID), if any."""
        resources = self._by_bare.setdefault(session.jid.bare, {})
        assert session.jid.resource is not None
        old = resources.get(session.jid.resource)
        resources[session.jid.resource] = session
        session.deliveries = self.deliveries
        session.observers = self.sent_observers
        return old

    def remove(self, session: Session) -> bool:
        """Unregister ``session`` if it is the one bound; True if it was."""
        resources = self._by_bare.get(session.jid.bare)
        if not resources or resources.get(session.jid.resource or "") is not session:
            return False
        del resources[session.jid.resource or ""]
        if not resources:
            del self._by_bare[session.jid.bare]
        return True

    def get(self, jid: JID) -> Session | None:
        if jid.resource is None:
            return None
        resources = self._by_bare.get(jid.bare)  # no empty dict built per miss
        return None if resources is None else resources.get(jid.resource)

    def resources(self, bare: JID) -> list[Session]:
        return list(self._by_bare.get(bare.bare, {}).values())

    def has_resource(self, bare: JID, resource: str) -> bool:
        return resource in self._by_bare.get(bare.bare, {})

    def __iter__(self) -> Iterator[Session]:
        for resources in list(self._by_bare.values()):
            yield from list(resources.values())

    def __len__(self) -> int:
        return sum(len(r) for r in self._by_bare.values())

    def users(self) -> list[JID]:
        return list(self._by_bare)

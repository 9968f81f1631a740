"""Which resources of an account hold a message unacknowledged, so it is handed over once.

XEP-0198 §4 asks a server to treat the stanzas a session leaves unacknowledged like stanzas
sent to an unavailable resource: deliver them to another resource or store them offline
(RFC 6121 §8.5.3.2). Done per session, a message the router gave to several resources of one
account (a bare-JID chat, a feed entry) would be stored once for every session that ended
without acking it, although another resource had received it. The ledger answers, for a
message a session lost, whether the account still needs it:

* a resource without stream management that was given the message received it (the server
  cannot know better), and so did one that acknowledged it;
* a resource that still holds it unacknowledged (connected or hibernated) may yet do so: the
  decision waits for that resource;
* only the last holder to lose a message nobody received hands it over, exactly once.

A delivery is recognised by the message itself without its ``to`` (one copy per resource
differs only there), per account. Entries live while a resource with stream management holds
them; settled ones are kept briefly, for the other resources of the same fan-out.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pubsubd.jid import JID

if TYPE_CHECKING:
    from pubsubd.core.session import Session

# Settled deliveries remembered per account: a fan-out enqueues its copies without yielding,
# so this only has to cover the copies of the most recent messages.
SETTLED_KEPT = 256

_MESSAGE_HEAD = re.compile(rb"<message\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>")
_TO = re.compile(rb"""\sto=(?:"[^"]*"|'[^']*')""")
_TYPE = re.compile(rb"""\stype=(?:"([^"]*)"|'([^']*)')""")
_HANDED_OVER_TYPES = (b"chat", b"normal")  # what XEP-0198 §4 hand-over may deliver or store


def delivery_key(data: bytes) -> int | None:
    """The identity of a chat or normal message across its per-resource copies, else None."""
    head = _MESSAGE_HEAD.match(data)
    if head is None:
        return None
    opening = head.group()
    kind = _TYPE.search(opening)
    type_ = (kind.group(1) or kind.group(2)) if kind else b"normal"
    if type_ not in _HANDED_OVER_TYPES:
        return None
    return hash(_TO.sub(b"", opening, count=1) + data[head.end():])


@dataclass(eq=False, slots=True)
class _Delivery:
    first_sent: float  # when it was first queued for the account (XEP-0203 stamp on hand-over)
    holders: set[Session] = field(default_factory=set)
    received: bool = False


@dataclass(slots=True)
class _Account:
    tracking: int = 0  # sessions of the account with stream management
    deliveries: dict[int, _Delivery] = field(default_factory=dict)
    settled: OrderedDict[int, None] = field(default_factory=OrderedDict)


class DeliveryLedger:
    """Per-account record of chat/normal messages given to resources with stream management."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._accounts: dict[JID, _Account] = {}
        self._held: dict[Session, set[int]] = {}

    def __len__(self) -> int:
        """Deliveries remembered, all accounts together (bounded; for tests and metrics)."""
        return sum(len(account.deliveries) for account in self._accounts.values())

    # --- sessions ----------------------------------------------------------------------------

    def start_tracking(self, session: Session) -> None:
        """``session`` enabled stream management: what it is given from now on may be lost."""
        if session in self._held:
            return
        self._held[session] = set()
        self._account(session.jid.bare).tracking += 1

    def watching(self, bare: JID) -> bool:
        """Whether deliveries to this account are recorded at all (a cheap check per send)."""
        return bare in self._accounts

    # --- events ------------------------------------------------------------------------------

    def queued(self, session: Session, data: bytes) -> None:
        """A stanza was queued for ``session``."""
        account = self._accounts.get(session.jid.bare)
        if account is None:
            return
        key = delivery_key(data)
        if key is None:
            return
        delivery = account.deliveries.get(key)
        if delivery is None:
            delivery = account.deliveries[key] = _Delivery(self._clock())
        held = self._held.get(session)
        if held is None:
            delivery.received = True  # no acks on that stream: written is received
            self._settle(account, key, delivery)
            return
        delivery.holders.add(session)
        held.add(key)
        account.settled.pop(key, None)

    def acknowledged(self, session: Session, data: bytes) -> None:
        """``session``'s client acknowledged this stanza (XEP-0198 §4)."""
        account = self._accounts.get(session.jid.bare)
        key = delivery_key(data)
        if account is None or key is None:
            return
        delivery = account.deliveries.get(key)
        if delivery is None:
            return
        delivery.received = True
        delivery.holders.discard(session)
        held = self._held.get(session)
        if held is not None:
            held.discard(key)
        self._settle(account, key, delivery)

    def ended(self, session: Session, leftovers: list[bytes]) -> list[tuple[bytes, float]]:
        """``session`` ended for good with ``leftovers`` unacknowledged: which of them (and
        their first delivery time) it must hand over — those no other resource received or
        still holds. Everything else it held is released."""
        held = self._held.pop(session, None)
        account = self._accounts.get(session.jid.bare)
        if held is None or account is None:
            return [(data, self._clock()) for data in leftovers]  # nothing was followed
        handover: list[tuple[bytes, float]] = []
        for data in leftovers:
            key = delivery_key(data)
            if key is None:
                handover.append((data, self._clock()))  # not a message the ledger follows
                continue
            delivery = account.deliveries.get(key)
            if delivery is None or session not in delivery.holders:
                continue  # already decided by an earlier copy in the same leftovers
            delivery.holders.discard(session)
            held.discard(key)
            if not delivery.received and not delivery.holders:
                handover.append((data, delivery.first_sent))
                del account.deliveries[key]
            else:
                self._settle(account, key, delivery)
        for key in held:  # not among the leftovers: dropped with the outbox, nothing to do
            delivery = account.deliveries.get(key)
            if delivery is not None:
                delivery.holders.discard(session)
                self._settle(account, key, delivery)
        account.tracking -= 1
        if account.tracking <= 0:  # no holder is left either: every holder was tracking
            del self._accounts[session.jid.bare]
        return handover

    # --- internals ---------------------------------------------------------------------------

    def _account(self, bare: JID) -> _Account:
        account = self._accounts.get(bare)
        if account is None:
            account = self._accounts[bare] = _Account()
        return account

    def _settle(self, account: _Account, key: int, delivery: _Delivery) -> None:
        """A delivery nobody holds stays a little while, for the rest of its fan-out."""
        if delivery.holders:
            return
        account.settled[key] = None
        account.settled.move_to_end(key)
        while len(account.settled) > SETTLED_KEPT:
            old, _ = account.settled.popitem(last=False)
            stale = account.deliveries.get(old)
            if stale is not None and not stale.holders:
                del account.deliveries[old]

"""The storage the pubsub core needs, as a narrow async Protocol, and an in-memory backend.

Nodes of the pubsub component and PEP nodes of every account live side by side, keyed by
``(service, node_id)``. Items come back newest first. The store also keeps the catch-up state
(which items wait for which away subscriber), so a restart loses none of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .delivery import Hold
from .model import Affiliation, Item, Node, Subscription, bare
from .notifications import Recipient


@dataclass(frozen=True, slots=True)
class NewItem:
    """An item to store; the store gives it its sequence number."""

    item_id: str
    payload: str
    publisher: str
    published: datetime


@dataclass(frozen=True, slots=True)
class PutResult:
    items: tuple[Item, ...]
    """The stored items, with their sequence numbers, in the order given."""
    evicted: tuple[str, ...]
    """Ids of the oldest items removed to respect max_items."""


@dataclass(frozen=True, slots=True)
class BatchPutResult:
    """What :meth:`PubSubStore.put_changed_items` wrote, in one transaction."""

    written: tuple[Item, ...]
    """The new or changed items, with their sequence numbers, in the order given (also those
    a later item of the same batch pushed out)."""
    unchanged: tuple[str, ...]
    """Ids given with the payload already stored: left as they were."""
    evicted: tuple[str, ...]
    """Ids of the oldest items removed to respect max_items, oldest first."""


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """Items withheld from one subscriber (bare JID) of one node, for catch-up."""

    node: str
    bare_jid: str
    recipient: Recipient
    shows: frozenset[str] | None
    item_ids: tuple[str, ...]
    """Oldest first."""
    skipped: int
    """How many older items were dropped to respect the cap."""


@dataclass(frozen=True, slots=True)
class PendingDigest:
    """A digest batch (pubsub#digest) for one recipient of one node; due ``frequency``
    seconds after ``started``."""

    node: str
    recipient: Recipient
    started: float
    frequency: float
    items: tuple[Item, ...]


class PubSubStore(Protocol):
    async def create_node(self, node: Node, owner: str | None) -> bool:
        """Create ``node`` (and the owner's affiliation); False if the id is taken."""
        ...

    async def get_node(self, service: str, node_id: str) -> Node | None: ...

    async def list_nodes(self, service: str) -> list[Node]: ...

    async def update_node(self, node: Node) -> None: ...

    async def delete_node(self, service: str, node_id: str) -> None:
        """Delete the node with its items, subscriptions and affiliations."""
        ...

    async def get_affiliation(self, service: str, node_id: str, jid: str) -> Affiliation: ...

    async def set_affiliation(
        self, service: str, node_id: str, jid: str, affiliation: Affiliation
    ) -> None:
        """Set a bare JID's affiliation; ``NONE`` removes the entry."""
        ...

    async def list_affiliations(self, service: str, node_id: str) -> dict[str, Affiliation]: ...

    async def affiliations_of(self, service: str, jid: str) -> dict[str, Affiliation]:
        """Node id → affiliation of a bare JID across the service."""
        ...

    async def put_subscription(self, service: str, subscription: Subscription) -> None:
        """Insert or replace the subscription with this node and subid."""
        ...

    async def delete_subscription(self, service: str, node_id: str, subid: str) -> bool: ...

    async def list_subscriptions(self, service: str, node_id: str) -> list[Subscription]: ...

    async def node_subscriptions_of(
        self, service: str, node_id: str, jid: str
    ) -> list[Subscription]:
        """The subscriptions of exactly ``jid`` (as subscribed, full or bare) to one node,
        oldest first: what a subscribe or unsubscribe checks, without reading the others."""
        ...

    async def subscriptions_of(self, service: str, jid: str) -> list[Subscription]:
        """Every subscription whose JID has the bare JID of ``jid``."""
        ...

    async def put_items(
        self, service: str, node_id: str, items: Sequence[NewItem], max_items: int | None
    ) -> PutResult:
        """Store items durably (replacing same ids) and trim to ``max_items``, atomically."""
        ...

    async def put_items_each(
        self, service: str, node_id: str, items: Sequence[NewItem], max_items: int | None
    ) -> list[PutResult]:
        """One :meth:`put_items` of a single item per entry, in order, all in one transaction
        (group commit of pipelined publishes): each result says what that put stored and
        trimmed, exactly as separate calls would have."""
        ...

    async def put_changed_items(
        self, service: str, node_id: str, items: Sequence[NewItem], max_items: int | None
    ) -> BatchPutResult:
        """Store, in one transaction, the items that are new or whose payload differs from the
        stored item of the same id (a republished identical item is left in place), then trim
        to ``max_items``: a batch of a feed poll, idempotent by item id."""
        ...

    async def get_items(
        self,
        service: str,
        node_id: str,
        item_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Item]:
        """Items newest first, all or the given ids, at most ``limit``."""
        ...

    async def count_items(self, service: str, node_id: str) -> int: ...

    async def delete_items(self, service: str, node_id: str, item_ids: Sequence[str]) -> list[str]:
        """Delete items; returns the ids that existed."""
        ...

    async def purge_items(self, service: str, node_id: str) -> list[str]: ...

    async def hold_items(
        self, service: str, node_id: str, holds: Sequence[Hold], items: Sequence[Item], cap: int
    ) -> None:
        """Keep ``items`` for each held subscriber, at most ``cap`` per subscriber and node:
        the oldest beyond it are dropped and counted; a republished id moves to the end."""
        ...

    async def held_for(self, service: str, bare_jid: str) -> list[HeldEntry]:
        """What waits for a subscriber, per node."""
        ...

    async def take_held(self, service: str, node_id: str, bare_jid: str) -> HeldEntry | None:
        """Remove and return what waits for a subscriber on one node (atomically, so two
        resources coming online at once never both get it)."""
        ...

    async def forget_held(
        self, service: str, node_id: str, item_ids: Sequence[str] | None = None
    ) -> None:
        """Drop held items of a node (all of them, with their entries, when ``item_ids`` is
        None)."""
        ...


    async def add_digest(self, service: str, node_id: str, recipient: Recipient,
                         items: Sequence[Item], *, started: float, frequency: float) -> None:
        """Add ``items`` (payloads included) to the recipient's batch for the node, opening
        it at ``started`` if none is pending; nothing if the node does not exist."""
        ...

    async def take_due_digests(self, service: str, now: float) -> list[PendingDigest]:
        """Remove and return the batches due at ``now``, items in the order added."""
        ...

    async def forget_digest_items(
        self, service: str, node_id: str, item_ids: Sequence[str] | None = None
    ) -> None:
        """Drop items of a node from pending batches (all of them when ``item_ids`` is
        None); a batch left empty is dropped."""
        ...


@dataclass(slots=True)
class _DigestState:
    recipient: Recipient
    started: float
    frequency: float
    items: dict[str, Item]


@dataclass(slots=True)
class _HeldState:
    recipient: Recipient
    shows: frozenset[str] | None
    items: dict[str, int]
    skipped: int = 0

    def entry(self, node: str, bare_jid: str) -> HeldEntry:
        ordered = tuple(sorted(self.items, key=self.items.__getitem__))
        return HeldEntry(node, bare_jid, self.recipient, self.shows, ordered, self.skipped)


class MemoryPubSubStore:
    """Everything in dictionaries: tests, and servers that need no persistence."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[str, str], Node] = {}
        self._affiliations: dict[tuple[str, str], dict[str, Affiliation]] = {}
        self._subscriptions: dict[tuple[str, str], dict[str, Subscription]] = {}
        self._items: dict[tuple[str, str], dict[str, Item]] = {}
        self._held: dict[tuple[str, str, str], _HeldState] = {}
        self._digests: dict[tuple[str, str, str], _DigestState] = {}  # service, node, address
        self._seq = 0

    async def create_node(self, node: Node, owner: str | None) -> bool:
        key = (node.service, node.node_id)
        if key in self._nodes:
            return False
        self._nodes[key] = node
        self._affiliations[key] = {bare(owner): Affiliation.OWNER} if owner else {}
        self._subscriptions[key] = {}
        self._items[key] = {}
        return True

    async def get_node(self, service: str, node_id: str) -> Node | None:
        return self._nodes.get((service, node_id))

    async def list_nodes(self, service: str) -> list[Node]:
        return [node for (svc, _), node in sorted(self._nodes.items()) if svc == service]

    async def update_node(self, node: Node) -> None:
        if (node.service, node.node_id) in self._nodes:
            self._nodes[(node.service, node.node_id)] = node

    async def delete_node(self, service: str, node_id: str) -> None:
        key = (service, node_id)
        for table in (self._nodes, self._affiliations, self._subscriptions, self._items):
            table.pop(key, None)  # type: ignore[attr-defined]
        await self.forget_held(service, node_id)

    async def get_affiliation(self, service: str, node_id: str, jid: str) -> Affiliation:
        return self._affiliations.get((service, node_id), {}).get(bare(jid), Affiliation.NONE)

    async def set_affiliation(
        self, service: str, node_id: str, jid: str, affiliation: Affiliation
    ) -> None:
        table = self._affiliations.get((service, node_id))
        if table is None:
            return
        if affiliation is Affiliation.NONE:
            table.pop(bare(jid), None)
        else:
            table[bare(jid)] = affiliation

    async def list_affiliations(self, service: str, node_id: str) -> dict[str, Affiliation]:
        return dict(self._affiliations.get((service, node_id), {}))

    async def affiliations_of(self, service: str, jid: str) -> dict[str, Affiliation]:
        who = bare(jid)
        return {
            node_id: table[who]
            for (svc, node_id), table in sorted(self._affiliations.items())
            if svc == service and who in table
        }

    async def put_subscription(self, service: str, subscription: Subscription) -> None:
        table = self._subscriptions.get((service, subscription.node))
        if table is not None:
            table[subscription.subid] = subscription

    async def delete_subscription(self, service: str, node_id: str, subid: str) -> bool:
        return self._subscriptions.get((service, node_id), {}).pop(subid, None) is not None

    async def list_subscriptions(self, service: str, node_id: str) -> list[Subscription]:
        return list(self._subscriptions.get((service, node_id), {}).values())

    async def node_subscriptions_of(
        self, service: str, node_id: str, jid: str
    ) -> list[Subscription]:
        table = self._subscriptions.get((service, node_id), {})
        return [sub for sub in table.values() if sub.jid == jid]

    async def subscriptions_of(self, service: str, jid: str) -> list[Subscription]:
        who = bare(jid)
        return [
            sub
            for (svc, _), table in sorted(self._subscriptions.items())
            if svc == service
            for sub in table.values()
            if sub.bare_jid == who
        ]

    async def put_items(
        self, service: str, node_id: str, items: Sequence[NewItem], max_items: int | None
    ) -> PutResult:
        return self._put(service, node_id, items, max_items)

    async def put_items_each(
        self, service: str, node_id: str, items: Sequence[NewItem], max_items: int | None
    ) -> list[PutResult]:
        if (service, node_id) not in self._items:
            raise KeyError(node_id)
        return [self._put(service, node_id, [new], max_items) for new in items]

    def _put(
        self, service: str, node_id: str, items: Sequence[NewItem], max_items: int | None
    ) -> PutResult:
        table = self._items.get((service, node_id))
        if table is None:
            raise KeyError(node_id)
        stored: list[Item] = []
        for new in items:
            self._seq += 1
            item = Item(new.item_id, new.payload, new.publisher, new.published, self._seq)
            table.pop(new.item_id, None)  # a replaced item moves to the newest place
            table[new.item_id] = item
            stored.append(item)
        evicted: list[str] = []
        if max_items is not None:
            while len(table) > max_items:
                oldest = next(iter(table))
                del table[oldest]
                evicted.append(oldest)
        kept = tuple(i for i in stored if i.item_id in table)
        return PutResult(kept, tuple(evicted))

    async def put_changed_items(
        self, service: str, node_id: str, items: Sequence[NewItem], max_items: int | None
    ) -> BatchPutResult:
        table = self._items.get((service, node_id))
        if table is None:
            raise KeyError(node_id)
        written: list[Item] = []
        unchanged: list[str] = []
        for new in items:
            current = table.get(new.item_id)
            if current is not None and current.payload == new.payload:
                unchanged.append(new.item_id)
                continue
            self._seq += 1
            item = Item(new.item_id, new.payload, new.publisher, new.published, self._seq)
            table.pop(new.item_id, None)  # a replaced item moves to the newest place
            table[new.item_id] = item
            written.append(item)
        evicted: list[str] = []
        if max_items is not None:
            while len(table) > max_items:
                oldest = next(iter(table))
                del table[oldest]
                evicted.append(oldest)
        return BatchPutResult(tuple(written), tuple(unchanged), tuple(evicted))

    async def get_items(
        self,
        service: str,
        node_id: str,
        item_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Item]:
        table = self._items.get((service, node_id), {})
        items = (
            reversed(table.values())
            if item_ids is None
            else (table[i] for i in item_ids if i in table)
        )
        ordered = sorted(items, key=lambda i: i.seq, reverse=True)
        return ordered if limit is None else ordered[:limit]

    async def count_items(self, service: str, node_id: str) -> int:
        return len(self._items.get((service, node_id), {}))

    async def delete_items(self, service: str, node_id: str, item_ids: Sequence[str]) -> list[str]:
        table = self._items.get((service, node_id), {})
        return [i for i in dict.fromkeys(item_ids) if table.pop(i, None) is not None]

    async def purge_items(self, service: str, node_id: str) -> list[str]:
        table = self._items.get((service, node_id), {})
        ids = list(table)
        table.clear()
        return ids

    async def hold_items(
        self, service: str, node_id: str, holds: Sequence[Hold], items: Sequence[Item], cap: int
    ) -> None:
        if (service, node_id) not in self._nodes:
            return
        for hold in holds:
            key = (service, node_id, hold.bare_jid)
            state = self._held.get(key)
            if state is None:
                state = self._held[key] = _HeldState(hold.recipient, hold.shows, {})
            state.recipient, state.shows = hold.recipient, hold.shows
            for item in items:
                state.items.pop(item.item_id, None)
                state.items[item.item_id] = item.seq
            excess = max(0, len(state.items) - cap)
            overflow = sorted(state.items, key=state.items.__getitem__)[:excess]
            for item_id in overflow:
                del state.items[item_id]
            state.skipped += len(overflow)

    async def held_for(self, service: str, bare_jid: str) -> list[HeldEntry]:
        return [
            state.entry(node, who)
            for (svc, node, who), state in sorted(self._held.items())
            if svc == service and who == bare_jid
        ]

    async def take_held(self, service: str, node_id: str, bare_jid: str) -> HeldEntry | None:
        state = self._held.pop((service, node_id, bare_jid), None)
        return state.entry(node_id, bare_jid) if state is not None else None

    async def forget_held(
        self, service: str, node_id: str, item_ids: Sequence[str] | None = None
    ) -> None:
        for key, state in list(self._held.items()):
            if key[:2] != (service, node_id):
                continue
            if item_ids is None:
                del self._held[key]
            else:
                for item_id in item_ids:
                    state.items.pop(item_id, None)

    async def add_digest(self, service: str, node_id: str, recipient: Recipient,
                         items: Sequence[Item], *, started: float, frequency: float) -> None:
        if (service, node_id) not in self._nodes:
            return
        key = (service, node_id, recipient.address)
        state = self._digests.get(key)
        if state is None:
            state = self._digests[key] = _DigestState(recipient, started, frequency, {})
        for item in items:
            state.items.pop(item.item_id, None)
            state.items[item.item_id] = item

    async def take_due_digests(self, service: str, now: float) -> list[PendingDigest]:
        due = []
        for key, state in sorted(self._digests.items()):
            if key[0] == service and now - state.started >= state.frequency:
                del self._digests[key]
                due.append(PendingDigest(key[1], state.recipient, state.started,
                                         state.frequency, tuple(state.items.values())))
        return due

    async def forget_digest_items(
        self, service: str, node_id: str, item_ids: Sequence[str] | None = None
    ) -> None:
        for key, state in list(self._digests.items()):
            if key[:2] != (service, node_id):
                continue
            for item_id in list(state.items) if item_ids is None else item_ids:
                state.items.pop(item_id, None)
            if not state.items:
                del self._digests[key]

"""Catch-up: the items published while a subscriber was away, delivered when it returns.

The held state lives in the store (not in memory) so a subscriber who was offline across a
restart of the server, even an abrupt one, still gets exactly the items it missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .delivery import Hold, with_address
from .model import Item, bare, is_full
from .notifications import Recipient
from .store import PubSubStore


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Items to deliver to ``recipient`` after it became available, oldest first."""

    node: str
    recipient: Recipient
    items: tuple[Item, ...]
    skipped: int


class CatchUpTracker:
    """Items withheld from away or offline subscribers, per (bare JID, node), capped.

    When more than ``cap`` items wait, the oldest are dropped and counted, so a reader who
    was away a long time gets the newest ``cap`` items and knows how many it missed.
    """

    def __init__(self, store: PubSubStore, service: str, cap: int) -> None:
        self.store = store
        self.service = service
        self.cap = cap
        # Told ``(node, notifications withheld)`` (subscribers × items) at each hold: statistics.
        self.held_listeners: list[Callable[[str, int], None]] = []

    async def hold(self, node: str, holds: Sequence[Hold], items: Sequence[Item]) -> None:
        if self.cap > 0 and holds and items:
            await self.store.hold_items(self.service, node, holds, items, self.cap)
        held = len(holds) * len(items)
        if held:  # nothing to count on the path of every publish that holds nothing
            for listener in self.held_listeners:
                listener(node, held)

    async def became_available(self, full_jid: str, show: str) -> list[CatchUp]:
        """Release what ``full_jid`` may now receive with presence ``show``."""
        released: list[CatchUp] = []
        for entry in await self.store.held_for(self.service, bare(full_jid)):
            if entry.shows is not None and show not in entry.shows:
                continue
            subscribed = entry.recipient.address
            if is_full(subscribed) and subscribed != full_jid:
                continue
            taken = await self.store.take_held(self.service, entry.node, entry.bare_jid)
            if taken is None:
                continue  # another resource of the same account took it first
            items = await self.store.get_items(self.service, taken.node, taken.item_ids)
            released.append(
                CatchUp(
                    taken.node,
                    with_address(taken.recipient, full_jid),
                    tuple(sorted(items, key=lambda i: i.seq)),
                    taken.skipped,
                )
            )
        return released

    async def forget_items(self, node: str, item_ids: Iterable[str] | None = None) -> None:
        """Drop retracted items (all of the node's when ``item_ids`` is None)."""
        await self.store.forget_held(
            self.service, node, None if item_ids is None else list(item_ids)
        )

    async def forget_subscriber(self, bare_jid: str, node: str) -> None:
        await self.store.take_held(self.service, node, bare_jid)

    async def held_count(self, bare_jid: str, node: str) -> int:
        for entry in await self.store.held_for(self.service, bare_jid):
            if entry.node == node:
                return len(entry.item_ids)
        return 0

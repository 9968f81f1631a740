"""Notifications accumulated for digest subscriptions (pubsub#digest, XEP-0060 §6.3.7).

A batch opens with its first item and is due ``digest_frequency`` milliseconds later. Batches
live in the store, written with the publish that fed them, so a restart (even kill -9) between
a publish and its digest loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .model import Item
from .notifications import Recipient
from .store import PendingDigest, PubSubStore


class DigestQueue:
    """Pending digest batches of one service, kept by its store."""

    def __init__(self, store: PubSubStore, service: str) -> None:
        self.store = store
        self.service = service

    async def add(self, node: str, recipient: Recipient, items: Sequence[Item], *,
                  now: float, frequency_ms: int) -> None:
        await self.store.add_digest(self.service, node, recipient, items, started=now,
                                    frequency=frequency_ms / 1000)

    async def due_digests(self, now: float) -> list[PendingDigest]:
        """Remove and return the batches whose frequency has elapsed."""
        return await self.store.take_due_digests(self.service, now)

    async def forget_items(self, node: str, item_ids: Iterable[str] | None = None) -> None:
        await self.store.forget_digest_items(
            self.service, node, None if item_ids is None else list(item_ids))


__all__ = ["DigestQueue"]

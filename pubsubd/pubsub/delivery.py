"""Delivery decisions: which addresses get a notification, and what waits for later.

Pure and synchronous. Presence is asked through :class:`PresenceView`; time is passed in.
Items a subscriber could not receive while away are held for catch-up, and digest
subscriptions accumulate until their frequency has elapsed.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .model import Item, MessageType, NodeConfig, Subscription, bare, is_full
from .notifications import Recipient


class PresenceView(Protocol):
    def available_resources(self, bare: str) -> Mapping[str, str]:
        """Full JID → show ("online", "chat", "away", "xa", "dnd"); empty when offline."""
        ...


@dataclass(frozen=True, slots=True)
class Candidate:
    """A subscription that may receive a notification; ``collection`` is set when it was
    reached through an ancestor collection node (XEP-0248 §5.3.1)."""

    subscription: Subscription
    collection: str | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """A subscriber whose notification was withheld while away, to catch up later."""

    bare_jid: str
    shows: frozenset[str] | None
    recipient: Recipient


@dataclass(slots=True)
class DeliveryPlan:
    recipients: list[Recipient] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    digests: list[Recipient] = field(default_factory=list)


_WORD = re.compile(r"\w+")


def passes_keywords(include: Sequence[str], exclude: Sequence[str], text: str) -> bool:
    """Case-insensitive word filters: one include word must occur, no exclude word may."""
    if not include and not exclude:
        return True
    words = set(_WORD.findall(text.lower()))
    if include and not words.intersection(include):
        return False
    return not words.intersection(exclude)


def plan_delivery(
    candidates: Iterable[Candidate],
    config: NodeConfig,
    presence: PresenceView,
    *,
    text: str | None = None,
    item_event: bool = True,
) -> DeliveryPlan:
    """Decide the addresses of one notification.

    ``text`` is the item's readable text for keyword filters (None: no filtering). Only item
    events (``item_event``) are digested or held for catch-up; node events such as delete or
    purge go out at once to whoever can receive them.
    """
    plan = DeliveryPlan()
    merged: dict[str, Recipient] = {}
    for candidate in candidates:
        sub = candidate.subscription
        options = sub.options
        if not sub.active or not options.deliver:
            continue
        if text is not None and not passes_keywords(
            options.include_words, options.exclude_words, text
        ):
            continue
        template = Recipient(
            address=sub.jid,
            message_type=options.message_type or config.notification_type,
            subids=(sub.subid,),
            collection=candidate.collection,
            include_body=options.include_body,
        )
        if options.digest and item_event:
            plan.digests.append(template)
            continue
        addresses = _addresses(sub, config, presence)
        if not addresses:
            if options.catch_up and item_event:
                shows = options.show_values
                plan.holds.append(Hold(sub.bare_jid, shows, template))
            continue
        for address in addresses:
            previous = merged.get(address)
            if previous is None:
                merged[address] = _with_address(template, address)
            elif sub.subid not in previous.subids:
                # XEP-0060 §7.1.2.4: one message per address, listing every subid.
                merged[address] = _merge(previous, sub.subid)
    plan.recipients.extend(merged.values())
    return plan


def _addresses(sub: Subscription, config: NodeConfig, presence: PresenceView) -> list[str]:
    resources = presence.available_resources(sub.bare_jid)
    if is_full(sub.jid):
        resources = {sub.jid: resources[sub.jid]} if sub.jid in resources else {}
    shows = sub.options.show_values
    if config.presence_based_delivery or shows is not None:
        # XEP-0060 §12.6 presence-based delivery and pubsub#show-values: only resources
        # whose presence allows it; an empty list means "held".
        return [jid for jid, show in resources.items() if shows is None or show in shows]
    if not resources and (sub.options.message_type or config.notification_type) is (
        MessageType.HEADLINE
    ):
        # RFC 6121 §8.5.2.2.1 / §8.5.3.2.1: a headline to an offline account is dropped, so
        # it is held for catch-up instead of being sent to nobody.
        return []
    # Not presence-based: address the subscribed JID and let RFC 6121 routing decide
    # (delivery to resources, or offline storage for normal/chat messages).
    return [sub.jid]


def _with_address(template: Recipient, address: str) -> Recipient:
    return Recipient(
        address=address,
        message_type=template.message_type,
        subids=template.subids,
        collection=template.collection,
        include_body=template.include_body,
    )


def _merge(previous: Recipient, subid: str) -> Recipient:
    return Recipient(
        address=previous.address,
        message_type=previous.message_type,
        subids=(*previous.subids, subid),
        collection=previous.collection,
        include_body=previous.include_body,
    )


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Items to deliver to ``recipient`` after it became available, oldest first."""

    node: str
    recipient: Recipient
    items: tuple[Item, ...]
    skipped: int


@dataclass(slots=True)
class _Held:
    items: deque[Item]
    shows: frozenset[str] | None
    recipient: Recipient
    skipped: int = 0


class CatchUpTracker:
    """Items withheld from away or offline subscribers, per (bare JID, node), capped.

    When more than ``cap`` items wait, the oldest are dropped and counted, so a reader who
    was away a long time gets the newest ``cap`` items and knows how many it missed.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._held: dict[tuple[str, str], _Held] = {}

    def hold(self, node: str, hold: Hold, items: Sequence[Item]) -> None:
        if self.cap <= 0:
            return
        key = (hold.bare_jid, node)
        entry = self._held.get(key)
        if entry is None:
            entry = self._held[key] = _Held(deque(), hold.shows, hold.recipient)
        entry.shows, entry.recipient = hold.shows, hold.recipient
        for item in items:
            # A republished id replaces the held copy rather than being delivered twice.
            for old in [held for held in entry.items if held.item_id == item.item_id]:
                entry.items.remove(old)
            entry.items.append(item)
            if len(entry.items) > self.cap:
                entry.items.popleft()
                entry.skipped += 1

    def became_available(self, full_jid: str, show: str) -> list[CatchUp]:
        """Release what ``full_jid`` may now receive with presence ``show``."""
        bare_jid = bare(full_jid)
        released: list[CatchUp] = []
        for (who, node), entry in list(self._held.items()):
            if who != bare_jid or (entry.shows is not None and show not in entry.shows):
                continue
            subscribed = entry.recipient.address
            if is_full(subscribed) and subscribed != full_jid:
                continue
            del self._held[(who, node)]
            released.append(
                CatchUp(
                    node,
                    _with_address(entry.recipient, full_jid),
                    tuple(entry.items),
                    entry.skipped,
                )
            )
        return released

    def forget_items(self, node: str, item_ids: Iterable[str] | None = None) -> None:
        """Drop retracted items (all of the node's when ``item_ids`` is None)."""
        ids = None if item_ids is None else set(item_ids)
        for (who, held_node), entry in list(self._held.items()):
            if held_node != node:
                continue
            if ids is None:
                del self._held[(who, held_node)]
            else:
                entry.items = deque(i for i in entry.items if i.item_id not in ids)

    def forget_subscriber(self, bare_jid: str, node: str) -> None:
        self._held.pop((bare_jid, node), None)

    def held_count(self, bare_jid: str, node: str) -> int:
        entry = self._held.get((bare_jid, node))
        return len(entry.items) if entry else 0


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigestBatch:
    node: str
    recipient: Recipient
    items: tuple[Item, ...]


@dataclass(slots=True)
class _Pending:
    recipient: Recipient
    started: float
    frequency: float
    items: list[Item]


class DigestQueue:
    """Notifications accumulated for digest subscriptions (pubsub#digest).

    A batch opens with its first item and is due ``digest_frequency`` milliseconds later.
    """

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], _Pending] = {}

    def add(
        self,
        node: str,
        recipient: Recipient,
        items: Sequence[Item],
        *,
        now: float,
        frequency_ms: int,
    ) -> None:
        key = (recipient.address, node)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(recipient, now, frequency_ms / 1000, [])
        pending.items.extend(items)

    def due_digests(self, now: float) -> list[DigestBatch]:
        due: list[DigestBatch] = []
        for key, pending in list(self._pending.items()):
            if now - pending.started >= pending.frequency:
                del self._pending[key]
                due.append(DigestBatch(key[1], pending.recipient, tuple(pending.items)))
        return due

    def forget_items(self, node: str, item_ids: Iterable[str] | None = None) -> None:
        ids = None if item_ids is None else set(item_ids)
        for (address, held_node), pending in list(self._pending.items()):
            if held_node == node:
                kept = [] if ids is None else [i for i in pending.items if i.item_id not in ids]
                pending.items = kept
                if not pending.items:
                    del self._pending[(address, held_node)]

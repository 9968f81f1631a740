"""Delivery decisions: which addresses get a notification, and what waits for later.

Pure and synchronous. Presence is asked through :class:`PresenceView`; time is passed in.
Items a subscriber could not receive while away are marked as held (:mod:`.catch_up` keeps
them), and digest subscriptions are marked for :mod:`.digests`, which batches them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .model import MessageType, NodeConfig, Subscription, is_full
from .notifications import Recipient


class PresenceView(Protocol):
    def available_resources(self, bare: str) -> Mapping[str, str]:
        """Full JID → show ("online", "chat", "away", "xa", "dnd"); empty when offline."""
        ...


def presence_known(presence: PresenceView, bare: str) -> bool:
    """Whether ``presence`` can tell where ``bare`` is online (its own users, not remote ones).

    A view may answer with ``knows(bare)``; one that cannot is trusted for everybody.
    """
    knows = getattr(presence, "knows", None)
    return True if knows is None else bool(knows(bare))


def resource_connected(presence: PresenceView, full_jid: str) -> bool:
    """Whether ``full_jid`` has a bound session, available or not (RFC 6121 §8.5.3.1 delivers
    a message to a "connected resource" as well as to an available one).

    A view may answer with ``connected(full_jid)``; one that cannot knows only availability.
    """
    connected = getattr(presence, "connected", None)
    return False if connected is None else bool(connected(full_jid))


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
                merged[address] = (template if address == template.address
                                   else with_address(template, address))
            elif sub.subid not in previous.subids:
                # XEP-0060 §7.1.2.4: one message per address, listing every subid.
                merged[address] = _merge(previous, sub.subid)
    plan.recipients.extend(merged.values())
    return plan


def _addresses(sub: Subscription, config: NodeConfig, presence: PresenceView) -> list[str]:
    shows = sub.options.show_values
    full = is_full(sub.jid)
    if config.presence_based_delivery or shows is not None:
        # XEP-0060 §12.6 presence-based delivery and pubsub#show-values: only resources
        # whose presence allows it; an empty list means "held".
        resources = presence.available_resources(sub.bare_jid)
        if full:
            resources = {sub.jid: resources[sub.jid]} if sub.jid in resources else {}
        return [jid for jid, show in resources.items() if shows is None or show in shows]
    if not presence_known(presence, sub.bare_jid):
        # A subscriber on another server: its presence is not ours to know, so its own server
        # applies RFC 6121 delivery to the subscribed address.
        return [sub.jid]
    if full:
        # RFC 6121 §8.5.3.1: a message to a connected full JID is delivered whether or not
        # that resource has sent initial presence; XEP-0060 does not gate delivery on presence
        # unless the node (§12.6) or the subscription (show-values) asks for it.
        online = resource_connected(presence, sub.jid) or (
            sub.jid in presence.available_resources(sub.bare_jid))
    else:
        online = bool(presence.available_resources(sub.bare_jid))
    if not online and (sub.options.message_type or config.notification_type) is (
        MessageType.HEADLINE
    ):
        # RFC 6121 §8.5.2.2.1 / §8.5.3.2.1: a headline to an offline account is dropped, so
        # it is held for catch-up instead of being sent to nobody.
        return []
    # Not presence-based: address the subscribed JID and let RFC 6121 routing decide
    # (delivery to resources, or offline storage for normal/chat messages).
    return [sub.jid]


def with_address(template: Recipient, address: str) -> Recipient:
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


# ---------------------------------------------------------------------------------------------

"""Turning an event on a node into addressed notifications.

Collects the subscriptions that may hear of the event (the node's own, those of ancestor
collections within their depth, and for PEP the implicit subscriptions of interested contacts),
lets :mod:`.delivery` decide the addresses, and keeps what must wait: catch-up and digests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from .access import AccessContext, Action, may
from .batch import audience_key
from .catch_up import CatchUpTracker
from .delivery import Candidate, DeliveryPlan, PresenceView, plan_delivery
from .digests import DigestQueue
from .model import AccessModel, Item, Node, NodeConfig, Subscription
from .notifications import Notification, NotificationKind, Recipient
from .store import PubSubStore


class NotifyInterest(Protocol):
    """PEP: whether a contact's resource asked for ``node`` notifications (``node+notify`` in
    its XEP-0115 caps, XEP-0163 §4.2)."""

    def interested(self, full_jid: str, node: str) -> bool: ...


class PresenceSubscribers(Protocol):
    """PEP: the contacts of an account that receive its presence (subscription from/both)."""

    def presence_subscribers(self, owner_bare: str) -> Iterable[str]: ...


class FanOut:
    """Notification building for one service; owns the catch-up and digest state."""

    def __init__(
        self,
        store: PubSubStore,
        service: str,
        presence: PresenceView,
        *,
        clock: Callable[[], float],
        catch_up_cap: int,
        context: Callable[[Node, str], Awaitable[AccessContext]],
        pep: bool = False,
        interest: NotifyInterest | None = None,
        subscribers: PresenceSubscribers | None = None,
    ) -> None:
        self.store = store
        self.service = service
        self.presence = presence
        self.clock = clock
        self.context = context
        self.pep = pep
        self.interest = interest
        self.subscribers = subscribers
        self.catch_up = CatchUpTracker(store, service, catch_up_cap)
        self.digests = DigestQueue(store, service)
        # node → (its subscriptions as last listed, their candidates): the store hands out the
        # same subscription objects until one changes, so a publish reuses the candidates.
        self._own: dict[str, tuple[list[Subscription], list[Candidate]]] = {}

    def invalidate(self, node_id: str) -> None:
        """Forget the node's delivery candidates: its subscriptions changed elsewhere (another
        instance on the same database)."""
        self._own.pop(node_id, None)

    def items_notification(
        self, node: Node, items: Sequence[Item], recipients: tuple[Recipient, ...]
    ) -> Notification:
        ordered = tuple(sorted(items, key=lambda i: i.seq))
        return Notification(
            NotificationKind.ITEMS,
            self.service,
            node.node_id,
            recipients,
            items=ordered,
            with_payload=node.config.deliver_payloads,
        )

    async def candidates(self, node: Node) -> list[Candidate]:
        """Item subscriptions of the node itself, then of its ancestor collections."""
        own = await self.store.list_subscriptions(self.service, node.node_id)
        found = self._own_candidates(node.node_id, own)
        if node.parents:
            found = found + await self.ancestor_candidates(node.parents, "items", {node.node_id})
        return await self.without_lapsed(found)

    def _own_candidates(self, node_id: str, subs: list[Subscription]) -> list[Candidate]:
        cached = self._own.get(node_id)
        if cached is not None:
            previous, candidates = cached
            same = len(previous) == len(subs) and all(
                a is b for a, b in zip(previous, subs, strict=True))
            if same:
                return candidates
        candidates = [Candidate(s) for s in subs]
        self._own[node_id] = (subs, candidates)
        return candidates

    async def without_lapsed(self, candidates: list[Candidate]) -> list[Candidate]:
        """Drop (and delete) subscriptions whose lease has ended (XEP-0060 §12.19)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        lapsed = [c for c in candidates if c.subscription.lapsed(now)]
        if not lapsed:
            return candidates
        for candidate in lapsed:
            sub = candidate.subscription
            await self.store.delete_subscription(self.service, sub.node, sub.subid)
        return [c for c in candidates if c not in lapsed]

    async def ancestor_candidates(
        self, parents: Sequence[str], subscription_type: str, seen: set[str]
    ) -> list[Candidate]:
        """Subscriptions of ``subscription_type`` to the collections above an event, each
        within its pubsub#subscription_depth (the direct parents being depth 1)."""
        candidates: list[Candidate] = []
        depth = 1
        frontier = list(parents)
        while frontier:
            next_frontier: list[str] = []
            for collection_id in frontier:
                if collection_id in seen:
                    continue
                seen.add(collection_id)
                collection = await self.store.get_node(self.service, collection_id)
                if collection is None:
                    continue
                for sub in await self.store.list_subscriptions(self.service, collection_id):
                    options = sub.options
                    if options.subscription_type != subscription_type:
                        continue
                    limit = options.subscription_depth
                    if limit is not None and limit < depth:
                        continue
                    candidates.append(Candidate(sub, collection_id))
                next_frontier.extend(collection.parents)
            frontier = next_frontier
            depth += 1
        return candidates

    async def fan_out(
        self,
        node: Node,
        kind: NotificationKind,
        *,
        items: Sequence[Item] = (),
        item_ids: Sequence[str] = (),
        text: str | None = None,
        redirect: str | None = None,
        config: NodeConfig | None = None,
    ) -> list[Notification]:
        item_event = kind is NotificationKind.ITEMS
        candidates = await self.candidates(node)
        plan = plan_delivery(
            candidates,
            node.config,
            self.presence,
            text=text if item_event else None,
            item_event=item_event,
        )
        return await self.planned(node, kind, candidates, plan, items=items, item_ids=item_ids,
                                  redirect=redirect, config=config)

    async def item_plans(
        self, node: Node, texts: Sequence[str | None]
    ) -> tuple[list[Candidate], list[DeliveryPlan]]:
        """The delivery plans of a burst of items published to ``node`` (one per text, in
        order), all taken at one instant: items whose text passes the same subscribers'
        keyword filters share one plan, so presence is asked once per subscriber and burst."""
        candidates = await self.candidates(node)
        by_audience: dict[tuple[bool, ...], DeliveryPlan] = {}
        plans = []
        for text in texts:
            key = audience_key(candidates, text)
            plan = by_audience.get(key)
            if plan is None:
                plan = by_audience[key] = plan_delivery(
                    candidates, node.config, self.presence, text=text, item_event=True)
            plans.append(plan)
        return candidates, plans

    async def planned(
        self,
        node: Node,
        kind: NotificationKind,
        candidates: list[Candidate],
        plan: DeliveryPlan,
        *,
        items: Sequence[Item] = (),
        item_ids: Sequence[str] = (),
        redirect: str | None = None,
        config: NodeConfig | None = None,
    ) -> list[Notification]:
        """The notification of an event whose delivery ``plan`` is made: items held for
        catch-up and digests are set aside, PEP's implicit subscribers added."""
        if kind is NotificationKind.ITEMS:
            await self.catch_up.hold(node.node_id, plan.holds, items)
            for recipient in plan.digests:
                sub_frequency = next(
                    (
                        c.subscription.options.digest_frequency
                        for c in candidates
                        if recipient.subids and c.subscription.subid == recipient.subids[0]
                    ),
                    86_400_000,
                )
                await self.digests.add(
                    node.node_id, recipient, items, now=self.clock(), frequency_ms=sub_frequency
                )
        recipients = list(plan.recipients)
        if self.pep and self.interest is not None:
            recipients += await self._pep_recipients(node, {r.address for r in recipients})
        if not recipients:
            return []
        return [
            Notification(
                kind,
                self.service,
                node.node_id,
                tuple(recipients),
                items=tuple(items),
                item_ids=tuple(item_ids),
                with_payload=node.config.deliver_payloads,
                redirect=redirect,
                config=config,
            )
        ]

    async def _pep_recipients(self, node: Node, already: set[str]) -> list[Recipient]:
        # XEP-0163 §4.1, §4.3.1: contacts with a presence subscription whose caps say node+notify
        # (the implicit subscription), and the owner's own resources.
        contacts = [self.service]
        if self.subscribers is not None:
            contacts += list(self.subscribers.presence_subscribers(self.service))
        interest = self.interest
        assert interest is not None
        recipients = []
        for contact in contacts:
            resources = self.presence.available_resources(contact)
            if not resources:
                continue
            if node.config.access_model not in (AccessModel.OPEN, AccessModel.PRESENCE) and not may(
                node, contact, Action.RETRIEVE_ITEMS, await self.context(node, contact)
            ):
                continue
            for full_jid in resources:
                if full_jid not in already and interest.interested(full_jid, node.node_id):
                    recipients.append(Recipient(full_jid, node.config.notification_type))
        return recipients

    async def node_event(
        self, collection_id: str, kind: NotificationKind, child: str
    ) -> list[Notification]:
        """Tell "nodes" subscribers of a collection about a child node (XEP-0248 §5.3)."""
        collection = await self.store.get_node(self.service, collection_id)
        if collection is None:
            return []
        candidates = await self.without_lapsed(
            await self.ancestor_candidates([collection_id], "nodes", {child})
        )
        plan = plan_delivery(candidates, collection.config, self.presence, item_event=False)
        if not plan.recipients:
            return []
        return [
            Notification(kind, self.service, collection_id, tuple(plan.recipients), child=child)
        ]

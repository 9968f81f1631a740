"""The figures of the syndication side that no other module keeps: fetches per minute, and
pubsub notifications delivered and held, per node and per minute.

A notification is counted *delivered* when its bytes enter a session's outbox, as the pubsub
component's sender reports once per notification (with how many outboxes took it), and *held*
when the pubsub core puts an item aside for an away or offline subscriber (XEP-0060 §12.6
presence-based delivery), which its catch-up tracker reports.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pubsubd.core.session import SessionRegistry
from pubsubd.metrics import Metrics
from pubsubd.modules.control_socket import ControlError
from pubsubd.modules.feeds.module import FeedsModule
from pubsubd.modules.feeds.pubsub_component import PubSubComponent

RATE_SPAN = 300.0  # seconds over which "per minute" rates are averaged
MAX_LISTED_NODES = 500  # node statistics without a node name list at most this many


# -- counting -----------------------------------------------------------------------------


class RateWindow:
    """Events per minute over the last ``span`` seconds, in one-second buckets."""

    def __init__(self, span: float = RATE_SPAN, clock: Callable[[], float] = time.monotonic):
        self.span = span
        self._clock = clock
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first
        self._started = clock()

    def add(self, count: int = 1) -> None:
        second = int(self._clock())
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += count
        else:
            self._buckets.append([second, count])
        self._trim(second)

    def _trim(self, now: int) -> None:
        while self._buckets and self._buckets[0][0] <= now - self.span:
            self._buckets.popleft()

    def per_minute(self) -> float:
        now = self._clock()
        self._trim(int(now))
        # A young server averages over its lifetime so far, not over an empty window.
        seconds = max(1.0, min(self.span, now - self._started))
        return round(sum(c for _, c in self._buckets) * 60.0 / seconds, 2)


@dataclass(slots=True)
class DeliveryCounter:
    """Notifications of the pubsub service: delivered and held, per node and per minute."""

    delivered_by_node: Counter[str] = field(default_factory=Counter)
    held_by_node: Counter[str] = field(default_factory=Counter)
    rate: RateWindow = field(default_factory=RateWindow)
    on_delivered: Callable[[int], None] = lambda n: None
    on_held: Callable[[int], None] = lambda n: None

    def delivered(self, node: str, count: int = 1) -> None:
        self.delivered_by_node[node] += count
        self.rate.add(count)
        self.on_delivered(count)

    def held(self, node: str, count: int) -> None:
        self.held_by_node[node] += count
        self.on_held(count)


# -- the figures both front ends show (XEP-0050 commands and the control socket) --------


class ServiceStats:
    """Poller, delivery and node statistics as plain dictionaries."""

    def __init__(self, *, feeds: FeedsModule | None, pubsub: PubSubComponent | None,
                 metrics: Metrics, sessions: SessionRegistry) -> None:
        self.feeds = feeds
        self.pubsub = pubsub
        self.metrics = metrics
        self.sessions = sessions
        self.fetch_rate = RateWindow()
        self.delivery = DeliveryCounter(
            on_delivered=metrics.notifications_delivered,
            on_held=metrics.notifications_held,
        )

    def poller(self) -> dict[str, Any]:
        feeds = self.feeds
        if feeds is None:
            raise ControlError("the feed service is not running")
        s = feeds.poller.stats
        return {
            "fetches_per_minute": self.fetch_rate.per_minute(),
            "fetches": s.fetches,
            "not_modified": s.not_modified,
            "not_modified_ratio": round(s.not_modified / s.fetches, 3) if s.fetches else 0.0,
            "errors": sum(s.errors_by_kind.values()),
            "errors_by_kind": dict(sorted(s.errors_by_kind.items())),
            "in_flight": s.in_flight,
            "queue_depth": s.queue_depth,
            "lag_seconds": round(s.last_lag, 3),
            "max_lag_seconds": round(s.max_lag, 3),
            "entries_published": s.entries_published,
            "entries_notified": s.entries_notified,
            "leases_held": s.leases_held,
            "lease_takeovers": s.lease_takeovers,
            "leases_lost": s.leases_lost,
        }

    def delivery_stats(self) -> dict[str, Any]:
        metrics = self.metrics
        d = self.delivery
        return {
            "notifications_per_minute": d.rate.per_minute(),
            "delivered": sum(d.delivered_by_node.values()),
            "held": sum(d.held_by_node.values()),
            "offline_stored": int(metrics.value("pubsubd_offline_stored_total")),
            "sessions": len(self.sessions),
        }

    async def nodes(self, node: str | None = None) -> list[dict[str, Any]]:
        """Items, subscribers and notifications of one node, or of every node (capped)."""
        pubsub = self.pubsub
        if pubsub is None:
            raise ControlError("the pubsub service is not running")
        service = pubsub.service
        store = service.store
        if node:
            found = await store.get_node(service.service, node)
            if found is None:
                raise ControlError(f"no such node {node}")
            names = [node]
        else:
            names = sorted(n.node_id for n in await store.list_nodes(service.service))
            names = names[:MAX_LISTED_NODES]
        rows = []
        for name in names:
            subs = await store.list_subscriptions(service.service, name)
            rows.append({
                "node": name,
                "items": await store.count_items(service.service, name),
                "subscribers": sum(1 for s in subs if s.active),
                "notifications": self.delivery.delivered_by_node[name],
                "held": self.delivery.held_by_node[name],
            })
        return rows


__all__ = ["DeliveryCounter", "RateWindow", "ServiceStats"]

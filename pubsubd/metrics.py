"""Prometheus metrics of one server, in a registry of its own (never the process-global one).

Modules record what happens through the small methods of :class:`Metrics` (the feed poller and
the pubsub glue call :meth:`Metrics.fetch_done`, :meth:`Metrics.set_feeds_by_state`,
:meth:`Metrics.notifications_delivered`, ...). Values that already live in the server — sessions
online, open connections — are read at scrape time by a collector, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics", "STANZA_KINDS"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
STANZA_KINDS = ("message", "presence", "iq")
_FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class _LiveCollector(Collector):
    """Gauges computed on scrape from callables, e.g. ``len(server.sessions)``."""

    def __init__(self) -> None:
        self.sessions: Callable[[], int] = lambda: 0
        self.connections: Callable[[], Mapping[str, int]] = dict

    def collect(self) -> Iterable[Metric]:
        sessions = GaugeMetricFamily("pubsubd_sessions_online",
                                     "Bound client sessions (resources) right now")
        sessions.add_metric([], self.sessions())
        yield sessions
        conns = GaugeMetricFamily("pubsubd_connections", "Open connections by listener kind",
                                  labels=["kind"])
        for kind, count in sorted(self.connections().items()):
            conns.add_metric([kind], count)
        yield conns


class Metrics:
    """Every metric pubsubd exports; ``render()`` gives the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.live = _LiveCollector()
        r.register(self.live)
        self.stanzas_in = Counter("pubsubd_stanzas_in", "Stanzas received from clients",
                                  ["kind"], registry=r)
        self.stanzas_out = Counter("pubsubd_stanzas_out", "Stanzas queued to clients",
                                   ["kind"], registry=r)
        self.auth_failures = Counter("pubsubd_auth_failures", "Failed SASL authentications",
                                     registry=r)
        self.event_loop_lag = Gauge("pubsubd_event_loop_lag_seconds",
                                    "How late the last event-loop probe woke up", registry=r)
        self.storage_latency = Histogram("pubsubd_storage_latency_seconds",
                                         "Round trip of a trivial storage query",
                                         buckets=_STORAGE_BUCKETS, registry=r)
        self.feeds = Gauge("pubsubd_feeds", "Feeds by state", ["state"], registry=r)
        self.fetches = Counter("pubsubd_feed_fetches", "Feed fetches by HTTP status",
                               ["status"], registry=r)
        self.fetch_latency = Histogram("pubsubd_feed_fetch_seconds", "Feed fetch duration",
                                       buckets=_FETCH_BUCKETS, registry=r)
        self.entries_shortened = Counter(
            "pubsubd_feed_entries_shortened",
            "Feed entries whose content was cut to fit the pubsub payload limit", registry=r)
        self.notifications = Counter("pubsubd_notifications",
                                     "Pubsub notifications by outcome (delivered or held)",
                                     ["outcome"], registry=r)
        self.offline = Counter("pubsubd_offline_stored",
                               "Messages kept in offline storage for an absent user",
                               registry=r)
        # Feed work shared by several instances (docs/scaling.md).
        self.feed_leases = Gauge("pubsubd_feed_leases_held",
                                 "Feeds this instance holds a polling lease on", registry=r)
        self.feed_lease_events = Counter(
            "pubsubd_feed_lease_events",
            "Leases taken over from an instance that stopped renewing them (takeover), and "
            "polls abandoned because another instance took their lease (lost)",
            ["event"], registry=r)
        for event in ("takeover", "lost"):
            self.feed_lease_events.labels(event)
        for kind in STANZA_KINDS:  # export zeros from the start, so rates work at once
            self.stanzas_in.labels(kind)
            self.stanzas_out.labels(kind)
        for outcome in ("delivered", "held"):
            self.notifications.labels(outcome)
        # Counted once per recipient of every notification: the labelled child is looked up
        # once here, not on each increment.
        self._delivered = self.notifications.labels("delivered")
        self._held = self.notifications.labels("held")

    # --- the API modules call ------------------------------------------------------------

    def stanza_in(self, kind: str) -> None:
        self.stanzas_in.labels(kind).inc()

    def stanza_out(self, kind: str) -> None:
        self.stanzas_out.labels(kind).inc()

    def set_feeds_by_state(self, counts: Mapping[str, int]) -> None:
        """Replace the feed gauge (e.g. {"active": 10, "paused": 1, "failing": 2})."""
        self.feeds.clear()
        for state, count in counts.items():
            self.feeds.labels(state).set(count)

    def fetch_done(self, status: int | str, seconds: float) -> None:
        """One feed fetch finished: its HTTP status (or an error kind like "timeout")."""
        self.fetches.labels(str(status)).inc()
        self.fetch_latency.observe(seconds)

    def watch_feed_leases(self, held: Callable[[], int]) -> None:
        """Read the number of feed leases held from ``held`` at every scrape."""
        self.feed_leases.set_function(held)

    def feed_lease_event(self, event: str) -> None:
        """A lease was taken over ("takeover") or a poll lost its lease ("lost")."""
        self.feed_lease_events.labels(event).inc()

    def feed_entry_shortened(self) -> None:
        """A feed entry was published shortened rather than dropped for its size."""
        self.entries_shortened.inc()

    def notifications_delivered(self, count: int = 1) -> None:
        self._delivered.inc(count)

    def notifications_held(self, count: int = 1) -> None:
        """Notifications kept for a subscriber who is away or offline."""
        self._held.inc(count)

    def offline_stored(self, stored: bool) -> bool:
        """Count a message the offline store accepted; returns ``stored`` so the store's
        answer can pass straight through."""
        if stored:
            self.offline.inc()
        return stored

    def value(self, name: str, **labels: str) -> float:
        """The current value of one exported sample (0 if it was never set)."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)

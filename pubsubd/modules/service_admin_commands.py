"""Operating the syndication side: feeds, nodes, the poller and delivery, for admins only.

Two front ends share one implementation. The XEP-0050 commands on the server domain (nodes
``urn:pubsubd:service-admin:0#<name>``) are visible to and runnable by the JIDs in
``config.admins`` only, like the XEP-0133 ones (XEP-0133 §5); the control socket gets the same
figures as ``stats.poller``, ``stats.delivery`` and ``stats.nodes``. Feed actions go through
:class:`~pubsubd.modules.feeds_service.FeedManager`, which the ``feeds.*`` control operations
use too.

The counters no other module keeps are taken at the edges, without touching the pubsub
component: a notification is counted *delivered* when its bytes enter a session's outbox (a
``<message/>`` from the service carrying a pubsub#event), and *held* when the pubsub core puts an
item aside for an away or offline subscriber (XEP-0060 §12.6 presence-based delivery).
Offline-stored messages are counted by the offline module through ``server.metrics``.
"""

from __future__ import annotations

import inspect
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import unescape

import trio

from feeds.fetch import FetchResult
from feeds.model import FeedState
from feeds.opml import OpmlFeed
from feeds.poller import PollOutcome
from pubsubd import ns
from pubsubd.core.module import Module
from pubsubd.core.session import Session
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.modules.control_socket import ControlError
from pubsubd.modules.xep0050_commands import Command, CommandSession, Done, Note, Stage
from pubsubd.xml.forms import Field, Form, Option

if TYPE_CHECKING:
    from pubsubd.modules.feeds_service import FeedManager, FeedStatus

__all__ = [
    "DeliveryCounter",
    "NODE",
    "RateWindow",
    "ServiceAdminModule",
    "ServiceStats",
    "notification_of",
]

NODE = ns.SERVICE_ADMIN + "#"
RATE_SPAN = 300.0  # seconds over which "per minute" rates are averaged
FEED_GAUGE_INTERVAL = 30.0  # seconds between refreshes of the feeds-by-state gauge at most
FEED_GAUGE_SPACING = 1.0  # ...and at least, however many fetches finish meanwhile
MAX_LISTED_NODES = 500  # node statistics without a node name list at most this many
MAX_FEED_OPTIONS = 200  # beyond this, commands ask for a feed's address as free text
_EVENT = ns.PUBSUB_EVENT.encode()
_FROM = re.compile(rb"""\sfrom=(["'])([^"']*)\1""")
_NODE = re.compile(rb"""<(?:items|purge|delete|configuration|collection)\s+node=(["'])(.*?)\1""")


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


def notification_of(data: bytes, service: bytes) -> str | None:
    """The node of a pubsub notification from ``service`` in serialized ``data``, else None.

    Only the message's start tag and the event's first child are looked at, so the cost of a
    non-notification is one ``startswith``.
    """
    if not data.startswith(b"<message") or _EVENT not in data:
        return None
    head_end = data.find(b">")
    found = _FROM.search(data, 0, head_end)
    if found is None or found.group(2) != service:
        return None
    node = _NODE.search(data, head_end)
    raw = node.group(2).decode("utf-8", "replace") if node else ""
    return unescape(raw, {"&apos;": "'", "&quot;": '"'})


class _TappedOutbox:
    """A session outbox that reports each pubsub notification it queues, then passes it on."""

    def __init__(self, inner: Any, service: bytes, seen: Callable[[str], None]) -> None:
        self._inner = inner
        self._service = service
        self._seen = seen

    def send_nowait(self, data: bytes) -> None:
        self._inner.send_nowait(data)
        node = notification_of(data, self._service)
        if node is not None:
            self._seen(node)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass(slots=True)
class DeliveryCounter:
    """Notifications of the pubsub service: delivered and held, per node and per minute."""

    delivered_by_node: Counter[str] = field(default_factory=Counter)
    held_by_node: Counter[str] = field(default_factory=Counter)
    rate: RateWindow = field(default_factory=RateWindow)
    on_delivered: Callable[[int], None] = lambda n: None
    on_held: Callable[[int], None] = lambda n: None

    def delivered(self, node: str) -> None:
        self.delivered_by_node[node] += 1
        self.rate.add()
        self.on_delivered(1)

    def held(self, node: str, count: int) -> None:
        self.held_by_node[node] += count
        self.on_held(count)


# -- the figures both front ends show -----------------------------------------------------


class ServiceStats:
    """Poller, delivery and node statistics as plain dictionaries."""

    def __init__(self, module: ServiceAdminModule) -> None:
        self.module = module
        self.server = module.server
        self.fetch_rate = RateWindow()
        self.delivery = DeliveryCounter(
            on_delivered=self.server.metrics.notifications_delivered,
            on_held=self.server.metrics.notifications_held,
        )

    def poller(self) -> dict[str, Any]:
        feeds = self.module.feeds
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
        }

    def delivery_stats(self) -> dict[str, Any]:
        metrics = self.server.metrics
        d = self.delivery
        return {
            "notifications_per_minute": d.rate.per_minute(),
            "delivered": sum(d.delivered_by_node.values()),
            "held": sum(d.held_by_node.values()),
            "offline_stored": int(metrics.value("pubsubd_offline_stored_total")),
            "sessions": len(self.server.sessions),
        }

    async def nodes(self, node: str | None = None) -> list[dict[str, Any]]:
        """Items, subscribers and notifications of one node, or of every node (capped)."""
        pubsub = getattr(self.server, "pubsub", None)
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


# -- the module ---------------------------------------------------------------------------


AdminStep = Callable[[CommandSession, Form | None], Awaitable[Stage | Done]]


class ServiceAdminModule(Module):
    """Admin commands and statistics of feeds and pubsub delivery; loaded after ``feeds``."""

    name = "service_admin"

    def setup(self) -> None:
        server = self.server
        self.admins = frozenset(JID.parse(a).bare for a in server.config.admins)
        self.feeds: Any = server.module("feeds")
        if getattr(self.feeds, "manager", None) is None:
            self.feeds = None
        self.stats = ServiceStats(self)
        self._feeds_changed = trio.Event()
        self._count_delivery()
        if self.feeds is not None:
            listeners = getattr(self.feeds.fetcher, "listeners", None)
            if listeners is not None:
                listeners.append(self._fetched)
        commands = server.module("commands")
        if commands is not None:
            for command in self._commands():
                commands.add(command)  # type: ignore[attr-defined]
        server.control_ops.update({
            "stats.poller": self._op_poller, "stats.delivery": self._op_delivery,
            "stats.nodes": self._op_nodes,
        })

    @property
    def manager(self) -> FeedManager:
        if self.feeds is None:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, "the feed service is not running")
        return self.feeds.manager  # type: ignore[no-any-return]

    def is_admin(self, jid: JID) -> bool:
        return jid.bare in self.admins

    def _fetched(self, _: FetchResult) -> None:
        self.stats.fetch_rate.add()
        self._feeds_changed.set()

    def _count_delivery(self) -> None:
        pubsub = getattr(self.server, "pubsub", None)
        if pubsub is None:
            return
        service = pubsub.service
        tap_from = service.service.encode()
        counter = self.stats.delivery

        async def tap(session: Session) -> bool:
            session.outbox = _TappedOutbox(  # type: ignore[assignment]
                session.outbox, tap_from, counter.delivered)
            return False

        self.server.hooks.on("session/bound", tap, priority=9_000)
        tracker = getattr(service, "catch_up", None)
        if tracker is None or not inspect.iscoroutinefunction(getattr(tracker, "hold", None)):
            self.log.info("the pubsub service holds nothing for catch-up; held stays 0")
            return
        hold = tracker.hold

        async def counted_hold(node: str, holds: Sequence[Any], *rest: Any) -> Any:
            """One notification held per subscriber set aside (XEP-0060 §12.6)."""
            done = await hold(node, holds, *rest)
            counter.held(node, len(holds))
            return done

        tracker.hold = counted_hold

    async def run(self) -> None:
        if self.feeds is None:
            return
        while True:
            await self.update_feed_gauge()
            await trio.sleep(FEED_GAUGE_SPACING)
            with trio.move_on_after(FEED_GAUGE_INTERVAL):
                await self._feeds_changed.wait()
            self._feeds_changed = trio.Event()

    async def update_feed_gauge(self) -> None:
        from pubsubd.modules.feeds_service import feed_condition

        if self.feeds is None:
            return
        states = await self.feeds.store.list_feeds()
        counts = dict.fromkeys(("new", "ok", "failing", "paused", "gone"), 0)
        for state in states:
            counts[feed_condition(state)] += 1
        self.server.metrics.set_feeds_by_state(counts)

    # -- control socket -----------------------------------------------------------------

    async def _op_poller(self, args: dict[str, Any]) -> Any:
        """Poller statistics: fetches per minute, 304 ratio, errors by kind, queue, lag."""
        return self.stats.poller()

    async def _op_delivery(self, args: dict[str, Any]) -> Any:
        """Delivery statistics: notifications per minute, delivered, held, offline-stored."""
        return self.stats.delivery_stats()

    async def _op_nodes(self, args: dict[str, Any]) -> Any:
        """Node statistics: items, subscribers, notifications sent (node=... for one)."""
        return await self.stats.nodes(str(args.get("node") or "") or None)

    # -- XEP-0050 commands --------------------------------------------------------------

    def _command(self, name: str, label: str, *steps: AdminStep) -> Command:
        return Command(NODE + name, label, list(steps), allowed=self.is_admin)

    def _commands(self) -> list[Command]:
        return [
            self._command("feeds-list", "List Feeds", self._list_feeds),
            self._command("feed-add", "Add a Feed", self._add_form, self._add),
            *(self._command(f"feed-{verb}", label, self._feed_form(title), self._feed_action(verb))
              for verb, label, title in (
                  ("remove", "Remove a Feed", "Stop polling a feed"),
                  ("pause", "Pause a Feed", "Pause a feed"),
                  ("resume", "Resume a Feed", "Resume a feed"),
                  ("refresh", "Refresh a Feed Now", "Poll a feed now"))),
            self._command("node-stats", "Node Statistics", self._node_form, self._node_stats),
            self._command("poller-stats", "Poller Statistics", self._poller_stats),
            self._command("delivery-stats", "Delivery Statistics", self._delivery_stats),
        ]

    async def _list_feeds(self, session: CommandSession, _: Form | None) -> Done:
        statuses = await self.manager.statuses()
        columns = [("url", "URL"), ("title", "Title"), ("state", "State"),
                   ("subscribers", "Subscribers"), ("last_fetch", "Last fetch"),
                   ("http_status", "HTTP status"), ("last_error", "Last error"),
                   ("next_fetch", "Next fetch"), ("items", "Items")]
        form = Form("result", title="Feeds",
                    reported=[Field(var, "text-single", label) for var, label in columns],
                    items=[[Field(var, values=[value] if value else [])
                            for var, value in _feed_row(s).items()] for s in statuses])
        return Done([Note(f"{len(statuses)} feed(s)")], form=form)

    async def _add_form(self, session: CommandSession, _: Form | None) -> Stage:
        return Stage(Form.with_form_type("form", ns.SERVICE_ADMIN, [
            Field("url", "text-single", "Feed address", required=True),
            Field("title", "text-single", "Title (optional)"),
            Field("group", "text-single", "Folder (optional)"),
        ], title="Add a feed", instructions=["The feed is polled whether or not anyone "
                                             "follows it."]))

    async def _add(self, session: CommandSession, form: Form | None) -> Done:
        from pubsubd.modules.feeds_service import FeedRefused

        assert form is not None
        entry = OpmlFeed(form.value("url") or "", form.value("title") or "", "",
                         form.value("group") or "")
        try:
            state = await self.manager.add_pinned(entry)
        except FeedRefused as refused:
            return Done([Note(refused.message, "error")])
        self._feeds_changed.set()
        return Done([Note(f"{state.url} is polled (node {state.feed_id})")],
                    form=_status_form(await self.manager.status(state)))

    def _feed_form(self, title: str) -> AdminStep:
        async def show(session: CommandSession, _: Form | None) -> Stage:
            urls = sorted(s.feed_id for s in await self.manager.poller.store.list_feeds())
            if urls and len(urls) <= MAX_FEED_OPTIONS:
                url = Field("url", "list-single", "Feed", required=True,
                            options=[Option(u, u) for u in urls])
            else:
                url = Field("url", "text-single", "Feed address", required=True)
            return Stage(Form.with_form_type("form", ns.SERVICE_ADMIN, [url], title=title))

        return show

    def _feed_action(self, verb: str) -> AdminStep:
        async def act(session: CommandSession, form: Form | None) -> Done:
            from pubsubd.modules.feeds_service import FeedRefused

            assert form is not None
            node = form.value("url") or ""
            manager = self.manager
            try:
                if verb == "remove":
                    if not await manager.remove(node):
                        return Done([Note(f"{node} is not a polled feed", "error")])
                    done = Done([Note(f"{node} is no longer polled; its node and items stay")])
                elif verb == "refresh":
                    done = _refresh_done(await manager.refresh(node))
                else:
                    state = await (manager.pause(node) if verb == "pause"
                                   else manager.resume(node))
                    done = Done([Note(f"{node} {verb}d")],
                                form=_status_form(await manager.status(state)))
            except FeedRefused as refused:
                return Done([Note(refused.message, "error")])
            self._feeds_changed.set()
            return done

        return act

    async def _node_form(self, session: CommandSession, _: Form | None) -> Stage:
        return Stage(Form.with_form_type("form", ns.SERVICE_ADMIN, [
            Field("node", "text-single", "Node (empty for all)"),
        ], title="Node statistics"))

    async def _node_stats(self, session: CommandSession, form: Form | None) -> Done:
        assert form is not None
        try:
            rows = await self.stats.nodes(form.value("node") or None)
        except ControlError as exc:
            raise StanzaError(Condition.ITEM_NOT_FOUND, str(exc)) from None
        columns = [("node", "Node"), ("items", "Items"), ("subscribers", "Subscribers"),
                   ("notifications", "Notifications sent"), ("held", "Held")]
        result = Form("result", title="Node statistics",
                      reported=[Field(var, "text-single", label) for var, label in columns],
                      items=[[Field(var, values=[str(row[var])]) for var, _ in columns]
                             for row in rows])
        return Done([Note(f"{len(rows)} node(s)")], form=result)

    async def _poller_stats(self, session: CommandSession, _: Form | None) -> Done:
        try:
            stats = self.stats.poller()
        except ControlError as exc:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, str(exc)) from None
        errors = stats.pop("errors_by_kind")
        fields = _figures(stats)
        fields.append(Field("errors_by_kind", "text-multi", "Errors by kind",
                            values=[f"{k}: {v}" for k, v in errors.items()]))
        return Done(form=Form.with_form_type("result", ns.SERVICE_ADMIN, fields,
                                             title="Poller statistics"))

    async def _delivery_stats(self, session: CommandSession, _: Form | None) -> Done:
        return Done(form=Form.with_form_type("result", ns.SERVICE_ADMIN,
                                             _figures(self.stats.delivery_stats()),
                                             title="Delivery statistics"))


def _figures(values: Mapping[str, object]) -> list[Field]:
    return [Field(k, "text-single", k.replace("_", " ").capitalize(), values=[str(v)])
            for k, v in values.items()]


def _feed_row(status: FeedStatus) -> dict[str, str]:
    from pubsubd.modules.feeds_service import feed_condition, iso

    s: FeedState = status.state
    return {"url": s.url, "title": s.title, "state": feed_condition(s),
            "subscribers": str(status.subscribers), "last_fetch": iso(s.last_fetch),
            "http_status": "" if s.last_status is None else str(s.last_status),
            "last_error": s.last_error, "next_fetch": iso(s.next_fetch),
            "items": str(status.items)}


def _status_form(status: FeedStatus) -> Form:
    return Form.with_form_type("result", ns.SERVICE_ADMIN, [
        Field(var, "text-single", values=[value] if value else [])
        for var, value in _feed_row(status).items()])


def _refresh_done(outcome: PollOutcome) -> Done:
    status = "no answer" if outcome.status is None else f"HTTP {outcome.status}"
    note = (Note(f"{status}: {outcome.error}", "error") if outcome.error else
            Note(f"{status}: {outcome.new} new, {outcome.updated} updated, "
                 f"{outcome.notified} notified"))
    return Done([note], form=Form.with_form_type("result", ns.SERVICE_ADMIN, [
        Field("http_status", "text-single", values=[] if outcome.status is None
              else [str(outcome.status)]),
        Field("new", "text-single", values=[str(outcome.new)]),
        Field("updated", "text-single", values=[str(outcome.updated)]),
        Field("notified", "text-single", values=[str(outcome.notified)]),
        Field("error", "text-single", values=[outcome.error] if outcome.error else []),
    ]))

"""Operating the syndication side: feeds, nodes, the poller and delivery, for admins only.

Two front ends share one implementation. The XEP-0050 commands on the server domain (nodes
``urn:pubsubd:service-admin:0#<name>``) are visible to and runnable by the JIDs in
``config.admins`` only, like the XEP-0133 ones (XEP-0133 §5); the control socket gets the same
figures (:mod:`.admin_stats`) as ``stats.poller``, ``stats.delivery`` and ``stats.nodes``. Feed
actions go through :class:`~pubsubd.modules.feeds.manager.FeedManager`, which the ``feeds.*``
control operations use too.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from feeds.fetch import FetchResult
from feeds.model import FeedState
from feeds.opml import OpmlFeed
from feeds.poller import PollOutcome
from pubsubd import ns
from pubsubd.core.control_ops import ControlOps
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.session import SessionRegistry
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.metrics import Metrics
from pubsubd.modules.control_socket import ControlError
from pubsubd.modules.feeds.admin_stats import ServiceStats
from pubsubd.modules.feeds.manager import FeedManager, FeedStatus
from pubsubd.modules.feeds.module import FeedsModule
from pubsubd.modules.feeds.pubsub_component import PubSubComponent
from pubsubd.modules.feeds.refusal import FeedRefused
from pubsubd.modules.feeds.status import feed_condition, iso
from pubsubd.modules.xep0050_commands import (
    Command,
    CommandSession,
    CommandsModule,
    Done,
    Note,
    Stage,
)
from pubsubd.xml.forms import Field, Form, Option

__all__ = ["NODE", "ServiceAdminModule"]

NODE = ns.SERVICE_ADMIN + "#"
FEED_GAUGE_INTERVAL = 30.0  # seconds between refreshes of the feeds-by-state gauge at most
FEED_GAUGE_SPACING = 1.0  # ...and at least, however many fetches finish meanwhile
MAX_FEED_OPTIONS = 200  # beyond this, commands ask for a feed's address as free text


# -- the module ---------------------------------------------------------------------------


AdminStep = Callable[[CommandSession, Form | None], Awaitable[Stage | Done]]


class ServiceAdminModule(Module):
    """Admin commands and statistics of feeds and pubsub delivery; loaded after ``feeds``."""

    name = "service_admin"

    def __init__(self, *, feeds: FeedsModule | None, pubsub: PubSubComponent | None,
                 commands: CommandsModule | None, control_ops: ControlOps, hooks: HookBus,
                 metrics: Metrics, sessions: SessionRegistry, admins: frozenset[str]) -> None:
        super().__init__()
        self.feeds = feeds if feeds is not None and feeds.running else None
        self.pubsub = pubsub
        self.commands = commands
        self.control_ops = control_ops
        self.hooks = hooks
        self.metrics = metrics
        self.sessions = sessions
        self.admins = frozenset(JID.parse(a).bare for a in admins)
        self.stats = ServiceStats(feeds=self.feeds, pubsub=pubsub, metrics=metrics,
                                  sessions=sessions)

    def setup(self) -> None:
        self._feeds_changed = trio.Event()
        self._count_delivery()
        if self.feeds is not None:
            self.feeds.fetcher.listeners.append(self._fetched)
        if self.commands is not None:
            for command in self._commands():
                self.commands.add(command)
        self.control_ops.update({
            "stats.poller": self._op_poller, "stats.delivery": self._op_delivery,
            "stats.nodes": self._op_nodes,
        })

    @property
    def manager(self) -> FeedManager:
        if self.feeds is None or self.feeds.manager is None:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, "the feed service is not running")
        return self.feeds.manager

    def is_admin(self, jid: JID) -> bool:
        return jid.bare in self.admins

    def _fetched(self, _: FetchResult) -> None:
        self.stats.fetch_rate.add()
        self._feeds_changed.set()

    def _count_delivery(self) -> None:
        if self.pubsub is None:
            return
        service = self.pubsub.service
        counter = self.stats.delivery
        # Told once per notification with how many outboxes took it, by the pubsub glue that
        # wrote them: nothing to recognise in every stanza queued to a client.
        self.pubsub.sender.delivered_listeners.append(counter.delivered)
        # One notification held per item and subscriber set aside (XEP-0060 §12.6).
        service.catch_up.held_listeners.append(counter.held)

    async def run(self) -> None:
        if self.feeds is None:
            return
        while True:
            started = time.perf_counter()
            await self.update_feed_gauge()
            # Reading every feed costs more as the table grows (tens of milliseconds for
            # 20,000 feeds): at most 2% of the time goes to this gauge.
            await trio.sleep(max(FEED_GAUGE_SPACING, 50 * (time.perf_counter() - started)))
            with trio.move_on_after(FEED_GAUGE_INTERVAL):
                await self._feeds_changed.wait()
            self._feeds_changed = trio.Event()

    async def update_feed_gauge(self) -> None:
        if self.feeds is None:
            return
        states = await self.feeds.store.list_feeds()
        counts = dict.fromkeys(("new", "ok", "failing", "paused", "gone"), 0)
        for state in states:
            counts[feed_condition(state)] += 1
        self.metrics.set_feeds_by_state(counts)

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

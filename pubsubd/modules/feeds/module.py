"""Feed syndication on the pubsub service: the module that ties the feed package together.

The ``feeds`` package polls and normalizes; this package is its XMPP side. Every polled feed
is a leaf node named by its URL (:mod:`.publisher`); :mod:`.manager` holds the operations that
chat (:mod:`.chat`), ad-hoc commands (:mod:`.commands`), a plain pubsub subscribe to the URL
node, the admin commands and the control socket (:mod:`.control`) share. Each followed feed
is a contact (:mod:`.contacts`) from which entries arrive as chat messages
(:mod:`.delivery`); its health is in the node's disco#info and in event messages
(:mod:`.status`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import trio

from feeds.fetch import FetchResult
from feeds.leases import FeedLeases, default_instance_id
from feeds.poller import FirstPoll, Poller, PollerConfig
from feeds.schedule import SchedulePolicy
from feeds.store import FeedStore
from feeds.websub_subscriber import WebSubSubscriber
from pubsubd import ns
from pubsubd.config import FeedsConfig
from pubsubd.core.control_ops import ControlOps
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.metrics import Metrics
from pubsubd.modules.feeds.avatar import FeedAvatars
from pubsubd.modules.feeds.chat import answer
from pubsubd.modules.feeds.commands import register_commands
from pubsubd.modules.feeds.contacts import FeedContacts, Roster
from pubsubd.modules.feeds.control import FeedControl
from pubsubd.modules.feeds.delivery import ChatDelivery
from pubsubd.modules.feeds.entry_urgency import EntryUrgency
from pubsubd.modules.feeds.fetching import ObservedFetcher, fetch_config, fetch_label
from pubsubd.modules.feeds.manager import FeedManager
from pubsubd.modules.feeds.publisher import NodePublisher
from pubsubd.modules.feeds.pubsub_component import PubSubComponent
from pubsubd.modules.feeds.refusal import FeedRefused
from pubsubd.modules.feeds.rooms import RoomFeeds
from pubsubd.modules.feeds.samples import SampleFeedServer
from pubsubd.modules.feeds.status import feed_metadata
from pubsubd.pubsub.model import bare
from pubsubd.storage.interfaces import (
    FeedContactStore,
    FeedMarkStore,
    PrivateStore,
    RoomFeedStore,
)
from pubsubd.xml import builders

log = logging.getLogger(__name__)

UNFOLLOWED_SWEEP = 900.0  # seconds between looks for feeds nobody follows any more


def poller_config(cfg: FeedsConfig) -> PollerConfig:
    return PollerConfig(
        schedule=SchedulePolicy(
            base_interval=cfg.default_interval,
            min_interval=cfg.min_interval,
            max_interval=cfg.max_interval,
            error_base=cfg.error_backoff,
            error_max=cfg.max_error_backoff,
            host_spacing=cfg.host_spacing,
        ),
        max_concurrent_polls=cfg.max_concurrent,
        first_poll=FirstPoll(cfg.first_poll),
        first_poll_count=cfg.first_poll_count,
        republish_updates=cfg.republish_updates,
        failing_after=cfg.failing_after,
        lease_seconds=cfg.lease_seconds,
        max_per_host=max(cfg.max_per_host, 0),
    )


def instance_id(cfg: FeedsConfig) -> str:
    """This instance's name among those sharing the feeds (``feeds.instance_id``)."""
    return cfg.instance_id or default_instance_id()


class FeedsModule(Module):
    """Polls feeds into the pubsub service's nodes; built after the pubsub component and the
    roster. Off (``running`` false) when ``feeds.enabled`` is false or pubsub is disabled."""

    name = "feeds"

    def __init__(self, *, settings: FeedsConfig, pubsub: PubSubComponent | None,
                 router: Router, roster: Roster | None, store: FeedStore,
                 contact_store: FeedContactStore, mark_store: FeedMarkStore,
                 metrics: Metrics, control_ops: ControlOps, admins: frozenset[str],
                 max_items: int, catalogue: Path | None,
                 push: WebSubSubscriber | None = None,
                 room_store: RoomFeedStore | None = None,
                 leases: FeedLeases | None = None,
                 private_store: PrivateStore | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.pubsub = pubsub
        self.router = router
        self.roster = roster
        self.store = store
        self.contact_store = contact_store
        self.mark_store = mark_store
        self.metrics = metrics
        self.control_ops = control_ops
        self.admins = frozenset(bare(a) for a in admins)
        self.max_items = max_items
        self.catalogue = catalogue  # an OPML file of feeds to poll from the start
        self.push = push  # WebSub: feeds whose hub pushes are polled rarely
        self.room_store = room_store  # feeds posted into group chat rooms (.rooms)
        self.leases = leases  # shared with other instances; None: this process polls alone
        self.rooms: RoomFeeds | None = None
        self.manager: FeedManager | None = None
        # Where each reader's urgent/batched choice for chat entries is kept (XEP-0049).
        self.urgency = EntryUrgency(private_store) if private_store is not None else None

    @property
    def running(self) -> bool:
        return self.manager is not None

    def setup(self) -> None:
        cfg = self.settings
        pubsub = self.pubsub
        if not cfg.enabled:
            return
        if pubsub is None:
            self.log.warning("feeds are enabled but the pubsub service is not; feeds stay off")
            return
        self.samples = SampleFeedServer.bind(cfg) if cfg.serve_samples else None
        endpoints = frozenset({self.samples.endpoint}) if self.samples else frozenset()
        self.fetcher = ObservedFetcher(fetch_config(cfg, endpoints, instance=cfg.instance_id))
        self.fetcher.listeners.append(self._fetched)
        self.publisher = NodePublisher(pubsub, self.router.send, self.max_items,
                                       on_shortened=self.metrics.feed_entry_shortened)
        self.poller = Poller(self.store, self.publisher, self.fetcher, poller_config(cfg),
                             push=self.push, leases=self.leases)
        self.metrics.watch_feed_leases(lambda: self.poller.stats.leases_held)
        self.poller.lease_listeners.append(self.metrics.feed_lease_event)
        if self.push is not None:
            self.push.attach(self.poller.ingest)
        self.manager = manager = FeedManager(cfg, pubsub, self.poller, self.fetcher,
                                             self.publisher, self.mark_store, self.admins,
                                             self.router.send)
        router = self.router
        self.contacts = FeedContacts(
            pubsub.service.service, self.contact_store, manager, self.roster, router.accounts,
            frozenset(router.domains), router.send, router.reply,
            command_local=cfg.command_contact, group=cfg.contact_group,
            avatars=FeedAvatars(self.fetcher.fetch),
        )
        manager.contacts = self.contacts
        pubsub.contact_handlers.append(self.contacts.handle)
        manager.entry_urgency = self.urgency
        pubsub.sender.renderers.append(ChatDelivery(
            self.contacts.contact_of, router.send,
            self.urgency.urgent if self.urgency is not None else None))
        if self.room_store is not None:
            # First in line: a room's copy goes out as groupchat, never as chat to the room.
            self.rooms = RoomFeeds(manager, self.room_store, router.send, pubsub.service.service)
            pubsub.sender.renderers.insert(0, self.rooms.deliver)
            pubsub.contact_handlers.insert(0, self.rooms.handle)
            pubsub.message_handlers.insert(0, self.rooms.invited)
        # After every poll, followers see when it was checked and when it is checked next.
        self.poller.polled_listeners.append(self.contacts.announce)
        self.publisher.contact_of = self.contacts.contact_of
        pubsub.missing_node_handlers.append(manager.on_missing_node)
        pubsub.unsubscribed_handlers.append(manager.on_unsubscribed)
        pubsub.message_handlers.append(self._chat)
        pubsub.node_metadata_providers.append(self._metadata)
        register_commands(pubsub.commands, manager)
        FeedControl(manager).register(self.control_ops)

    async def run(self) -> None:
        if self.manager is None:
            return
        async with self.fetcher, trio.open_nursery() as nursery:
            if self.samples is not None:
                await nursery.start(self.samples.serve)
                await self._provision_samples()
            await self.contacts.load()
            await self._provision_catalogue()
            await nursery.start(self.poller.run)
            if self.rooms is not None:
                await nursery.start(self.rooms.run)
            nursery.start_soon(self._sweep_unfollowed)

    async def _sweep_unfollowed(self) -> None:
        """Now and then, let feeds nobody follows sleep: a node can also be created by an items
        request to a URL, or lose its subscribers without an unsubscribe (an account deleted)."""
        assert self.manager is not None
        while True:
            await trio.sleep(UNFOLLOWED_SWEEP)
            for state in await self.store.list_feeds():
                # A feed this new may be awaiting the subscription that created it.
                if state.active and state.fetch_count >= 2:
                    await self.manager.idle_if_unfollowed(state.feed_id)

    async def _provision_catalogue(self) -> None:
        file = self.catalogue
        if file is None or self.manager is None:
            return
        try:
            report = await self.manager.import_opml(None, await trio.Path(file).read_bytes())
        except (OSError, FeedRefused) as exc:
            self.log.error("feeds.catalogue %s not loaded: %s", self.settings.catalogue, exc)
            return
        self.log.info("catalogue %s: %d feeds", self.settings.catalogue, len(report.added))
        for url, reason in report.failed:
            self.log.warning("catalogue feed %s skipped: %s", url, reason)

    async def _provision_samples(self) -> None:
        assert self.samples is not None and self.manager is not None
        cfg = self.settings
        # The samples change every few minutes: poll them at that pace (within the configured
        # minimum) so a newcomer sees entries arrive, instead of the default period.
        period = max(cfg.min_interval, cfg.samples_new_entry_every)
        for entry in self.samples.catalogue():
            state = await self.manager.add_pinned(entry)
            if state.interval > period:
                await self.store.put_feed(dataclasses.replace(state, interval=period))
        self.log.info("sample feeds served at %s", self.samples.base_url)

    def _fetched(self, result: FetchResult) -> None:
        self.metrics.fetch_done(fetch_label(result), result.elapsed)
        if result.error is None and result.status is not None and result.status < 400:
            log.info("feed %s fetched: HTTP %s in %.3f s", result.url, result.status,
                     result.elapsed, extra={"event": "feed.fetched", "feed": result.url,
                                            "status": result.status})
        else:
            log.warning("feed %s fetch failed: %s %s", result.url, fetch_label(result),
                        result.error_detail, extra={"event": "feed.fetch_failed",
                                                    "feed": result.url,
                                                    "status": fetch_label(result)})

    async def _metadata(self, node: str) -> dict[str, list[str]]:
        state = await self.store.get_feed(node)
        return feed_metadata(state) if state is not None else {}

    async def _chat(self, st: Stanza) -> bool:
        body = st.element.findtext(ns.C_BODY)
        if self.manager is None or not body or st.type not in ("chat", "normal"):
            return False
        reply = await answer(self.manager, str(st.from_.bare), body)
        message = builders.message(to=str(st.from_), from_=str(st.to or self.publisher.jid),
                                   type_=st.type, body=reply)
        await self.router.send(message)
        return True


__all__ = ["FeedsModule", "poller_config"]

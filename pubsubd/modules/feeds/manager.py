"""The operations that every way into the feed service shares: chat, ad-hoc commands, a plain
pubsub subscribe to a feed's URL node, the admin commands and the control socket, so that
they all act on the same subscriptions.

People read feeds in chats: a subscription made by chat, ad-hoc command or through a feed's
contact delivers as chat (:mod:`.contacts`, :mod:`.delivery`). A new follower gets the feed's
latest entry at once (a never-polled feed is polled first).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from feeds.discover import discover, looks_like_feed
from feeds.fetch import Fetcher, FetchResult
from feeds.model import FeedState
from feeds.opml import OpmlError, OpmlFeed, export_opml, parse_opml
from feeds.poller import Poller, PollOutcome
from pubsubd.config import FeedsConfig
from pubsubd.modules.feeds.contacts import next_check
from pubsubd.modules.feeds.entry_urgency import EntryUrgency
from pubsubd.modules.feeds.publisher import NodePublisher, Send
from pubsubd.modules.feeds.pubsub_component import PubSubComponent
from pubsubd.modules.feeds.refusal import (
    FeedRefused,
    is_feed_address,
    normalize_url,
    refusal_of_fetch,
)
from pubsubd.pubsub import Notification, NotificationKind, PubSubError, Subscription
from pubsubd.pubsub.model import bare
from pubsubd.storage.interfaces import FeedMarkStore
from pubsubd.xml import builders


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a user-given address leads: the feed to poll, and what was done to find it."""

    feed_url: str
    note: str = ""
    # The feed document fetched to check the address: its first poll reuses it.
    fetched: FetchResult | None = None


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    node: str
    feed_url: str
    title: str
    note: str = ""
    already: bool = False
    contact: str = ""  # the feed's contact JID, where its entries come from
    next_check: str = ""  # when the feed is checked next, in words ("in 29 min")


class Followers(Protocol):
    """The person-facing side of following a feed (its contact, :mod:`.contacts`)."""

    async def followed(self, user: str, state: FeedState, *, avatar: bool = True) -> str: ...

    async def unfollowed(self, user: str, node: str) -> None: ...

    async def announce(self, state: FeedState) -> None: ...

    def jid_of(self, feed_id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class UserFeed:
    """One of a user's feed subscriptions, as listed to them."""

    node: str
    title: str
    url: str
    subscription: Subscription
    state: FeedState | None


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """One polled feed as an administrator sees it: its state plus its node's audience."""

    state: FeedState
    subscribers: int
    items: int


@dataclass(frozen=True, slots=True)
class ImportReport:
    added: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()  # (url, reason)


class FeedManager:
    """Subscribing users to feeds by address, and managing the set of polled feeds."""

    def __init__(self, config: FeedsConfig, pubsub: PubSubComponent, poller: Poller,
                 fetcher: Fetcher, publisher: NodePublisher, marks: FeedMarkStore,
                 admins: frozenset[str], send: Send) -> None:
        self.config = config
        self.pubsub = pubsub
        self.service = pubsub.service
        self.poller = poller
        self.fetcher = fetcher
        self.publisher = publisher
        self.marks = marks
        self.admins = admins
        self._send = send
        self.contacts: Followers | None = None
        self.entry_urgency: EntryUrgency | None = None  # readers' urgent/batched choice

    @property
    def jid(self) -> str:
        return self.service.service

    # -- resolving what a user typed ------------------------------------------------------

    async def resolve(self, text: str) -> Resolved:
        """Check that an address is a reachable feed; follow a web page to its feed."""
        url = normalize_url(text)
        if await self.poller.store.get_feed(url) is not None:
            return Resolved(url)
        result = await self.fetcher.fetch(url)
        refused = refusal_of_fetch(url, result.error, result.error_detail, result.status,
                                   final_url=result.final_url)
        if refused is not None:
            raise refused
        if result.ok and not looks_like_feed(result.body):
            candidates = discover(result.body, result.final_url)
            if not candidates:
                raise FeedRefused(f"{url} is a web page that advertises no feed.")
            chosen = candidates[0]
            others = len(candidates) - 1
            note = f"{url} is a web page; took its feed {chosen.url}" + (
                f" ({chosen.title})" if chosen.title else ""
            ) + (f", the first of {others + 1} it lists." if others else ".")
            return Resolved(chosen.url, note)
        return Resolved(url, fetched=result if result.ok else None)

    async def ensure_feed(self, node: str, feed_url: str, *, title: str = "", group: str = "",
                          pinned: bool = False, fetched: FetchResult | None = None
                          ) -> FeedState:
        """The feed polled for ``node`` (created, or woken from idleness), with its node;
        ``fetched``, the document just fetched from ``feed_url``, stands in for its first
        fetch (a feed is fetched once at subscribe, not twice)."""
        await self.publisher.ensure_node(node, title, group)
        if fetched is not None and await self.poller.store.get_feed(node) is None:
            self.poller.seed(node, fetched)  # before the poll loop can see the new feed
        state = await self.poller.add_feed(feed_url, feed_id=node, title=title, group=group)
        was_pinned, idle = await self.marks.get(node)
        if idle and state.paused:
            state = await self.poller.resume(node) or state
        if idle or (pinned and not was_pinned):
            await self.marks.set(node, idle=False, pinned=pinned or was_pinned)
        return state

    async def feed_nodes_of(self, user: str) -> list[Subscription]:
        subs = await self.service.subscriptions(user)
        return [s for s in subs if await self.poller.store.get_feed(s.node) is not None]

    def _may_add_feeds(self, user: str) -> bool:
        return self.config.user_subscriptions or bare(user) in self.admins

    async def _check_quota(self, user: str) -> None:
        if bare(user) in self.admins:
            return
        if len(await self.feed_nodes_of(bare(user))) >= self.config.max_feeds_per_user:
            raise FeedRefused(
                f"You already follow {self.config.max_feeds_per_user} feeds, the most allowed.",
                "policy-violation",
            )

    # -- the pubsub way in ------------------------------------------------------------------

    async def on_missing_node(self, requester: str, node: str) -> bool:
        """A subscribe named a node that does not exist: if it is a feed's address, create it."""
        if not is_feed_address(node):
            return False
        if not self._may_add_feeds(requester):
            raise PubSubError("not-allowed", text="this service does not take new feeds")
        try:
            await self._check_quota(requester)
            resolved = await self.resolve(node)
        except FeedRefused as refused:
            raise PubSubError(refused.condition, text=refused.message) from None
        await self.ensure_feed(node, resolved.feed_url, fetched=resolved.fetched)
        if resolved.note:
            await self._tell(requester, resolved.note)
        return True

    async def on_unsubscribed(self, node: str, jid: str, remaining: int) -> None:
        """A pubsub unsubscribe (XEP-0060 §6.2) ended a subscription: once the user has none
        left to a feed, its contact leaves their roster, as an unsubscribe by chat does."""
        if remaining == 0:
            await self.idle_if_unfollowed(node)
        if self.contacts is None or await self.poller.store.get_feed(node) is None:
            return
        user = bare(jid)
        subs = await self.service.store.list_subscriptions(self.jid, node)
        if not any(bare(s.jid) == user for s in subs):
            await self.contacts.unfollowed(user, node)

    async def idle_if_unfollowed(self, node: str) -> None:
        """Stop polling a feed nobody follows (the node and its items stay; the seen set too,
        so a later subscriber is never re-notified of old entries)."""
        state = await self.poller.store.get_feed(node)
        if state is None:
            return
        pinned, _ = await self.marks.get(node)
        if pinned:
            return
        subs = await self.service.store.list_subscriptions(self.jid, node)
        if any(s.active for s in subs):
            return
        if not state.paused:
            await self.poller.pause(node)
            await self.marks.set(node, idle=True)

    async def _tell(self, to: str, text: str) -> None:
        await self._send(builders.message(to=to, from_=self.jid, type_="chat", body=text))

    # -- the chat / command way in ----------------------------------------------------------

    async def subscribe(self, user: str, text: str,
                        options: Mapping[str, Sequence[str]] | None = None, *,
                        at_once: bool = True, title: str = "") -> SubscribeResult:
        """Subscribe ``user`` (bare JID) to the feed at ``text``, or update its options.

        ``at_once``: poll a never-fetched feed now and send its latest entries right away
        (not for bulk imports, where that would mean a fetch and a message per feed)."""
        user = bare(user)
        url = normalize_url(text)
        # A person reads entries in a chat (every client shows chat messages; some hide
        # headlines), so chat is the default on every person-facing way in.
        form = {"pubsub#include_body": ["1"], "pubsubd#message_type": ["chat"],
                **{k: list(v) for k, v in (options or {}).items()}}
        state = await self.poller.store.get_feed(url)
        note = ""
        node = url
        if state is None:
            if not self._may_add_feeds(user):
                raise FeedRefused("This service does not take new feeds.", "not-allowed")
            await self._check_quota(user)
            resolved = await self.resolve(url)
            node, note = resolved.feed_url, resolved.note
            state = await self.ensure_feed(node, resolved.feed_url, title=title,
                                           fetched=resolved.fetched)
        else:
            state = await self.ensure_feed(node, state.url)
        if state.gone:
            note = (note + "\n" if note else "") + (
                f"Note: {state.url} answered 410 Gone and is no longer checked.")
        if at_once:
            state = await self._first_poll(state)
        existing = [s for s in await self.service.subscriptions(user, node) if s.jid == user]
        notifications: Sequence[Notification] = ()
        try:
            if existing:
                await self.service.set_options(user, node, user, form, existing[0].subid)
                already = True
            else:
                outcome = await self.service.subscribe(user, node, user, form)
                notifications = (await self._latest_entries(outcome.notifications) if at_once
                                 else [n for n in outcome.notifications
                                       if n.kind is not NotificationKind.ITEMS])
                already = False
        except PubSubError as exc:
            raise FeedRefused(f"The subscription was refused: {exc.text or exc.condition}.",
                              exc.condition) from None
        contact = ""
        if self.contacts is not None:
            # The contact first, so that the entries below come from a known contact.
            contact = await self.contacts.followed(user, state, avatar=at_once)
        await self.pubsub.send_notifications(notifications)
        return SubscribeResult(node, state.url, state.title, note, already, contact,
                               next_check(state, time.time()))

    async def _first_poll(self, state: FeedState) -> FeedState:
        """Poll a feed never fetched yet now, so that a new follower sees its latest entry
        at once rather than after the first period."""
        if state.last_fetch is not None or not state.active:
            return state
        node = state.feed_id
        with trio.move_on_after(self.config.total_timeout + 5.0):
            while True:
                if await self.poller.refresh(node) is not None:
                    break
                # The poll loop is fetching it right now: wait for that poll to land.
                await trio.sleep(0.05)
                current = await self.poller.store.get_feed(node)
                if current is None or current.last_fetch is not None:
                    break
        return await self.poller.store.get_feed(node) or state

    async def _latest_entries(
        self, notifications: Sequence[Notification]
    ) -> list[Notification]:
        """The new subscriber's last-item notification (XEP-0060 §6.1.7), widened to the
        configured number of latest entries (or dropped for 0)."""
        count = max(0, self.config.entries_on_subscribe)
        chosen: list[Notification] = []
        for n in notifications:
            if n.kind is not NotificationKind.ITEMS:
                chosen.append(n)
            elif count == 1:
                chosen.append(n)
            elif count > 1:
                latest = await self.service.store.get_items(self.jid, n.node, limit=count)
                chosen.append(dataclasses.replace(n, items=tuple(reversed(latest))))
        return chosen

    async def subscription_of(self, user: str, node: str) -> Subscription | None:
        """The user's own subscription to ``node`` (its bare JID's), if any."""
        user = bare(user)
        try:
            subs = await self.service.subscriptions(user, node)
        except PubSubError:
            return None
        return next((s for s in subs if s.jid == user), None)

    async def followers(self, node: str) -> list[str]:
        """Bare JIDs with an active subscription to ``node``."""
        subs = await self.service.store.list_subscriptions(self.jid, node)
        return sorted({bare(s.jid) for s in subs if s.active})

    async def set_options(self, user: str, node: str,
                          options: Mapping[str, Sequence[str]]) -> bool:
        """Change options of the user's subscription to ``node``; False if there is none."""
        sub = await self.subscription_of(user, node)
        if sub is None:
            return False
        await self.service.set_options(bare(user), node, sub.jid,
                                       {k: list(v) for k, v in options.items()}, sub.subid)
        return True

    async def unsubscribe(self, user: str, node: str) -> bool:
        user = bare(user)
        mine = [s for s in await self.service.subscriptions(user) if s.node == node]
        for sub in mine:
            outcome = await self.service.unsubscribe(user, node, sub.jid, sub.subid)
            await self.pubsub.send_notifications(outcome.notifications)
        if mine:
            await self.idle_if_unfollowed(node)
            if self.contacts is not None:
                await self.contacts.unfollowed(user, node)
        return bool(mine)

    async def user_feeds(self, user: str) -> list[UserFeed]:
        """The user's feed subscriptions, in a stable order (the numbers of ``list``)."""
        found: list[UserFeed] = []
        for sub in sorted(await self.feed_nodes_of(bare(user)), key=lambda s: s.node):
            state = await self.poller.store.get_feed(sub.node)
            title = state.title if state else ""
            found.append(UserFeed(sub.node, title, state.url if state else sub.node, sub, state))
        return found

    async def set_delivery(self, user: str, deliver: bool, node: str | None = None) -> int:
        """Pause or resume notifications of the user's feeds (pubsub#deliver)."""
        count = 0
        for feed in await self.user_feeds(user):
            if node is not None and feed.node != node:
                continue
            sub = feed.subscription
            await self.service.set_options(bare(user), feed.node, sub.jid,
                                           {"pubsub#deliver": ["1" if deliver else "0"]},
                                           sub.subid)
            count += 1
        return count

    async def import_opml(self, user: str | None, data: bytes | str) -> ImportReport:
        """Subscribe ``user`` to every feed of an OPML document; None provisions (admin)."""
        try:
            entries = parse_opml(data)
        except OpmlError as exc:
            raise FeedRefused(f"That is not a usable OPML file: {exc}.") from None
        added: list[str] = []
        failed: list[tuple[str, str]] = []
        for entry in entries:
            try:
                if user is None:
                    await self.add_pinned(entry)
                else:
                    await self.subscribe(user, entry.url, at_once=False, title=entry.title)
                added.append(entry.url)
            except FeedRefused as refused:
                failed.append((entry.url, refused.message))
        return ImportReport(tuple(added), tuple(failed))

    async def export_opml(self, user: str | None) -> str:
        if user is None:
            states = await self.poller.store.list_feeds()
        else:
            states = [f.state for f in await self.user_feeds(user) if f.state is not None]
        feeds = [OpmlFeed(s.feed_id if user is None else s.feed_id, s.title, s.site_link, s.group)
                 for s in states]
        owner = "pubsubd feeds" if user is None else f"Feeds of {bare(user)}"
        return export_opml(feeds, title=owner)

    # -- admin --------------------------------------------------------------------------------

    async def add_pinned(self, entry: OpmlFeed) -> FeedState:
        """Provision a feed that is polled whether or not anyone follows it."""
        url = normalize_url(entry.url)
        return await self.ensure_feed(url, url, title=entry.title, group=entry.group, pinned=True)

    async def remove(self, node: str) -> bool:
        """Stop polling and forget the feed's state (its node and items stay)."""
        if await self.poller.store.get_feed(node) is None:
            return False
        await self.poller.remove_feed(node)
        await self.marks.forget(node)
        return True

    async def known(self, node: str) -> FeedState:
        state = await self.poller.store.get_feed(node)
        if state is None:
            raise FeedRefused(f"{node} is not a polled feed.", "item-not-found")
        return state

    async def status(self, state: FeedState) -> FeedStatus:
        """The feed with its active subscribers and stored items (0 if it has no node yet)."""
        store = self.service.store
        subs = await store.list_subscriptions(self.jid, state.feed_id)
        items = await store.count_items(self.jid, state.feed_id)
        return FeedStatus(state, sum(1 for s in subs if s.active), items)

    async def statuses(self) -> list[FeedStatus]:
        """Every polled feed with its status, by address."""
        states = sorted(await self.poller.store.list_feeds(), key=lambda s: s.feed_id)
        return [await self.status(s) for s in states]

    async def pause(self, node: str) -> FeedState:
        """Stop polling a feed until resumed (an admin pause, never undone by a subscriber)."""
        await self.known(node)
        return _present(await self.poller.pause(node))

    async def resume(self, node: str) -> FeedState:
        """Poll a paused (or gone) feed again, now."""
        await self.known(node)
        return _present(await self.poller.resume(node))

    async def refresh(self, node: str) -> PollOutcome:
        """Poll a feed now and report what happened."""
        await self.known(node)
        outcome = await self.poller.refresh(node)
        if outcome is None:  # removed meanwhile
            raise FeedRefused(f"{node} is not a feed this service polls.", "item-not-found")
        return outcome


def _present(state: FeedState | None) -> FeedState:
    if state is None:  # removed between the check and the change
        raise FeedRefused("That feed was just removed.", "item-not-found")
    return state


__all__ = ["FeedManager", "FeedStatus", "Followers", "ImportReport", "Resolved",
           "SubscribeResult", "UserFeed"]

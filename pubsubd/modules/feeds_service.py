"""Feed syndication on the pubsub service: every polled feed is a leaf node named by its URL.

The ``feeds`` package polls and normalizes; this module is its XMPP side. A Publisher adapter
turns new entries into items published *as the service* (the Atom entry as payload, the plain
text for bodies and keyword filters), creates the feed's node on first use, and tells
subscribers in words when a feed moves, fails, recovers or dies. :class:`FeedManager` holds the
operations that the three ways in (chat, ad-hoc commands, a plain pubsub subscribe to the URL
node) and the admin control socket share, so they all act on the same subscriptions.

People read feeds in chats: a subscription made by chat, ad-hoc command or through a feed's
contact delivers as chat, and :mod:`feeds_contacts` gives each feed a contact JID
``<short-name>@pubsub.<domain>`` (roster item, presence telling its health, vCard) from which
:mod:`feeds_delivery` sends the entries as plain chat messages. A new follower gets the
feed's latest entry at once (a never-polled feed is polled first).

Naming feeds' nodes by URL is what hosted feed-over-XMPP services do: a client subscribes to
``http://example.org/feed.xml`` on the pubsub service and the node comes into existence.

Feed health is readable at any time in the node's disco#info (``pubsubd#feed_url``,
``pubsubd#last_fetch``, ``pubsubd#http_status``, ``pubsubd#last_error``, ``pubsubd#next_fetch``,
``pubsubd#period``, ``pubsubd#error_streak``, ...) and travels, where it changes, in the
messages that announce a move, a failure, a recovery or a 410 as
``<status xmlns='urn:pubsubd:feed-status:0' feed='URL' node='NODE' event='gone'>`` with
``<http code='410'>last error</http>``, ``<last_fetch/>``, ``<next_fetch/>`` (XEP-0082),
``<period/>`` (seconds), ``<error_streak/>``, ``<entries/>``, ``<state/>`` and ``<title/>``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import trio
from lxml import etree

from feeds.discover import discover, looks_like_feed
from feeds.fetch import ErrorKind, FetchConfig, Fetcher, FetchResult
from feeds.model import Entry, FeedEvent, FeedEventKind, FeedState
from feeds.netguard import AddressPolicy
from feeds.opml import OpmlError, OpmlFeed, export_opml, parse_opml
from feeds.poller import FirstPoll, Poller, PollerConfig, PollOutcome
from feeds.schedule import SchedulePolicy
from pubsubd import ns
from pubsubd.config import FeedsConfig
from pubsubd.core.module import Module
from pubsubd.core.router import Stanza
from pubsubd.modules.feeds_avatar import FeedAvatars
from pubsubd.modules.feeds_contacts import FeedContacts, next_check
from pubsubd.modules.feeds_delivery import ChatDelivery
from pubsubd.modules.xep0060_pubsub.notify import NotificationSender
from pubsubd.pubsub import (
    Notification,
    NotificationKind,
    PubSubError,
    PubSubService,
    Subscription,
)
from pubsubd.pubsub.model import MessageType, NodeConfig, NodeType, SendLastPublished, bare
from pubsubd.storage.feed_contacts_sqlite import (
    FeedMarkStore,
    SqliteFeedContactStore,
    SqliteFeedMarkStore,
)
from pubsubd.storage.sqlite import Database
from pubsubd.xml import builders

log = logging.getLogger(__name__)

UNFOLLOWED_SWEEP = 900.0  # seconds between looks for feeds nobody follows any more
COLLECTION_PREFIX = "feeds/"  # OPML folders become collection nodes "feeds/<folder>"
STATUS = ns.clark(ns.FEED_STATUS, "status")
Send = Callable[[etree._Element], Awaitable[None]]  # routes a server-generated stanza


class PubSubComponent(Protocol):
    """What this module needs of the XEP-0060 component (``server.pubsub``)."""

    service: PubSubService
    missing_node_handlers: list[Callable[[str, str], Awaitable[bool]]]
    unsubscribed_handlers: list[Callable[[str, str, int], Awaitable[None]]]
    message_handlers: list[Callable[[Stanza], Awaitable[bool]]]
    node_metadata_providers: list[Callable[[str], Awaitable[dict[str, list[str]]]]]
    contact_handlers: list[Callable[[Stanza], Awaitable[bool]]]
    sender: NotificationSender

    async def publish_as_service(
        self, node: str, payload_xml: str, item_id: str, text: str | None = None,
        extra: str | None = None,
    ) -> Any: ...

    async def send_notifications(self, notifications: Sequence[Notification]) -> Any: ...


class FeedRefused(Exception):
    """A feed the service will not follow, with the reason in words for the user."""

    def __init__(self, message: str, condition: str = "not-acceptable") -> None:
        super().__init__(message)
        self.message = message
        self.condition = condition


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a user-given address leads: the feed to poll, and what was done to find it."""

    feed_url: str
    note: str = ""


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
    """The person-facing side of following a feed (its contact, :mod:`feeds_contacts`)."""

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


def iso(timestamp: float | None) -> str:
    """XEP-0082 DateTime of a POSIX time, or "" for None."""
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_url(text: str) -> str:
    """The URL a user meant: a bare host name gets https://; other schemes are refused."""
    url = text.strip().strip("<>")
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FeedRefused(f"{text.strip()} is not a web address (http:// or https://).")
    return url


def is_feed_address(node: str) -> bool:
    return node.startswith(("http://", "https://")) and bool(urlsplit(node).hostname)


# -- feed health, as an element and as node metadata ----------------------------------------


def status_element(state: FeedState) -> etree._Element:
    """``<status xmlns='urn:pubsubd:feed-status:0'/>``: the feed's health at a glance.

    The fields are those of the superfeedr status element (HTTP code and message, last and
    next fetch, polling period, error streak), in pubsubd's own namespace.
    """
    el = builders.element(ns.FEED_STATUS, "status", feed=state.url)
    http = etree.SubElement(el, ns.clark(ns.FEED_STATUS, "http"))
    if state.last_status is not None:
        http.set("code", str(state.last_status))
    http.text = state.last_error or None
    for name, value in (
        ("title", state.title),
        ("last_fetch", iso(state.last_fetch)),
        ("next_fetch", iso(state.next_fetch)),
        ("period", str(int(state.interval))),
        ("error_streak", str(state.error_streak)),
        ("entries", str(state.entries_seen)),
        ("state", feed_condition(state)),
    ):
        if value:
            etree.SubElement(el, ns.clark(ns.FEED_STATUS, name)).text = value
    return el


def feed_condition(state: FeedState) -> str:
    if state.gone:
        return "gone"
    if state.paused:
        return "paused"
    if state.error_streak:
        return "failing"
    return "ok" if state.last_fetch is not None else "new"


def feed_metadata(state: FeedState) -> dict[str, list[str]]:
    """Extra pubsub#meta-data fields of a feed node (XEP-0060 §5.4 allows more fields)."""
    fields = {
        "pubsubd#feed_url": state.url,
        "pubsubd#feed_original_url": state.original_url,
        "pubsubd#feed_title": state.title,
        "pubsubd#site_link": state.site_link,
        "pubsubd#feed_state": feed_condition(state),
        "pubsubd#last_fetch": iso(state.last_fetch),
        "pubsubd#next_fetch": iso(state.next_fetch),
        "pubsubd#http_status": "" if state.last_status is None else str(state.last_status),
        "pubsubd#last_error": state.last_error,
        "pubsubd#parse_warning": state.parse_warning,
        "pubsubd#period": str(int(state.interval)),
        "pubsubd#error_streak": str(state.error_streak),
        "pubsubd#entries_seen": str(state.entries_seen),
        "pubsubd#fetch_count": str(state.fetch_count),
    }
    return {k: [v] if v else [] for k, v in fields.items()}


# -- fetches, observed -----------------------------------------------------------------------


class ObservedFetcher(Fetcher):
    """The service's fetcher: every fetch is reported to ``listeners`` (metrics, logs, rates)
    without the ``feeds`` package knowing about pubsubd."""

    def __init__(self, config: FetchConfig) -> None:
        super().__init__(config)
        self.listeners: list[Callable[[FetchResult], None]] = []

    async def fetch(self, url: str, *, etag: str | None = None,
                    last_modified: str | None = None) -> FetchResult:
        result = await super().fetch(url, etag=etag, last_modified=last_modified)
        for listener in self.listeners:
            try:
                listener(result)
            except Exception:  # noqa: BLE001 - an observer's bug must not fail the poll
                log.exception("fetch listener failed for %s", url)
        return result


def fetch_label(result: FetchResult) -> str:
    """The HTTP status of a fetch, or its error kind when no response came (e.g. "timeout")."""
    if result.status is not None:
        return str(result.status)
    return str(result.error or "error")


# -- the Publisher adapter ------------------------------------------------------------------


class NodePublisher:
    """``feeds.poller.Publisher`` onto the pubsub service, idempotent by item id."""

    def __init__(self, pubsub: PubSubComponent, router_send: Send, max_items: int) -> None:
        self.pubsub = pubsub
        self.service = pubsub.service
        self._send = router_send
        self.max_items = max_items
        # The health last sent with a notification, per node: the status element rides along
        # again only when it changes.
        self._status_sent: dict[str, tuple[object, ...]] = {}
        # The feed's contact JID (feeds_contacts), which tells chat followers of its events.
        self.contact_of: Callable[[str], Awaitable[str | None]] | None = None
        # Told when a feed's health changes (moved, failing, recovered, gone) or it has news.
        self.health_listeners: list[Callable[[FeedState], Awaitable[None]]] = []

    @property
    def jid(self) -> str:
        return self.service.service

    def node_config(self, title: str, group: str = "") -> NodeConfig:
        # A feed's node: open, items kept, Atom payloads, headlines. The last item goes to a new
        # subscriber once (XEP-0060 §6.1.7 on_sub) but not again at every login, which would
        # look like a repeated entry; catch-up covers absences.
        return dataclasses.replace(
            self.service.default_config(),
            title=title,
            payload_type=ns.ATOM,
            max_items=self.max_items,
            send_last_published_item=SendLastPublished.ON_SUB,
            notification_type=MessageType.HEADLINE,
            collection=(COLLECTION_PREFIX + group,) if group else (),
        )

    def _status_if_changed(self, feed: FeedState) -> str | None:
        """The feed's status element, serialized, if its health changed since last sent."""
        signature = (feed.last_status, feed.last_error, feed.error_streak, int(feed.interval),
                     feed.moved_to, feed.gone)
        if self._status_sent.get(feed.feed_id) == signature:
            return None
        self._status_sent[feed.feed_id] = signature
        return etree.tostring(status_element(feed)).decode()

    async def ensure_node(self, node: str, title: str, group: str = "") -> bool:
        """Create the feed's node if missing (and its folder's collection); True if created."""
        service = self.service
        try:
            await service.get_node(node)
            return False
        except PubSubError:
            pass
        if group:
            await self._ensure_collection(COLLECTION_PREFIX + group, group)
        try:
            await service.create_node(self.jid, node, config=self.node_config(title, group))
        except PubSubError as exc:
            if exc.condition != "conflict":  # created meanwhile by a concurrent subscribe
                raise
            return False
        return True

    async def _ensure_collection(self, node: str, title: str) -> None:
        try:
            await self.service.get_node(node)
            return
        except PubSubError:
            pass
        config = dataclasses.replace(
            self.service.default_config(NodeType.COLLECTION), title=title
        )
        try:
            await self.service.create_node(self.jid, node, config=config)
        except PubSubError as exc:
            if exc.condition != "conflict":
                raise

    async def _retitle(self, node: str, title: str) -> None:
        current = await self.service.get_node(node)
        if title and current.config.title != title:
            await self.service.configure(self.jid, node, {"pubsub#title": [title]})

    async def publish(self, feed: FeedState, entries: Sequence[Entry], *, notify: bool) -> None:
        node = feed.feed_id
        if not await self.ensure_node(node, feed.title, feed.group):
            await self._retitle(node, feed.title)
        extra = self._status_if_changed(feed) if notify and entries else None
        for entry in entries:
            try:
                if notify:
                    await self.pubsub.publish_as_service(
                        node, entry.atom_xml, entry.item_id, text=entry.body_text, extra=extra
                    )
                    extra = None
                else:
                    # History only: stored, and the notifications the core plans are dropped.
                    await self.service.publish(
                        self.jid, node, entry.atom_xml, entry.item_id, text=entry.body_text
                    )
            except PubSubError as exc:
                if exc.pubsub_condition != "payload-too-big":
                    raise
                # Retrying would fail forever and block the feed's later entries.
                log.warning("feed %s: entry %s skipped: %s", node, entry.item_id, exc,
                            extra={"event": "feed.entry_skipped", "feed": feed.url})
        if entries and notify:
            await self._tell_health(feed)  # "checked just now" for the followers to see
        if entries:
            log.info("feed %s: %d entries %s", node, len(entries),
                     "published and notified" if notify else "stored as history",
                     extra={"event": "feed.published" if notify else "feed.history",
                            "feed": feed.url, "node": node, "count": len(entries)})

    async def _tell_health(self, feed: FeedState) -> None:
        for listener in self.health_listeners:
            try:
                await listener(feed)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the poll
                log.exception("feed health listener failed for %s", feed.feed_id)

    async def feed_event(self, feed: FeedState, event: FeedEvent) -> None:
        """Tell each subscriber once, in words, with the status element (a normal message, so
        that an offline subscriber finds it later rather than never)."""
        node = feed.feed_id
        try:
            subscriptions = await self.service.store.list_subscriptions(self.jid, node)
        except Exception:  # noqa: BLE001 - no node, nobody to tell
            return
        title = feed.title or feed.url
        subject = {
            FeedEventKind.MOVED: f"Feed moved: {title}",
            FeedEventKind.GONE: f"Feed gone: {title}",
            FeedEventKind.FAILING: f"Feed failing: {title}",
            FeedEventKind.RECOVERED: f"Feed working again: {title}",
        }[event.kind]
        await self._tell_health(feed)
        contact = await self.contact_of(node) if self.contact_of is not None else None
        chatting = {s.jid for s in subscriptions if s.active
                    and s.options.message_type is MessageType.CHAT}
        for address in sorted({s.jid for s in subscriptions if s.active}):
            # Followers by chat hear it in the feed's own conversation.
            if contact is not None and address in chatting:
                message = builders.message(to=address, from_=contact, type_="chat")
            else:
                message = builders.message(to=address, from_=self.jid, type_="normal")
            etree.SubElement(message, ns.C_SUBJECT).text = subject
            etree.SubElement(message, ns.C_BODY).text = f"{event.message}\n(node: {node})"
            status = status_element(feed)
            status.set("event", str(event.kind))
            status.set("node", node)
            message.append(status)
            await self._send(message)


# -- operations shared by chat, commands, pubsub subscribe and the control socket ----------


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
        refused = _refusal(url, result.error, result.error_detail, result.status)
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
        return Resolved(url)

    async def ensure_feed(self, node: str, feed_url: str, *, title: str = "", group: str = "",
                          pinned: bool = False) -> FeedState:
        """The feed polled for ``node`` (created, or woken from idleness), with its node."""
        await self.publisher.ensure_node(node, title, group)
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
        await self.ensure_feed(node, resolved.feed_url)
        if resolved.note:
            await self._tell(requester, resolved.note)
        return True

    async def on_unsubscribed(self, node: str, jid: str, remaining: int) -> None:
        if remaining == 0:
            await self.idle_if_unfollowed(node)

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
            state = await self.ensure_feed(node, resolved.feed_url, title=title)
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
        if outcome is None:
            raise FeedRefused("A poll of this feed is running; try again in a moment.",
                              "resource-constraint")
        return outcome


def _present(state: FeedState | None) -> FeedState:
    if state is None:  # removed between the check and the change
        raise FeedRefused("That feed was just removed.", "item-not-found")
    return state


def _refusal(
    url: str, error: ErrorKind | None, detail: str, status: int | None
) -> FeedRefused | None:
    """Why a first fetch means the feed cannot be followed, or None to go ahead.

    Overload answers (429, 503) and network hiccups are accepted: the poller backs off and
    retries. What will not get better by waiting is refused at once.
    """
    host = urlsplit(url).hostname or url
    match error:
        case None:
            if status is not None and status >= 400 and status not in (429, 503) and status < 500:
                return FeedRefused(f"{url} answered HTTP {status}; no feed there.",
                                   "item-not-found")
            return None
        case ErrorKind.BLOCKED_ADDRESS:
            return FeedRefused(
                f"{host} is a private or local address, which this server does not fetch.",
                "not-allowed",
            )
        case ErrorKind.INVALID_URL | ErrorKind.DNS | ErrorKind.BAD_REDIRECT:
            return FeedRefused(f"Cannot fetch {url}: {detail or error}.", "item-not-found")
        case ErrorKind.HTTP_STATUS if status is not None and status < 500 and status != 429:
            return FeedRefused(f"{url} answered HTTP {status}; no feed there.", "item-not-found")
        case _:
            return None


# -- the module ---------------------------------------------------------------------------


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
    )


def fetch_config(
    cfg: FeedsConfig, endpoints: frozenset[tuple[str, int]] = frozenset()
) -> FetchConfig:
    policy = dataclasses.replace(
        AddressPolicy.from_strings(cfg.allow_hosts), allow_endpoints=endpoints
    )
    return FetchConfig(
        connect_timeout=cfg.connect_timeout,
        read_timeout=cfg.read_timeout,
        total_timeout=cfg.total_timeout,
        max_body_bytes=cfg.max_body_bytes,
        max_concurrent=max(cfg.max_concurrent, 1) * 2,
        max_per_host=max(cfg.max_per_host, 1),
        policy=policy,
    )


def outcome_json(outcome: PollOutcome) -> dict[str, Any]:
    return {"ok": not outcome.error, "status": outcome.status, "new": outcome.new,
            "updated": outcome.updated, "notified": outcome.notified, "error": outcome.error,
            "events": [e.message for e in outcome.events]}


def status_json(status: FeedStatus) -> dict[str, Any]:
    return {**state_json(status.state), "subscribers": status.subscribers,
            "items": status.items}


def state_json(state: FeedState) -> dict[str, Any]:
    return {"id": state.feed_id, "url": state.url, "title": state.title, "group": state.group,
            "state": feed_condition(state), "status": state.last_status,
            "last_fetch": iso(state.last_fetch), "next_fetch": iso(state.next_fetch),
            "period": int(state.interval), "error_streak": state.error_streak,
            "last_error": state.last_error, "entries": state.entries_seen}


def _control_error(message: str) -> Exception:
    from pubsubd.modules.control_socket import ControlError

    return ControlError(message)


_T = TypeVar("_T")


async def _controlled(action: Awaitable[_T]) -> _T:
    """Run a manager action for the control socket: a refusal becomes the operator's error."""
    try:
        return await action
    except FeedRefused as refused:
        raise _control_error(refused.message) from None


class FeedsModule(Module):
    """Polls feeds into the pubsub service's nodes; loaded after the pubsub component."""

    name = "feeds"

    def setup(self) -> None:
        cfg = self.server.config.feeds
        pubsub: PubSubComponent | None = getattr(self.server, "pubsub", None)
        self.manager: FeedManager | None = None
        if not cfg.enabled:
            return
        if pubsub is None:
            self.log.warning("feeds are enabled but the pubsub service is not; feeds stay off")
            return
        from pubsubd.modules.sample_feeds import SampleFeedServer

        self.samples = SampleFeedServer.bind(cfg) if cfg.serve_samples else None
        endpoints = frozenset({self.samples.endpoint}) if self.samples else frozenset()
        stores = self.server.services.stores
        self.store = stores.feeds
        self.fetcher = ObservedFetcher(fetch_config(cfg, endpoints))
        self.fetcher.listeners.append(self._fetched)
        self.publisher = NodePublisher(pubsub, self.server.router.send,
                                       self.server.config.pubsub.max_items)
        self.poller = Poller(self.store, self.publisher, self.fetcher, poller_config(cfg))
        admins = frozenset(bare(a) for a in self.server.config.admins)
        self.manager = FeedManager(cfg, pubsub, self.poller, self.fetcher, self.publisher,
                                   stores.feed_marks or SqliteFeedMarkStore(self._db()),
                                   admins,
                                   self.server.router.send)
        manager = self.manager
        self.contacts = self._contacts(pubsub, manager)
        manager.contacts = self.contacts
        pubsub.contact_handlers.append(self.contacts.handle)
        pubsub.sender.renderers.append(ChatDelivery(self.contacts.contact_of,
                                                    self.server.router.send))
        self.publisher.health_listeners.append(self.contacts.announce)
        self.publisher.contact_of = self.contacts.contact_of
        pubsub.missing_node_handlers.append(manager.on_missing_node)
        pubsub.unsubscribed_handlers.append(manager.on_unsubscribed)
        pubsub.message_handlers.append(self._chat)
        pubsub.node_metadata_providers.append(self._metadata)
        commands = getattr(pubsub, "commands", None)
        if commands is not None:
            from pubsubd.modules.feeds_commands import register_commands

            register_commands(commands, manager)
        self._register_control_ops()

    def _db(self) -> Database:
        db = self.server.db
        assert db is not None, "a backend without SQLite provides the feed stores itself"
        return db

    def _contacts(self, pubsub: PubSubComponent, manager: FeedManager) -> FeedContacts:
        from pubsubd.modules.rfc6121_roster import RosterModule

        cfg = self.server.config.feeds
        router = self.server.router
        roster = self.server.module("roster")
        return FeedContacts(
            pubsub.service.service,
            self.server.services.stores.feed_contacts or SqliteFeedContactStore(self._db()),
            manager,
            roster if isinstance(roster, RosterModule) else None, router.accounts,
            frozenset(router.domains),
            router.send, router.reply, command_local=cfg.command_contact,
            group=cfg.contact_group, avatars=FeedAvatars(self.fetcher.fetch),
        )

    def _register_control_ops(self) -> None:
        ops: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = self.server.control_ops
        ops.update({
            "feeds.list": self._op_list, "feeds.add": self._op_add,
            "feeds.remove": self._op_remove, "feeds.pause": self._op_pause,
            "feeds.resume": self._op_resume, "feeds.refresh": self._op_refresh,
            "feeds.import": self._op_import, "feeds.export": self._op_export,
        })

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
        path = self.server.config.feeds.catalogue
        if not path or self.manager is None:
            return
        file = Path(path)
        if not file.is_absolute():
            file = self.server.base_dir / file
        try:
            report = await self.manager.import_opml(None, await trio.Path(file).read_bytes())
        except (OSError, FeedRefused) as exc:
            self.log.error("feeds.catalogue %s not loaded: %s", path, exc)
            return
        self.log.info("catalogue %s: %d feeds", path, len(report.added))
        for url, reason in report.failed:
            self.log.warning("catalogue feed %s skipped: %s", url, reason)

    async def _provision_samples(self) -> None:
        assert self.samples is not None and self.manager is not None
        cfg = self.server.config.feeds
        # The samples change every few minutes: poll them at that pace (within the configured
        # minimum) so a newcomer sees entries arrive, instead of the default period.
        period = max(cfg.min_interval, cfg.samples_new_entry_every)
        store = self.manager.poller.store
        for entry in self.samples.catalogue():
            state = await self.manager.add_pinned(entry)
            if state.interval > period:
                await store.put_feed(dataclasses.replace(state, interval=period))
        self.log.info("sample feeds served at %s", self.samples.base_url)

    def _fetched(self, result: FetchResult) -> None:
        self.server.metrics.fetch_done(fetch_label(result), result.elapsed)
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
        from pubsubd.modules.feeds_chat import answer

        body = st.element.findtext(ns.C_BODY)
        if self.manager is None or not body or st.type not in ("chat", "normal"):
            return False
        reply = await answer(self.manager, str(st.from_.bare), body)
        message = builders.message(to=str(st.from_), from_=str(st.to or self.publisher.jid),
                                   type_=st.type, body=reply)
        await self.server.router.send(message)
        return True

    # -- control socket operations (``pubsubd feeds ...``) -------------------------------

    def _id(self, args: Mapping[str, Any]) -> str:
        value = str(args.get("id") or args.get("url") or "")
        if not value:
            raise _control_error("a feed id (its URL) is required")
        return value

    async def _op_list(self, args: dict[str, Any]) -> Any:
        """Every polled feed with its state, subscribers and items."""
        assert self.manager is not None
        return [status_json(s) for s in await self.manager.statuses()]

    async def _op_add(self, args: dict[str, Any]) -> Any:
        """Poll a feed (url, title, group) whether or not anyone follows it."""
        assert self.manager is not None
        entry = OpmlFeed(str(args.get("url", "")), str(args.get("title") or ""), "",
                         str(args.get("group") or ""))
        try:
            return state_json(await self.manager.add_pinned(entry))
        except FeedRefused as refused:
            raise _control_error(refused.message) from None

    async def _op_remove(self, args: dict[str, Any]) -> Any:
        """Stop polling a feed and forget its state (its node and items stay)."""
        assert self.manager is not None
        return {"removed": await self.manager.remove(self._id(args))}

    async def _op_pause(self, args: dict[str, Any]) -> Any:
        """Stop polling a feed until resumed."""
        assert self.manager is not None
        return state_json(await _controlled(self.manager.pause(self._id(args))))

    async def _op_resume(self, args: dict[str, Any]) -> Any:
        """Poll a paused (or gone) feed again, now."""
        assert self.manager is not None
        return state_json(await _controlled(self.manager.resume(self._id(args))))

    async def _op_refresh(self, args: dict[str, Any]) -> Any:
        """Poll a feed now and report what happened."""
        assert self.manager is not None
        return outcome_json(await _controlled(self.manager.refresh(self._id(args))))

    async def _op_import(self, args: dict[str, Any]) -> Any:
        """Poll every feed of an OPML document (args: opml)."""
        assert self.manager is not None
        try:
            report = await self.manager.import_opml(None, str(args.get("opml", "")))
        except FeedRefused as refused:
            raise _control_error(refused.message) from None
        return {"added": list(report.added),
                "failed": [{"url": u, "reason": r} for u, r in report.failed]}

    async def _op_export(self, args: dict[str, Any]) -> Any:
        """Every polled feed as an OPML document."""
        assert self.manager is not None
        return {"opml": await self.manager.export_opml(None)}


__all__ = [
    "FeedManager",
    "FeedRefused",
    "FeedStatus",
    "ObservedFetcher",
    "FeedsModule",
    "NodePublisher",
    "feed_metadata",
    "status_element",
]

"""The ``feeds.poller.Publisher`` adapter: new entries become items of the feed's node,
published *as the service* (the Atom entry as payload, the plain text for bodies and keyword
filters); events (moved, failing, recovered, gone) are told to subscribers in words.

A node is named by the feed's URL, as hosted feed-over-XMPP services do: a client subscribes to
``http://example.org/feed.xml`` on the pubsub service and the node comes into existence.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence

from lxml import etree

from feeds.model import Entry, FeedEvent, FeedEventKind, FeedState
from feeds.shorten import shorten_entry
from pubsubd import ns
from pubsubd.modules.feeds.pubsub_component import PubSubComponent
from pubsubd.modules.feeds.status import status_element
from pubsubd.pubsub import Notification, NotificationKind, PubSubError
from pubsubd.pubsub.batch import BatchEntry
from pubsubd.pubsub.model import MessageType, NodeConfig, NodeType, SendLastPublished
from pubsubd.xml import builders

log = logging.getLogger(__name__)

COLLECTION_PREFIX = "feeds/"  # OPML folders become collection nodes "feeds/<folder>"
Send = Callable[[etree._Element], Awaitable[None]]  # routes a server-generated stanza


class NodePublisher:
    """``feeds.poller.Publisher`` onto the pubsub service, idempotent by item id."""

    def __init__(self, pubsub: PubSubComponent, router_send: Send, max_items: int,
                 on_shortened: Callable[[], None] | None = None) -> None:
        self.pubsub = pubsub
        # Told of each entry whose content had to be cut to fit the payload limit (metrics).
        self._on_shortened = on_shortened
        self.service = pubsub.service
        self._send = router_send
        self.max_items = max_items
        # The health last sent with a notification, per node: the status element rides along
        # again only when it changes.
        self._status_sent: dict[str, tuple[object, ...]] = {}
        # The feed's contact JID (:mod:`.contacts`), which tells chat followers of its events.
        self.contact_of: Callable[[str], Awaitable[str | None]] | None = None

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
        """Publish a poll's entries as one batch (DESIGN: storage writes on the hot path are
        batched): one transaction, one fan-out pass; ``notify`` false stores history only."""
        node = feed.feed_id
        if not await self.ensure_node(node, feed.title, feed.group):
            await self._retitle(node, feed.title)
        if not entries:
            return
        entries = await self._fitted(node, feed, entries)
        batch = [BatchEntry(e.item_id, e.atom_xml, e.body_text) for e in entries]
        outcome = await self.service.publish_many(self.jid, node, batch)
        for item_id, error in outcome.refused:
            if error.pubsub_condition != "payload-too-big":
                raise error
            # Retrying would fail forever and block the feed's later entries.
            log.warning("feed %s: entry %s skipped: %s", node, item_id, error,
                        extra={"event": "feed.entry_skipped", "feed": feed.url})
        if notify:
            # History only otherwise: stored, and the notifications the core plans dropped.
            await self._send_notifications(outcome.notifications, batch,
                                           self._status_if_changed(feed))
        log.info("feed %s: %d entries %s", node, len(entries),
                     "published and notified" if notify else "stored as history",
                     extra={"event": "feed.published" if notify else "feed.history",
                            "feed": feed.url, "node": node, "count": len(entries)})

    async def published_ids(self, feed: FeedState, item_ids: Sequence[str]) -> set[str]:
        """The ids among ``item_ids`` that are items of the feed's node: a poll that died
        between publishing and committing left them claimed, and they must not go out again."""
        try:
            items = await self.service.store.get_items(self.jid, feed.feed_id, list(item_ids))
        except Exception:  # noqa: BLE001 - no node yet: nothing was published
            return set()
        return {item.item_id for item in items}

    async def _fitted(self, node: str, feed: FeedState,
                      entries: Sequence[Entry]) -> list[Entry]:
        """The entries, each cut to the node's payload limit (XEP-0060 §7.1.3.5) rather than
        refused: an entry is never dropped for its size, only its content."""
        config = (await self.service.get_node(node)).config
        limit = min(config.max_payload_size, self.service.config.max_payload_size)
        fitted = []
        for entry in entries:
            short = shorten_entry(entry, limit)
            if short is None:
                fitted.append(entry)  # refused below, and logged there
                continue
            if short is not entry:
                log.info("feed %s: entry %s shortened to fit %d bytes", node, entry.item_id,
                         limit, extra={"event": "feed.entry_shortened", "feed": feed.url})
                if self._on_shortened is not None:
                    self._on_shortened()
            fitted.append(short)
        return fitted

    async def _send_notifications(self, notifications: Sequence[Notification],
                                  batch: Sequence[BatchEntry], extra: str | None) -> None:
        """Each item's notification with that item's text (the message body); the status
        element rides along with the first only."""
        text_of = {(e.item_id, e.payload): e.text for e in batch}
        for notification in notifications:
            if notification.kind is NotificationKind.ITEMS and len(notification.items) == 1:
                item = notification.items[0]
                text = text_of.get((item.item_id, item.payload))
                await self.pubsub.sender.send([notification], text, extra)
                extra = None
            else:
                await self.pubsub.sender.send([notification])

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


__all__ = ["COLLECTION_PREFIX", "NodePublisher", "Send"]

"""Notifications of the core → ``<message/>`` stanzas on the wire (XEP-0060 §7.1.2, §8, §12).

The event payload of a notification is serialized once; each recipient's message is that
byte string wrapped in its own addressing, SHIM headers (XEP-0131) and optional ``<body/>``.
Local recipients with a bound session get the bytes straight into their outbox; everything
else (offline storage of ``normal`` messages, other domains) goes through the router.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from pubsubd import ns
from pubsubd.core.hooks import HookBus
from pubsubd.core.router import Router, Stanza
from pubsubd.core.session import Session, SessionRegistry
from pubsubd.jid import JID, InvalidJID
from pubsubd.pubsub import Notification, NotificationKind, Recipient, bare
from pubsubd.xml.forms import Field, Form

from .dataforms import form_element

log = logging.getLogger(__name__)

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
_BODY_LIMIT = 2000


def readable_text(payload: str) -> str:
    """A plain-text rendering of an item payload for ``<body/>`` (pubsub#include_body).

    An Atom entry (the feed engine's payloads, XEP-0277 posts) reads as its title and link;
    anything else as its text content.
    """
    if not payload:
        return ""
    try:
        root = etree.fromstring(payload.encode(), _PARSER)
    except etree.XMLSyntaxError:
        return ""
    if root.tag == ns.clark(ns.ATOM, "entry"):
        title = root.findtext(ns.clark(ns.ATOM, "title")) or ""
        link = root.find(ns.clark(ns.ATOM, "link"))
        href = link.get("href", "") if link is not None else ""
        summary = root.findtext(ns.clark(ns.ATOM, "summary")) or ""
        parts = [p.strip() for p in (title, summary, href) if p and p.strip()]
        return "\n".join(parts)[:_BODY_LIMIT]
    return " ".join(t.strip() for t in root.itertext() if t.strip())[:_BODY_LIMIT]


def _attr(name: str, value: str) -> str:
    return f" {name}={quoteattr(value)}"


def event_bytes(notification: Notification) -> str:
    """The ``<event/>`` (or, for approval requests, the data form) shared by all recipients."""
    n = notification
    node = _attr("node", n.node)
    match n.kind:
        case NotificationKind.ITEMS:
            # §7.1.2.1 with payload, §7.1.2.2 without (deliver_payloads false).
            parts = []
            for item in n.items:
                publisher = _attr("publisher", bare(item.publisher)) if item.publisher else ""
                head = f"<item{_attr('id', item.item_id)}{publisher}"
                parts.append(
                    f"{head}>{item.payload}</item>" if n.with_payload and item.payload
                    else f"{head}/>"
                )
            inner = f"<items{node}>{''.join(parts)}</items>"
        case NotificationKind.RETRACT:  # §7.2.2.1
            retracts = "".join(f"<retract{_attr('id', i)}/>" for i in n.item_ids)
            inner = f"<items{node}>{retracts}</items>"
        case NotificationKind.DELETE:  # §8.4.2, with the redirect of §8.4.1
            redirect = f"<redirect{_attr('uri', n.redirect)}/>" if n.redirect else ""
            inner = f"<delete{node}>{redirect}</delete>"
        case NotificationKind.PURGE:  # §8.5.2
            inner = f"<purge{node}/>"
        case NotificationKind.CONFIGURATION:  # §8.2.5.3: the form only with deliver_payloads
            form = ""
            if n.config is not None:
                form = etree.tostring(
                    form_element(n.config.to_form(), "result"), encoding="unicode"
                )
            inner = f"<configuration{node}>{form}</configuration>"
        case NotificationKind.SUBSCRIPTION:  # §8.8.4, §12.8 (notify_sub)
            sub = n.subscription
            assert sub is not None
            inner = (
                f"<subscription{node}{_attr('jid', sub.jid)}"
                f"{_attr('subscription', sub.state.value)}{_attr('subid', sub.subid)}/>"
            )
        case NotificationKind.APPROVAL_REQUEST:
            return etree.tostring(approval_form(n).to_element(), encoding="unicode")
        case NotificationKind.ASSOCIATE | NotificationKind.DISSOCIATE | NotificationKind.CREATE:
            # XEP-0248 §5.3: events about a child node, inside <collection node='parent'/>.
            child = _attr("node", n.child or "")
            inner = f"<collection{node}><{n.kind.value}{child}/></collection>"
    return f"<event xmlns='{ns.PUBSUB_EVENT}'>{inner}</event>"


def approval_form(notification: Notification) -> Form:
    """XEP-0060 §8.6.1: the form an owner fills in to approve a pending subscription."""
    sub = notification.subscription
    assert sub is not None
    return Form.with_form_type(
        "form",
        ns.PUBSUB_SUBSCRIBE_AUTHORIZATION,
        [
            Field("pubsub#subid", "hidden", values=[sub.subid]),
            Field("pubsub#node", "text-single", label="Node ID", values=[notification.node]),
            Field("pubsub#subscriber_jid", "jid-single", label="Subscriber Address",
                  values=[sub.jid]),
            Field("pubsub#allow", "boolean",
                  label="Allow this JID to subscribe to this pubsub node?", values=["false"]),
        ],
        title="PubSub subscriber request",
        instructions=["To approve this entity's subscription request, click the OK button. "
                      "To deny the request, click the cancel button."],
    )


def _headers(recipient: Recipient) -> str:
    # XEP-0060 §7.1.2.4 SubID headers (several subscriptions of one JID), XEP-0248 §5.3.1
    # the Collection header when the item reached the subscriber through a collection.
    if len(recipient.subids) < 2 and not recipient.collection:
        return ""  # the common case, checked first: it is asked once per recipient
    headers = [f"<header name='SubID'>{escape(s)}</header>" for s in recipient.subids
               if len(recipient.subids) > 1 or recipient.collection]
    if recipient.collection:
        headers.append(f"<header name='Collection'>{escape(recipient.collection)}</header>")
    return f"<headers xmlns='{ns.SHIM}'>{''.join(headers)}</headers>"


class _Variant:
    """One serialization of a notification shared by recipients that differ only in ``to``."""

    __slots__ = ("head", "tail", "headline", "element", "_from", "service")

    def __init__(self, head: bytes, tail: bytes, headline: bool = False,
                 service: str | None = None) -> None:
        self.head = head
        self.tail = tail
        self.headline = headline
        self.element: etree._Element | None = None
        self._from: JID | None = None
        self.service = service  # the 'from' of the message, when known without parsing it

    def render(self, address: str) -> bytes:
        return self.head + quoteattr(address).encode() + self.tail

    def parsed(self, data: bytes) -> etree._Element:
        """The message as an element, parsed from the first recipient's bytes."""
        if self.element is None:
            self.element = etree.fromstring(data, _PARSER)
        return self.element

    def sender(self) -> JID:
        if self._from is None:
            sender = self.service if self.service is not None else self.parsed(b"").get("from")
            self._from = JID.parse(sender or "")
        return self._from


# ``async (notification, recipient) -> bool``: True when it delivered that recipient's copy
# itself (the feed engine sends entries to chat subscribers as plain chat messages).
Renderer = Callable[[Notification, Recipient], Awaitable[bool]]
# ``(node, count)``: ``count`` messages of one notification of ``node`` entered sessions'
# outboxes (the delivery statistics count once per notification, not per stanza).
DeliveredListener = Callable[[str, int], None]

_ADDRESSES_KEPT = 100_000  # parsed and quoted recipient addresses kept between notifications


class NotificationSender:
    """Turns notifications into messages and hands them to sessions or the router."""

    def __init__(self, router: Router, sessions: SessionRegistry, hooks: HookBus,
                 blocked: Callable[[JID, Callable[[], JID]], bool] | None = None) -> None:
        self.router = router
        self.sessions = sessions
        self.hooks = hooks
        self.renderers: list[Renderer] = []
        # XEP-0191: (recipient, sender) → blocked? Local deliveries skip the router's hooks.
        self.blocked = blocked
        self.delivered_listeners: list[DeliveredListener] = []
        # address → (its JID, or None if it is not one; the ``to`` attribute value as bytes):
        # the same subscribers hear of every item of a node, so each is parsed and quoted once.
        self._addresses: dict[str, tuple[JID | None, bytes]] = {}
        # Full JID → its session, asked of the registry again once that session has ended
        # (a session leaves the registry only closed, or displaced by a newer one).
        self._bound: dict[JID, Session] = {}
        self._bound_limit = 1024

    async def send(self, notifications: Iterable[Notification], text: str | None = None,
                   extra: str | None = None) -> None:
        for notification in notifications:
            try:
                await self._send_one(notification, text, extra or "")
            except Exception:
                log.exception("could not send a %s notification of %s",
                              notification.kind, notification.node)

    def _address(self, address: str) -> tuple[JID | None, bytes]:
        found = self._addresses.get(address)
        if found is None:
            try:
                jid: JID | None = JID.parse(address)
            except InvalidJID:
                jid = None
            if len(self._addresses) >= _ADDRESSES_KEPT:
                self._addresses.clear()
            found = self._addresses[address] = (jid, quoteattr(address).encode())
        return found

    async def _send_one(self, notification: Notification, text: str | None,
                        extra: str = "") -> None:
        if not notification.recipients:
            return
        log.debug("%s notification of %s to %d recipient(s)", notification.kind,
                  notification.node, len(notification.recipients))
        event = event_bytes(notification)
        body = ""
        if any(r.include_body for r in notification.recipients):
            body = self._body(notification, text)
        head = f"<message xmlns='{ns.CLIENT}'{_attr('from', notification.service)} to=".encode()
        # Recipients differ only in their address, unless SubID/Collection headers, a body or
        # the message type set them apart: each such variant is serialized once, and so parsed
        # once if the message/in filters want to look at it.
        variants: dict[tuple[str, str, bool], _Variant] = {}
        delivered = 0
        for recipient in notification.recipients:
            if self.renderers and await self._rendered(notification, recipient):
                continue
            headers = _headers(recipient)
            key = (recipient.message_type.value, headers, recipient.include_body)
            variant = variants.get(key)
            if variant is None:
                tail = (f"{_attr('type', key[0])}>{event}{headers}"
                        f"{body if recipient.include_body else ''}{extra}</message>").encode()
                variant = variants[key] = _Variant(head, tail, key[0] == "headline",
                                                   notification.service)
            to, quoted = self._address(recipient.address)
            if to is None:
                log.warning("dropping a notification to the invalid address %r",
                            recipient.address)
                continue
            delivered += await self._deliver(to, key[0], head + quoted + variant.tail, variant)
        if delivered and notification.kind is not NotificationKind.APPROVAL_REQUEST:
            for listener in self.delivered_listeners:
                listener(notification.node, delivered)

    async def _rendered(self, notification: Notification, recipient: Recipient) -> bool:
        for renderer in self.renderers:
            if await renderer(notification, recipient):
                return True
        return False

    @staticmethod
    def _body(notification: Notification, text: str | None) -> str:
        if notification.kind is NotificationKind.ITEMS:
            if text is None or len(notification.items) != 1:
                text = "\n\n".join(filter(None, (readable_text(i.payload)
                                                  for i in notification.items)))
            if notification.skipped:
                n = notification.skipped
                text = (f"{text}\n\n{n} more item{'s' if n != 1 else ''} appeared while you "
                        f"were away; fetch them with a pubsub items request to "
                        f"{notification.service}, node {notification.node}.")
        elif notification.kind is NotificationKind.RETRACT:
            text = f"Removed from {notification.node}: {', '.join(notification.item_ids)}"
        elif notification.kind is NotificationKind.DELETE:
            text = f"The node {notification.node} was deleted."
        elif notification.kind is NotificationKind.PURGE:
            text = f"Every item of {notification.node} was removed."
        else:
            return ""
        return f"<body>{escape(text)}</body>" if text else ""

    async def deliver(self, address: str, message_type: str, data: bytes,
                      variant: _Variant | None = None) -> int:
        """RFC 6121 §8.5 delivery of one serialized message, straight to sessions if local;
        the number of sessions whose outbox took it."""
        to, _ = self._address(address)
        if to is None:
            log.warning("dropping a notification to the invalid address %r", address)
            return 0
        return await self._deliver(to, message_type, data, variant)

    async def _deliver(self, to: JID, message_type: str, data: bytes,
                       variant: _Variant | None) -> int:
        if to.local is None or to.domain not in self.router.domains:
            await self._route(data)
            return 0
        if self.blocked is not None and self._blocked(to, data, variant):
            return 0
        if to.resource is not None:
            session = self._bound.get(to)
            if session is None or session.closed or session.displaced:
                session = self._look_up(to)
                if session is None:
                    # RFC 6121 §8.5.3.2.1: a normal or headline message to an unknown resource
                    # is silently ignored (an offline subscriber's bare-JID subscriptions are
                    # held).
                    return 0
            if await self._filtered(data, to, variant):
                return 0
            return 1 if session.send(data) else 0
        targets = self.router.message_targets(to.bare, message_type)
        if not targets:
            if message_type != "headline":
                await self._route(data)  # offline storage (RFC 6121 §8.5.2.2.1)
            return 0  # §8.5.2.2.3: a headline to an offline account is dropped
        if await self._filtered(data, to, variant):
            return 0
        return sum(1 for session in targets if session.send(data))

    def _look_up(self, to: JID) -> Session | None:
        """The registry's session of ``to``, remembered for the next notifications."""
        session = self.sessions.get(to)
        if session is None:
            self._bound.pop(to, None)
            return None
        if len(self._bound) >= self._bound_limit:
            # Forget the sessions that ended, so the cache never holds more of them than of
            # live ones (at most a thousand or so).
            self._bound = {k: v for k, v in self._bound.items()
                           if not (v.closed or v.displaced)}
            self._bound_limit = max(1024, 2 * len(self._bound))
        self._bound[to] = session
        return session

    def _blocked(self, to: JID, data: bytes, variant: _Variant | None) -> bool:
        """XEP-0191 §3.3: nothing from a JID the recipient blocks (checked here because these
        messages go straight to sessions, past the router's ``message/pre`` filter). No error
        goes back: the sender is one of this server's own services."""
        assert self.blocked is not None
        known = variant

        def sender() -> JID:
            nonlocal known
            if known is None:  # parsed only for a recipient who blocks someone
                known = _Variant(b"", b"")
                known.element = etree.fromstring(data, _PARSER)
            return known.sender()

        try:
            return self.blocked(to, sender)
        except InvalidJID:
            return False

    async def _filtered(self, data: bytes, to: JID, variant: _Variant | None) -> bool:
        """Give the ``message/in`` filters (blocking, carbons) a look when any is installed.

        They see the message as sent; what they change in it is not sent (the bytes are), so
        the recipients of one variant share one parsed element, readdressed for each.
        """
        if not self.hooks.has("message/in"):
            return False
        if variant is not None and variant.headline:
            # A headline event is neither archived (XEP-0313 §6.1.1: not notifications) nor
            # carbon-copied (XEP-0280 §6.1: chat, or normal with a body): nothing to look at.
            return False
        if variant is None:
            variant = _Variant(b"", b"")
            variant.element = etree.fromstring(data, _PARSER)
        element = variant.parsed(data)
        element.set("to", str(to))
        return await self.hooks.fire("message/in", Stanza(element, variant.sender(), to))

    async def _route(self, data: bytes) -> None:
        element = etree.fromstring(data, _PARSER)
        await self.router.send(element)

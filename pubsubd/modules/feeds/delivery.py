"""Feed entries as plain chat messages from the feed's own contact.

A person who follows a feed by chat, by ad-hoc command or through the feed's contact reads its
entries in a conversation with ``<short-name>@pubsub.<domain>``. Such an entry is an ordinary
``type="chat"`` message — a readable body (title with XEP-0393 strong styling, link, summary)
and an XEP-0359 origin-id — and no pubsub ``<event/>``: several clients (Profanity, Gajim) hide
any message carrying one. Each enclosure (a podcast's audio, an image) follows as a message of
its own whose body is its URL and which carries that URL as XEP-0066 ``jabber:x:oob`` too: the
form rich clients (converse.js, Gajim) show as a player or an image, while plain
clients show the URL. So every URL of an entry is shown exactly once by every client; see
:func:`enclosure_message` for why the web link carries no OOB element.

It is routed like any chat message to the subscriber, so the recipient's server archives it
(XEP-0313, which also stamps the XEP-0359 stanza-id), sends carbons, and stores it offline when
no resource is available (RFC 6121 §8.5.2.1.1). Subscribers by plain XEP-0060 subscribe keep
standard event notifications: only chat-type subscriptions to feed nodes are rendered here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from lxml import etree

from feeds import html
from pubsubd import ns
from pubsubd.pubsub import Notification, NotificationKind, Recipient
from pubsubd.pubsub.model import MessageType
from pubsubd.xml import builders

log = logging.getLogger(__name__)

OOB = "jabber:x:oob"
SUMMARY_CHARS = 400
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_A = "{" + ns.ATOM + "}"


class Send(Protocol):
    """Route a stanza; ``deferrable``: it may wait while the client is inactive (XEP-0352)."""

    def __call__(self, element: etree._Element, *, deferrable: bool = False
                 ) -> Awaitable[None]: ...


Urgent = Callable[[str], Awaitable[bool]]  # reader's bare JID → entries go out at once?
ContactOf = Callable[[str], Awaitable[str | None]]  # feed node → contact JID, None if no feed


@dataclass(frozen=True, slots=True)
class EntryText:
    """What a reader sees of an Atom entry."""

    title: str
    link: str
    summary: str
    enclosures: tuple[str, ...] = ()


def read_entry(payload_xml: str) -> EntryText | None:
    """The title, link, plain-text summary and enclosures of a serialized Atom entry."""
    try:
        root = etree.fromstring(payload_xml.encode(), _PARSER)
    except etree.XMLSyntaxError:
        return None
    if root.tag != _A + "entry":
        return None
    link = ""
    enclosures: list[str] = []
    for el in root.findall(_A + "link"):
        href = (el.get("href") or "").strip()
        rel = el.get("rel") or "alternate"
        if not href:
            continue
        if rel == "enclosure":
            enclosures.append(href)
        elif rel == "alternate" and not link:
            link = href
    summary = (root.findtext(_A + "summary") or "").strip()
    if not summary:
        content = root.find(_A + "content")
        if content is not None and content.text:
            summary = html.to_text(content.text) if content.get("type") == "html" \
                else content.text
    title = html.one_line(root.findtext(_A + "title") or "")
    return EntryText(title, link, html.truncate(summary.strip(), SUMMARY_CHARS),
                     tuple(enclosures))


def styled_title(title: str) -> str:
    """XEP-0393 §5.3.2 strong span, when the title can carry one unambiguously."""
    if title and "*" not in title and title == title.strip():
        return f"*{title}*"
    return title


def body_of(entry: EntryText, *, enclosures: bool = True) -> str:
    """Title first, then the link, then the summary (when it says more than the title), then
    an ``Attachment:`` line per enclosure unless ``enclosures`` is false (they go out apart)."""
    lines = [styled_title(entry.title)] if entry.title else []
    if entry.link and (enclosures or entry.link not in entry.enclosures):
        lines.append(entry.link)
    if entry.summary and entry.summary != entry.title:
        lines += ["", entry.summary]
    for url in entry.enclosures if enclosures else ():
        lines.append(f"Attachment: {url}")
    return "\n".join(lines)


def entry_message(entry: EntryText, from_: str, to: str) -> etree._Element | None:
    """The chat message of one entry's text, its enclosures left out (no pubsub element, so
    every client shows it); None when the entry has nothing but enclosures."""
    body = body_of(entry, enclosures=False)
    return _chat(body, from_, to) if body else None


def enclosure_message(url: str, from_: str, to: str) -> etree._Element:
    """The chat message of one enclosure: its URL as the whole body and as XEP-0066 OOB.

    converse.js shows a message's (last) OOB URL a second time under its body unless the body
    is exactly that URL, and Gajim offers a preview only for such a message. So the OOB
    element rides on a message of its own whose body is the URL — shown once, as media where
    the client can — and the entry's web link, which clients linkify in the body anyway,
    carries none."""
    return _chat(url, from_, to, oob_url=url)


def entry_messages(entry: EntryText, from_: str, to: str) -> list[etree._Element]:
    """What a chat reader receives of one entry: its text, then each enclosure once."""
    text = entry_message(entry, from_, to)
    return ([text] if text is not None else []) + [
        enclosure_message(url, from_, to) for url in dict.fromkeys(entry.enclosures)]


def _chat(body: str, from_: str, to: str, oob_url: str | None = None) -> etree._Element:
    message_id = builders.new_id()
    message = builders.message(to=to, from_=from_, type_="chat", id_=message_id, body=body)
    if oob_url is not None:
        oob = builders.child(message, OOB, "x")  # XEP-0066 §3
        etree.SubElement(oob, ns.clark(OOB, "url")).text = oob_url
    builders.child(message, ns.SID, "origin-id", id=message_id)  # XEP-0359 §4
    return message


class ChatDelivery:
    """A :class:`NotificationSender` renderer: items of feed nodes to chat subscribers go out
    as plain chat messages from the feed's contact, through ordinary routing.

    Each goes out marked deferrable unless its reader chose urgent entries
    (:mod:`pubsubd.modules.feeds.entry_urgency`): the mark is decided here, once per
    notification, so a client's writer holds it under CSI without looking inside."""

    def __init__(self, contact_of: ContactOf, send: Send, urgent: Urgent | None = None) -> None:
        self.contact_of = contact_of
        self.send = send
        self.urgent = urgent

    async def __call__(self, notification: Notification, recipient: Recipient) -> bool:
        if notification.kind is not NotificationKind.ITEMS:
            return False
        if recipient.message_type is not MessageType.CHAT or not notification.items:
            return False
        contact = await self.contact_of(notification.node)
        if contact is None:
            return False
        reader = recipient.address.partition("/")[0]
        deferrable = self.urgent is not None and not await self.urgent(reader)
        for item in notification.items:
            entry = read_entry(item.payload)
            if entry is None:
                continue
            for message in entry_messages(entry, contact, recipient.address):
                await self.send(message, deferrable=deferrable)
        if notification.skipped:
            n = notification.skipped
            text = (f"{n} more entr{'ies' if n != 1 else 'y'} appeared while you were away; "
                    "say “list” to the feeds contact to see your feeds.")
            await self.send(builders.message(to=recipient.address, from_=contact,
                                             type_="chat", body=text), deferrable=deferrable)
        return True

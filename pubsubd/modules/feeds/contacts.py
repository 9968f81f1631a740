"""Each followed feed is a contact, ``<short-name>@pubsub.<domain>``, and the service has a
command contact, ``feeds@pubsub.<domain>``: addresses with a localpart, which every client
accepts (converse.js refuses a bare domain as a chat partner).

For a local follower the server itself adds the feed's contact to the roster — name = feed
title, group "Feeds", subscription ``both`` — with a roster push (RFC 6121 §2.1.6); a remote
follower gets an ordinary subscription request (§3.1). The contact is "available" with the
feed's health as its status, and ``away``/``xa`` with the error while the feed fails. Entries
arrive from it (:mod:`.delivery`); the follower can reply there (``pause``, ``resume``,
``only:…``, ``unsubscribe``, ``help``); removing the contact (roster remove, or presence
``unsubscribe``/``unsubscribed``, §3.3 and §3.2) unfollows the feed.

Short names are readable slugs of the feed's title (else its host and path), unique per
service with a numeric suffix on collision, and persisted so they survive restarts.
"""

from __future__ import annotations

import base64
import logging
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from lxml import etree

from feeds.model import FeedState
from pubsubd import ns
from pubsubd.core.router import Stanza
from pubsubd.errors import StanzaError
from pubsubd.jid import JID
from pubsubd.modules.feeds.avatar import FeedAvatars
from pubsubd.modules.feeds.chat import answer, answer_about_feed
from pubsubd.modules.feeds.refusal import FeedRefused
from pubsubd.storage.interfaces import FeedContactStore, ImStore, RosterItem
from pubsubd.xml import builders

if TYPE_CHECKING:
    from pubsubd.modules.feeds.manager import FeedManager

log = logging.getLogger(__name__)

MAX_SHORT = 40
VCARD_UPDATE = "vcard-temp:x:update"
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_DISCO_INFO = ns.clark(ns.DISCO_INFO, "query")
_VCARD = ns.clark(ns.VCARD, "vCard")
Send = Callable[[etree._Element], Awaitable[None]]
Reply = Callable[[Stanza, etree._Element | None], Awaitable[None]]


class Roster(Protocol):
    """What this needs of the roster module (``RosterModule``)."""

    store: ImStore

    def check_room(self, owner: JID) -> None: ...

    async def save(self, owner: JID, item: RosterItem) -> None: ...

    async def remove(self, owner: JID, contact: JID) -> None: ...


class Accounts(Protocol):
    async def exists(self, jid: JID) -> bool: ...


# -- short names ------------------------------------------------------------------------------


def slug(text: str) -> str:
    """Lowercase ASCII letters, digits and single dashes: a valid localpart (RFC 7622 §3.3,
    PRECIS UsernameCaseMapped) that reads like the text."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return _NOT_SLUG.sub("-", ascii_text).strip("-")[:MAX_SHORT].strip("-")


def base_name(title: str, url: str) -> str:
    """The short name a feed would like: its title, else its host and path."""
    name = slug(title)
    if name:
        return name
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    path = re.sub(r"\.(xml|rss|atom|php|cgi)$", "", parts.path)
    return slug(f"{host} {path}") or "feed"


def unique_name(wanted: str, taken: set[str]) -> str:
    if wanted not in taken:
        return wanted
    number = 2
    while f"{wanted}-{number}" in taken:
        number += 1
    return f"{wanted}-{number}"


# -- health in words --------------------------------------------------------------------------


def span(seconds: float) -> str:
    """A rough duration: "less than a minute", "2 min", "1 h 5 min", "3 days"."""
    minutes = int(max(seconds, 0) // 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def next_check(state: FeedState, now: float) -> str:
    """When the feed is checked next, in words ("in 29 min", "now")."""
    if state.gone:
        return "never (the feed is gone)"
    if state.paused:
        return "not scheduled (paused)"
    due = state.next_fetch
    if state.last_fetch is not None and (due is None or due <= state.last_fetch):
        due = state.last_fetch + state.interval  # told mid-poll, before it is rescheduled
    if due is None or due <= now + 1:
        return "now"
    return "in " + span(due - now)


def health(state: FeedState | None, now: float, delivering: bool = True,
           failing_after: int = 5) -> tuple[str | None, str]:
    """(show, status) of a feed's contact: available when fine (show None), ``away`` while
    errors accumulate or the follower paused deliveries, ``xa`` when failing, gone or paused."""
    if state is None:
        return "xa", "no longer checked"
    if state.gone:
        return "xa", "gone (HTTP 410): no longer checked"
    if state.paused:
        return "xa", "paused by the server"
    checked = ("checked " + ("just now" if now - state.last_fetch < 60
                             else span(now - state.last_fetch) + " ago")
               if state.last_fetch is not None else "not checked yet")
    due = next_check(state, now)
    if state.error_streak:
        show = "xa" if state.error_streak >= failing_after else "away"
        return show, f"failing: {state.last_error or 'error'} — {checked}, next try {due}"
    status = f"{checked}, next {due}"
    if not delivering:
        return "away", f"deliveries paused (say resume) — {status}"
    return None, status


# The resource a feed's contact is available at. Availability comes from a full JID, as from
# any contact that is online (RFC 6121 §4.2.2): several clients (Gajim among them) show a
# contact whose presence comes from a bare JID as offline. Subscription stanzas stay bare
# (RFC 6121 §3).
RESOURCE = "feed"


def presence(from_: str, to: str, show: str | None, status: str,
             type_: str | None = None) -> etree._Element:
    """Availability (or ``unavailable``) of a contact, from its full JID."""
    if "/" not in from_:
        from_ = f"{from_}/{RESOURCE}"
    el = builders.stanza("presence", to=to, from_=from_, type_=type_)
    if show:
        etree.SubElement(el, ns.C_SHOW).text = show
    if status:
        etree.SubElement(el, ns.clark(ns.CLIENT, "status")).text = status
    return el


# -- the contacts -----------------------------------------------------------------------------


class FeedContacts:
    """The feed contacts and the command contact of the service domain ``domain``."""

    def __init__(self, domain: str, store: FeedContactStore, manager: FeedManager,
                 roster: Roster | None, accounts: Accounts, local_domains: frozenset[str],
                 send: Send, reply: Reply, *, command_local: str = "feeds",
                 group: str = "Feeds", avatars: FeedAvatars | None = None) -> None:
        self.domain = domain
        self.store = store
        self.manager = manager
        self.roster = roster
        self.accounts = accounts
        self.local_domains = local_domains
        self.send = send
        self.reply = reply
        self.command_local = command_local
        self.group = group
        self.avatars = avatars
        self.clock: Callable[[], float] = time.time
        self._feed_of: dict[str, str] = {}  # short name → feed id
        self._short_of: dict[str, str] = {}  # feed id → short name

    @property
    def command_jid(self) -> str:
        return f"{self.command_local}@{self.domain}"

    async def load(self) -> None:
        self._feed_of = await self.store.load()
        self._short_of = {feed: short for short, feed in self._feed_of.items()}

    def feed_of(self, local: str) -> str | None:
        return self._feed_of.get(local)

    def jid_of(self, feed_id: str) -> str | None:
        short = self._short_of.get(feed_id)
        return f"{short}@{self.domain}" if short else None

    async def ensure(self, state: FeedState) -> str:
        """The feed's contact JID, naming it on first use."""
        known = self.jid_of(state.feed_id)
        if known is not None:
            return known
        taken = set(self._feed_of) | {self.command_local}
        short = unique_name(base_name(state.title, state.url), taken)
        self._feed_of[short] = state.feed_id
        self._short_of[state.feed_id] = short
        await self.store.add(short, state.feed_id)
        return f"{short}@{self.domain}"

    async def contact_of(self, feed_id: str) -> str | None:
        """For delivery: the contact of a polled feed (named now if need be), else None."""
        known = self.jid_of(feed_id)
        if known is not None:
            return known
        state = await self.manager.poller.store.get_feed(feed_id)
        return await self.ensure(state) if state is not None else None

    # -- following ----------------------------------------------------------------------------

    def _is_local(self, user: JID) -> bool:
        return user.domain in self.local_domains

    async def followed(self, user: str, state: FeedState, *, avatar: bool = True) -> str:
        """Put the feed's contact in front of ``user`` (bare JID); its JID. ``avatar``: fetch
        the feed's image now (not in bulk imports; a vCard request fetches it later)."""
        contact = await self.ensure(state)
        if avatar and self.avatars is not None:
            await self.avatars.photo(state)  # its hash goes into the contact's presence
        await self._befriend(JID.parse(user), JID.parse(contact), state.title or state.url)
        await self.send_presence(contact, user, state)
        return contact

    async def _befriend(self, user: JID, contact: JID, name: str) -> None:
        if self._is_local(user) and self.roster is not None:
            if not await self.accounts.exists(user):
                return
            existing = self.roster.store.item(user, contact)
            if existing is not None and existing.subscription == "both":
                return  # already there: keep the name and groups the user gave it
            # RFC 6121 §2.1.6: a server-side roster change reaches the user as a roster push.
            item = RosterItem(contact, name[:1023] or None, (self.group,), "both")
            if existing is not None:
                item = RosterItem(contact, existing.name or item.name,
                                  existing.groups or item.groups, "both")
            try:
                if existing is None:
                    self.roster.check_room(user)
                await self.roster.save(user, item)
            except StanzaError as error:  # a full roster: entries still arrive, uncontacted
                log.info("roster of %s: %s", user, error)
            return
        # A remote user: an ordinary subscription request (RFC 6121 §3.1.1).
        await self.send(builders.stanza("presence", to=str(user), from_=str(contact),
                                        type_="subscribe"))

    async def unfollowed(self, user: str, node: str) -> None:
        """The user no longer follows ``node``: its contact leaves their roster."""
        contact = self.jid_of(node)
        if contact is None:
            return
        owner, contact_jid = JID.parse(user), JID.parse(contact)
        await self.send(presence(contact, user, None, "", "unavailable"))
        if self._is_local(owner) and self.roster is not None:
            try:
                await self.roster.remove(owner, contact_jid)  # §2.5, with its roster push
            except StanzaError:
                pass  # already removed (the removal is what unfollowed it)
        else:
            await self.send(builders.stanza("presence", to=user, from_=contact,
                                            type_="unsubscribed"))

    async def send_presence(self, contact: str, to: str, state: FeedState | None = None,
                            node: str | None = None) -> None:
        """The feed's health as the contact's presence, to ``to``."""
        node = node or (state.feed_id if state is not None else None)
        if state is None and node is not None:
            state = await self.manager.poller.store.get_feed(node)
        delivering = True
        if node is not None:
            sub = await self.manager.subscription_of(str(JID.parse(to).bare), node)
            delivering = sub is None or sub.options.deliver
        show, status = health(state, self.clock(), delivering,
                              self.manager.config.failing_after)
        el = presence(contact, to, show, status)
        photo = self.avatars.cached(node) if self.avatars is not None and node else None
        if photo is not None:
            # XEP-0153 §3.1: the avatar's hash, so that clients fetch the vCard's PHOTO.
            update = builders.child(el, VCARD_UPDATE, "x")
            etree.SubElement(update, ns.clark(VCARD_UPDATE, "photo")).text = photo.sha1
        await self.send(el)

    async def announce(self, state: FeedState) -> None:
        """A poll of the feed ended: tell every follower its health (when checked, when next,
        failing or gone) through its contact's presence."""
        contact = self.jid_of(state.feed_id)
        if contact is None:
            return
        for user in await self.manager.followers(state.feed_id):
            await self.send_presence(contact, user, state)

    # -- stanzas to name@pubsub.<domain> ------------------------------------------------------

    async def handle(self, st: Stanza) -> bool:
        """The component's contact handler; False leaves the stanza to the default answer."""
        assert st.to is not None and st.to.local is not None
        local = st.to.local
        if local == self.command_local:
            node = None
        else:
            node = self.feed_of(local)
            if node is None:
                return False
        contact = f"{local}@{self.domain}"
        match st.kind:
            case "iq":
                return await self._iq(st, contact, node)
            case "message":
                await self._message(st, contact, node)
                return True
            case "presence":
                await self._presence(st, contact, node)
                return True
        return False

    async def _iq(self, st: Stanza, contact: str, node: str | None) -> bool:
        if st.type not in ("get", "set"):
            return True  # RFC 6120 §8.2.3: results and errors are never answered
        payload = st.element[0] if len(st.element) else None
        if payload is None or st.type != "get":
            return False
        if payload.tag == _DISCO_INFO and not payload.get("node"):
            await self.reply(st, await self._disco(node))
            return True
        if payload.tag == _VCARD:
            await self.reply(st, await self._vcard(node))
            return True
        return False

    async def _title(self, node: str | None) -> tuple[str, FeedState | None]:
        if node is None:
            return "Feeds", None
        state = await self.manager.poller.store.get_feed(node)
        return ((state.title or state.url) if state else node), state

    async def _disco(self, node: str | None) -> etree._Element:
        """XEP-0030: an automated chat partner (category client, type bot)."""
        title, _ = await self._title(node)
        query = builders.element(ns.DISCO_INFO, "query")
        etree.SubElement(query, ns.clark(ns.DISCO_INFO, "identity"), category="client",
                         type="bot", name=title)
        for feature in sorted({ns.DISCO_INFO, ns.VCARD}):
            etree.SubElement(query, ns.clark(ns.DISCO_INFO, "feature"), var=feature)
        return query

    async def _vcard(self, node: str | None) -> etree._Element:
        """XEP-0054: FN = the feed's title, URL = its site, DESC = what the contact does."""
        title, state = await self._title(node)
        card = builders.element(ns.VCARD, "vCard")
        etree.SubElement(card, ns.clark(ns.VCARD, "FN")).text = title
        etree.SubElement(card, ns.clark(ns.VCARD, "NICKNAME")).text = title
        if state is not None:
            if state.site_link:
                etree.SubElement(card, ns.clark(ns.VCARD, "URL")).text = state.site_link
            desc = (f"Entries of the feed {state.url}. Reply “help” for what you can say "
                    "(pause, resume, only:word, unsubscribe).")
        else:
            desc = "Follows web feeds for you. Say “help”, or “subscribe” and an address."
        etree.SubElement(card, ns.clark(ns.VCARD, "DESC")).text = desc
        photo = (await self.avatars.photo(state)
                 if self.avatars is not None and state is not None else None)
        if photo is not None:
            photo_el = etree.SubElement(card, ns.clark(ns.VCARD, "PHOTO"))
            etree.SubElement(photo_el, ns.clark(ns.VCARD, "TYPE")).text = photo.mime
            etree.SubElement(photo_el, ns.clark(ns.VCARD, "BINVAL")).text = \
                base64.b64encode(photo.data).decode()
        return card

    async def _message(self, st: Stanza, contact: str, node: str | None) -> None:
        body = st.element.findtext(ns.C_BODY)
        if st.type not in ("chat", "normal") or not body:
            return  # chat states, receipts, errors: nothing to answer
        user = str(st.from_.bare)
        if node is None:
            await self._meet_command_contact(st.from_.bare)
            reply = await answer(self.manager, user, body)
        else:
            reply = await answer_about_feed(self.manager, user, node, body)
        await self.send(builders.message(to=str(st.from_), from_=contact, type_="chat",
                                         body=reply))
        if node is not None and await self.manager.subscription_of(user, node) is not None:
            await self.send_presence(contact, user, node=node)  # e.g. away once paused

    async def _meet_command_contact(self, user: JID) -> None:
        """A local user's first chat with the command contact puts it in their roster."""
        roster = self.roster
        if roster is None or not self._is_local(user) or user.local is None:
            return
        if roster.store.item(user, JID.parse(self.command_jid)) is not None:
            return
        await self._befriend(user, JID.parse(self.command_jid), "Feeds")
        await self.send(presence(self.command_jid, str(user), None,
                                 "say help, or subscribe and a feed's address"))

    async def _presence(self, st: Stanza, contact: str, node: str | None) -> None:
        user = str(st.from_.bare)
        match st.type:
            case "probe":
                await self._present(contact, str(st.from_), node)  # RFC 6121 §4.3.2
            case "subscribe":
                # §3.1.3: approved at once; subscribing to a feed's contact follows the feed.
                if node is not None and await self.manager.subscription_of(user, node) is None:
                    try:
                        await self.manager.subscribe(user, node)
                    except FeedRefused as refused:  # say why, and stay unsubscribed
                        text = refused.message
                        await self.send(builders.stanza("presence", to=user, from_=contact,
                                                        type_="unsubscribed"))
                        await self.send(builders.message(to=user, from_=contact, type_="chat",
                                                         body=text))
                        return
                await self.send(builders.stanza("presence", to=user, from_=contact,
                                                type_="subscribed"))
                await self._present(contact, user, node)
            case "unsubscribe" | "unsubscribed":
                # §3.3 / §3.2: the user removed the contact; removing it unfollows the feed.
                if node is not None:
                    await self.manager.unsubscribe(user, node)
            case _:
                pass  # the user's own availability needs no answer

    async def _present(self, contact: str, to: str, node: str | None) -> None:
        if node is None:
            await self.send(presence(contact, to, None,
                                     "say help, or subscribe and a feed's address"))
        else:
            await self.send_presence(contact, to, node=node)


__all__ = ["FeedContacts", "base_name", "health", "next_check", "slug", "span", "unique_name"]

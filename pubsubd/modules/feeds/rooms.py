"""Feeds posted into group chat rooms (XEP-0045), local or on other servers.

How a room gets feeds, with what every client can do: its owner invites the feed service
(``pubsub.<domain>``) into the room, by a direct invitation (XEP-0249) or a mediated one
(XEP-0045 §7.8.2). The service joins as the occupant :data:`CONTROL_NICK` and obeys owners
and admins of the room who say ``feeds: subscribe <url> [options]``, ``feeds: unsubscribe
<url or number>``, ``feeds: list`` or ``feeds: help`` in the room (the options are those of a
personal subscription: ``only:``, ``not:``, ``digest:``). It sees who is an owner or admin from
the affiliation that every occupant presence carries (XEP-0045 §7.2.3), so this works in
semi-anonymous rooms too.

Each subscribed feed joins the room as an occupant of its own, nick = the feed's title, and its
entries are posted as groupchat messages from it. The service is just another entity sending
presence to ``room@service/nick``: local rooms are reached through the router, remote ones over
s2s. The room's subscription to the feed is an ordinary pubsub subscription of the room JID, so
filters and digests apply exactly as to a person's; :class:`RoomFeeds.deliver` is the renderer
that turns its notifications into groupchat messages. Occupants ping themselves (XEP-0410) to
notice being dropped and join again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.core.router import Stanza
from pubsubd.jid import JID
from pubsubd.modules.feeds.chat import ChatCommand, ChatError, describe_options, parse_chat
from pubsubd.modules.feeds.delivery import body_of, read_entry
from pubsubd.modules.feeds.refusal import FeedRefused, normalize_url
from pubsubd.pubsub import Notification, NotificationKind, PubSubError, Recipient
from pubsubd.pubsub.model import bare
from pubsubd.storage.interfaces import RoomFeed, RoomFeedStore
from pubsubd.xml import builders

if TYPE_CHECKING:
    from pubsubd.modules.feeds.manager import FeedManager

log = logging.getLogger(__name__)

LOCAL = "rooms"  # occupants' real JIDs are rooms@pubsub.<domain>/<resource>
CONTROL_NICK = "feeds"
PREFIXES = ("feeds:", "feeds,")
SELF_PING_EVERY = 300.0  # seconds; XEP-0410 §4 leaves the period to the client
PING_TIMEOUT = 30.0
MANAGERS = ("owner", "admin")
NICK_CHARS = 40

HELP = """Owners and admins of this room can say:
  feeds: subscribe <address> [only:word,word] [not:word] [digest:60] — post a feed's entries here
  feeds: unsubscribe <address or number> — stop posting it
  feeds: list — the feeds posted here, numbered
Each feed posts as an occupant named after it."""

Send = Callable[[etree._Element], Awaitable[None]]


@dataclass(slots=True)
class Occupant:
    """One presence of the service in a room: the control occupant (node None) or a feed's."""

    room: str
    node: str | None
    nick: str
    joined: trio.Event
    present: bool = False
    attempts: int = 0


_OUR_RESOURCE = re.compile(r"[cf]-[0-9a-f]{16}")


def resource_of(room: str, node: str | None) -> str:
    digest = hashlib.sha256(f"{room}\0{node or ''}".encode()).hexdigest()[:16]
    return ("c-" if node is None else "f-") + digest


def feed_nick(title: str, url: str) -> str:
    nick = " ".join(title.split())[:NICK_CHARS].strip()
    return nick or url.split("//", 1)[-1].split("/", 1)[0] or "feed"


class RoomFeeds:
    """The service's occupants in rooms, the room commands, and the groupchat renderer."""

    def __init__(self, manager: FeedManager, store: RoomFeedStore, send: Send,
                 domain: str) -> None:
        self.manager = manager
        self.store = store
        self.send = send
        self.domain = domain
        self.occupants: dict[str, Occupant] = {}  # resource → occupant
        self.feeds: dict[tuple[str, str], RoomFeed] = {}
        self.affiliations: dict[str, dict[str, str]] = {}  # room → nick → affiliation
        self._pings: dict[str, trio.MemorySendChannel[etree._Element]] = {}
        self._work_in, self._work_out = trio.open_memory_channel[
            Callable[[], Awaitable[None]]](256)

    def jid(self, occupant: Occupant) -> str:
        return f"{LOCAL}@{self.domain}/{resource_of(occupant.room, occupant.node)}"

    # -- running -----------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Rejoin every room with feeds, then work through commands and ping now and then."""
        for feed in await self.store.list_all():
            self.feeds[(feed.room, feed.node)] = feed
        async with trio.open_nursery() as nursery:
            task_status.started()
            nursery.start_soon(self._worker)
            for room in sorted({room for room, _ in self.feeds}):
                self._occupant(room, None, CONTROL_NICK)
            for feed in self.feeds.values():
                self._occupant(feed.room, feed.node, feed.nick)
            for occupant in list(self.occupants.values()):
                await self._join(occupant)
            while True:
                await trio.sleep(SELF_PING_EVERY)
                for occupant in list(self.occupants.values()):
                    nursery.start_soon(self._self_ping, occupant)

    async def _worker(self) -> None:
        async for job in self._work_out:
            try:
                await job()
            except Exception:
                log.exception("a room feed command failed")

    def _later(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run outside the stanza's delivery (the room may be broadcasting it right now)."""
        try:
            self._work_in.send_nowait(job)
        except trio.WouldBlock:
            log.warning("room feed commands are piling up; one was dropped")

    # -- occupancy ---------------------------------------------------------------------------

    def _occupant(self, room: str, node: str | None, nick: str) -> Occupant:
        resource = resource_of(room, node)
        occupant = self.occupants.get(resource)
        if occupant is None:
            occupant = self.occupants[resource] = Occupant(room, node, nick, trio.Event())
        return occupant

    async def _join(self, occupant: Occupant) -> None:
        occupant.present = False
        if occupant.joined.is_set():
            occupant.joined = trio.Event()
        presence = builders.stanza("presence", to=f"{occupant.room}/{occupant.nick}",
                                   from_=self.jid(occupant))
        x = builders.child(presence, ns.MUC, "x")
        # No history: old messages must not be read as commands (XEP-0045 §7.2.14).
        etree.SubElement(x, ns.clark(ns.MUC, "history"), maxstanzas="0")
        await self.send(presence)

    async def _leave(self, occupant: Occupant) -> None:
        self.occupants.pop(resource_of(occupant.room, occupant.node), None)
        await self.send(builders.stanza("presence", to=f"{occupant.room}/{occupant.nick}",
                                        from_=self.jid(occupant), type_="unavailable"))

    async def _self_ping(self, occupant: Occupant) -> None:
        """XEP-0410 §3: ping our own occupant JID; not-acceptable (or no answer) means the
        room no longer has us, so join again."""
        request_id = builders.new_id()
        iq = builders.iq("get", to=f"{occupant.room}/{occupant.nick}", from_=self.jid(occupant),
                         id_=request_id)
        builders.child(iq, ns.PING, "ping")
        send_answer, answers = trio.open_memory_channel[etree._Element](1)
        self._pings[request_id] = send_answer
        try:
            await self.send(iq)
            answer = None
            with trio.move_on_after(PING_TIMEOUT):
                answer = await answers.receive()
        finally:
            self._pings.pop(request_id, None)
        if answer is None or answer.get("type") == "error" and _condition(answer) in (
                "not-acceptable", "item-not-found", "remote-server-not-found"):
            await self._join(occupant)

    # -- stanzas to rooms@pubsub.<domain>/... ------------------------------------------------

    async def handle(self, st: Stanza) -> bool:
        """A contact handler of the pubsub component: stanzas to our occupants."""
        assert st.to is not None
        if st.to.local != LOCAL or not _OUR_RESOURCE.fullmatch(st.to.resource or ""):
            return False  # e.g. a feed whose contact happens to be named "rooms"
        occupant = self.occupants.get(st.to.resource or "")
        if st.kind == "iq":
            await self._iq(st)
        elif occupant is None:
            return True  # a leftover from a room we left
        elif st.kind == "presence":
            await self._presence(st, occupant)
        elif st.kind == "message":
            await self._message(st, occupant)
        return True

    async def _iq(self, st: Stanza) -> None:
        if st.type in ("result", "error"):
            waiting = self._pings.get(st.id or "")
            if waiting is not None:
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    waiting.send_nowait(st.element)  # a second answer to one ping is dropped
            return
        payload = st.element[0] if len(st.element) else None
        reply = builders.iq("result", to=str(st.from_), from_=str(st.to), id_=st.id or "")
        if payload is None or payload.tag != ns.clark(ns.PING, "ping"):
            reply.set("type", "error")
            error = etree.SubElement(reply, ns.clark(ns.CLIENT, "error"), type="cancel")
            builders.child(error, ns.STANZAS_ERR, "service-unavailable")
        await self.send(reply)

    async def _presence(self, st: Stanza, occupant: Occupant) -> None:
        nick = st.from_.resource or ""
        x = st.element.find(ns.clark(ns.MUC_USER, "x"))
        codes = {s.get("code") for s in x.findall(ns.clark(ns.MUC_USER, "status"))} \
            if x is not None else set()
        mine = "110" in codes
        if st.type == "error":
            await self._join_refused(st, occupant)
            return
        if mine:
            await self._own_presence(st, occupant, codes, x)
            return
        if occupant.node is not None:
            return
        seen = self.affiliations.setdefault(occupant.room, {})
        item = x.find(ns.clark(ns.MUC_USER, "item")) if x is not None else None
        if st.type == "unavailable":
            seen.pop(nick, None)
        elif item is not None:
            seen[nick] = item.get("affiliation") or "none"

    async def _own_presence(self, st: Stanza, occupant: Occupant, codes: set[str | None],
                            x: etree._Element | None) -> None:
        """Our occupant's own presence (status 110): joined, or out of the room, and why."""
        room = occupant.room
        occupant.present = st.type != "unavailable"
        if occupant.present:
            occupant.joined.set()
            if "201" in codes:
                # XEP-0045 §10.1.1: our join created the room, so the room we served is gone
                # (a temporary room emptied while we were away): do not keep a new one alive.
                self._later(lambda: self._room_gone(room))
            return
        destroyed = x is not None and x.find(ns.clark(ns.MUC_USER, "destroy")) is not None
        if "333" in codes:  # XEP-0410 §3.2/XEP-0045 §11.1: removed for a technical reason
            self._later(lambda: self._join(occupant))
        elif destroyed or codes & {"301", "321"}:  # §10.9 destroyed, §9.1 banned, §9.4 removed
            self._later(lambda: self._room_gone(room))
        elif "307" in codes and occupant.node is not None:
            # §8.2: a moderator kicked a feed's occupant; its feed is no longer wanted here.
            node = occupant.node
            self._later(lambda: self._kicked(room, node))
        elif "307" in codes:
            self.occupants.pop(resource_of(room, None), None)  # back when invited again
        elif "303" not in codes and "332" not in codes:
            self._later(lambda: self._join(occupant))
        # 332 (the service shut down): the self-ping finds the room again when it is back.

    async def _kicked(self, room: str, node: str) -> None:
        self.occupants.pop(resource_of(room, node), None)
        await self.unsubscribe(room, node)
        await self.say(room, f"{node} is no longer posted here (its occupant was kicked).")

    async def _room_gone(self, room: str) -> None:
        """Forget every feed of a room that no longer exists or no longer wants us."""
        for feed in self.room_feeds(room):
            await self.unsubscribe(room, feed.node)
        for occupant in [o for o in self.occupants.values() if o.room == room]:
            await self._leave(occupant)
        self.affiliations.pop(room, None)

    async def _join_refused(self, st: Stanza, occupant: Occupant) -> None:
        if _condition(st.element) == "conflict" and occupant.attempts < 3:
            # XEP-0045 §7.2.9: the nick is taken; try a variant of the feed's title.
            occupant.attempts += 1
            occupant.nick = f"{occupant.nick} (feed {occupant.attempts})"
            self._later(lambda: self._join(occupant))
            return
        log.warning("could not join %s as %s: %s", occupant.room, occupant.nick,
                    _condition(st.element))
        occupant.joined.set()  # nobody waits forever; present stays False

    async def _message(self, st: Stanza, occupant: Occupant) -> None:
        if st.type == "error":
            if _condition(st.element) == "not-acceptable":  # XEP-0410 §3.1: not an occupant
                self._later(lambda: self._join(occupant))
            return
        if occupant.node is not None or _invitation(st) is not None:
            return
        body = (st.element.findtext(ns.C_BODY) or "").strip()
        nick = st.from_.resource or ""
        room = occupant.room
        if st.type == "groupchat":
            command = _addressed(body)
            if command is None or st.element.find(ns.clark(ns.DELAY, "delay")) is not None:
                return  # chatter, or history
            if nick in {o.nick for o in self.occupants.values() if o.room == room}:
                return

            async def reply(text: str) -> None:
                await self.say(room, f"{nick}: {text}")
        elif st.type == "chat" and st.from_.resource and body:
            # A private message to the "feeds" occupant (XEP-0045 §7.5), prefix optional.
            command = _addressed(body) or body
            to, from_ = str(st.from_), str(st.to)

            async def reply(text: str) -> None:
                await self.send(builders.message(to=to, from_=from_, type_="chat", body=text))
        else:
            return
        if self.affiliations.get(room, {}).get(nick) not in MANAGERS:
            self._later(lambda: reply("only the owners and admins of this room can change "
                                      "its feeds."))
            return
        self._later(lambda: self._command(room, nick, command, reply))

    # -- invitations to the service ----------------------------------------------------------

    async def invited(self, st: Stanza) -> bool:
        """A message handler of the service JID: a direct (XEP-0249) or mediated (XEP-0045
        §7.8.2) invitation makes the service join the room to hear its owners."""
        room = _invitation(st)
        if room is None:
            return False
        occupant = self._occupant(room, None, CONTROL_NICK)
        self._later(lambda: self._join(occupant))
        return True

    # -- commands in the room ----------------------------------------------------------------

    async def say(self, room: str, text: str) -> None:
        control = self.occupants.get(resource_of(room, None))
        if control is None:
            return
        await self.send(builders.message(to=room, from_=self.jid(control), type_="groupchat",
                                         body=text))

    async def _command(self, room: str, nick: str, text: str,
                       reply: Callable[[str], Awaitable[None]]) -> None:
        try:
            answer = await self._run(room, nick, parse_chat(text))
        except ChatError as error:
            answer = str(error).replace("Say “help”", "Say “feeds: help”")
        except FeedRefused as refused:
            answer = refused.message
        await reply(answer)

    async def _run(self, room: str, nick: str, command: ChatCommand) -> str:
        match command.verb:
            case "subscribe":
                return await self.subscribe(room, command.target, command.options,
                                            by=f"{room}/{nick}")
            case "unsubscribe":
                node = self._pick(room, command.target)
                await self.unsubscribe(room, node)
                return f"{node} is no longer posted here."
            case "list":
                mine = self.room_feeds(room)
                if not mine:
                    return "No feeds are posted here yet; say “feeds: subscribe <address>”."
                return "Feeds posted here:\n" + "\n".join(
                    f"{n}. {f.nick} — {f.node}" for n, f in enumerate(mine, start=1))
            case "help":
                return HELP
        return f"“{command.verb}” is for personal subscriptions; say “feeds: help”."

    def room_feeds(self, room: str) -> list[RoomFeed]:
        return [f for (r, _), f in sorted(self.feeds.items()) if r == room]

    def _pick(self, room: str, target: str) -> str:
        mine = self.room_feeds(room)
        if target.isdigit() and 1 <= int(target) <= len(mine):
            return mine[int(target) - 1].node
        for feed in mine:
            if target.rstrip("/") == feed.node.rstrip("/"):
                return feed.node
        raise ChatError(f"{target} is not posted here; say “feeds: list”.")

    async def subscribe(self, room: str, text: str, options: dict[str, list[str]],
                        *, by: str) -> str:
        """Post the feed at ``text`` into ``room``, with personal-subscription options."""
        room = bare(room)
        manager = self.manager
        url = normalize_url(text)
        state = await manager.poller.store.get_feed(url)
        note = ""
        limit = manager.config.max_feeds_per_user  # a room counts as one follower
        if (room, url) not in self.feeds and len(self.room_feeds(room)) >= limit:
            raise FeedRefused(f"This room already has {limit} feeds, the most allowed.",
                              "policy-violation")
        if state is None:
            if not manager.config.user_subscriptions:
                raise FeedRefused("This service does not take new feeds.", "not-allowed")
            resolved = await manager.resolve(url)
            state = await manager.ensure_feed(resolved.feed_url, resolved.feed_url)
            note = resolved.note
        else:
            state = await manager.ensure_feed(state.feed_id, state.url)
        state = await manager._first_poll(state)  # its latest entry, at once
        node = state.feed_id
        existing = self.feeds.get((room, node))
        feed = existing or RoomFeed(room, node, feed_nick(state.title, state.url), by)
        occupant = self._occupant(room, node, feed.nick)
        if not occupant.present:
            await self._join(occupant)
            with trio.move_on_after(PING_TIMEOUT):
                await occupant.joined.wait()
            if not occupant.present:
                self.occupants.pop(resource_of(room, node), None)
                raise FeedRefused(f"{feed.nick} could not join this room.")
        feed = RoomFeed(room, node, occupant.nick, feed.added_by)
        self.feeds[(room, node)] = feed
        await self.store.put(feed)
        # Posted as groupchat whatever the type option says; digests and filters apply.
        form = {"pubsub#include_body": ["1"], **options}
        service = manager.service
        notifications: Sequence[Notification] = ()
        try:
            subs = [s for s in await service.subscriptions(room, node) if s.jid == room]
            if subs:
                await service.set_options(room, node, room, form, subs[0].subid)
            else:
                outcome = await service.subscribe(room, node, room, form)
                notifications = outcome.notifications
        except PubSubError as exc:
            raise FeedRefused(f"The subscription was refused: {exc.text or exc.condition}.",
                              exc.condition) from None
        await manager.pubsub.send_notifications(notifications)
        done = "Options updated for" if existing else "Now posting"
        # The owner learns which options hold (a digest, filters); type: does not apply here.
        described = describe_options({k: v for k, v in options.items()
                                      if k != "pubsubd#message_type"})
        posting = f"{done} {feed.nick} ({node})" + (f", {described}" if described else "")
        return "\n".join(filter(None, [note, posting + "."]))

    async def unsubscribe(self, room: str, node: str) -> bool:
        room = bare(room)
        feed = self.feeds.pop((room, node), None)
        await self.store.remove(room, node)
        service = self.manager.service
        for sub in [s for s in await service.subscriptions(room, node) if s.jid == room]:
            outcome = await service.unsubscribe(room, node, room, sub.subid)
            await self.manager.pubsub.send_notifications(outcome.notifications)
        await self.manager.idle_if_unfollowed(node)
        occupant = self.occupants.get(resource_of(room, node))
        if occupant is not None:
            await self._leave(occupant)
        return feed is not None

    # -- delivery ----------------------------------------------------------------------------

    async def deliver(self, notification: Notification, recipient: Recipient) -> bool:
        """A renderer: a room's copy of new entries goes out as groupchat from the feed's
        occupant (one message per entry)."""
        room = bare(recipient.address)
        if (room, notification.node) not in self.feeds:
            return False
        if notification.kind is not NotificationKind.ITEMS:
            return True  # nothing to say in a room about purges or config changes
        occupant = self.occupants.get(resource_of(room, notification.node))
        if occupant is None:
            return True
        entries = [e for e in (read_entry(i.payload) for i in notification.items) if e]
        for body in (body_of(e) for e in entries):
            await self.send(builders.message(to=room, from_=self.jid(occupant),
                                             type_="groupchat", body=body))
        return True


def _addressed(body: str) -> str | None:
    """The command of a groupchat message addressed to the service (``feeds: ...``)."""
    lowered = body.lower()
    for prefix in PREFIXES:
        if lowered.startswith(prefix):
            return body[len(prefix):].strip()
    return None


def _invitation(st: Stanza) -> str | None:
    """The room of a direct (XEP-0249 §2) or mediated (XEP-0045 §7.8.2) invitation."""
    direct = st.element.find(ns.clark(ns.CONFERENCE, "x"))
    if direct is not None and direct.get("jid"):
        return _bare_room(direct.get("jid") or "")
    x = st.element.find(ns.clark(ns.MUC_USER, "x"))
    if x is not None and x.find(ns.clark(ns.MUC_USER, "invite")) is not None:
        return str(st.from_.bare)
    return None


def _bare_room(text: str) -> str | None:
    try:
        return str(JID.parse(text).bare)
    except ValueError:
        return None


def _condition(element: etree._Element) -> str:
    error = element.find(ns.clark(ns.CLIENT, "error"))
    if error is None:
        return ""
    for child in error:
        if isinstance(child.tag, str) and child.tag.startswith("{" + ns.STANZAS_ERR + "}"):
            return child.tag.split("}", 1)[1]
    return ""


__all__ = ["CONTROL_NICK", "RoomFeeds", "feed_nick", "resource_of"]

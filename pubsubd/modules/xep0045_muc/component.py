"""XEP-0045 Multi-User Chat on ``conference.<domain>``: an in-process component of the router.

Rooms live in memory while they have occupants; rooms configured as persistent are also kept in
:class:`MucStore` (configuration, subject, affiliations, registered nicks) and loaded on first
use. Room archives and moderation are in :mod:`.archive`.

Choices the specification leaves to the service (what Prosody and ejabberd do):

* Instant rooms are unlocked at once (§10.1.2 allows the owner to accept the default
  configuration): the creator gets ``owner`` and status 201, and may configure later (§10.2).
* Rooms are semi-anonymous by default (``whois`` = moderators, §10.1.3).
* Several sessions of one user may share a nick (§7.2.8 multi-session nicks): others see one
  occupant; each session gets the full entering sequence and leaves on its own.
* An error bounced by an occupant's session removes that session with status 333 (XEP-0410
  §3.4 practice of Prosody and ejabberd): the client is gone and will rejoin.
* IQs to an occupant JID are not forwarded; only the XEP-0410 self-ping is answered.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Collection, Iterable
from datetime import UTC, datetime

import trio
import trio.testing
from lxml import etree

from pubsubd import ns
from pubsubd.config import MucConfig
from pubsubd.core.disco_registry import DiscoRegistry
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.modules.xep0045_muc import requests
from pubsubd.modules.xep0045_muc.archive import RoomArchive, stamp_message
from pubsubd.modules.xep0045_muc.config_form import config_form, read_submission
from pubsubd.modules.xep0045_muc.room import (
    AFFILIATION_CHANGED_AWAY,
    AFFILIATION_LOST,
    AFFILIATIONS,
    BANNED,
    CONFIG_CHANGED,
    CREATED,
    KICKED,
    LOGGING_OFF,
    LOGGING_ON,
    MEMBERS_ONLY_NOW,
    NEW_NICK,
    NON_ANONYMOUS,
    NOW_NON_ANONYMOUS,
    NOW_SEMI_ANONYMOUS,
    RANK,
    ROLES,
    SELF,
    SHUTDOWN,
    TECHNICAL,
    Occupant,
    Room,
    RoomConfig,
)
from pubsubd.storage.interfaces import MamStore, MucStore
from pubsubd.xml import builders
from pubsubd.xml.forms import Form, FormError

_MUC_X = ns.clark(ns.MUC, "x")
_USER_X = ns.clark(ns.MUC_USER, "x")
_ADMIN_QUERY = ns.clark(ns.MUC_ADMIN, "query")
_OWNER_QUERY = ns.clark(ns.MUC_OWNER, "query")
_REGISTER_QUERY = ns.clark(ns.REGISTER, "query")
_MAM_QUERY = ns.clark(ns.MAM, "query")
_MODERATE = ns.clark(ns.MESSAGE_MODERATE, "moderate")
_DISCO_INFO = ns.clark(ns.DISCO_INFO, "query")
_DISCO_ITEMS = ns.clark(ns.DISCO_ITEMS, "query")
_PING = ns.clark(ns.PING, "ping")
_SUBJECT = ns.clark(ns.CLIENT, "subject")
_BODY = ns.clark(ns.CLIENT, "body")
_X_DATA = ns.clark(ns.DATA_FORMS, "x")
_ROOMUSER_NODE = "x-roomuser-item"  # §7.12
# XEP-0410 §3.4 / RFC 6120 §8.3.3: errors that say the occupant's session is gone.
_GONE = frozenset({"gone", "item-not-found", "recipient-unavailable", "redirect",
                   "remote-server-not-found", "remote-server-timeout", "service-unavailable",
                   "jid-malformed"})


def _u(local: str) -> str:
    return ns.clark(ns.MUC_USER, local)


class MucComponent(Module):
    """``conference.<domain>``: rooms, occupants, their presence and messages."""

    name = "muc"

    def __init__(self, *, settings: MucConfig, primary_domain: str, admins: Collection[str],
                 store: MucStore, archive_store: MamStore, router: Router,
                 disco: DiscoRegistry) -> None:
        super().__init__()
        self.settings = settings
        self.admins = admins
        self.store = store
        self.router = router
        self.disco = disco
        self.domain = f"{settings.subdomain}.{primary_domain}"
        self.rooms: dict[str, Room] = {}
        self.archive = RoomArchive(archive_store, settings.archive_max_messages,
                                   settings.archive_max_page, self._send)

    def setup(self) -> None:
        if not self.settings.enabled:
            return
        self.router.add_component(self)
        self.disco.items.append((self.domain, None, "Multi-User Chat"))

    async def closing(self) -> None:
        """Status 332 (§15.6): occupants learn the service is going down, while their streams
        are still open."""
        told = 0
        for room in list(self.rooms.values()):
            for occupant in list(room.occupants.values()):
                occupant.role = "none"
                el = self._occupant_presence(room, occupant, occupant, [SHUTDOWN, SELF],
                                             type_="unavailable")
                await self._deliver(occupant, el)
                told += 1
            room.occupants.clear()
        self.log.info("%d occupants told of the shutdown", told)
        # The streams close right after this: let their writers send what was just queued.
        with trio.move_on_after(1):
            await trio.testing.wait_all_tasks_blocked(cushion=0.01)

    # --- rooms ------------------------------------------------------------------------------

    def _new_room(self, jid: JID, config: RoomConfig) -> Room:
        return Room(jid, config, deque(maxlen=max(0, self.settings.history_max)))

    async def _room(self, jid: JID) -> Room | None:
        key = str(jid.bare)
        room = self.rooms.get(key)
        if room is not None:
            return room
        stored = await self.store.load(key)
        if key in self.rooms:  # created or loaded by another stanza meanwhile
            return self.rooms[key]
        if stored is None:
            return None
        room = self._new_room(jid.bare, RoomConfig.from_dict(stored.config))
        room.subject, room.subject_nick = stored.subject, stored.subject_nick
        room.affiliations = stored.affiliations
        room.nicks = stored.nicks
        self.rooms[key] = room
        return room

    async def _save(self, room: Room) -> None:
        if room.config.persistent:
            await self.store.save(room.stored())

    def _may_create(self, jid: JID) -> bool:
        policy = self.settings.creation_policy
        if policy == "anyone":
            return True
        if policy == "local":
            return jid.domain in self.router.domains
        return str(jid.bare) in self.admins

    def _forget_if_empty(self, room: Room) -> None:
        # §10.1.3: a temporary room is destroyed when its last occupant exits.
        if not room.occupants and not room.config.persistent:
            self.rooms.pop(str(room.jid), None)

    # --- the component ----------------------------------------------------------------------

    async def receive(self, st: Stanza) -> None:
        if st.kind == "presence":
            await self._presence(st)
        elif st.kind == "message":
            await self._message(st)
        elif st.kind == "iq":
            await self._iq(st)

    async def _send(self, to: JID, element: etree._Element) -> None:
        await self.router.send_to(to, element)

    async def _deliver(self, occupant: Occupant, element: etree._Element,
                       sessions: Iterable[JID] | None = None) -> None:
        """One copy to each of the occupant's sessions (§7.2.8 multi-session nicks)."""
        for session in list(sessions if sessions is not None else occupant.sessions):
            out = copy.deepcopy(element)
            out.set("to", str(session))
            await self._send(session, out)

    def _shows(self, room: Room, about: Occupant, to: Occupant) -> bool:
        """muc#roomconfig_presencebroadcast: whose presence others get (self always)."""
        return to is about or about.role in room.config.presence_broadcast

    # --- presence: enter, change, leave (§7.2, §7.6, §7.7, §7.14) ---------------------------

    async def _presence(self, st: Stanza) -> None:
        to = st.to
        assert to is not None
        if to.local is None:
            return  # presence to the service itself means nothing here
        type_ = st.type
        if type_ == "error":
            await self._bounced(st)
            return
        if type_ == "unavailable":
            room = self.rooms.get(str(to.bare))
            occupant = room.occupant_of(st.from_) if room is not None else None
            if room is not None and occupant is not None:
                await self._leave(room, occupant, st.from_, st.element)
            return
        if type_ != "available":
            return  # probes and subscriptions to rooms are ignored
        if to.resource is None:
            # §7.2.6: entering without a nickname
            await self._presence_error(st, Condition.JID_MALFORMED, "a room nickname is required")
            return
        room = await self._room(to)
        occupant = room.occupant_of(st.from_) if room is not None else None
        if room is None or occupant is None:
            await self._enter(room, st)
        elif occupant.nick != to.resource:
            await self._change_nick(room, occupant, to.resource, st)
        elif st.element.find(_MUC_X) is not None:
            # §17.3: a join presence from a current occupant asks for a full resync
            occupant.payload = _broadcast_payload(st.element)
            await self._broadcast_presence(room, occupant, sessions_self=[])
            await self._entering_sequence(room, occupant, st.from_, [], st.element.find(_MUC_X))
        else:
            occupant.payload = _broadcast_payload(st.element)  # §7.7: new availability
            await self._broadcast_presence(room, occupant)

    async def _presence_error(self, st: Stanza, condition: Condition,
                              text: str | None = None) -> None:
        reply = builders.error_reply(st.element, StanzaError(condition, text))
        # §7.2 examples: the error echoes the muc element so the client knows its join failed.
        builders.child(reply, ns.MUC, "x")
        await self._send(st.from_, reply)

    async def _bounced(self, st: Stanza) -> None:
        """XEP-0410 §3.4: an occupant's session that bounces what the room sends it is gone;
        remove that session with status 333 (as Prosody and ejabberd do)."""
        assert st.to is not None
        room = self.rooms.get(str(st.to.bare))
        occupant = room.occupant_of(st.from_) if room is not None else None
        if room is None or occupant is None:
            return
        if st.kind == "message":
            error = st.element.find(ns.clark(ns.CLIENT, "error"))
            conditions = {etree.QName(c).localname for c in (error if error is not None else [])
                          if isinstance(c.tag, str)}
            if not conditions & _GONE:
                return
        if len(occupant.sessions) > 1:
            occupant.sessions.remove(st.from_)
            await self._broadcast_presence(room, occupant)
            return
        await self._remove(room, occupant, TECHNICAL)

    async def _enter(self, room: Room | None, st: Stanza) -> None:
        assert st.to is not None and st.to.resource is not None
        nick = st.to.resource
        muc_x = st.element.find(_MUC_X)
        created = False
        if room is None:
            if not self._may_create(st.from_):
                await self._presence_error(st, Condition.NOT_ALLOWED, "room creation is restricted")
                return
            # §10.1.2: the creator becomes the owner of an instant room (unlocked at once here).
            room = self._new_room(st.to.bare, RoomConfig(max_users=self.settings.max_occupants))
            room.affiliations[str(st.from_.bare)] = "owner"
            self.rooms[str(room.jid)] = room
            created = True
        affiliation = room.affiliation(st.from_)
        config = room.config
        if affiliation == "outcast":
            await self._presence_error(st, Condition.FORBIDDEN)  # §7.2.7
            return
        if config.members_only and affiliation == "none":
            await self._presence_error(st, Condition.REGISTRATION_REQUIRED)  # §7.2.8
            return
        if config.password_protected:
            given = muc_x.findtext(ns.clark(ns.MUC, "password")) if muc_x is not None else None
            if given != config.password:
                await self._presence_error(st, Condition.NOT_AUTHORIZED,
                                           "a password is required")  # §7.2.6
                return
        owner_of_nick = next((j for j, n in room.nicks.items() if n == nick), None)
        if owner_of_nick is not None and owner_of_nick != str(st.from_.bare):
            await self._presence_error(st, Condition.CONFLICT, "nickname registered")  # §7.10
            return
        existing = room.occupants.get(nick)
        if existing is not None:
            if existing.jid.bare != st.from_.bare:
                await self._presence_error(st, Condition.CONFLICT)  # §7.2.9
                return
            # §7.2.8 multi-session nick: the session joins the occupant others already see.
            existing.sessions.append(st.from_)
            existing.payload = _broadcast_payload(st.element)
            await self._broadcast_presence(room, existing, sessions_self=existing.sessions[:-1])
            await self._entering_sequence(room, existing, st.from_, [], muc_x)
            return
        limit = min(config.max_users, self.settings.max_occupants)
        if len(room.occupants) >= limit and affiliation not in ("owner", "admin"):
            await self._presence_error(st, Condition.SERVICE_UNAVAILABLE)  # §7.2.10
            return
        newcomer = Occupant(nick, [st.from_], room.default_role(affiliation),
                            _broadcast_payload(st.element))
        room.occupants[nick] = newcomer
        # §7.2.3: the newcomer's presence to everyone else...
        for other in list(room.occupants.values()):
            if other is not newcomer and self._shows(room, newcomer, other):
                await self._deliver(other, self._occupant_presence(room, newcomer, other))
        await self._entering_sequence(room, newcomer, st.from_,
                                      [CREATED] if created else [], muc_x)

    async def _entering_sequence(self, room: Room, occupant: Occupant, session: JID,
                                 codes: list[str], muc_x: etree._Element | None) -> None:
        """§7.2.3–§7.2.16 to one session: the others' presence, its own (110 last), the
        history, the subject. Also the §17.3 resync of a session that joins again."""
        for other in list(room.occupants.values()):
            if other is not occupant and self._shows(room, other, occupant):
                await self._deliver(occupant, self._occupant_presence(room, other, occupant),
                                    [session])
        own = [SELF]
        if room.config.whois == "anyone":
            own.append(NON_ANONYMOUS)  # §7.2.4
        if room.config.logging:
            own.append(LOGGING_ON)  # status 170 (§15.6): the room is archived
        await self._deliver(occupant, self._occupant_presence(
            room, occupant, occupant, own + codes), [session])
        await self._send_history(room, session, muc_x)
        await self._send(session, self._subject_message(room, session))

    async def _send_history(self, room: Room, to: JID, muc_x: etree._Element | None) -> None:
        """§7.2.15: the discussion history, oldest first, each with a delay stamp."""
        entries = list(room.history)[-room.config.max_history:] if room.config.max_history else []
        request = muc_x.find(ns.clark(ns.MUC, "history")) if muc_x is not None else None
        if request is not None:
            if request.get("maxchars") == "0":
                return
            seconds = request.get("seconds")
            since = _parse_stamp(request.get("since", "")) if request.get("since") else None
            if seconds is not None and seconds.isdigit():
                since = max(since or 0.0, time.time() - int(seconds))
            if since is not None:
                entries = [e for e in entries if e[0] >= since]
            maxstanzas = request.get("maxstanzas")
            if maxstanzas is not None and maxstanzas.isdigit():
                entries = entries[len(entries) - int(maxstanzas):] if int(maxstanzas) else []
        for ts, element in entries:
            out = copy.deepcopy(element)
            out.set("to", str(to))
            builders.child(out, ns.DELAY, "delay", stamp=_stamp(ts), from_=str(room.jid))
            await self._send(to, out)

    def _subject_message(self, room: Room, to: JID) -> etree._Element:
        """§7.2.16: the subject (an empty one if none was set) ends the entering sequence."""
        sender = room.occupant_jid(room.subject_nick) if room.subject_nick else str(room.jid)
        msg = builders.stanza("message", to=str(to), from_=sender, type_="groupchat")
        etree.SubElement(msg, _SUBJECT).text = room.subject or None
        return msg

    async def _leave(self, room: Room, occupant: Occupant, session: JID,
                     element: etree._Element) -> None:
        """§7.14: everyone sees the occupant leave; the occupant gets its own copy with 110.
        One session of a shared nick leaves alone (§7.2.8)."""
        status = element.find(ns.clark(ns.CLIENT, "status"))
        extra = [status] if status is not None else []
        if len(occupant.sessions) > 1:
            occupant.sessions.remove(session)
            gone = self._occupant_presence(room, occupant, occupant, [SELF],
                                           type_="unavailable", extra=extra)
            await self._deliver(occupant, gone, [session])
            await self._broadcast_presence(room, occupant)
            return
        room.occupants.pop(occupant.nick, None)
        recipients = [o for o in room.occupants.values() if self._shows(room, occupant, o)]
        occupant.role = "none"
        for other in recipients:
            await self._deliver(other, self._occupant_presence(
                room, occupant, other, type_="unavailable", extra=extra))
        await self._deliver(occupant, self._occupant_presence(
            room, occupant, occupant, [SELF], type_="unavailable", extra=extra))
        self._forget_if_empty(room)

    async def _change_nick(self, room: Room, occupant: Occupant, new: str, st: Stanza) -> None:
        """§7.6: unavailable from the old nick (303, new nick in the item), then available."""
        owner_of_nick = next((j for j, n in room.nicks.items() if n == new), None)
        if new in room.occupants or (owner_of_nick not in (None, str(st.from_.bare))):
            await self._presence_error(st, Condition.CONFLICT)  # §7.6.3
            return
        recipients = [o for o in room.occupants.values() if self._shows(room, occupant, o)]
        for other in recipients:
            codes = [NEW_NICK, SELF] if other is occupant else [NEW_NICK]
            await self._deliver(other, self._occupant_presence(
                room, occupant, other, codes, type_="unavailable", new_nick=new))
        del room.occupants[occupant.nick]
        occupant.nick = new
        occupant.payload = _broadcast_payload(st.element)
        room.occupants[new] = occupant
        for other in recipients:
            codes = [SELF] if other is occupant else []
            await self._deliver(other, self._occupant_presence(room, occupant, other, codes))

    async def _broadcast_presence(self, room: Room, occupant: Occupant,
                                  codes_to_others: Iterable[str] = (),
                                  codes_to_self: Iterable[str] = (SELF,),
                                  sessions_self: Iterable[JID] | None = None) -> None:
        """The occupant's current presence to all (to its own sessions ``sessions_self``)."""
        for other in list(room.occupants.values()):
            if other is occupant:
                el = self._occupant_presence(room, occupant, other, codes_to_self)
                await self._deliver(other, el, sessions_self)
            elif self._shows(room, occupant, other):
                el = self._occupant_presence(room, occupant, other, codes_to_others)
                await self._deliver(other, el)

    def _occupant_presence(self, room: Room, about: Occupant, to: Occupant,
                           codes: Iterable[str] = (), *, type_: str | None = None,
                           new_nick: str | None = None,
                           extra: Iterable[etree._Element] = ()) -> etree._Element:
        """The presence of ``about`` as ``to`` sees it (§7.2.3: item with affiliation and role;
        the real JID only to moderators in semi-anonymous rooms, §7.2.4/§7.2.5)."""
        el = builders.stanza("presence", to=str(to.jid), from_=room.occupant_jid(about.nick),
                             type_=type_)
        if type_ is None:
            for child in about.payload:
                el.append(copy.deepcopy(child))
        for child in extra:
            el.append(copy.deepcopy(child))
        x = builders.child(el, ns.MUC_USER, "x")
        item = etree.SubElement(x, _u("item"))
        item.set("affiliation", room.affiliation(about.jid))
        item.set("role", about.role)
        if room.config.whois == "anyone" or to.role == "moderator" or to is about:
            item.set("jid", str(about.jid))
        if new_nick is not None:
            item.set("nick", new_nick)
        for code in codes:
            etree.SubElement(x, _u("status")).set("code", code)
        return el

    async def _remove(self, room: Room, occupant: Occupant, code: str,
                      reason: str | None = None, actor: str | None = None) -> None:
        """Kick (§8.2, 307), ban (§9.1, 301), membership lost (§9.4, 321), members-only now
        (§10.2, 322), technical (333): unavailable with role none to all."""
        room.occupants.pop(occupant.nick, None)
        recipients = [o for o in room.occupants.values() if self._shows(room, occupant, o)]
        occupant.role = "none"
        for other in [*recipients, occupant]:
            codes = [code, SELF] if other is occupant else [code]
            el = self._occupant_presence(room, occupant, other, codes, type_="unavailable")
            item = el.find(f"{_USER_X}/{_u('item')}")
            assert item is not None
            if actor:
                etree.SubElement(item, _u("actor"), nick=actor)  # §8.2 / §9.1
            if reason:
                etree.SubElement(item, _u("reason")).text = reason
            await self._deliver(other, el)
        self._forget_if_empty(room)

    # --- messages (§7.4, §7.5, §7.8, §7.13, §8.1, §8.6) -------------------------------------

    async def _message(self, st: Stanza) -> None:
        to = st.to
        assert to is not None
        if st.type == "error":
            if to.local is not None:
                await self._bounced(st)
            return
        if to.local is None:
            return
        room = await self._room(to)
        if room is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND)
        user_x = st.element.find(_USER_X)
        if to.resource is None and user_x is not None and st.type != "groupchat":
            if user_x.find(_u("decline")) is not None:
                await self._decline(room, st, user_x)
                return
            if user_x.find(_u("invite")) is not None:
                await self._invite(room, st, user_x)
                return
        sender = room.occupant_of(st.from_)
        if sender is None:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "only occupants may send messages")  # §7.4
        if to.resource is not None:
            await self._private_message(room, sender, to.resource, st)
        elif st.type == "groupchat":
            await self._groupchat(room, sender, st)
        else:
            form_el = st.element.find(_X_DATA)
            if form_el is None:
                raise StanzaError(Condition.BAD_REQUEST, "not a request this room understands")
            await self._request_form(room, sender, form_el)

    async def _groupchat(self, room: Room, sender: Occupant, st: Stanza) -> None:
        subject = st.element.find(_SUBJECT)
        body = st.element.find(_BODY)
        if sender.role == "visitor":
            raise StanzaError(Condition.FORBIDDEN, "visitors have no voice")  # §7.4
        if subject is not None and body is None:
            # §8.1: moderators may change the subject; participants only if the room allows it.
            if sender.role != "moderator" and not room.config.change_subject:
                raise StanzaError(Condition.FORBIDDEN, "you may not change the subject")
            room.subject, room.subject_nick = subject.text or "", sender.nick
            await self._save(room)
        template = copy.deepcopy(st.element)
        template.set("from", room.occupant_jid(sender.nick))
        template.attrib.pop("to", None)
        uid = stamp_message(template, room.jid)  # XEP-0359: by the room
        if body is not None:
            # §7.2.15: history holds messages, with a subject too if they have a body
            room.history.append((time.time(), template))
            if room.config.logging:
                await self.archive.record(room.jid, uid, room.occupant_jid(sender.nick),
                                          template)
        for other in list(room.occupants.values()):
            await self._deliver(other, template)

    async def _private_message(self, room: Room, sender: Occupant, nick: str, st: Stanza) -> None:
        """§7.5: relayed to the occupant's real JID, from the sender's occupant JID."""
        if st.type == "groupchat":
            raise StanzaError(Condition.BAD_REQUEST, "groupchat to an occupant")  # §7.5
        allowed = {"anyone": ROLES, "participants": ("participant", "moderator"),
                   "moderators": ("moderator",), "none": ()}[room.config.allow_pm]
        if sender.role not in allowed:
            raise StanzaError(Condition.FORBIDDEN, "private messages are not allowed here")
        target = room.occupants.get(nick)
        if target is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND)
        out = copy.deepcopy(st.element)
        out.set("from", room.occupant_jid(sender.nick))
        builders.child(out, ns.MUC_USER, "x")  # §7.5: marks it as a MUC private message
        await self._deliver(target, out)

    async def _invite(self, room: Room, st: Stanza, user_x: etree._Element) -> None:
        """§7.8.2 mediated invitation: the room passes each <invite/> on, from the room."""
        sender = room.occupant_of(st.from_)
        if sender is None:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "only occupants may invite")
        inviter_rank = RANK[room.affiliation(st.from_)]
        if not room.config.allow_invites and inviter_rank < RANK["admin"]:
            raise StanzaError(Condition.FORBIDDEN, "only admins may invite here")
        for invite in user_x.findall(_u("invite")):
            try:
                invitee = JID.parse(invite.get("to", ""))
            except ValueError:
                raise StanzaError(Condition.JID_MALFORMED) from None
            if room.config.members_only and room.affiliation(invitee) == "none":
                # §7.8.2 MAY: the invitee becomes a member, as Prosody and ejabberd do
                room.affiliations[str(invitee.bare)] = "member"
                await self._save(room)
            msg = builders.stanza("message", to=str(invitee), from_=str(room.jid))
            x = builders.child(msg, ns.MUC_USER, "x")
            out = etree.SubElement(x, _u("invite"), {"from": str(st.from_)})
            reason = invite.findtext(_u("reason"))
            if reason:
                etree.SubElement(out, _u("reason")).text = reason
            if room.config.password_protected:
                etree.SubElement(x, _u("password")).text = room.config.password
            etree.SubElement(msg, _BODY).text = (
                f"{st.from_.bare} invites you to the room {room.jid}"
                + (f": {reason}" if reason else ""))
            await self._send(invitee, msg)

    async def _decline(self, room: Room, st: Stanza, user_x: etree._Element) -> None:
        """§7.8.3: a declined invitation goes back to the inviter, from the room."""
        decline = user_x.find(_u("decline"))
        assert decline is not None
        try:
            inviter = JID.parse(decline.get("to", ""))
        except ValueError:
            raise StanzaError(Condition.JID_MALFORMED) from None
        msg = builders.stanza("message", to=str(inviter), from_=str(room.jid))
        x = builders.child(msg, ns.MUC_USER, "x")
        out = etree.SubElement(x, _u("decline"), {"from": str(st.from_.bare)})
        reason = decline.findtext(_u("reason"))
        if reason:
            etree.SubElement(out, _u("reason")).text = reason
        await self._send(inviter, msg)

    async def _request_form(self, room: Room, sender: Occupant, form_el: etree._Element) -> None:
        """§7.13 a visitor asks for voice; §8.6 a moderator answers the approval form."""
        try:
            form = Form.from_element(form_el)
            allow = form.boolean("muc#request_allow")
        except FormError as error:
            raise StanzaError(Condition.BAD_REQUEST, str(error)) from None
        if form.form_type != ns.MUC_REQUEST or form.type != "submit":
            raise StanzaError(Condition.BAD_REQUEST, "expected a muc#request submission")
        if allow is None:
            if sender.role != "visitor":
                return  # a voice request from someone with voice: nothing to ask for
            approval = requests.voice_approval_form(sender.jid, sender.nick).to_element()
            for moderator in room.moderators():
                msg = builders.stanza("message", to=str(moderator.jid), from_=str(room.jid))
                msg.append(copy.deepcopy(approval))
                await self._deliver(moderator, msg)
            return
        if sender.role != "moderator":
            raise StanzaError(Condition.FORBIDDEN, "only moderators grant voice")  # §8.6
        target = room.occupants.get(form.value("muc#roomnick") or "")
        if allow and target is not None and target.role == "visitor":
            target.role = "participant"
            await self._broadcast_presence(room, target)

    # --- IQs -------------------------------------------------------------------------------

    async def _iq(self, st: Stanza) -> None:
        if st.type not in ("get", "set"):
            return  # RFC 6120 §8.2.3
        to = st.to
        assert to is not None
        payload = st.element[0]
        key = (st.type, payload.tag)
        result: etree._Element | None
        if to.local is None:
            if key == ("get", _DISCO_INFO) and not payload.get("node"):
                result = self._service_info()
            elif key == ("get", _DISCO_ITEMS) and not payload.get("node"):
                result = await self._service_items()
            else:
                raise StanzaError(Condition.SERVICE_UNAVAILABLE)
            await self.router.reply(st, result)
            return
        room = await self._room(to)
        if to.resource is not None:
            await self._occupant_iq(st, room, to.resource, payload)
            return
        if room is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND)
        if key == ("get", _DISCO_INFO) and payload.get("node") == _ROOMUSER_NODE:
            result = self._reserved_nick(room, st.from_)
        elif key == ("get", _DISCO_INFO) and not payload.get("node"):
            result = self._room_info(room)
        elif key == ("get", _DISCO_ITEMS):
            result = builders.element(ns.DISCO_ITEMS, "query")  # occupants are not disclosed
        elif payload.tag == _OWNER_QUERY:
            result = await self._owner(st, room, payload)
        elif payload.tag == _ADMIN_QUERY:
            result = await self._admin(st, room, payload)
        elif payload.tag == _REGISTER_QUERY:
            result = await self._register(st, room, payload)
        elif payload.tag == _MAM_QUERY:
            self._may_read_archive(room, st.from_)
            if st.type == "get":
                result = self.archive.query_form()
            else:
                result = await self.archive.query(room.jid, st.from_, payload)
        elif key == ("set", _MODERATE):
            await self._moderate(room, st.from_, payload)
            result = None
        else:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)
        await self.router.reply(st, result)

    async def _occupant_iq(self, st: Stanza, room: Room | None, nick: str,
                           payload: etree._Element) -> None:
        """XEP-0410 §3: a ping to one's own occupant JID tells whether one is still joined."""
        if payload.tag != _PING or st.type != "get":
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)  # IQs are not relayed to occupants
        occupant = room.occupant_of(st.from_) if room is not None else None
        if occupant is None:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "not joined")
        if occupant.nick != nick:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)
        await self.router.reply(st, None)

    # --- registration (§7.10, §7.12) -------------------------------------------------------

    def _reserved_nick(self, room: Room, jid: JID) -> etree._Element:
        """§7.12: the nick the user registered, as a disco identity (none if not registered)."""
        query = builders.element(ns.DISCO_INFO, "query", node=_ROOMUSER_NODE)
        nick = room.nicks.get(str(jid.bare))
        if nick:
            etree.SubElement(query, ns.clark(ns.DISCO_INFO, "identity"), category="conference",
                             type="text", name=nick)
        return query

    async def _register(self, st: Stanza, room: Room, query: etree._Element) -> etree._Element:
        """§7.10: registering a nick makes the user a member of the room."""
        user = str(st.from_.bare)
        registered = room.nicks.get(user)
        if st.type == "get":
            result = builders.element(ns.REGISTER, "query")
            if registered:
                etree.SubElement(result, ns.clark(ns.REGISTER, "registered"))
                etree.SubElement(result, ns.clark(ns.REGISTER, "username")).text = registered
            result.append(requests.registration_form(registered or "").to_element())
            return result
        affiliation = room.affiliation(st.from_)
        if affiliation == "outcast":
            raise StanzaError(Condition.FORBIDDEN)
        if query.find(ns.clark(ns.REGISTER, "remove")) is not None:
            room.nicks.pop(user, None)
            if affiliation == "member":
                room.affiliations.pop(user, None)
                for occupant in [o for o in room.occupants.values()
                                 if o.jid.bare == st.from_.bare]:
                    if room.config.members_only:
                        await self._remove(room, occupant, AFFILIATION_LOST)  # §9.4
                    else:
                        occupant.role = room.default_role("none")
                        await self._broadcast_presence(room, occupant)
            await self._save(room)
            return builders.element(ns.REGISTER, "query")
        form_el = query.find(_X_DATA)
        try:
            form = Form.from_element(form_el) if form_el is not None else None
        except FormError as error:
            raise StanzaError(Condition.BAD_REQUEST, str(error)) from None
        if form is None or form.type == "cancel":
            raise StanzaError(Condition.BAD_REQUEST, "submit the muc#register form")
        nick = (form.value(requests.ROOMNICK) or "").strip()
        if not nick:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "a nickname is required")
        taken_by = next((j for j, n in room.nicks.items() if n == nick), None)
        in_use = room.occupants.get(nick)
        if taken_by not in (None, user) or (in_use is not None
                                            and in_use.jid.bare != st.from_.bare):
            raise StanzaError(Condition.CONFLICT, "nickname taken")  # §7.10
        if room.config.members_only and affiliation == "none":
            # §7.10 leaves approval to the service: members-only rooms admit members through
            # their admins and invitations, as Prosody does.
            raise StanzaError(Condition.NOT_ALLOWED, "members are chosen by the room's admins")
        room.nicks[user] = nick
        if affiliation == "none":
            room.affiliations[user] = "member"
            for occupant in [o for o in room.occupants.values() if o.jid.bare == st.from_.bare]:
                occupant.role = room.default_role("member") if occupant.role == "visitor" \
                    else occupant.role
                await self._broadcast_presence(room, occupant)
        await self._save(room)
        return builders.element(ns.REGISTER, "query")

    # --- archive and moderation (XEP-0313, XEP-0425) ---------------------------------------

    def _may_read_archive(self, room: Room, jid: JID) -> None:
        """Who could join may read (as Prosody): members-only rooms to their members only."""
        affiliation = room.affiliation(jid)
        if affiliation == "outcast" or (room.config.members_only and affiliation == "none"):
            raise StanzaError(Condition.FORBIDDEN, "the archive is for the room's members")
        if not room.config.logging:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, "this room keeps no archive")

    async def _moderate(self, room: Room, jid: JID, moderate: etree._Element) -> None:
        """XEP-0425 §4: a moderator retracts a message by its stanza-id."""
        actor = room.occupant_of(jid)
        if actor is None or actor.role != "moderator":
            raise StanzaError(Condition.FORBIDDEN, "only moderators may moderate")
        if moderate.find(ns.clark(ns.MESSAGE_RETRACT, "retract")) is None:
            raise StanzaError(Condition.BAD_REQUEST, "only retractions are supported")
        uid = moderate.get("id", "")
        reason = moderate.findtext(ns.clark(ns.MESSAGE_MODERATE, "reason"))
        notice = await self.archive.retract(room.jid, uid, room.occupant_jid(actor.nick), reason)
        kept = [(ts, el) for ts, el in room.history if _stanza_id(el, room.jid) != uid]
        room.history.clear()
        room.history.extend(kept)
        for other in list(room.occupants.values()):
            await self._deliver(other, notice)

    # --- disco (§6) ------------------------------------------------------------------------

    def _service_info(self) -> etree._Element:
        """§6.1: the service is a conference/text identity with the muc feature."""
        query = builders.element(ns.DISCO_INFO, "query")
        etree.SubElement(query, ns.clark(ns.DISCO_INFO, "identity"),
                         category="conference", type="text", name="Multi-User Chat")
        for feature in (ns.DISCO_INFO, ns.DISCO_ITEMS, ns.MUC):
            etree.SubElement(query, ns.clark(ns.DISCO_INFO, "feature"), var=feature)
        return query

    async def _service_items(self) -> etree._Element:
        """§6.3: public rooms only; hidden ones stay out of the list."""
        rooms = {key: (room.config.name or room.jid.local or "")
                 for key, room in self.rooms.items() if room.config.public}
        for key, name in await self.store.public_rooms():
            if key not in self.rooms:
                rooms[key] = name or key.split("@", 1)[0]
        query = builders.element(ns.DISCO_ITEMS, "query")
        for key, name in sorted(rooms.items()):
            etree.SubElement(query, ns.clark(ns.DISCO_ITEMS, "item"), jid=key, name=name)
        return query

    def _room_info(self, room: Room) -> etree._Element:
        """§6.4: identity, the room-type features of §15.3, and a muc#roominfo form."""
        config = room.config
        query = builders.element(ns.DISCO_INFO, "query")
        etree.SubElement(query, ns.clark(ns.DISCO_INFO, "identity"), category="conference",
                         type="text", name=config.name or room.jid.local or "")
        features = [
            ns.MUC, ns.MUC_STABLE_ID, ns.MUC_SELF_PING, ns.REGISTER, ns.MUC_REQUEST, ns.SID,
            ns.MESSAGE_MODERATE,
            "muc_public" if config.public else "muc_hidden",
            "muc_persistent" if config.persistent else "muc_temporary",
            "muc_membersonly" if config.members_only else "muc_open",
            "muc_moderated" if config.moderated else "muc_unmoderated",
            "muc_nonanonymous" if config.whois == "anyone" else "muc_semianonymous",
            "muc_passwordprotected" if config.password_protected else "muc_unsecured",
        ]
        if config.logging:
            features.append(ns.MAM)
        for feature in features:
            etree.SubElement(query, ns.clark(ns.DISCO_INFO, "feature"), var=feature)
        query.append(requests.room_info_form(room).to_element())
        return query

    # --- owner (§10) -----------------------------------------------------------------------

    async def _owner(self, st: Stanza, room: Room, query: etree._Element) -> etree._Element | None:
        if room.affiliation(st.from_) != "owner":
            raise StanzaError(Condition.FORBIDDEN, "only owners may do this")  # §10.1.3
        if st.type == "get":
            result = builders.element(ns.MUC_OWNER, "query")
            result.append(self._config_form(room).to_element())
            return result
        destroy = query.find(ns.clark(ns.MUC_OWNER, "destroy"))
        if destroy is not None:
            await self._destroy(room, destroy)
            return None
        form_el = query.find(_X_DATA)
        if form_el is None:
            raise StanzaError(Condition.BAD_REQUEST)
        try:
            form = Form.from_element(form_el)
        except FormError as error:
            raise StanzaError(Condition.BAD_REQUEST, str(error)) from None
        if form.type == "cancel":
            return None  # §10.1.6
        if form.type != "submit":
            raise StanzaError(Condition.BAD_REQUEST)
        await self._apply_config(room, form)
        return None

    def _config_form(self, room: Room) -> Form:
        listed = sorted(room.affiliations.items())
        return config_form(room.config, self.settings.max_occupants,
                           [j for j, a in listed if a == "owner"],
                           [j for j, a in listed if a == "admin"])

    async def _apply_config(self, room: Room, form: Form) -> None:
        """§10.2: apply the submitted fields; fields left out keep their value."""
        before = room.config
        submitted = read_submission(form, before, self.settings.max_occupants)
        lists: dict[str, set[str]] = {}
        for wanted, listed in (("owner", submitted.owners), ("admin", submitted.admins)):
            if listed is not None:
                try:
                    lists[wanted] = {str(JID.parse(j).bare) for j in listed}
                except ValueError:
                    raise StanzaError(Condition.JID_MALFORMED) from None
        # nothing is applied before the whole submission is known to be acceptable
        room.config = after = submitted.config
        affiliations_before = dict(room.affiliations)
        for wanted, jids in lists.items():
            for jid, aff in list(room.affiliations.items()):
                if aff == wanted and jid not in jids:
                    room.affiliations.pop(jid)
            for jid in jids:
                room.affiliations[jid] = wanted
        for occupant in list(room.occupants.values()):
            affiliation = room.affiliation(occupant.jid)
            role = room.default_role(affiliation)
            changed = affiliation != affiliations_before.get(str(occupant.jid.bare), "none")
            # a room no longer moderated gives its visitors voice (as Prosody does); a room
            # becoming moderated leaves current participants their voice
            if role != occupant.role and (changed or (occupant.role == "visitor"
                                                      and not after.moderated)):
                occupant.role = role
                await self._broadcast_presence(room, occupant)
        if after.persistent:
            await self._save(room)
        elif before.persistent:
            await self.store.delete(str(room.jid))
        codes = [CONFIG_CHANGED]  # §10.2.1
        if after.whois != before.whois:
            codes.append(NOW_NON_ANONYMOUS if after.whois == "anyone" else NOW_SEMI_ANONYMOUS)
        if after.logging != before.logging:
            codes.append(LOGGING_ON if after.logging else LOGGING_OFF)
        for other in list(room.occupants.values()):
            msg = builders.stanza("message", to=str(other.jid), from_=str(room.jid),
                                  type_="groupchat")
            x = builders.child(msg, ns.MUC_USER, "x")
            for code in codes:
                etree.SubElement(x, _u("status")).set("code", code)
            await self._deliver(other, msg)
        if after.members_only and not before.members_only:
            # §10.2 / §9.4: those who are not members are removed, status 322
            for occupant in list(room.occupants.values()):
                if room.affiliation(occupant.jid) == "none":
                    await self._remove(room, occupant, MEMBERS_ONLY_NOW)
        self._forget_if_empty(room)

    async def _destroy(self, room: Room, destroy: etree._Element) -> None:
        """§10.9: every occupant gets unavailable with role none and the <destroy/> element
        (with the alternate venue and its password if given)."""
        for other in list(room.occupants.values()):
            el = builders.stanza("presence", from_=room.occupant_jid(other.nick),
                                 type_="unavailable")
            x = builders.child(el, ns.MUC_USER, "x")
            etree.SubElement(x, _u("item"), affiliation="none", role="none")
            out = etree.SubElement(x, _u("destroy"))
            if destroy.get("jid"):
                out.set("jid", destroy.get("jid", ""))
            reason = destroy.findtext(ns.clark(ns.MUC_OWNER, "reason"))
            if reason:
                etree.SubElement(out, _u("reason")).text = reason
            password = destroy.findtext(ns.clark(ns.MUC_OWNER, "password"))
            if password:
                etree.SubElement(out, _u("password")).text = password
            etree.SubElement(x, _u("status")).set("code", SELF)
            await self._deliver(other, el)
        room.occupants.clear()
        self.rooms.pop(str(room.jid), None)
        await self.store.delete(str(room.jid))
        await self.archive.forget(room.jid)

    # --- admin (§8, §9) --------------------------------------------------------------------

    async def _admin(self, st: Stanza, room: Room, query: etree._Element) -> etree._Element | None:
        items = query.findall(ns.clark(ns.MUC_ADMIN, "item"))
        if not items:
            raise StanzaError(Condition.BAD_REQUEST)
        actor_aff = room.affiliation(st.from_)
        actor = room.occupant_of(st.from_)
        if st.type == "get":
            return self._admin_list(room, items[0], actor_aff, actor)
        for item in items:
            if item.get("affiliation") is not None:
                await self._set_affiliation(room, item, actor_aff, actor)
            elif item.get("role") is not None:
                await self._set_role(room, item, actor, actor_aff)
            else:
                raise StanzaError(Condition.BAD_REQUEST)
        return None

    def _admin_list(self, room: Room, item: etree._Element, actor_aff: str,
                    actor: Occupant | None) -> etree._Element:
        """§9.5 / §8.5 / §10.5 / §10.8: affiliation lists for admins and owners (the member
        list also for the roles of muc#roomconfig_getmemberlist), role lists for moderators."""
        result = builders.element(ns.MUC_ADMIN, "query")
        affiliation, role = item.get("affiliation"), item.get("role")
        if affiliation is not None:
            if affiliation not in AFFILIATIONS or affiliation == "none":
                raise StanzaError(Condition.BAD_REQUEST)
            member_list_reader = (affiliation == "member" and actor is not None
                                  and actor.role in room.config.get_member_list)
            if RANK[actor_aff] < RANK["admin"] and not member_list_reader:
                raise StanzaError(Condition.FORBIDDEN)
            for jid, aff in sorted(room.affiliations.items()):
                if aff == affiliation:
                    listed = etree.SubElement(result, ns.clark(ns.MUC_ADMIN, "item"),
                                              affiliation=aff, jid=jid)
                    if room.nicks.get(jid):
                        listed.set("nick", room.nicks[jid])
            return result
        if actor is None or actor.role != "moderator":
            raise StanzaError(Condition.FORBIDDEN)
        for occupant in room.occupants.values():
            if occupant.role == role:
                etree.SubElement(result, ns.clark(ns.MUC_ADMIN, "item"), role=occupant.role,
                                 nick=occupant.nick, jid=str(occupant.jid),
                                 affiliation=room.affiliation(occupant.jid))
        return result

    async def _set_role(self, room: Room, item: etree._Element, actor: Occupant | None,
                        actor_aff: str) -> None:
        """§8.2 kick (role none), §8.3/§8.4 voice, §8.7/§8.8 moderator, by moderators."""
        role, nick = item.get("role"), item.get("nick")
        if actor is None or actor.role != "moderator":
            raise StanzaError(Condition.FORBIDDEN)
        if role not in ROLES or nick is None:
            raise StanzaError(Condition.BAD_REQUEST)
        target = room.occupants.get(nick)
        if target is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND)
        target_aff = room.affiliation(target.jid)
        # §8.2 / §8.4: nobody kicks or silences an admin or owner, or anyone above themselves.
        if role != "moderator" and (RANK[target_aff] >= RANK["admin"]
                                    or RANK[target_aff] > RANK[actor_aff]):
            raise StanzaError(Condition.NOT_ALLOWED)
        # §8.7 / §8.8: only admins and owners grant or revoke moderator status.
        if (role == "moderator" or target.role == "moderator") and RANK[actor_aff] < RANK["admin"]:
            raise StanzaError(Condition.NOT_ALLOWED)
        reason = item.findtext(ns.clark(ns.MUC_ADMIN, "reason"))
        if role == "none":
            await self._remove(room, target, KICKED, reason, actor.nick)
            return
        target.role = role
        await self._broadcast_presence(room, target)

    async def _set_affiliation(self, room: Room, item: etree._Element, actor_aff: str,
                               actor: Occupant | None) -> None:
        """§9 (admin) and §10.3–10.8 (owner): ban, members, admins, owners."""
        affiliation, raw_jid = item.get("affiliation", ""), item.get("jid")
        if affiliation not in AFFILIATIONS:
            raise StanzaError(Condition.BAD_REQUEST)
        if raw_jid is None:
            nick = item.get("nick")
            occupant = room.occupants.get(nick) if nick is not None else None
            if occupant is None:
                raise StanzaError(Condition.BAD_REQUEST, "a jid is required")
            target = occupant.jid.bare
        else:
            try:
                target = JID.parse(raw_jid).bare
            except ValueError:
                raise StanzaError(Condition.JID_MALFORMED) from None
        current = room.affiliation(target)
        if RANK[actor_aff] < RANK["admin"]:
            raise StanzaError(Condition.FORBIDDEN)
        # §9.1 / §10.3: admins manage members and outcasts below them; owners manage all.
        if actor_aff == "admin" and (RANK[current] >= RANK["admin"]
                                     or affiliation in ("admin", "owner")):
            raise StanzaError(Condition.NOT_ALLOWED)
        owners = [j for j, a in room.affiliations.items() if a == "owner"]
        if current == "owner" and affiliation != "owner" and owners == [str(target)]:
            raise StanzaError(Condition.CONFLICT, "a room keeps at least one owner")  # §10.6
        if affiliation == "none":
            room.affiliations.pop(str(target), None)
        else:
            room.affiliations[str(target)] = affiliation
        if affiliation in ("none", "outcast"):
            room.nicks.pop(str(target), None)  # a registration ends with the membership
        await self._save(room)
        reason = item.findtext(ns.clark(ns.MUC_ADMIN, "reason"))
        by = actor.nick if actor is not None else None
        present = [o for o in room.occupants.values() if o.jid.bare == target]
        if not present:
            # status 101 (§15.6): a user not in the room learns of the change, as
            # ejabberd does
            msg = builders.stanza("message", to=str(target), from_=str(room.jid))
            x = builders.child(msg, ns.MUC_USER, "x")
            etree.SubElement(x, _u("item"), affiliation=affiliation, jid=str(target))
            etree.SubElement(x, _u("status")).set("code", AFFILIATION_CHANGED_AWAY)
            await self._send(target, msg)
        for occupant in present:
            if affiliation == "outcast":
                await self._remove(room, occupant, BANNED, reason, by)  # §9.1
            elif affiliation == "none" and room.config.members_only:
                await self._remove(room, occupant, AFFILIATION_LOST, reason, by)  # §9.4
            else:
                occupant.role = room.default_role(affiliation)
                await self._broadcast_presence(room, occupant)


def _stanza_id(el: etree._Element, room: JID) -> str | None:
    for sid in el.findall(ns.clark(ns.SID, "stanza-id")):
        if sid.get("by") == str(room):
            return sid.get("id")
    return None


def _stamp(ts: float) -> str:
    """XEP-0082 DateTime in UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _broadcast_payload(presence: etree._Element) -> list[etree._Element]:
    """What of an occupant's presence others see: show, status, caps... not the MUC elements
    (§7.2.3) and not the priority, which only means something to the user's own server."""
    skip = {_MUC_X, _USER_X, ns.clark(ns.CLIENT, "priority"), ns.clark(ns.CLIENT, "error")}
    return [copy.deepcopy(child) for child in presence
            if isinstance(child.tag, str) and child.tag not in skip]

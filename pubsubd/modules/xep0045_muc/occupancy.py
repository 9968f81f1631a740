"""Being in a room: rooms loaded and forgotten, entering (§7.2), presence changes (§7.7), nick
changes (§7.6), leaving (§7.14) and removals (§8.2, §9.1, §9.4, §10.2, XEP-0410), and how an
occupant's presence looks to each other occupant (§7.2.3–§7.2.5)."""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Collection, Iterable
from datetime import UTC, datetime

from lxml import etree

from pubsubd import ns
from pubsubd.config import MucConfig
from pubsubd.core.disco_registry import DiscoRegistry
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.modules.xep0045_muc.archive import RoomArchive
from pubsubd.modules.xep0045_muc.names import (
    GONE,
    MUC_X,
    SUBJECT,
    USER_X,
    muc_user,
)
from pubsubd.modules.xep0045_muc.room import (
    CREATED,
    LOGGING_ON,
    NEW_NICK,
    NON_ANONYMOUS,
    SELF,
    TECHNICAL,
    Occupant,
    Room,
    RoomConfig,
)
from pubsubd.storage.interfaces import MucStore
from pubsubd.xml import builders


class RoomHost(Module):
    """The rooms of the service and their occupants' presence; the other parts of the
    component (messages, administration, ownership) build on it."""

    settings: MucConfig
    admins: Collection[str]
    store: MucStore
    router: Router
    disco: DiscoRegistry
    domain: str
    rooms: dict[str, Room]
    archive: RoomArchive
    max_rooms_per_user: int

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

    async def _rooms_owned(self, owner: str) -> int:
        """Rooms ``owner`` owns: the stored (persistent) ones plus the live temporary ones.
        The store is asked first so that the live count, taken without a pause after it, also
        sees rooms that other stanzas created meanwhile."""
        stored = await self.store.count_owned(owner)
        return stored + sum(1 for room in self.rooms.values()
                            if not room.config.persistent
                            and room.affiliations.get(owner) == "owner")

    def _forget_if_empty(self, room: Room) -> None:
        # §10.1.3: a temporary room is destroyed when its last occupant exits.
        if not room.occupants and not room.config.persistent:
            self.rooms.pop(str(room.jid), None)

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
        elif st.element.find(MUC_X) is not None:
            # §17.3: a join presence from a current occupant asks for a full resync
            occupant.payload = broadcast_payload(st.element)
            await self._broadcast_presence(room, occupant, sessions_self=[])
            await self._entering_sequence(room, occupant, st.from_, [], st.element.find(MUC_X))
        else:
            occupant.payload = broadcast_payload(st.element)  # §7.7: new availability
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
            if not conditions & GONE:
                return
        if len(occupant.sessions) > 1:
            occupant.sessions.remove(st.from_)
            await self._broadcast_presence(room, occupant)
            return
        await self._remove(room, occupant, TECHNICAL)

    async def _enter(self, room: Room | None, st: Stanza) -> None:
        assert st.to is not None and st.to.resource is not None
        nick = st.to.resource
        muc_x = st.element.find(MUC_X)
        created = False
        if room is None:
            if not self._may_create(st.from_):
                await self._presence_error(st, Condition.NOT_ALLOWED, "room creation is restricted")
                return
            creator = str(st.from_.bare)
            owned = 0 if creator in self.admins else await self._rooms_owned(creator)
            room = self.rooms.get(str(st.to.bare))  # created by another stanza meanwhile?
            if room is None:
                if owned >= self.max_rooms_per_user:
                    # limits.max_rooms_per_user. XEP-0045 §10.1.1 names the error for a user
                    # who may not create a room: <not-allowed/> (cancel), which clients show as
                    # "cannot create the room"; the text says which limit was reached.
                    await self._presence_error(
                        st, Condition.NOT_ALLOWED,
                        f"you already own {owned} rooms, the most one user may own here")
                    return
                # §10.1.2: the creator becomes the owner of an instant room (unlocked at once).
                room = self._new_room(st.to.bare,
                                      RoomConfig(max_users=self.settings.max_occupants))
                room.affiliations[creator] = "owner"
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
            existing.payload = broadcast_payload(st.element)
            await self._broadcast_presence(room, existing, sessions_self=existing.sessions[:-1])
            await self._entering_sequence(room, existing, st.from_, [], muc_x)
            return
        limit = min(config.max_users, self.settings.max_occupants)
        if len(room.occupants) >= limit and affiliation not in ("owner", "admin"):
            await self._presence_error(st, Condition.SERVICE_UNAVAILABLE)  # §7.2.10
            return
        newcomer = Occupant(nick, [st.from_], room.default_role(affiliation),
                            broadcast_payload(st.element))
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
        etree.SubElement(msg, SUBJECT).text = room.subject or None
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
        occupant.payload = broadcast_payload(st.element)
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
        item = etree.SubElement(x, muc_user("item"))
        item.set("affiliation", room.affiliation(about.jid))
        item.set("role", about.role)
        if room.config.whois == "anyone" or to.role == "moderator" or to is about:
            item.set("jid", str(about.jid))
        if new_nick is not None:
            item.set("nick", new_nick)
        for code in codes:
            etree.SubElement(x, muc_user("status")).set("code", code)
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
            item = el.find(f"{USER_X}/{muc_user('item')}")
            assert item is not None
            if actor:
                etree.SubElement(item, muc_user("actor"), nick=actor)  # §8.2 / §9.1
            if reason:
                etree.SubElement(item, muc_user("reason")).text = reason
            await self._deliver(other, el)
        self._forget_if_empty(room)


def _stamp(ts: float) -> str:
    """XEP-0082 DateTime in UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def broadcast_payload(presence: etree._Element) -> list[etree._Element]:
    """What of an occupant's presence others see: show, status, caps... not the MUC elements
    (§7.2.3) and not the priority, which only means something to the user's own server."""
    skip = {MUC_X, USER_X, ns.clark(ns.CLIENT, "priority"), ns.clark(ns.CLIENT, "error")}
    return [copy.deepcopy(child) for child in presence
            if isinstance(child.tag, str) and child.tag not in skip]

"""XEP-0045 Multi-User Chat on ``conference.<domain>``: an in-process component of the router.

Rooms live in memory while they have occupants; rooms configured as persistent are also kept in
:class:`MucStore` (configuration, subject, affiliations, registered nicks) and loaded on first
use. Presence is in :mod:`.occupancy`, messages in :mod:`.messages`, roles and affiliations
in :mod:`.admin`, configuration and destruction in :mod:`.owner`, archives in :mod:`.archive`;
this class adds IQ dispatch, registration (§7.10), moderation (XEP-0425) and discovery (§6).

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

from collections.abc import Collection

from lxml import etree

from pubsubd import ns
from pubsubd.config import MucConfig
from pubsubd.core.disco_registry import DiscoRegistry
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.modules.xep0045_muc import requests
from pubsubd.modules.xep0045_muc.admin import Administration
from pubsubd.modules.xep0045_muc.archive import RoomArchive, room_stanza_id
from pubsubd.modules.xep0045_muc.messages import Messaging
from pubsubd.modules.xep0045_muc.names import (
    ADMIN_QUERY,
    DISCO_INFO,
    DISCO_ITEMS,
    MAM_QUERY,
    MODERATE,
    OWNER_QUERY,
    PING,
    REGISTER_QUERY,
    ROOMUSER_NODE,
    X_DATA,
)
from pubsubd.modules.xep0045_muc.owner import Ownership
from pubsubd.modules.xep0045_muc.room import (
    AFFILIATION_LOST,
    SELF,
    SHUTDOWN,
    Room,
)
from pubsubd.storage.interfaces import MamStore, MucStore
from pubsubd.xml import builders
from pubsubd.xml.forms import Form, FormError


class MucComponent(Messaging, Administration, Ownership):
    """``conference.<domain>``: rooms, occupants, their presence and messages."""

    name = "muc"

    def __init__(self, *, settings: MucConfig, primary_domain: str, admins: Collection[str],
                 store: MucStore, archive_store: MamStore, router: Router,
                 disco: DiscoRegistry, max_rooms_per_user: int) -> None:
        super().__init__()
        self.settings = settings
        self.max_rooms_per_user = max_rooms_per_user
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
        # The streams close right after this; each writes what is queued before its
        # system-shutdown error (C2SConnection._finish), so these notices are not lost.
        self.log.info("%d occupants told of the shutdown", told)

    async def receive(self, st: Stanza) -> None:
        if st.kind == "presence":
            await self._presence(st)
        elif st.kind == "message":
            await self._message(st)
        elif st.kind == "iq":
            await self._iq(st)

    async def _iq(self, st: Stanza) -> None:
        if st.type not in ("get", "set"):
            return  # RFC 6120 §8.2.3
        to = st.to
        assert to is not None
        payload = st.element[0]
        key = (st.type, payload.tag)
        result: etree._Element | None
        if to.local is None:
            if key == ("get", DISCO_INFO) and not payload.get("node"):
                result = self._service_info()
            elif key == ("get", DISCO_ITEMS) and not payload.get("node"):
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
        if key == ("get", DISCO_INFO) and payload.get("node") == ROOMUSER_NODE:
            result = self._reserved_nick(room, st.from_)
        elif key == ("get", DISCO_INFO) and not payload.get("node"):
            result = self._room_info(room)
        elif key == ("get", DISCO_ITEMS):
            result = builders.element(ns.DISCO_ITEMS, "query")  # occupants are not disclosed
        elif payload.tag == OWNER_QUERY:
            result = await self._owner(st, room, payload)
        elif payload.tag == ADMIN_QUERY:
            result = await self._admin(st, room, payload)
        elif payload.tag == REGISTER_QUERY:
            result = await self._register(st, room, payload)
        elif payload.tag == MAM_QUERY:
            self._may_read_archive(room, st.from_)
            if st.type == "get":
                result = self.archive.query_form()
            else:
                result = await self.archive.query(room.jid, st.from_, payload)
        elif key == ("set", MODERATE):
            await self._moderate(room, st.from_, payload)
            result = None
        else:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)
        await self.router.reply(st, result)

    async def _occupant_iq(self, st: Stanza, room: Room | None, nick: str,
                           payload: etree._Element) -> None:
        """XEP-0410 §3: a ping to one's own occupant JID tells whether one is still joined."""
        if payload.tag != PING or st.type != "get":
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)  # IQs are not relayed to occupants
        occupant = room.occupant_of(st.from_) if room is not None else None
        if occupant is None:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "not joined")
        if occupant.nick != nick:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)
        await self.router.reply(st, None)

    def _reserved_nick(self, room: Room, jid: JID) -> etree._Element:
        """§7.12: the nick the user registered, as a disco identity (none if not registered)."""
        query = builders.element(ns.DISCO_INFO, "query", node=ROOMUSER_NODE)
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
        form_el = query.find(X_DATA)
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
        kept = [(ts, el) for ts, el in room.history if room_stanza_id(el, room.jid) != uid]
        room.history.clear()
        room.history.extend(kept)
        for other in list(room.occupants.values()):
            await self._deliver(other, notice)

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

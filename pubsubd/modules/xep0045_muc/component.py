"""XEP-0045 Multi-User Chat on ``conference.<domain>``: an in-process component of the router.

Rooms live in memory while they have occupants; rooms configured as persistent are also kept in
:class:`MucStore` (configuration, subject, affiliations) and loaded on first use.

Choices the specification leaves to the service:

* Instant rooms are unlocked at once (XEP-0045 §10.1.2 allows the owner to accept the default
  configuration): the creator gets ``owner`` and status 201, and may submit the configuration
  form later (§10.2). Clients that join and talk straight away then work.
* Rooms are unmoderated; owners and admins are moderators, everyone else a participant (§5.1.2).
* Rooms are semi-anonymous by default (``whois`` = moderators, §10.1.3); occupants' real JIDs
  go to moderators only unless the owner configures ``anyone``.
* IQs to an occupant JID are not forwarded; only the XEP-0410 self-ping is answered.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from lxml import etree

from pubsubd import ns
from pubsubd.config import MucConfig
from pubsubd.core.disco_registry import DiscoRegistry
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.storage.interfaces import MucStore, StoredRoom
from pubsubd.xml import builders
from pubsubd.xml.forms import Field, Form, FormError, Option

_MUC_X = ns.clark(ns.MUC, "x")
_USER_X = ns.clark(ns.MUC_USER, "x")
_ADMIN_QUERY = ns.clark(ns.MUC_ADMIN, "query")
_OWNER_QUERY = ns.clark(ns.MUC_OWNER, "query")
_DISCO_INFO = ns.clark(ns.DISCO_INFO, "query")
_DISCO_ITEMS = ns.clark(ns.DISCO_ITEMS, "query")
_PING = ns.clark(ns.PING, "ping")
_SUBJECT = ns.clark(ns.CLIENT, "subject")
_BODY = ns.clark(ns.CLIENT, "body")
_ROOMINFO = "http://jabber.org/protocol/muc#roominfo"

# §5.1.2 / §5.2: the default role of an affiliation in an unmoderated room.
_ROLE_OF = {"owner": "moderator", "admin": "moderator",
            "member": "participant", "none": "participant"}
_AFFILIATIONS = ("owner", "admin", "member", "none", "outcast")
_RANK = {"outcast": 0, "none": 1, "member": 2, "admin": 3, "owner": 4}
# Status codes (XEP-0045 §15.6 registry).
SELF, NON_ANONYMOUS, CONFIG_CHANGED, CREATED = "110", "100", "104", "201"
BANNED, NEW_NICK, KICKED = "301", "303", "307"


@dataclass(slots=True)
class RoomConfig:
    """The muc#roomconfig fields this service honours (§10.1.3)."""

    name: str = ""
    description: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    whois: str = "moderators"  # "moderators" (semi-anonymous) or "anyone" (non-anonymous)
    change_subject: bool = False  # may participants change the subject (§8.1)
    max_users: int = 200

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RoomConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)  # type: ignore[arg-type]


@dataclass(slots=True)
class Occupant:
    nick: str
    jid: JID  # the real full JID
    role: str
    payload: list[etree._Element] = field(default_factory=list)  # show, status... to broadcast


@dataclass(slots=True)
class Room:
    jid: JID
    config: RoomConfig
    history: deque[tuple[float, etree._Element]]
    affiliations: dict[str, str] = field(default_factory=dict)  # bare JID -> affiliation
    occupants: dict[str, Occupant] = field(default_factory=dict)  # nick -> occupant
    subject: str = ""
    subject_nick: str = ""

    def affiliation(self, jid: JID) -> str:
        return self.affiliations.get(str(jid.bare), "none")

    def occupant_of(self, jid: JID) -> Occupant | None:
        for occupant in self.occupants.values():
            if occupant.jid == jid:
                return occupant
        return None

    def occupant_jid(self, nick: str) -> str:
        return f"{self.jid}/{nick}"

    def stored(self) -> StoredRoom:
        return StoredRoom(str(self.jid), asdict(self.config), self.subject, self.subject_nick,
                          dict(self.affiliations))


def _stamp(ts: float) -> str:
    """XEP-0082 DateTime in UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class MucComponent(Module):
    """``conference.<domain>``: rooms, occupants, their presence and messages."""

    name = "muc"

    def __init__(self, *, settings: MucConfig, primary_domain: str, admins: Collection[str],
                 store: MucStore, router: Router, disco: DiscoRegistry) -> None:
        super().__init__()
        self.settings = settings
        self.admins = admins
        self.store = store
        self.router = router
        self.disco = disco
        self.domain = f"{settings.subdomain}.{primary_domain}"
        self.rooms: dict[str, Room] = {}

    def setup(self) -> None:
        if not self.settings.enabled:
            return
        self.router.add_component(self)
        self.disco.items.append((self.domain, None, "Multi-User Chat"))

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

    # --- presence: enter, change, leave (§7.2, §7.6, §7.7, §7.14) ---------------------------

    async def _presence(self, st: Stanza) -> None:
        to = st.to
        assert to is not None
        if to.local is None:
            return  # presence to the service itself means nothing here
        type_ = st.type
        if type_ == "unavailable":
            room = self.rooms.get(str(to.bare))
            occupant = room.occupant_of(st.from_) if room is not None else None
            if room is not None and occupant is not None:
                await self._leave(room, occupant, st.element)
            return
        if type_ != "available":
            return  # errors, probes and subscriptions to rooms are ignored
        if to.resource is None:
            # §7.2.6: entering without a nickname
            await self._presence_error(st, Condition.JID_MALFORMED, "a room nickname is required")
            return
        room = await self._room(to)
        occupant = room.occupant_of(st.from_) if room is not None else None
        if room is None or occupant is None:
            await self._enter(room, st)
        elif occupant.nick == to.resource:
            occupant.payload = _broadcast_payload(st.element)  # §7.7: new availability
            await self._broadcast_presence(room, occupant)
        else:
            await self._change_nick(room, occupant, to.resource, st)

    async def _presence_error(self, st: Stanza, condition: Condition,
                              text: str | None = None) -> None:
        reply = builders.error_reply(st.element, StanzaError(condition, text))
        # §7.2.9 (examples): the error echoes the muc element so the client knows its join failed.
        builders.child(reply, ns.MUC, "x")
        await self._send(st.from_, reply)

    async def _enter(self, room: Room | None, st: Stanza) -> None:
        assert st.to is not None and st.to.resource is not None
        nick = st.to.resource
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
        if affiliation == "outcast":
            await self._presence_error(st, Condition.FORBIDDEN)  # §7.2.7
            return
        if room.config.members_only and affiliation == "none":
            await self._presence_error(st, Condition.REGISTRATION_REQUIRED)  # §7.2.8
            return
        if nick in room.occupants:
            await self._presence_error(st, Condition.CONFLICT)  # §7.2.9
            return
        limit = min(room.config.max_users, self.settings.max_occupants)
        if len(room.occupants) >= limit and affiliation not in ("owner", "admin"):
            await self._presence_error(st, Condition.SERVICE_UNAVAILABLE)  # §7.2.10
            return
        newcomer = Occupant(nick, st.from_, _ROLE_OF[affiliation], _broadcast_payload(st.element))
        # §7.2.3: first the presence of every current occupant to the newcomer...
        for other in room.occupants.values():
            await self._send(newcomer.jid, self._occupant_presence(room, other, newcomer))
        room.occupants[nick] = newcomer
        # ...then the newcomer's presence to everyone, the newcomer's own copy last (§7.2.3).
        for other in list(room.occupants.values()):
            if other is not newcomer:
                await self._send(other.jid, self._occupant_presence(room, newcomer, other))
        codes = [SELF]
        if room.config.whois == "anyone":
            codes.append(NON_ANONYMOUS)  # §7.2.4
        if created:
            codes.append(CREATED)
        await self._send(newcomer.jid, self._occupant_presence(room, newcomer, newcomer, codes))
        await self._send_history(room, newcomer, st.element.find(_MUC_X))
        await self._send(newcomer.jid, self._subject_message(room, newcomer))

    async def _send_history(self, room: Room, to: Occupant, muc_x: etree._Element | None) -> None:
        """§7.2.15: the discussion history, oldest first, each with a delay stamp."""
        entries = list(room.history)
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
            out.set("to", str(to.jid))
            builders.child(out, ns.DELAY, "delay", stamp=_stamp(ts), from_=str(room.jid))
            await self._send(to.jid, out)

    def _subject_message(self, room: Room, to: Occupant) -> etree._Element:
        """§7.2.16: the subject (an empty one if none was set) ends the entering sequence."""
        sender = room.occupant_jid(room.subject_nick) if room.subject_nick else str(room.jid)
        msg = builders.stanza("message", to=str(to.jid), from_=sender, type_="groupchat")
        etree.SubElement(msg, _SUBJECT).text = room.subject or None
        return msg

    async def _leave(self, room: Room, occupant: Occupant, element: etree._Element) -> None:
        """§7.14: everyone sees the occupant leave; the occupant gets its own copy with 110."""
        room.occupants.pop(occupant.nick, None)
        occupant.role = "none"
        status = element.find(ns.clark(ns.CLIENT, "status"))
        extra = [status] if status is not None else []
        for other in list(room.occupants.values()):
            await self._send(other.jid, self._occupant_presence(
                room, occupant, other, type_="unavailable", extra=extra))
        await self._send(occupant.jid, self._occupant_presence(
            room, occupant, occupant, [SELF], type_="unavailable", extra=extra))
        self._forget_if_empty(room)

    async def _change_nick(self, room: Room, occupant: Occupant, new: str, st: Stanza) -> None:
        """§7.6: unavailable from the old nick (303, new nick in the item), then available."""
        if new in room.occupants:
            await self._presence_error(st, Condition.CONFLICT)  # §7.6.3
            return
        recipients = list(room.occupants.values())
        for other in recipients:
            codes = [NEW_NICK, SELF] if other is occupant else [NEW_NICK]
            await self._send(other.jid, self._occupant_presence(
                room, occupant, other, codes, type_="unavailable", new_nick=new))
        del room.occupants[occupant.nick]
        occupant.nick = new
        occupant.payload = _broadcast_payload(st.element)
        room.occupants[new] = occupant
        for other in recipients:
            codes = [SELF] if other is occupant else []
            await self._send(other.jid, self._occupant_presence(room, occupant, other, codes))

    async def _broadcast_presence(self, room: Room, occupant: Occupant,
                                  codes_to_others: Iterable[str] = (),
                                  codes_to_self: Iterable[str] = (SELF,), type_: str | None = None,
                                  extra: Iterable[etree._Element] = ()) -> None:
        for other in list(room.occupants.values()):
            codes = codes_to_self if other is occupant else codes_to_others
            await self._send(other.jid, self._occupant_presence(
                room, occupant, other, codes, type_=type_, extra=extra))

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
        item = etree.SubElement(x, ns.clark(ns.MUC_USER, "item"))
        item.set("affiliation", room.affiliation(about.jid))
        item.set("role", about.role)
        if room.config.whois == "anyone" or to.role == "moderator" or to is about:
            item.set("jid", str(about.jid))
        if new_nick is not None:
            item.set("nick", new_nick)
        for code in codes:
            etree.SubElement(x, ns.clark(ns.MUC_USER, "status")).set("code", code)
        return el

    async def _remove(self, room: Room, occupant: Occupant, code: str,
                      reason: str | None = None) -> None:
        """Kick (§8.2, 307) or ban (§9.1, 301): unavailable with role none to all."""
        room.occupants.pop(occupant.nick, None)
        occupant.role = "none"
        recipients = [*room.occupants.values(), occupant]
        for other in recipients:
            codes = [code, SELF] if other is occupant else [code]
            el = self._occupant_presence(room, occupant, other, codes, type_="unavailable")
            if reason:
                item = el.find(f"{_USER_X}/{ns.clark(ns.MUC_USER, 'item')}")
                assert item is not None
                etree.SubElement(item, ns.clark(ns.MUC_USER, "reason")).text = reason
            await self._send(other.jid, el)
        self._forget_if_empty(room)

    # --- messages (§7.4, §7.5, §8.1) --------------------------------------------------------

    async def _message(self, st: Stanza) -> None:
        to = st.to
        assert to is not None
        if st.type == "error" or to.local is None:
            return
        room = await self._room(to)
        if room is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND)
        sender = room.occupant_of(st.from_)
        if sender is None:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "only occupants may send messages")  # §7.4
        if to.resource is not None:
            await self._private_message(room, sender, to.resource, st)
        elif st.type == "groupchat":
            await self._groupchat(room, sender, st)
        else:
            raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED)  # invitations etc. (§7.8)

    async def _groupchat(self, room: Room, sender: Occupant, st: Stanza) -> None:
        subject = st.element.find(_SUBJECT)
        if subject is not None and st.element.find(_BODY) is None:
            # §8.1: moderators may change the subject; participants only if the room allows it.
            if sender.role != "moderator" and not (room.config.change_subject
                                                   and sender.role == "participant"):
                raise StanzaError(Condition.FORBIDDEN, "you may not change the subject")
            room.subject, room.subject_nick = subject.text or "", sender.nick
            await self._save(room)
        elif sender.role == "visitor":
            raise StanzaError(Condition.FORBIDDEN, "visitors have no voice")  # §7.4
        template = copy.deepcopy(st.element)
        template.set("from", room.occupant_jid(sender.nick))
        template.attrib.pop("to", None)
        if subject is None:
            room.history.append((time.time(), template))
        for other in list(room.occupants.values()):
            out = copy.deepcopy(template)
            out.set("to", str(other.jid))
            await self._send(other.jid, out)

    async def _private_message(self, room: Room, sender: Occupant, nick: str, st: Stanza) -> None:
        """§7.5: relayed to the occupant's real JID, from the sender's occupant JID."""
        if st.type == "groupchat":
            raise StanzaError(Condition.BAD_REQUEST, "groupchat to an occupant")  # §7.5
        target = room.occupants.get(nick)
        if target is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND)
        out = copy.deepcopy(st.element)
        out.set("from", room.occupant_jid(sender.nick))
        out.set("to", str(target.jid))
        builders.child(out, ns.MUC_USER, "x")  # §7.5: marks it as a MUC private message
        await self._send(target.jid, out)

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
        if key == ("get", _DISCO_INFO) and not payload.get("node"):
            result = self._room_info(room)
        elif key == ("get", _DISCO_ITEMS):
            result = builders.element(ns.DISCO_ITEMS, "query")  # occupants are not disclosed
        elif payload.tag == _OWNER_QUERY:
            result = await self._owner(st, room, payload)
        elif payload.tag == _ADMIN_QUERY:
            result = await self._admin(st, room, payload)
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
            ns.MUC,
            "muc_public" if config.public else "muc_hidden",
            "muc_persistent" if config.persistent else "muc_temporary",
            "muc_membersonly" if config.members_only else "muc_open",
            "muc_unmoderated",
            "muc_nonanonymous" if config.whois == "anyone" else "muc_semianonymous",
            "muc_unsecured",
        ]
        for feature in features:
            etree.SubElement(query, ns.clark(ns.DISCO_INFO, "feature"), var=feature)
        form = Form.with_form_type("result", _ROOMINFO, [
            Field("muc#roominfo_description", values=[config.description]),
            Field("muc#roominfo_occupants", values=[str(len(room.occupants))]),
            Field("muc#roominfo_subject", values=[room.subject]),
        ])
        query.append(form.to_element())
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
        form_el = query.find(ns.clark(ns.DATA_FORMS, "x"))
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
        """§10.1.3 / §15.5.3: the muc#roomconfig fields this service implements."""
        c = room.config
        return Form.with_form_type("form", ns.MUC_ROOMCONFIG, [
            Field("muc#roomconfig_roomname", "text-single", "Room name", [c.name]),
            Field("muc#roomconfig_roomdesc", "text-single", "Description", [c.description]),
            Field("muc#roomconfig_persistentroom", "boolean", "Persistent",
                  ["1" if c.persistent else "0"]),
            Field("muc#roomconfig_publicroom", "boolean", "Listed in the directory",
                  ["1" if c.public else "0"]),
            Field("muc#roomconfig_membersonly", "boolean", "Members only",
                  ["1" if c.members_only else "0"]),
            Field("muc#roomconfig_whois", "list-single", "Who may see real JIDs", [c.whois],
                  options=[Option("moderators"), Option("anyone")]),
            Field("muc#roomconfig_changesubject", "boolean", "Participants may change the subject",
                  ["1" if c.change_subject else "0"]),
            Field("muc#roomconfig_maxusers", "text-single", "Maximum occupants",
                  [str(c.max_users)]),
        ], title="Room configuration")

    async def _apply_config(self, room: Room, form: Form) -> None:
        """§10.2: apply the submitted fields; fields left out keep their value."""
        c = room.config
        was_persistent = c.persistent
        try:
            name = form.value("muc#roomconfig_roomname")
            desc = form.value("muc#roomconfig_roomdesc")
            flags = {var: form.boolean(f"muc#roomconfig_{var}") for var in
                     ("persistentroom", "publicroom", "membersonly", "changesubject")}
            whois = form.value("muc#roomconfig_whois")
            maxusers = form.value("muc#roomconfig_maxusers")
        except FormError as error:
            raise StanzaError(Condition.BAD_REQUEST, str(error)) from None
        if whois is not None and whois not in ("moderators", "anyone"):
            raise StanzaError(Condition.NOT_ACCEPTABLE, "whois: moderators or anyone")
        if maxusers is not None and not maxusers.isdigit():
            raise StanzaError(Condition.NOT_ACCEPTABLE, "maxusers: a number")
        if form.get_field("muc#roomconfig_roomname") is not None:
            c.name = name or ""
        if form.get_field("muc#roomconfig_roomdesc") is not None:
            c.description = desc or ""
        c.persistent = c.persistent if flags["persistentroom"] is None else flags["persistentroom"]
        c.public = c.public if flags["publicroom"] is None else flags["publicroom"]
        c.members_only = c.members_only if flags["membersonly"] is None else flags["membersonly"]
        c.change_subject = (c.change_subject if flags["changesubject"] is None
                            else flags["changesubject"])
        c.whois = whois or c.whois
        if maxusers is not None:
            c.max_users = max(1, min(int(maxusers), self.settings.max_occupants))
        if c.persistent:
            await self._save(room)
        elif was_persistent:
            await self.store.delete(str(room.jid))
            self._forget_if_empty(room)
        # §10.2.1: occupants learn that the configuration changed (status 104).
        for other in list(room.occupants.values()):
            msg = builders.stanza("message", to=str(other.jid), from_=str(room.jid),
                                  type_="groupchat")
            x = builders.child(msg, ns.MUC_USER, "x")
            etree.SubElement(x, ns.clark(ns.MUC_USER, "status")).set("code", CONFIG_CHANGED)
            await self._send(other.jid, msg)

    async def _destroy(self, room: Room, destroy: etree._Element) -> None:
        """§10.9: every occupant gets unavailable with role none and the <destroy/> element."""
        for other in list(room.occupants.values()):
            el = builders.stanza("presence", to=str(other.jid), from_=room.occupant_jid(other.nick),
                                 type_="unavailable")
            x = builders.child(el, ns.MUC_USER, "x")
            etree.SubElement(x, ns.clark(ns.MUC_USER, "item"), affiliation="none", role="none")
            out = etree.SubElement(x, ns.clark(ns.MUC_USER, "destroy"))
            if destroy.get("jid"):
                out.set("jid", destroy.get("jid", ""))
            reason = destroy.find(ns.clark(ns.MUC_OWNER, "reason"))
            if reason is not None and reason.text:
                etree.SubElement(out, ns.clark(ns.MUC_USER, "reason")).text = reason.text
            etree.SubElement(x, ns.clark(ns.MUC_USER, "status")).set("code", SELF)
            await self._send(other.jid, el)
        room.occupants.clear()
        self.rooms.pop(str(room.jid), None)
        await self.store.delete(str(room.jid))

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
                await self._set_affiliation(room, item, actor_aff)
            elif item.get("role") is not None:
                await self._set_role(room, item, actor)
            else:
                raise StanzaError(Condition.BAD_REQUEST)
        return None

    def _admin_list(self, room: Room, item: etree._Element, actor_aff: str,
                    actor: Occupant | None) -> etree._Element:
        """§9.5 / §8.5: affiliation lists for admins and owners, role lists for moderators."""
        result = builders.element(ns.MUC_ADMIN, "query")
        affiliation, role = item.get("affiliation"), item.get("role")
        if affiliation is not None:
            if affiliation not in _AFFILIATIONS or affiliation == "none":
                raise StanzaError(Condition.BAD_REQUEST)
            if _RANK[actor_aff] < _RANK["admin"]:
                raise StanzaError(Condition.FORBIDDEN)
            for jid, aff in sorted(room.affiliations.items()):
                if aff == affiliation:
                    etree.SubElement(result, ns.clark(ns.MUC_ADMIN, "item"),
                                     affiliation=aff, jid=jid)
            return result
        if actor is None or actor.role != "moderator":
            raise StanzaError(Condition.FORBIDDEN)
        for occupant in room.occupants.values():
            if occupant.role == role:
                etree.SubElement(result, ns.clark(ns.MUC_ADMIN, "item"), role=occupant.role,
                                 nick=occupant.nick, jid=str(occupant.jid),
                                 affiliation=room.affiliation(occupant.jid))
        return result

    async def _set_role(self, room: Room, item: etree._Element, actor: Occupant | None) -> None:
        """§8.2 kick (role none) and §8.3–8.6 voice/moderator changes, by moderators only."""
        role, nick = item.get("role"), item.get("nick")
        if actor is None or actor.role != "moderator":
            raise StanzaError(Condition.FORBIDDEN)
        if role not in ("none", "visitor", "participant", "moderator") or nick is None:
            raise StanzaError(Condition.BAD_REQUEST)
        target = room.occupants.get(nick)
        if target is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND)
        # §8.2: a moderator cannot kick or demote someone of higher affiliation, nor an admin.
        if role != "moderator" and _RANK[room.affiliation(target.jid)] >= _RANK["admin"]:
            raise StanzaError(Condition.NOT_ALLOWED)
        if role == "none":
            reason = item.findtext(ns.clark(ns.MUC_ADMIN, "reason"))
            await self._remove(room, target, KICKED, reason)
            return
        target.role = role
        await self._broadcast_presence(room, target)

    async def _set_affiliation(self, room: Room, item: etree._Element, actor_aff: str) -> None:
        """§9 (admin) and §10.3–10.8 (owner): ban, members, admins, owners."""
        affiliation, raw_jid = item.get("affiliation", ""), item.get("jid")
        if affiliation not in _AFFILIATIONS:
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
        if _RANK[actor_aff] < _RANK["admin"]:
            raise StanzaError(Condition.FORBIDDEN)
        # §9.1 / §10.3: admins manage members and outcasts below them; owners manage all.
        if actor_aff == "admin" and (_RANK[current] >= _RANK["admin"]
                                     or affiliation in ("admin", "owner")):
            raise StanzaError(Condition.NOT_ALLOWED)
        owners = [j for j, a in room.affiliations.items() if a == "owner"]
        if current == "owner" and affiliation != "owner" and owners == [str(target)]:
            raise StanzaError(Condition.CONFLICT, "a room keeps at least one owner")  # §10.6
        if affiliation == "none":
            room.affiliations.pop(str(target), None)
        else:
            room.affiliations[str(target)] = affiliation
        await self._save(room)
        for occupant in [o for o in room.occupants.values() if o.jid.bare == target]:
            if affiliation == "outcast":
                reason = item.findtext(ns.clark(ns.MUC_ADMIN, "reason"))
                await self._remove(room, occupant, BANNED, reason)  # §9.1
            else:
                occupant.role = _ROLE_OF[affiliation]
                await self._broadcast_presence(room, occupant)


def _broadcast_payload(presence: etree._Element) -> list[etree._Element]:
    """What of an occupant's presence others see: show, status, caps... not the MUC elements
    (§7.2.3) and not the priority, which only means something to the user's own server."""
    skip = {_MUC_X, _USER_X, ns.clark(ns.CLIENT, "priority"), ns.clark(ns.CLIENT, "error")}
    return [copy.deepcopy(child) for child in presence
            if isinstance(child.tag, str) and child.tag not in skip]

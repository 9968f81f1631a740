"""Moderators and admins at work: roles (§8: kick, voice, moderator) and affiliations (§9 and
§10.3–10.8: ban, members, admins, owners), and the lists of both."""

from __future__ import annotations

from lxml import etree

from pubsubd import ns
from pubsubd.core.router import Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.modules.xep0045_muc.names import (
    muc_user,
)
from pubsubd.modules.xep0045_muc.occupancy import RoomHost
from pubsubd.modules.xep0045_muc.room import (
    AFFILIATION_CHANGED_AWAY,
    AFFILIATION_LOST,
    AFFILIATIONS,
    BANNED,
    KICKED,
    RANK,
    ROLES,
    Occupant,
    Room,
)
from pubsubd.xml import builders


class Administration(RoomHost):
    """The muc#admin namespace."""

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
            etree.SubElement(x, muc_user("item"), affiliation=affiliation, jid=str(target))
            etree.SubElement(x, muc_user("status")).set("code", AFFILIATION_CHANGED_AWAY)
            await self._send(target, msg)
        for occupant in present:
            if affiliation == "outcast":
                await self._remove(room, occupant, BANNED, reason, by)  # §9.1
            elif affiliation == "none" and room.config.members_only:
                await self._remove(room, occupant, AFFILIATION_LOST, reason, by)  # §9.4
            else:
                occupant.role = room.default_role(affiliation)
                await self._broadcast_presence(room, occupant)

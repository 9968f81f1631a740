"""Owners at work (§10): the configuration form applied (§10.2) with the status codes it
calls for, and the destruction of a room (§10.9)."""

from __future__ import annotations

from lxml import etree

from pubsubd import ns
from pubsubd.core.router import Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.modules.xep0045_muc.config_form import config_form, read_submission
from pubsubd.modules.xep0045_muc.names import (
    X_DATA,
    muc_user,
)
from pubsubd.modules.xep0045_muc.occupancy import RoomHost
from pubsubd.modules.xep0045_muc.room import (
    CONFIG_CHANGED,
    LOGGING_OFF,
    LOGGING_ON,
    MEMBERS_ONLY_NOW,
    NOW_NON_ANONYMOUS,
    NOW_SEMI_ANONYMOUS,
    SELF,
    Room,
)
from pubsubd.xml import builders
from pubsubd.xml.forms import Form, FormError


class Ownership(RoomHost):
    """The muc#owner namespace."""

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
        form_el = query.find(X_DATA)
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
                etree.SubElement(x, muc_user("status")).set("code", code)
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
            etree.SubElement(x, muc_user("item"), affiliation="none", role="none")
            out = etree.SubElement(x, muc_user("destroy"))
            if destroy.get("jid"):
                out.set("jid", destroy.get("jid", ""))
            reason = destroy.findtext(ns.clark(ns.MUC_OWNER, "reason"))
            if reason:
                etree.SubElement(out, muc_user("reason")).text = reason
            password = destroy.findtext(ns.clark(ns.MUC_OWNER, "password"))
            if password:
                etree.SubElement(out, muc_user("password")).text = password
            etree.SubElement(x, muc_user("status")).set("code", SELF)
            await self._deliver(other, el)
        room.occupants.clear()
        self.rooms.pop(str(room.jid), None)
        await self.store.delete(str(room.jid))
        await self.archive.forget(room.jid)

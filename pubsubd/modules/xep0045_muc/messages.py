"""Messages to a room and its occupants: groupchat (§7.4, §8.1), private messages (§7.5),
mediated invitations and declines (§7.8.2, §7.8.3), voice requests (§7.13, §8.6)."""

from __future__ import annotations

import copy
import time

from lxml import etree

from pubsubd import ns
from pubsubd.core.router import Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.modules.xep0045_muc import requests
from pubsubd.modules.xep0045_muc.archive import stamp_message
from pubsubd.modules.xep0045_muc.names import (
    BODY,
    SUBJECT,
    USER_X,
    X_DATA,
    muc_user,
)
from pubsubd.modules.xep0045_muc.occupancy import RoomHost
from pubsubd.modules.xep0045_muc.room import (
    RANK,
    ROLES,
    Occupant,
    Room,
)
from pubsubd.xml import builders
from pubsubd.xml.forms import Form, FormError


class Messaging(RoomHost):
    """What occupants say, and the requests they send as messages."""

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
        user_x = st.element.find(USER_X)
        if to.resource is None and user_x is not None and st.type != "groupchat":
            if user_x.find(muc_user("decline")) is not None:
                await self._decline(room, st, user_x)
                return
            if user_x.find(muc_user("invite")) is not None:
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
            form_el = st.element.find(X_DATA)
            if form_el is None:
                raise StanzaError(Condition.BAD_REQUEST, "not a request this room understands")
            await self._request_form(room, sender, form_el)

    async def _groupchat(self, room: Room, sender: Occupant, st: Stanza) -> None:
        subject = st.element.find(SUBJECT)
        body = st.element.find(BODY)
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
        for invite in user_x.findall(muc_user("invite")):
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
            out = etree.SubElement(x, muc_user("invite"), {"from": str(st.from_)})
            reason = invite.findtext(muc_user("reason"))
            if reason:
                etree.SubElement(out, muc_user("reason")).text = reason
            if room.config.password_protected:
                etree.SubElement(x, muc_user("password")).text = room.config.password
            etree.SubElement(msg, BODY).text = (
                f"{st.from_.bare} invites you to the room {room.jid}"
                + (f": {reason}" if reason else ""))
            await self._send(invitee, msg)

    async def _decline(self, room: Room, st: Stanza, user_x: etree._Element) -> None:
        """§7.8.3: a declined invitation goes back to the inviter, from the room."""
        decline = user_x.find(muc_user("decline"))
        assert decline is not None
        try:
            inviter = JID.parse(decline.get("to", ""))
        except ValueError:
            raise StanzaError(Condition.JID_MALFORMED) from None
        msg = builders.stanza("message", to=str(inviter), from_=str(room.jid))
        x = builders.child(msg, ns.MUC_USER, "x")
        out = etree.SubElement(x, muc_user("decline"), {"from": str(st.from_.bare)})
        reason = decline.findtext(muc_user("reason"))
        if reason:
            etree.SubElement(out, muc_user("reason")).text = reason
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

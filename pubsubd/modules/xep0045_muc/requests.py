"""The forms a room sends besides its configuration: registration (§7.10, muc#register,
§15.5.2) and voice requests (§7.13 / §8.6, muc#request, §15.5.5)."""

from __future__ import annotations

from pubsubd import ns
from pubsubd.jid import JID
from pubsubd.modules.xep0045_muc.room import Room
from pubsubd.xml.forms import Field, Form, Option

ROOMNICK = "muc#register_roomnick"


def registration_form(nick: str = "") -> Form:
    """§7.10, Example 'Service returns registration form': the nick is what matters here."""
    return Form.with_form_type("form", ns.MUC_REGISTER, [
        Field("muc#register_first", "text-single", "Given name"),
        Field("muc#register_last", "text-single", "Family name"),
        Field(ROOMNICK, "text-single", "Desired nickname", [nick] if nick else [],
              required=True),
        Field("muc#register_url", "text-single", "Your URL"),
        Field("muc#register_email", "text-single", "Email address"),
        Field("muc#register_faqentry", "text-multi", "FAQ entry"),
    ], title="Room registration",
        instructions=["Register a nickname in this room; it makes you a member."])


def voice_approval_form(jid: JID, nick: str) -> Form:
    """§8.6: the form moderators get for a visitor's voice request."""
    return Form.with_form_type("form", ns.MUC_REQUEST, [
        Field("muc#role", "list-single", "Requested role", ["participant"],
              options=[Option("participant")]),
        Field("muc#jid", "jid-single", "User ID", [str(jid)]),
        Field("muc#roomnick", "text-single", "Room Nickname", [nick]),
        Field("muc#request_allow", "boolean", "Grant voice to this person?", ["0"]),
    ], title="Voice request",
        instructions=["To approve this request for voice, select the "
                      "\"Grant voice to this person?\" checkbox and click OK. To skip this "
                      "request, click the cancel button."])


def room_info_form(room: Room) -> Form:
    """§6.4 / §15.5.4: the muc#roominfo extension of a room's disco#info."""
    c = room.config
    return Form.with_form_type("result", ns.MUC_ROOMINFO, [
        Field("muc#roominfo_description", "text-single", "Description", [c.description]),
        Field("muc#roominfo_lang", "text-single", "Language", [c.language]),
        Field("muc#roominfo_occupants", "text-single", "Occupants",
              [str(len(room.occupants))]),
        Field("muc#roominfo_subject", "text-single", "Subject", [room.subject]),
        Field("muc#roominfo_subjectmod", "boolean", "Occupants may change the subject",
              ["1" if c.change_subject else "0"]),
        Field("muc#maxhistoryfetch", "text-single", "Maximum history", [str(c.max_history)]),
    ])

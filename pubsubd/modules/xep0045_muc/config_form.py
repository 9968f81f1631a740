"""The muc#roomconfig form (XEP-0045 §10.1.3) with the field types registered in §15.5.3, and
how a submitted form changes a room's configuration.

Every field offered is applied; a value the room cannot honour is refused with
``not-acceptable`` rather than stored and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pubsubd import ns
from pubsubd.errors import Condition, StanzaError
from pubsubd.modules.xep0045_muc.room import ROLES, RoomConfig
from pubsubd.xml.forms import Field, Form, FormError, Option

_P = "muc#roomconfig_"
_MAXUSERS_CHOICES = (10, 20, 30, 50, 100, 200, 500, 1000)
_ALLOW_PM = ("anyone", "participants", "moderators", "none")
_BROADCAST_ROLES = [r for r in ROLES if r != "none"]


def _bool(value: bool) -> list[str]:
    return ["1" if value else "0"]


def _role_options() -> list[Option]:
    return [Option(role) for role in _BROADCAST_ROLES]


def config_form(c: RoomConfig, max_occupants: int, owners: list[str],
                admins: list[str]) -> Form:
    """§10.1.3: every field with its §15.5.3 type (maxusers is list-single there)."""
    choices = sorted({n for n in _MAXUSERS_CHOICES if n <= max_occupants}
                     | {max_occupants, c.max_users})
    return Form.with_form_type("form", ns.MUC_ROOMCONFIG, [
        Field(_P + "roomname", "text-single", "Room name", [c.name]),
        Field(_P + "roomdesc", "text-single", "Description", [c.description]),
        Field(_P + "lang", "text-single", "Language of the discussion", [c.language]),
        Field(_P + "persistentroom", "boolean", "Persistent", _bool(c.persistent)),
        Field(_P + "publicroom", "boolean", "Listed in the directory", _bool(c.public)),
        Field(_P + "membersonly", "boolean", "Members only", _bool(c.members_only)),
        Field(_P + "moderatedroom", "boolean", "Moderated (newcomers need voice)",
              _bool(c.moderated)),
        Field(_P + "passwordprotectedroom", "boolean", "Password required to enter",
              _bool(c.password_protected)),
        Field(_P + "roomsecret", "text-private", "Password", [c.password]),
        Field(_P + "whois", "list-single", "Who may see real JIDs", [c.whois],
              options=[Option("moderators"), Option("anyone")]),
        Field(_P + "changesubject", "boolean", "Participants may change the subject",
              _bool(c.change_subject)),
        Field(_P + "allowinvites", "boolean", "Participants may invite others",
              _bool(c.allow_invites)),
        Field(_P + "allowpm", "list-single", "Who may send private messages", [c.allow_pm],
              options=[Option(v) for v in _ALLOW_PM]),
        Field(_P + "maxusers", "list-single", "Maximum occupants", [str(c.max_users)],
              options=[Option(str(n)) for n in choices]),
        Field(_P + "presencebroadcast", "list-multi", "Roles whose presence is broadcast",
              list(c.presence_broadcast), options=_role_options()),
        Field(_P + "getmemberlist", "list-multi", "Roles that may see the member list",
              list(c.get_member_list), options=_role_options()),
        Field(_P + "enablelogging", "boolean", "Keep an archive of the discussion",
              _bool(c.logging)),
        Field("muc#maxhistoryfetch", "text-single", "History messages given to newcomers",
              [str(c.max_history)]),
        Field(_P + "roomowners", "jid-multi", "Owners", owners),
        Field(_P + "roomadmins", "jid-multi", "Admins", admins),
    ], title="Room configuration")


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submission read: the new configuration and the owner/admin lists if given."""

    config: RoomConfig
    owners: list[str] | None
    admins: list[str] | None


def read_submission(form: Form, current: RoomConfig, max_occupants: int) -> Submitted:
    """§10.2: fields left out keep their value; a value that cannot be applied is refused."""
    try:
        return _read(form, current, max_occupants)
    except FormError as error:
        raise StanzaError(Condition.BAD_REQUEST, str(error)) from None


def _refuse(text: str) -> StanzaError:
    return StanzaError(Condition.NOT_ACCEPTABLE, text)


def _read(form: Form, current: RoomConfig, max_occupants: int) -> Submitted:
    c = replace(current, presence_broadcast=list(current.presence_broadcast),
                get_member_list=list(current.get_member_list))

    def given(var: str) -> bool:
        return form.get_field(var) is not None

    for var, attr in (("roomname", "name"), ("roomdesc", "description"), ("lang", "language")):
        if given(_P + var):
            setattr(c, attr, form.value(_P + var) or "")
    for var, attr in (("persistentroom", "persistent"), ("publicroom", "public"),
                      ("membersonly", "members_only"), ("moderatedroom", "moderated"),
                      ("passwordprotectedroom", "password_protected"),
                      ("changesubject", "change_subject"), ("allowinvites", "allow_invites"),
                      ("enablelogging", "logging")):
        flag = form.boolean(_P + var)
        if flag is not None:
            setattr(c, attr, flag)
    if given(_P + "roomsecret"):
        c.password = form.value(_P + "roomsecret") or ""
        # A password given without the flag means the owner wants it used (as Prosody does).
        if c.password and form.boolean(_P + "passwordprotectedroom") is None:
            c.password_protected = True
    if c.password_protected and not c.password:
        raise _refuse("a password-protected room needs muc#roomconfig_roomsecret")
    whois = form.value(_P + "whois")
    if whois is not None:
        if whois not in ("moderators", "anyone"):
            raise _refuse("whois: moderators or anyone")
        c.whois = whois
    allow_pm = form.value(_P + "allowpm")
    if allow_pm is not None:
        if allow_pm not in _ALLOW_PM:
            raise _refuse("allowpm: " + ", ".join(_ALLOW_PM))
        c.allow_pm = allow_pm
    maxusers = form.value(_P + "maxusers")
    if maxusers is not None:
        if maxusers == "none":  # §15.5.3 example: no limit but the service's own
            c.max_users = max_occupants
        elif not maxusers.isdigit() or int(maxusers) < 1:
            raise _refuse("maxusers: a positive number")
        else:
            c.max_users = min(int(maxusers), max_occupants)
    history = form.value("muc#maxhistoryfetch")
    if history is not None:
        if not history.isdigit():
            raise _refuse("maxhistoryfetch: a number")
        c.max_history = int(history)
    for var, attr in (("presencebroadcast", "presence_broadcast"),
                      ("getmemberlist", "get_member_list")):
        if given(_P + var):
            roles = form.values(_P + var)
            if any(role not in _BROADCAST_ROLES for role in roles):
                raise _refuse(f"{var}: moderator, participant, visitor")
            setattr(c, attr, roles)
    owners = form.values(_P + "roomowners") if given(_P + "roomowners") else None
    admins = form.values(_P + "roomadmins") if given(_P + "roomadmins") else None
    if owners is not None and not owners:
        raise _refuse("a room keeps at least one owner")  # §10.6
    return Submitted(c, owners, admins)

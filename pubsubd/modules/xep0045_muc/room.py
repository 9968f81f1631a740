"""The in-memory model of a room: its configuration, occupants (with their sessions) and
affiliations, and what of it survives a restart."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from lxml import etree

from pubsubd.jid import JID
from pubsubd.storage.interfaces import StoredRoom

AFFILIATIONS = ("owner", "admin", "member", "none", "outcast")
RANK = {"outcast": 0, "none": 1, "member": 2, "admin": 3, "owner": 4}
ROLES = ("none", "visitor", "participant", "moderator")

# Status codes (XEP-0045 §15.6 registry).
NON_ANONYMOUS, AFFILIATION_CHANGED_AWAY, CONFIG_CHANGED, SELF = "100", "101", "104", "110"
LOGGING_ON, LOGGING_OFF, NOW_NON_ANONYMOUS, NOW_SEMI_ANONYMOUS = "170", "171", "172", "173"
CREATED, NICK_ASSIGNED = "201", "210"
BANNED, NEW_NICK, KICKED = "301", "303", "307"
AFFILIATION_LOST, MEMBERS_ONLY_NOW, SHUTDOWN, TECHNICAL = "321", "322", "332", "333"


@dataclass(slots=True)
class RoomConfig:
    """The muc#roomconfig fields of §15.5.3, each applied somewhere in the component."""

    name: str = ""
    description: str = ""
    language: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    moderated: bool = False
    password_protected: bool = False
    password: str = ""
    whois: str = "moderators"  # "moderators" (semi-anonymous) or "anyone" (non-anonymous)
    change_subject: bool = False  # may participants change the subject (§8.1)
    allow_invites: bool = True  # may participants invite others (§7.8.2)
    allow_pm: str = "anyone"  # who may send private messages (anyone/participants/moderators/none)
    max_users: int = 200
    max_history: int = 20  # muc#maxhistoryfetch
    logging: bool = True  # muc#roomconfig_enablelogging: the room keeps an archive (XEP-0313)
    presence_broadcast: list[str] = field(
        default_factory=lambda: ["moderator", "participant", "visitor"])
    get_member_list: list[str] = field(
        default_factory=lambda: ["moderator", "participant", "visitor"])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoomConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(slots=True)
class Occupant:
    """One nick in a room; several sessions of one user may share it (§7.2.8 multi-session)."""

    nick: str
    sessions: list[JID]  # the real full JIDs, the most recent last
    role: str
    payload: list[etree._Element] = field(default_factory=list)  # show, status... to broadcast

    @property
    def jid(self) -> JID:
        """The real JID others are shown: the most recent session's."""
        return self.sessions[-1]


@dataclass(slots=True)
class Room:
    jid: JID
    config: RoomConfig
    history: deque[tuple[float, etree._Element]]
    affiliations: dict[str, str] = field(default_factory=dict)  # bare JID -> affiliation
    nicks: dict[str, str] = field(default_factory=dict)  # bare JID -> registered nick (§7.10)
    occupants: dict[str, Occupant] = field(default_factory=dict)  # nick -> occupant
    subject: str = ""
    subject_nick: str = ""

    def affiliation(self, jid: JID | str) -> str:
        key = str(jid.bare) if isinstance(jid, JID) else jid
        return self.affiliations.get(key, "none")

    def occupant_of(self, jid: JID) -> Occupant | None:
        for occupant in self.occupants.values():
            if jid in occupant.sessions:
                return occupant
        return None

    def occupant_jid(self, nick: str) -> str:
        return f"{self.jid}/{nick}"

    def moderators(self) -> list[Occupant]:
        return [o for o in self.occupants.values() if o.role == "moderator"]

    def default_role(self, affiliation: str) -> str:
        """§5.1.2: owners and admins moderate; in a moderated room, visitors are those
        without an affiliation (§7.2.3 / §8.3)."""
        if affiliation in ("owner", "admin"):
            return "moderator"
        if affiliation == "none" and self.config.moderated:
            return "visitor"
        return "participant"

    def stored(self) -> StoredRoom:
        return StoredRoom(str(self.jid), asdict(self.config), self.subject, self.subject_nick,
                          dict(self.affiliations), dict(self.nicks))

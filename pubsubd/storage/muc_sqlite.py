"""Persistent XEP-0045 rooms on the shared SQLite database.

Only rooms configured as persistent (``muc#roomconfig_persistentroom``) are stored: temporary
rooms vanish with their last occupant (XEP-0045 §10.1.3), so keeping them would be wrong. A room
is small and read once per server lifetime (on first use), so it is kept as one row of JSON
configuration plus its affiliation rows (with the nick each affiliated user registered).
"""

from __future__ import annotations

import json
import sqlite3

from pubsubd.storage.interfaces import StoredRoom
from pubsubd.storage.sqlite import Database

__all__ = ["SqliteMucStore", "StoredRoom"]

_SCHEMA = [
    """
    CREATE TABLE muc_rooms (
        room TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        subject_nick TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE muc_affiliations (
        room TEXT NOT NULL,
        jid TEXT NOT NULL,
        affiliation TEXT NOT NULL,
        PRIMARY KEY (room, jid)
    )
    """,
    # XEP-0045 §7.10: the nickname an affiliated user registered ('' if none)
    "ALTER TABLE muc_affiliations ADD COLUMN nick TEXT NOT NULL DEFAULT ''",
    # the rooms-per-user quota counts a user's owned rooms
    "CREATE INDEX muc_affiliations_by_jid ON muc_affiliations (jid, affiliation)",
]


class SqliteMucStore:
    """Rooms keyed by their bare JID; affiliations keyed by (room, bare JID)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("muc", _SCHEMA)

    async def load(self, room: str) -> StoredRoom | None:
        def read(conn: sqlite3.Connection) -> StoredRoom | None:
            row = conn.execute(
                "SELECT config, subject, subject_nick FROM muc_rooms WHERE room = ?",
                (room,)).fetchone()
            if row is None:
                return None
            rows = conn.execute("SELECT jid, affiliation, nick FROM muc_affiliations"
                                " WHERE room = ?", (room,)).fetchall()
            affs = {jid: aff for jid, aff, _ in rows}
            nicks = {jid: nick for jid, _, nick in rows if nick}
            return StoredRoom(room, json.loads(row[0]), row[1], row[2], affs, nicks)

        return await self.db.run(read, readonly=True)

    async def save(self, stored: StoredRoom) -> None:
        """Replace the room's row and its whole affiliation list in one transaction."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO muc_rooms (room, config, subject, subject_nick)"
                " VALUES (?, ?, ?, ?)",
                (stored.room, json.dumps(stored.config), stored.subject, stored.subject_nick))
            conn.execute("DELETE FROM muc_affiliations WHERE room = ?", (stored.room,))
            conn.executemany(
                "INSERT INTO muc_affiliations (room, jid, affiliation, nick) VALUES (?, ?, ?, ?)",
                [(stored.room, jid, aff, stored.nicks.get(jid, ""))
                 for jid, aff in stored.affiliations.items()])

        await self.db.run(write)

    async def delete(self, room: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM muc_rooms WHERE room = ?", (room,))
            conn.execute("DELETE FROM muc_affiliations WHERE room = ?", (room,))

        await self.db.run(write)

    async def public_rooms(self) -> list[tuple[str, str]]:
        """(room JID, name) of stored rooms whose configuration makes them public."""

        def read(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            found = []
            for room, config in conn.execute("SELECT room, config FROM muc_rooms"):
                data = json.loads(config)
                if data.get("public", True):
                    found.append((room, str(data.get("name") or "")))
            return found

        return await self.db.run(read, readonly=True)

    async def count_owned(self, owner: str) -> int:
        """Stored rooms where ``owner`` (a bare JID) is an owner; the primary key
        (room, jid) makes each room count once."""

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT COUNT(*) FROM muc_affiliations"
                               " WHERE jid = ? AND affiliation = 'owner'", (owner,)).fetchone()
            return int(row[0])

        return await self.db.run(read, readonly=True)

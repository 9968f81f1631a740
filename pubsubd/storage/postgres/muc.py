"""Persistent XEP-0045 rooms on PostgreSQL: configuration as JSON, affiliations as rows (with
the nick each affiliated user registered)."""

from __future__ import annotations

import json

import psycopg

from pubsubd.storage.interfaces import StoredRoom
from pubsubd.storage.postgres.database import PgDatabase

MIGRATIONS = [
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


class PgMucStore:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("muc", MIGRATIONS)

    async def load(self, room: str) -> StoredRoom | None:
        def read(conn: psycopg.Connection) -> StoredRoom | None:
            row = conn.execute("SELECT config, subject, subject_nick FROM muc_rooms"
                               " WHERE room = %s", (room,)).fetchone()
            if row is None:
                return None
            rows = conn.execute("SELECT jid, affiliation, nick FROM muc_affiliations"
                                " WHERE room = %s", (room,)).fetchall()
            affs = {str(jid): str(aff) for jid, aff, _ in rows}
            nicks = {str(jid): str(nick) for jid, _, nick in rows if nick}
            return StoredRoom(room, json.loads(row[0]), row[1], row[2], affs, nicks)

        return await self.db.read(read)

    async def save(self, stored: StoredRoom) -> None:
        def write(conn: psycopg.Connection) -> None:
            conn.execute(
                "INSERT INTO muc_rooms (room, config, subject, subject_nick)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (room) DO UPDATE SET"
                " config = excluded.config, subject = excluded.subject,"
                " subject_nick = excluded.subject_nick",
                (stored.room, json.dumps(stored.config), stored.subject, stored.subject_nick))
            conn.execute("DELETE FROM muc_affiliations WHERE room = %s", (stored.room,))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO muc_affiliations (room, jid, affiliation, nick)"
                    " VALUES (%s, %s, %s, %s)",
                    [(stored.room, jid, aff, stored.nicks.get(jid, ""))
                     for jid, aff in stored.affiliations.items()])

        await self.db.run(write)

    async def count_owned(self, owner: str) -> int:
        """Stored rooms where ``owner`` (a bare JID) is an owner."""

        def read(conn: psycopg.Connection) -> int:
            row = conn.execute("SELECT COUNT(*) FROM muc_affiliations"
                               " WHERE jid = %s AND affiliation = 'owner'", (owner,)).fetchone()
            return int(row[0]) if row else 0

        return await self.db.read(read)

    async def delete(self, room: str) -> None:
        def write(conn: psycopg.Connection) -> None:
            conn.execute("DELETE FROM muc_rooms WHERE room = %s", (room,))
            conn.execute("DELETE FROM muc_affiliations WHERE room = %s", (room,))

        await self.db.run(write)

    async def public_rooms(self) -> list[tuple[str, str]]:
        def read(conn: psycopg.Connection) -> list[tuple[str, str]]:
            found = []
            for room, config in conn.execute("SELECT room, config FROM muc_rooms"):
                data = json.loads(config)
                if data.get("public", True):
                    found.append((str(room), str(data.get("name") or "")))
            return found

        return await self.db.read(read)

"""The feed service's person-facing state on PostgreSQL: the short names of feeds' contacts
and the admin's pins and idleness marks (protocols in
:mod:`pubsubd.storage.feed_contacts_sqlite`).

The feed service keeps the short names in memory; a change notifies the other instances sharing
the database (kind ``feed_contact``, key the feed, see :mod:`.invalidation`), which load them
again.
"""

from __future__ import annotations

import psycopg

from pubsubd.storage.postgres.database import PgDatabase

CONTACT_MIGRATIONS = [
    """
    CREATE TABLE feed_contact (
        short TEXT PRIMARY KEY,
        feed_id TEXT NOT NULL UNIQUE
    )
    """,
]

MARK_MIGRATIONS = [
    """
    CREATE TABLE feed_service (
        feed_id TEXT PRIMARY KEY,
        pinned INTEGER NOT NULL DEFAULT 0,
        idle INTEGER NOT NULL DEFAULT 0
    )
    """,
]


class PgFeedContactStore:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("feed_contact", CONTACT_MIGRATIONS)

    async def load(self) -> dict[str, str]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT short, feed_id FROM feed_contact").fetchall())
        return {str(short): str(feed_id) for short, feed_id in rows}

    async def add(self, short: str, feed_id: str) -> None:
        def write(conn: psycopg.Connection) -> None:
            # Like SQLite's INSERT OR REPLACE: the new pair displaces any row sharing a key.
            conn.execute("DELETE FROM feed_contact WHERE short = %s OR feed_id = %s",
                         (short, feed_id))
            conn.execute("INSERT INTO feed_contact (short, feed_id) VALUES (%s, %s)",
                         (short, feed_id))
            self.db.notify(conn, "feed_contact", feed_id)

        await self.db.run(write)

    async def forget(self, feed_id: str) -> None:
        def write(conn: psycopg.Connection) -> None:
            conn.execute("DELETE FROM feed_contact WHERE feed_id = %s", (feed_id,))
            self.db.notify(conn, "feed_contact", feed_id)

        await self.db.run(write)


class PgFeedMarkStore:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("feed_service", MARK_MIGRATIONS)

    async def set(self, feed_id: str, *, pinned: bool | None = None,
                  idle: bool | None = None) -> None:
        await self.db.run(lambda conn: conn.execute(
            "INSERT INTO feed_service (feed_id, pinned, idle)"
            " VALUES (%s, COALESCE(%s, 0), COALESCE(%s, 0)) ON CONFLICT (feed_id) DO UPDATE SET"
            " pinned = COALESCE(%s, feed_service.pinned), idle = COALESCE(%s, feed_service.idle)",
            (feed_id, _flag(pinned), _flag(idle), _flag(pinned), _flag(idle))))

    async def get(self, feed_id: str) -> tuple[bool, bool]:
        def read(conn: psycopg.Connection) -> tuple[bool, bool]:
            row = conn.execute("SELECT pinned, idle FROM feed_service WHERE feed_id = %s",
                               (feed_id,)).fetchone()
            return (bool(row[0]), bool(row[1])) if row else (False, False)

        return await self.db.read(read)

    async def forget(self, feed_id: str) -> None:
        await self.db.run(lambda conn: conn.execute(
            "DELETE FROM feed_service WHERE feed_id = %s", (feed_id,)))


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)

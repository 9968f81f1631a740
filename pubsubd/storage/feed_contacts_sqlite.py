"""Persistent state of the feed service's person-facing side, kept out of the modules.

* :class:`FeedContactStore` — the short name of each feed's contact JID
  (``<short>@pubsub.<domain>``): chosen once, stable across restarts, unique per service.
* :class:`FeedMarkStore` — which feeds the admin pinned (polled without subscribers) and which
  sleep for want of subscribers.

The protocols are in :mod:`pubsubd.storage.interfaces`, the memory implementations in
:mod:`pubsubd.storage.memory`.
"""

from __future__ import annotations

import sqlite3

from pubsubd.storage.sqlite import Database

_CONTACT_MIGRATIONS = [
    """
    CREATE TABLE feed_contact (
        short TEXT PRIMARY KEY,
        feed_id TEXT NOT NULL UNIQUE
    );
    """,
]

_MARK_MIGRATIONS = [
    """
    CREATE TABLE feed_service (
        feed_id TEXT PRIMARY KEY,
        pinned INTEGER NOT NULL DEFAULT 0,
        idle INTEGER NOT NULL DEFAULT 0
    );
    """,
]


class SqliteFeedContactStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("feed_contact", _CONTACT_MIGRATIONS)

    async def load(self) -> dict[str, str]:
        def read(conn: sqlite3.Connection) -> dict[str, str]:
            rows = conn.execute("SELECT short, feed_id FROM feed_contact").fetchall()
            return {str(short): str(feed_id) for short, feed_id in rows}

        return await self.db.read(read)

    async def add(self, short: str, feed_id: str) -> None:
        await self.db.run(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO feed_contact (short, feed_id) VALUES (?, ?)", (short, feed_id)))

    async def forget(self, feed_id: str) -> None:
        await self.db.run(lambda conn: conn.execute(
            "DELETE FROM feed_contact WHERE feed_id = ?", (feed_id,)))


class SqliteFeedMarkStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("feed_service", _MARK_MIGRATIONS)

    async def set(self, feed_id: str, *, pinned: bool | None = None,
                  idle: bool | None = None) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO feed_service (feed_id) VALUES (?)", (feed_id,))
            if pinned is not None:
                conn.execute("UPDATE feed_service SET pinned = ? WHERE feed_id = ?",
                             (int(pinned), feed_id))
            if idle is not None:
                conn.execute("UPDATE feed_service SET idle = ? WHERE feed_id = ?",
                             (int(idle), feed_id))

        await self.db.run(write)

    async def get(self, feed_id: str) -> tuple[bool, bool]:
        def read(conn: sqlite3.Connection) -> tuple[bool, bool]:
            row = conn.execute("SELECT pinned, idle FROM feed_service WHERE feed_id = ?",
                               (feed_id,)).fetchone()
            return (bool(row[0]), bool(row[1])) if row else (False, False)

        return await self.db.read(read)

    async def forget(self, feed_id: str) -> None:
        await self.db.run(
            lambda conn: conn.execute("DELETE FROM feed_service WHERE feed_id = ?", (feed_id,))
        )

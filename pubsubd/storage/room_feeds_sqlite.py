"""SQLite :class:`~pubsubd.storage.interfaces.RoomFeedStore`: the feeds posted into rooms."""

from __future__ import annotations

import sqlite3

from pubsubd.storage.interfaces import RoomFeed
from pubsubd.storage.sqlite import Database

_MIGRATIONS = [
    """
    CREATE TABLE room_feed (
        room TEXT NOT NULL,
        node TEXT NOT NULL,
        nick TEXT NOT NULL,
        added_by TEXT NOT NULL,
        PRIMARY KEY (room, node)
    );
    """,
]


class SqliteRoomFeedStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("room_feed", _MIGRATIONS)

    async def put(self, feed: RoomFeed) -> None:
        await self.db.run(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO room_feed (room, node, nick, added_by) VALUES (?, ?, ?, ?)",
            (feed.room, feed.node, feed.nick, feed.added_by)))

    async def remove(self, room: str, node: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM room_feed WHERE room = ? AND node = ?",
                                  (room, node))
            return cursor.rowcount > 0

        return await self.db.run(delete)

    async def list_all(self) -> list[RoomFeed]:
        def read(conn: sqlite3.Connection) -> list[RoomFeed]:
            rows = conn.execute(
                "SELECT room, node, nick, added_by FROM room_feed ORDER BY room, node"
            ).fetchall()
            return [RoomFeed(str(r), str(n), str(k), str(a)) for r, n, k, a in rows]

        return await self.db.read(read)

"""The feeds posted into group chat rooms, on PostgreSQL (same table as on SQLite)."""

from __future__ import annotations

import psycopg

from pubsubd.storage.interfaces import RoomFeed
from pubsubd.storage.postgres.database import PgDatabase

MIGRATIONS = [
    """
    CREATE TABLE room_feed (
        room TEXT NOT NULL,
        node TEXT NOT NULL,
        nick TEXT NOT NULL,
        added_by TEXT NOT NULL,
        PRIMARY KEY (room, node)
    )
    """,
]


class PgRoomFeedStore:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("room_feed", MIGRATIONS)

    async def put(self, feed: RoomFeed) -> None:
        def write(conn: psycopg.Connection) -> None:
            conn.execute("INSERT INTO room_feed (room, node, nick, added_by)"
                         " VALUES (%s, %s, %s, %s) ON CONFLICT (room, node) DO UPDATE"
                         " SET nick = excluded.nick, added_by = excluded.added_by",
                         (feed.room, feed.node, feed.nick, feed.added_by))

        await self.db.run(write)

    async def remove(self, room: str, node: str) -> bool:
        def delete(conn: psycopg.Connection) -> bool:
            cursor = conn.execute("DELETE FROM room_feed WHERE room = %s AND node = %s",
                                  (room, node))
            return cursor.rowcount > 0

        return await self.db.run(delete)

    async def list_all(self) -> list[RoomFeed]:
        def read(conn: psycopg.Connection) -> list[RoomFeed]:
            rows = conn.execute(
                "SELECT room, node, nick, added_by FROM room_feed ORDER BY room, node"
            ).fetchall()
            return [RoomFeed(str(r), str(n), str(k), str(a)) for r, n, k, a in rows]

        return await self.db.read(read)

"""XEP-0357 push registrations on SQLite (protocol :class:`~.interfaces.PushStore`)."""

from __future__ import annotations

import sqlite3
import time

from pubsubd.storage.interfaces import PushRegistration
from pubsubd.storage.sqlite import Database

_MIGRATIONS = [
    """
    CREATE TABLE push_registrations (
        owner TEXT NOT NULL,
        service TEXT NOT NULL,
        node TEXT NOT NULL,
        options BLOB NOT NULL,
        enabled REAL NOT NULL,
        PRIMARY KEY (owner, service, node)
    );
    """,
]


class SqlitePushStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("push_registrations", _MIGRATIONS)

    async def registrations(self, owner: str) -> list[PushRegistration]:
        def read(conn: sqlite3.Connection) -> list[PushRegistration]:
            rows = conn.execute(
                "SELECT service, node, options FROM push_registrations WHERE owner = ?"
                " ORDER BY enabled, rowid", (owner,)).fetchall()
            return [PushRegistration(owner, str(service), str(node), bytes(options))
                    for service, node, options in rows]

        return await self.db.read(read)

    async def put(self, registration: PushRegistration) -> None:
        r = registration
        await self.db.run(lambda conn: conn.execute(
            "INSERT INTO push_registrations (owner, service, node, options, enabled)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner, service, node)"
            " DO UPDATE SET options = excluded.options",
            (r.owner, r.service, r.node, r.options, time.time())))

    async def remove(self, owner: str, service: str, node: str | None = None) -> int:
        def write(conn: sqlite3.Connection) -> int:
            if node is None:
                cur = conn.execute("DELETE FROM push_registrations WHERE owner = ?"
                                   " AND service = ?", (owner, service))
            else:
                cur = conn.execute("DELETE FROM push_registrations WHERE owner = ?"
                                   " AND service = ? AND node = ?", (owner, service, node))
            return int(cur.rowcount)

        return await self.db.run(write)

    async def any_registered(self) -> bool:
        return await self.db.read(lambda conn: conn.execute(
            "SELECT 1 FROM push_registrations LIMIT 1").fetchone() is not None)

    async def forget(self, owner: str) -> None:
        await self.db.run(lambda conn: conn.execute(
            "DELETE FROM push_registrations WHERE owner = ?", (owner,)))

"""XEP-0357 push registrations on PostgreSQL (the twin of :mod:`pubsubd.storage.push_sqlite`)."""

from __future__ import annotations

import time

import psycopg

from pubsubd.storage.interfaces import PushRegistration
from pubsubd.storage.postgres.database import PgDatabase

MIGRATIONS = [
    """
    CREATE TABLE push_registrations (
        owner TEXT NOT NULL,
        service TEXT NOT NULL,
        node TEXT NOT NULL,
        options BYTEA NOT NULL,
        enabled DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (owner, service, node)
    )
    """,
]


class PgPushStore:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("push_registrations", MIGRATIONS)

    async def registrations(self, owner: str) -> list[PushRegistration]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT service, node, options FROM push_registrations WHERE owner = %s"
            " ORDER BY enabled, service, node", (owner,)).fetchall())
        return [PushRegistration(owner, str(service), str(node), bytes(options))
                for service, node, options in rows]

    async def put(self, registration: PushRegistration) -> None:
        r = registration
        await self.db.run(lambda conn: conn.execute(
            "INSERT INTO push_registrations (owner, service, node, options, enabled)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (owner, service, node)"
            " DO UPDATE SET options = excluded.options",
            (r.owner, r.service, r.node, r.options, time.time())))

    async def remove(self, owner: str, service: str, node: str | None = None) -> int:
        def write(conn: psycopg.Connection) -> int:
            if node is None:
                cur = conn.execute("DELETE FROM push_registrations WHERE owner = %s"
                                   " AND service = %s", (owner, service))
            else:
                cur = conn.execute("DELETE FROM push_registrations WHERE owner = %s"
                                   " AND service = %s AND node = %s", (owner, service, node))
            return int(cur.rowcount)

        return await self.db.run(write)

    async def any_registered(self) -> bool:
        return await self.db.read(lambda conn: conn.execute(
            "SELECT 1 FROM push_registrations LIMIT 1").fetchone() is not None)

    async def forget(self, owner: str) -> None:
        await self.db.run(lambda conn: conn.execute(
            "DELETE FROM push_registrations WHERE owner = %s", (owner,)))

"""XEP-0049 private XML storage on PostgreSQL: fragments per (owner, namespace, name)."""

from __future__ import annotations

import psycopg

from pubsubd.jid import JID
from pubsubd.storage.postgres.database import PgDatabase

MIGRATIONS = [
    """
    CREATE TABLE private_xml (
        owner TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (owner, namespace, name)
    )
    """,
]


class _TooMany(Exception):
    """Raised inside a write to roll it back when an owner exceeds the entry limit."""


class PgPrivateStore:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("private_xml", MIGRATIONS)

    async def get(self, owner: JID, namespace: str, name: str) -> bytes | None:
        def read(conn: psycopg.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT data FROM private_xml WHERE owner = %s AND namespace = %s AND name = %s",
                (str(owner.bare), namespace, name)).fetchone()
            return bytes(row[0]) if row else None

        return await self.db.read(read)

    async def put(self, owner: JID, fragments: list[tuple[str, str, bytes]],
                  max_entries: int, *, max_bytes: int | None = None) -> bool:
        """Store every fragment at once; False (nothing stored) past ``max_entries`` fragments
        or ``max_bytes`` bytes for the owner."""
        owner_s = str(owner.bare)

        def write(conn: psycopg.Connection) -> bool:
            # The owner's row lock orders concurrent puts, so the count below is exact.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (owner_s,))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO private_xml (owner, namespace, name, data)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (owner, namespace, name)"
                    " DO UPDATE SET data = excluded.data",
                    [(owner_s, ns_, name, data) for ns_, name, data in fragments])
            row = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(OCTET_LENGTH(data)), 0) FROM private_xml"
                " WHERE owner = %s", (owner_s,)).fetchone()
            if row is None or row[0] > max_entries or (
                    max_bytes is not None and row[1] > max_bytes):
                raise _TooMany
            return True

        try:
            return await self.db.run(write)
        except _TooMany:
            return False  # rolled back

    async def forget(self, owner: JID) -> None:
        await self.db.run(lambda conn: conn.execute(
            "DELETE FROM private_xml WHERE owner = %s", (str(owner.bare),)))

"""The message of the day (XEP-0133 §4.26-§4.28) on PostgreSQL: one row."""

from __future__ import annotations

import time

import psycopg

from pubsubd.storage.postgres.database import PgDatabase

MIGRATIONS = [
    """
    CREATE TABLE admin_motd (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        text TEXT NOT NULL,
        set_at DOUBLE PRECISION NOT NULL
    )
    """,
]


def _text(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT text FROM admin_motd WHERE id = 1").fetchone()
    return str(row[0]) if row else None


class PgMotdStore:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("admin", MIGRATIONS)  # the name the SQLite store uses for the same table

    def load(self) -> str | None:
        return self.db.run_sync(_text)

    async def get(self) -> str | None:
        return await self.db.read(_text)

    async def set(self, text: str | None) -> None:
        def write(conn: psycopg.Connection) -> None:
            if text is None:
                conn.execute("DELETE FROM admin_motd")
            else:
                conn.execute("INSERT INTO admin_motd (id, text, set_at) VALUES (1, %s, %s)"
                             " ON CONFLICT (id) DO UPDATE SET text = excluded.text,"
                             " set_at = excluded.set_at", (text, time.time()))
            self.db.notify(conn, "motd", "")  # the admin module of every instance caches it

        await self.db.run(write)

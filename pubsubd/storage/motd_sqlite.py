"""The message of the day (XEP-0133 §4.26-§4.28), one row in SQLite.

The text is read once at start-up and cached by the admin module; writes go through here.
"""

from __future__ import annotations

import sqlite3

from pubsubd.storage.sqlite import Database

_SCHEMA = [
    """
    CREATE TABLE admin_motd (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        text TEXT NOT NULL,
        set_at REAL NOT NULL
    )
    """,
]


class SqliteMotdStore:
    """The single message of the day; ``None`` when there is none."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("admin", _SCHEMA)  # the store's migration name predates this class

    def load(self) -> str | None:
        """The stored text (synchronous: read once while the server starts)."""
        row = self.db.run_sync(
            lambda c: c.execute("SELECT text FROM admin_motd WHERE id = 1").fetchone(),
            readonly=True)
        return row[0] if row else None

    async def get(self) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT text FROM admin_motd WHERE id = 1").fetchone()
            return row[0] if row else None

        return await self.db.read(read)

    async def set(self, text: str | None) -> None:
        """Replace the text, or delete it with ``None``."""

        def write(conn: sqlite3.Connection) -> None:
            if text is None:
                conn.execute("DELETE FROM admin_motd")
            else:
                conn.execute("INSERT OR REPLACE INTO admin_motd (id, text, set_at)"
                             " VALUES (1, ?, strftime('%s', 'now'))", (text,))

        await self.db.run(write)

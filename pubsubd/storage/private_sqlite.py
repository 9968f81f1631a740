"""XEP-0049 private XML storage on the shared SQLite database.

Each stored fragment is keyed by its owner and the (namespace, element name) of its root, and
kept as serialized XML; it is read rarely (at a client's login), so nothing is cached.
"""

from __future__ import annotations

import sqlite3

from pubsubd.jid import JID
from pubsubd.storage.sqlite import Database

_SCHEMA = [
    """
    CREATE TABLE private_xml (
        owner TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (owner, namespace, name)
    )
    """,
]


class SqlitePrivateStore:
    """Fragments per (owner, namespace, element name); the owner is always a bare JID."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("private_xml", _SCHEMA)

    async def get(self, owner: JID, namespace: str, name: str) -> bytes | None:
        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT data FROM private_xml WHERE owner = ? AND namespace = ? AND name = ?",
                (str(owner.bare), namespace, name)).fetchone()
            return bytes(row[0]) if row else None

        return await self.db.run(read)

    async def put(self, owner: JID, fragments: list[tuple[str, str, bytes]],
                  max_entries: int, *, max_bytes: int | None = None) -> bool:
        """Store every (namespace, name, data) at once, replacing older ones with the same key;
        False (and nothing stored) if the owner would then hold more than ``max_entries``
        fragments, or more than ``max_bytes`` bytes of them in all."""
        owner_s = str(owner.bare)

        def write(conn: sqlite3.Connection) -> bool:
            conn.executemany(
                "INSERT OR REPLACE INTO private_xml (owner, namespace, name, data)"
                " VALUES (?, ?, ?, ?)",
                [(owner_s, ns_, name, data) for ns_, name, data in fragments])
            count, size = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM private_xml"
                " WHERE owner = ?", (owner_s,)).fetchone()
            if count > max_entries or (max_bytes is not None and size > max_bytes):
                raise _TooMany
            return True

        try:
            return await self.db.run(write)
        except _TooMany:
            return False  # the transaction was rolled back

    async def forget(self, owner: JID) -> None:
        """Delete everything stored for a deleted account."""
        await self.db.run(lambda conn: conn.execute(
            "DELETE FROM private_xml WHERE owner = ?", (str(owner.bare),)))


PrivateXmlStore = SqlitePrivateStore  # the name modules import today


class _TooMany(Exception):
    """Raised inside a write to roll it back when an owner exceeds the entry limit."""

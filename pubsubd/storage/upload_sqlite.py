"""XEP-0363 upload slots and stored files in SQLite (the file contents live on disk)."""

from __future__ import annotations

import sqlite3

from pubsubd.storage.interfaces import UploadRecord
from pubsubd.storage.sqlite import Database

_SCHEMA = [
    """
    CREATE TABLE upload_files (
        slot_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        filename TEXT NOT NULL,
        size INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        granted REAL NOT NULL,
        uploaded REAL
    )
    """,
    "CREATE INDEX upload_files_owner ON upload_files (owner)",
    "CREATE INDEX upload_files_granted ON upload_files (granted)",
]

_COLUMNS = "slot_id, owner, filename, size, content_type, granted, uploaded"


def _record(row: tuple[str, str, str, int, str, float, float | None]) -> UploadRecord:
    return UploadRecord(*row)


class SqliteUploadStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("upload", _SCHEMA)

    async def add(self, record: UploadRecord) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT INTO upload_files ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (record.slot_id, record.owner, record.filename, record.size,
                          record.content_type, record.granted, record.uploaded))

        await self.db.run(write)

    async def get(self, slot_id: str) -> UploadRecord | None:
        def read(conn: sqlite3.Connection) -> UploadRecord | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM upload_files WHERE slot_id = ?",
                               (slot_id,)).fetchone()
            return _record(row) if row else None

        return await self.db.read(read)

    async def mark_uploaded(self, slot_id: str, when: float) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("UPDATE upload_files SET uploaded = ?"
                               " WHERE slot_id = ? AND uploaded IS NULL", (when, slot_id))
            return cur.rowcount == 1

        return await self.db.run(write)

    async def bytes_used(self, owner: str, slots_since: float) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COALESCE(SUM(size), 0) FROM upload_files WHERE owner = ?"
                " AND (uploaded IS NOT NULL OR granted >= ?)", (owner, slots_since)).fetchone()
            return int(row[0])

        return await self.db.read(read)

    async def expired(self, uploaded_before: float, granted_before: float,
                      limit: int = 500) -> list[UploadRecord]:
        def read(conn: sqlite3.Connection) -> list[UploadRecord]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM upload_files"
                " WHERE (uploaded IS NOT NULL AND uploaded < ?)"
                " OR (uploaded IS NULL AND granted < ?)"
                " ORDER BY granted, slot_id LIMIT ?",
                (uploaded_before, granted_before, limit)).fetchall()
            return [_record(row) for row in rows]

        return await self.db.read(read)

    async def delete(self, slot_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM upload_files WHERE slot_id = ?", (slot_id,))

        await self.db.run(write)

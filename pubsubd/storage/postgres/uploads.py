"""XEP-0363 upload slots and stored files on PostgreSQL (the file contents live on disk)."""

from __future__ import annotations

import psycopg

from pubsubd.storage.interfaces import UploadRecord
from pubsubd.storage.postgres.database import PgDatabase

MIGRATIONS = [
    """
    CREATE TABLE upload_files (
        slot_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        filename TEXT NOT NULL,
        size BIGINT NOT NULL,
        content_type TEXT NOT NULL,
        granted DOUBLE PRECISION NOT NULL,
        uploaded DOUBLE PRECISION
    );
    CREATE INDEX upload_files_owner ON upload_files (owner);
    CREATE INDEX upload_files_granted ON upload_files (granted)
    """,
]

_COLUMNS = "slot_id, owner, filename, size, content_type, granted, uploaded"


def _record(row: tuple[str, str, str, int, str, float, float | None]) -> UploadRecord:
    slot_id, owner, filename, size, content_type, granted, uploaded = row
    return UploadRecord(slot_id, owner, filename, int(size), content_type, granted, uploaded)


class PgUploadStore:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("upload", MIGRATIONS)  # the name the SQLite store uses for the same table

    async def add(self, record: UploadRecord) -> None:
        await self.db.run(lambda conn: conn.execute(
            f"INSERT INTO upload_files ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (record.slot_id, record.owner, record.filename, record.size,
             record.content_type, record.granted, record.uploaded)))

    async def get(self, slot_id: str) -> UploadRecord | None:
        row = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_COLUMNS} FROM upload_files WHERE slot_id = %s", (slot_id,)).fetchone())
        return _record(row) if row else None

    async def mark_uploaded(self, slot_id: str, when: float) -> bool:
        def write(conn: psycopg.Connection) -> bool:
            return conn.execute("UPDATE upload_files SET uploaded = %s"
                                " WHERE slot_id = %s AND uploaded IS NULL",
                                (when, slot_id)).rowcount == 1

        return await self.db.run(write)

    async def bytes_used(self, owner: str, slots_since: float) -> int:
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT COALESCE(SUM(size), 0) FROM upload_files WHERE owner = %s"
            " AND (uploaded IS NOT NULL OR granted >= %s)", (owner, slots_since)).fetchone())
        return int(row[0]) if row else 0

    async def expired(self, uploaded_before: float, granted_before: float,
                      limit: int = 500) -> list[UploadRecord]:
        rows = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_COLUMNS} FROM upload_files"
            " WHERE (uploaded IS NOT NULL AND uploaded < %s)"
            " OR (uploaded IS NULL AND granted < %s)"
            " ORDER BY granted, slot_id LIMIT %s",
            (uploaded_before, granted_before, limit)).fetchall())
        return [_record(row) for row in rows]

    async def delete(self, slot_id: str) -> None:
        await self.db.run(lambda conn: conn.execute(
            "DELETE FROM upload_files WHERE slot_id = %s", (slot_id,)))

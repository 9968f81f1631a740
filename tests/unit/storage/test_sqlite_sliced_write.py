"""Database.write_in_slices: one transaction on the event loop's thread, other tasks running
between slices, all or nothing, and SQLite's automatic checkpoint left on for other writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from pubsubd.storage.sqlite import Database

Slice = Callable[[sqlite3.Connection], None]


def insert(n: int, written: list[int] | None = None) -> Slice:
    def work(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (?)", (n,))
        if written is not None:
            written.append(n)
    return work


async def test_slices_commit_together_while_other_tasks_run(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    db.run_sync(lambda conn: conn.execute("CREATE TABLE t (n INTEGER)"))
    written: list[int] = []
    seen_by_other: list[int] = []

    async def other() -> None:
        seen_by_other.append(len(written))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await db.write_in_slices([insert(n, written) for n in range(3)])
    assert seen_by_other and seen_by_other[0] < 3  # it ran between two slices
    rows = await db.read(lambda conn: conn.execute("SELECT n FROM t ORDER BY n").fetchall())
    assert rows == [(0,), (1,), (2,)]
    (pages,) = await db.read(lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone())
    assert pages == 1000  # other writes still checkpoint as SQLite does by default
    db.close()


async def test_a_failing_slice_writes_nothing(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    db.run_sync(lambda conn: conn.execute("CREATE TABLE t (n INTEGER)"))

    def fail(conn: sqlite3.Connection) -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await db.write_in_slices([insert(1), fail])
    assert await db.read(lambda conn: conn.execute("SELECT COUNT(*) FROM t").fetchone()) == (0,)
    db.close()

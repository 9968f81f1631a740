"""One SQLite database shared by every store, used from a single worker thread.

SQLite connections are not safe to share between threads, and every call blocks on disk, so all
work goes through :meth:`Database.run`, which executes a plain function with the connection in a
dedicated worker thread, inside one transaction. WAL mode with ``synchronous=NORMAL`` makes every
committed transaction survive a crash of the process (``kill -9``); stores commit before they
acknowledge anything to a client.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import trio
import trio.lowlevel

log = logging.getLogger(__name__)
T = TypeVar("T")


def _private_file(path: Path) -> None:
    """Create the database file readable by the server's account only (it holds SCRAM keys).

    SQLite gives its -wal and -shm files the mode of the database file, so they follow; an
    older, more open file (and its companions) is tightened.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for companion in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)
        except FileNotFoundError:
            pass


_PAGE_SIZE = 16384
_CACHE_KIB = 32768
# SQLite's default: the WAL is copied into the database file once it holds this many pages.
_AUTOCHECKPOINT_PAGES = 1000
# Slices of sliced writes after which the database thread checkpoints: a slice is a few hundred
# small rows, so this many make about the WAL size of SQLite's automatic checkpoint.
_CHECKPOINT_SLICES = 32


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer pubsubd than this one."""


class Database:
    """A SQLite file (or ``:memory:``) with a schema-migration registry."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._thread_lock = threading.Lock()
        self._slices_since_checkpoint = 0

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            _private_file(Path(self.path))
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # For a new file only (an existing one keeps its size): larger pages than SQLite's
        # 4 KiB, fewer of them to write per archived message (~10 % of the archive's CPU).
        conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # Pages kept in memory (SQLite's default is 2 MiB): the archive's and postings' hot
        # pages stay cached through a burst's commit and the checkpoint after it.
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (name TEXT PRIMARY KEY, version INTEGER)"
        )
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def run_sync(self, fn: Callable[[sqlite3.Connection], T], *, readonly: bool = False) -> T:
        """Run ``fn`` in one transaction, in the calling thread (start-up, CLI, tests).

        A write transaction starts ``IMMEDIATE`` (it takes the write lock up front, so it
        never fails half-way on a busy lock) and is durable once this returns. A
        ``readonly`` one starts deferred: it only reads a consistent snapshot and takes no
        write lock, which is cheaper for the lookups on the hot paths (logins, routing).
        """
        with self._thread_lock:
            conn = self.conn
            if conn.in_transaction:  # a write_in_slices of the event loop is under way
                raise RuntimeError("run_sync during a sliced write: use run()")
            conn.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, readonly: bool = False) -> T:
        """Run ``fn`` in one transaction on the database thread, off the event loop."""
        if readonly:
            return await trio.to_thread.run_sync(self._read_sync, fn, limiter=self._limiter)
        return await trio.to_thread.run_sync(self.run_sync, fn, limiter=self._limiter)

    async def write_in_slices(self, slices: Sequence[Callable[[sqlite3.Connection], None]]
                              ) -> None:
        """Run ``slices`` in one write transaction on the event loop's own thread, letting other
        tasks run between two slices; other database work waits until the commit.

        For a large write of many small rows (a burst of archived messages): on the database
        thread, each statement's release of the interpreter lock, with the event loop busy,
        became a thread switch, which cost more CPU than the rows themselves. A slice should
        take no more than a millisecond or two, so the loop is never held for long. Not
        cancellable once started: what was promised is written.
        """
        with trio.CancelScope(shield=True):
            async with self._limiter:
                conn = self.conn
                with self._thread_lock:
                    # The commit must not checkpoint the WAL here (copying pages into the
                    # database file and syncing it would hold the loop): the database thread
                    # does that after the commit.
                    conn.execute("PRAGMA wal_autocheckpoint = 0")
                    conn.execute("BEGIN IMMEDIATE")
                try:
                    for work in slices:
                        with self._thread_lock:
                            work(conn)
                        await trio.lowlevel.checkpoint()
                    with self._thread_lock:
                        conn.execute("COMMIT")
                except BaseException:
                    with self._thread_lock:
                        conn.execute("ROLLBACK")
                    raise
                finally:
                    with self._thread_lock:
                        conn.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT_PAGES}")
                self._slices_since_checkpoint += len(slices)
                if self._slices_since_checkpoint >= _CHECKPOINT_SLICES:
                    self._slices_since_checkpoint = 0
                    await trio.to_thread.run_sync(self._checkpoint)

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file without waiting for readers (what SQLite's
        automatic checkpoint does at a commit, done here instead)."""
        with self._thread_lock:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``run(fn, readonly=True)``: ``fn`` only reads."""
        return await trio.to_thread.run_sync(self._read_sync, fn, limiter=self._limiter)

    def _read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.run_sync(fn, readonly=True)

    async def ping(self) -> None:
        """One trivial query through the database thread (a liveness probe)."""
        await self.read(lambda conn: conn.execute("SELECT 1").fetchone())

    def migrate(self, name: str, steps: Sequence[str]) -> None:
        """Apply the not-yet-applied schema ``steps`` of store ``name`` (each a SQL script)."""

        def apply(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT version FROM schema_versions WHERE name = ?", (name,)
            ).fetchone()
            current = row[0] if row else 0
            if current > len(steps):  # written by a newer pubsubd: we would misread it
                raise SchemaTooNew(
                    f"storage: the {name!r} tables are at schema version {current}, but this"
                    f" pubsubd knows versions up to {len(steps)}; run the newer pubsubd"
                    " (or restore a backup)")
            for version, script in enumerate(steps, start=1):
                if version <= current:
                    continue
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT OR REPLACE INTO schema_versions (name, version) VALUES (?, ?)",
                    (name, version),
                )

        self.run_sync(apply)

    def close(self) -> None:
        with self._thread_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

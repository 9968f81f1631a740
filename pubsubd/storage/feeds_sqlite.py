"""The feed store (``feeds.store.FeedStore``) on the shared SQLite database.

Feed state is kept as JSON beside the two columns the scheduler queries (``next_fetch`` and
``active``), so adding a field to ``FeedState`` needs no migration. The seen set is its own
table keyed by (feed, item id), written in batches inside one transaction per poll.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Sequence

from feeds.model import FeedState
from feeds.store import SeenItem, state_from_json, state_to_json
from pubsubd.storage.sqlite import Database

MIGRATIONS = [
    """
    CREATE TABLE feeds (
        feed_id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        active INTEGER NOT NULL,
        next_fetch REAL,
        state TEXT NOT NULL
    );
    CREATE INDEX feeds_due ON feeds (active, next_fetch);
    CREATE TABLE feed_seen (
        feed_id TEXT NOT NULL REFERENCES feeds (feed_id) ON DELETE CASCADE,
        item_id TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (feed_id, item_id)
    ) WITHOUT ROWID;
    CREATE INDEX feed_seen_age ON feed_seen (feed_id, last_seen);
    """,
    # Step 2: the columns and tables of feed leases (several instances sharing one PostgreSQL
    # database, see feeds.leases), kept here too so both backends have the same schema; one
    # process on SQLite leases in memory (feeds.leases.LocalFeedLeases) and leaves them empty.
    """
    ALTER TABLE feeds ADD COLUMN lease_owner TEXT;
    ALTER TABLE feeds ADD COLUMN lease_token TEXT;
    ALTER TABLE feeds ADD COLUMN lease_until REAL;
    ALTER TABLE feed_seen ADD COLUMN claim TEXT;
    CREATE TABLE feed_hosts (
        host TEXT PRIMARY KEY,
        next_slot REAL NOT NULL
    );
    CREATE TABLE feed_fetches (
        token TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        until REAL NOT NULL
    );
    CREATE INDEX feed_fetches_host ON feed_fetches (host);
    """,
]
_CHUNK = 500  # stay well under SQLite's limit on bound parameters


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _put(conn: sqlite3.Connection, state: FeedState) -> None:
    conn.execute(
        "INSERT INTO feeds (feed_id, url, active, next_fetch, state) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (feed_id) DO UPDATE SET url = excluded.url, active = excluded.active, "
        "next_fetch = excluded.next_fetch, state = excluded.state",
        (state.feed_id, state.url, int(state.active), state.next_fetch, state_to_json(state)),
    )


def _mark(conn: sqlite3.Connection, feed_id: str, items: Sequence[SeenItem], at: float) -> None:
    conn.executemany(
        "INSERT INTO feed_seen (feed_id, item_id, content_hash, last_seen) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (feed_id, item_id) DO UPDATE SET content_hash = excluded.content_hash, "
        "last_seen = excluded.last_seen",
        [(feed_id, item_id, content_hash, at) for item_id, content_hash in items],
    )


def _hashes(conn: sqlite3.Connection, feed_id: str, item_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in _chunks(list(dict.fromkeys(item_ids))):
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT item_id, content_hash FROM feed_seen "
            f"WHERE feed_id = ? AND item_id IN ({marks})",
            (feed_id, *chunk),
        )
        found.update(rows.fetchall())
    return found


class SqliteFeedStore:
    """``FeedStore`` on :class:`Database`; every method is one transaction off the event loop."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("feeds", MIGRATIONS)

    async def get_feed(self, feed_id: str) -> FeedState | None:
        def get(conn: sqlite3.Connection) -> FeedState | None:
            row = conn.execute("SELECT state FROM feeds WHERE feed_id = ?", (feed_id,)).fetchone()
            return state_from_json(row[0]) if row else None

        return await self.db.run(get)

    async def put_feed(self, state: FeedState) -> None:
        await self.db.run(lambda conn: _put(conn, state))

    async def delete_feed(self, feed_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM feed_seen WHERE feed_id = ?", (feed_id,))
            conn.execute("DELETE FROM feeds WHERE feed_id = ?", (feed_id,))

        await self.db.run(delete)

    async def list_feeds(self) -> list[FeedState]:
        def all_feeds(conn: sqlite3.Connection) -> list[FeedState]:
            rows = conn.execute("SELECT state FROM feeds ORDER BY feed_id").fetchall()
            return [state_from_json(r[0]) for r in rows]

        return await self.db.run(all_feeds)

    async def due_feeds(self, now: float, limit: int = 100) -> list[FeedState]:
        def due(conn: sqlite3.Connection) -> list[FeedState]:
            rows = conn.execute(
                "SELECT state FROM feeds WHERE active = 1 AND "
                "(next_fetch IS NULL OR next_fetch <= ?) "
                "ORDER BY next_fetch IS NOT NULL, next_fetch, feed_id LIMIT ?",
                (now, limit),
            ).fetchall()
            return [state_from_json(r[0]) for r in rows]

        return await self.db.run(due)

    async def next_due_time(self) -> float | None:
        def earliest(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT COUNT(*), SUM(next_fetch IS NULL), MIN(next_fetch) "
                "FROM feeds WHERE active = 1"
            ).fetchone()
            count, unscheduled, soonest = row
            if not count:
                return None
            return -math.inf if unscheduled else float(soonest)

        return await self.db.run(earliest)

    async def mark_seen(self, feed_id: str, items: Sequence[SeenItem], *, at: float) -> None:
        await self.db.run(lambda conn: _mark(conn, feed_id, items, at))

    async def filter_unseen(self, feed_id: str, item_ids: Sequence[str]) -> list[str]:
        seen = await self.seen_hashes(feed_id, item_ids)
        return [i for i in item_ids if i not in seen]

    async def seen_hashes(self, feed_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        return await self.db.run(lambda conn: _hashes(conn, feed_id, item_ids))

    async def commit_poll(self, state: FeedState, items: Sequence[SeenItem], *, at: float) -> None:
        def commit(conn: sqlite3.Connection) -> None:
            _put(conn, state)
            _mark(conn, state.feed_id, items, at)

        await self.db.run(commit)

    async def prune_seen(self, feed_id: str, keep: int) -> int:
        def prune(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "DELETE FROM feed_seen WHERE feed_id = ? AND item_id NOT IN ("
                "SELECT item_id FROM feed_seen WHERE feed_id = ? "
                "ORDER BY last_seen DESC LIMIT ?)",
                (feed_id, feed_id, keep),
            )
            return cursor.rowcount

        return await self.db.run(prune)

"""The feed store (``feeds.store.FeedStore``) on PostgreSQL: feed state as JSON beside the
columns the scheduler queries, and the seen set keyed by (feed, item id)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import psycopg

from feeds.model import FeedState
from feeds.store import SeenItem, state_from_json, state_to_json
from pubsubd.storage.postgres.database import PgDatabase

MIGRATIONS = [
    """
    CREATE TABLE feeds (
        feed_id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        active INTEGER NOT NULL,
        next_fetch DOUBLE PRECISION,
        state TEXT NOT NULL
    );
    CREATE INDEX feeds_due ON feeds (active, next_fetch);
    CREATE TABLE feed_seen (
        feed_id TEXT NOT NULL REFERENCES feeds (feed_id) ON DELETE CASCADE,
        item_id TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (feed_id, item_id)
    );
    CREATE INDEX feed_seen_age ON feed_seen (feed_id, last_seen)
    """,
    # Step 2: feed work shared by several instances (pubsubd.storage.postgres.feed_leases).
    """
    ALTER TABLE feeds ADD COLUMN lease_owner TEXT;
    ALTER TABLE feeds ADD COLUMN lease_token TEXT;
    ALTER TABLE feeds ADD COLUMN lease_until DOUBLE PRECISION;
    ALTER TABLE feed_seen ADD COLUMN claim TEXT;
    CREATE TABLE feed_hosts (
        host TEXT PRIMARY KEY,
        next_slot DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE feed_fetches (
        token TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        until DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX feed_fetches_host ON feed_fetches (host);
    -- Leasing walks the active feeds soonest first, never-fetched ones before all others.
    CREATE INDEX feeds_lease ON feeds (next_fetch NULLS FIRST) WHERE active = 1
    """,
]


def _put(conn: psycopg.Connection, state: FeedState) -> None:
    conn.execute(
        "INSERT INTO feeds (feed_id, url, active, next_fetch, state) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (feed_id) DO UPDATE SET url = excluded.url, active = excluded.active,"
        " next_fetch = excluded.next_fetch, state = excluded.state",
        (state.feed_id, state.url, int(state.active), state.next_fetch, state_to_json(state)))


def _mark(conn: psycopg.Connection, feed_id: str, items: Sequence[SeenItem], at: float) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO feed_seen (feed_id, item_id, content_hash, last_seen)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (feed_id, item_id) DO UPDATE SET"
            " content_hash = excluded.content_hash, last_seen = excluded.last_seen",
            [(feed_id, item_id, content_hash, at) for item_id, content_hash in items])


class PgFeedStore:
    """``FeedStore`` on :class:`PgDatabase`; every method is one transaction off the loop."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("feeds", MIGRATIONS)

    async def get_feed(self, feed_id: str) -> FeedState | None:
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT state FROM feeds WHERE feed_id = %s", (feed_id,)).fetchone())
        return state_from_json(row[0]) if row else None

    async def put_feed(self, state: FeedState) -> None:
        await self.db.run(lambda conn: _put(conn, state))

    async def delete_feed(self, feed_id: str) -> None:
        await self.db.run(lambda conn: conn.execute(
            "DELETE FROM feeds WHERE feed_id = %s", (feed_id,)))  # the seen set cascades

    async def list_feeds(self) -> list[FeedState]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT state FROM feeds ORDER BY feed_id").fetchall())
        return [state_from_json(r[0]) for r in rows]

    async def due_feeds(self, now: float, limit: int = 100) -> list[FeedState]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT state FROM feeds WHERE active = 1 AND (next_fetch IS NULL"
            " OR next_fetch <= %s) ORDER BY next_fetch NULLS FIRST, feed_id LIMIT %s",
            (now, limit)).fetchall())
        return [state_from_json(r[0]) for r in rows]

    async def next_due_time(self) -> float | None:
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE next_fetch IS NULL), MIN(next_fetch)"
            " FROM feeds WHERE active = 1").fetchone())
        if row is None or not row[0]:
            return None
        return -math.inf if row[1] else float(row[2])

    async def mark_seen(self, feed_id: str, items: Sequence[SeenItem], *, at: float) -> None:
        await self.db.run(lambda conn: _mark(conn, feed_id, items, at))

    async def filter_unseen(self, feed_id: str, item_ids: Sequence[str]) -> list[str]:
        seen = await self.seen_hashes(feed_id, item_ids)
        return [i for i in item_ids if i not in seen]

    async def seen_hashes(self, feed_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT item_id, content_hash FROM feed_seen WHERE feed_id = %s"
            " AND item_id = ANY(%s)", (feed_id, list(dict.fromkeys(item_ids)))).fetchall())
        return {str(i): str(h) for i, h in rows}

    async def commit_poll(self, state: FeedState, items: Sequence[SeenItem], *, at: float) -> None:
        def commit(conn: psycopg.Connection) -> None:
            _put(conn, state)
            _mark(conn, state.feed_id, items, at)

        await self.db.run(commit)

    async def prune_seen(self, feed_id: str, keep: int) -> int:
        def prune(conn: psycopg.Connection) -> int:
            return conn.execute(
                "DELETE FROM feed_seen WHERE feed_id = %s AND item_id NOT IN ("
                "SELECT item_id FROM feed_seen WHERE feed_id = %s"
                " ORDER BY last_seen DESC LIMIT %s)", (feed_id, feed_id, keep)).rowcount

        return await self.db.run(prune)

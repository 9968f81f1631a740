"""WebSub state in SQLite: our hub's subscribers, and our leases at other hubs."""

from __future__ import annotations

import sqlite3

from feeds.push import LeaseState
from pubsubd.storage.interfaces import HubSubscription, PushLease
from pubsubd.storage.sqlite import Database

_SCHEMA = [
    """
    CREATE TABLE websub_hub_subscriptions (
        topic TEXT NOT NULL,
        callback TEXT NOT NULL,
        secret TEXT,
        expires REAL NOT NULL,
        PRIMARY KEY (topic, callback)
    )
    """,
    "CREATE INDEX websub_hub_expires ON websub_hub_subscriptions (expires)",
    """
    CREATE TABLE websub_leases (
        feed_id TEXT PRIMARY KEY,
        hub TEXT NOT NULL,
        topic TEXT NOT NULL,
        token TEXT NOT NULL UNIQUE,
        secret TEXT NOT NULL,
        state TEXT NOT NULL,
        requested REAL NOT NULL,
        expires REAL,
        last_push REAL
    )
    """,
]

_LEASE_COLUMNS = "feed_id, hub, topic, token, secret, state, requested, expires, last_push"


class SqliteWebSubStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("websub", _SCHEMA)

    async def put_subscription(self, sub: HubSubscription) -> None:
        await self.db.run(lambda c: c.execute(
            "INSERT OR REPLACE INTO websub_hub_subscriptions (topic, callback, secret, expires)"
            " VALUES (?, ?, ?, ?)", (sub.topic, sub.callback, sub.secret, sub.expires)))

    async def delete_subscription(self, topic: str, callback: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "DELETE FROM websub_hub_subscriptions WHERE topic = ? AND callback = ?",
                (topic, callback)).rowcount > 0

        return await self.db.run(delete)

    async def subscriptions_for(self, topic: str, now: float) -> list[HubSubscription]:
        rows = await self.db.read(lambda c: c.execute(
            "SELECT topic, callback, secret, expires FROM websub_hub_subscriptions"
            " WHERE topic = ? AND expires > ? ORDER BY callback", (topic, now)).fetchall())
        return [HubSubscription(*row) for row in rows]

    async def expire_subscriptions(self, now: float) -> int:
        def expire(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM websub_hub_subscriptions WHERE expires <= ?", (now,)).rowcount

        return await self.db.run(expire)

    async def count_subscriptions(self) -> int:
        row = await self.db.read(
            lambda c: c.execute("SELECT COUNT(*) FROM websub_hub_subscriptions").fetchone())
        return int(row[0])

    async def all_leases(self) -> list[PushLease]:
        rows = await self.db.read(
            lambda c: c.execute(f"SELECT {_LEASE_COLUMNS} FROM websub_leases").fetchall())
        return [
            PushLease(feed_id, hub, topic, token, secret, LeaseState(state), requested,
                      expires, last_push)
            for feed_id, hub, topic, token, secret, state, requested, expires, last_push in rows
        ]

    async def put_lease(self, lease: PushLease) -> None:
        await self.db.run(lambda c: c.execute(
            f"INSERT OR REPLACE INTO websub_leases ({_LEASE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (lease.feed_id, lease.hub, lease.topic, lease.token, lease.secret,
             str(lease.state), lease.requested, lease.expires, lease.last_push)))

    async def delete_lease(self, feed_id: str) -> None:
        await self.db.run(
            lambda c: c.execute("DELETE FROM websub_leases WHERE feed_id = ?", (feed_id,)))

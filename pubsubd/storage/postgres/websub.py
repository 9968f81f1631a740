"""WebSub state on PostgreSQL: our hub's subscribers, and our leases at other hubs."""

from __future__ import annotations

import psycopg

from feeds.push import LeaseState
from pubsubd.storage.interfaces import HubSubscription, PushLease
from pubsubd.storage.postgres.database import PgDatabase

MIGRATIONS = [
    """
    CREATE TABLE websub_hub_subscriptions (
        topic TEXT NOT NULL,
        callback TEXT NOT NULL,
        secret TEXT,
        expires DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (topic, callback)
    );
    CREATE INDEX websub_hub_expires ON websub_hub_subscriptions (expires);
    CREATE TABLE websub_leases (
        feed_id TEXT PRIMARY KEY,
        hub TEXT NOT NULL,
        topic TEXT NOT NULL,
        token TEXT NOT NULL UNIQUE,
        secret TEXT NOT NULL,
        state TEXT NOT NULL,
        requested DOUBLE PRECISION NOT NULL,
        expires DOUBLE PRECISION,
        last_push DOUBLE PRECISION
    )
    """,
]

_LEASE_COLUMNS = "feed_id, hub, topic, token, secret, state, requested, expires, last_push"


class PgWebSubStore:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("websub", MIGRATIONS)

    async def put_subscription(self, sub: HubSubscription) -> None:
        await self.db.run(lambda conn: conn.execute(
            "INSERT INTO websub_hub_subscriptions (topic, callback, secret, expires)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (topic, callback) DO UPDATE SET"
            " secret = excluded.secret, expires = excluded.expires",
            (sub.topic, sub.callback, sub.secret, sub.expires)))

    async def delete_subscription(self, topic: str, callback: str) -> bool:
        def delete(conn: psycopg.Connection) -> bool:
            return conn.execute(
                "DELETE FROM websub_hub_subscriptions WHERE topic = %s AND callback = %s",
                (topic, callback)).rowcount > 0

        return await self.db.run(delete)

    async def subscriptions_for(self, topic: str, now: float) -> list[HubSubscription]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT topic, callback, secret, expires FROM websub_hub_subscriptions"
            " WHERE topic = %s AND expires > %s ORDER BY callback", (topic, now)).fetchall())
        return [HubSubscription(*row) for row in rows]

    async def expire_subscriptions(self, now: float) -> int:
        def expire(conn: psycopg.Connection) -> int:
            return conn.execute(
                "DELETE FROM websub_hub_subscriptions WHERE expires <= %s", (now,)).rowcount

        return await self.db.run(expire)

    async def count_subscriptions(self) -> int:
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT COUNT(*) FROM websub_hub_subscriptions").fetchone())
        return int(row[0]) if row else 0

    async def all_leases(self) -> list[PushLease]:
        rows = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_LEASE_COLUMNS} FROM websub_leases ORDER BY feed_id").fetchall())
        return [
            PushLease(feed_id, hub, topic, token, secret, LeaseState(state), requested,
                      expires, last_push)
            for feed_id, hub, topic, token, secret, state, requested, expires, last_push in rows
        ]

    async def put_lease(self, lease: PushLease) -> None:
        # The token is unique: a lease replacing another feed's token replaces that row too,
        # as SQLite's INSERT OR REPLACE does.
        def write(conn: psycopg.Connection) -> None:
            conn.execute("DELETE FROM websub_leases WHERE token = %s AND feed_id <> %s",
                         (lease.token, lease.feed_id))
            conn.execute(
                f"INSERT INTO websub_leases ({_LEASE_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (feed_id) DO UPDATE"
                " SET hub = excluded.hub, topic = excluded.topic, token = excluded.token,"
                " secret = excluded.secret, state = excluded.state,"
                " requested = excluded.requested, expires = excluded.expires,"
                " last_push = excluded.last_push",
                (lease.feed_id, lease.hub, lease.topic, lease.token, lease.secret,
                 str(lease.state), lease.requested, lease.expires, lease.last_push))

        await self.db.run(write)

    async def delete_lease(self, feed_id: str) -> None:
        await self.db.run(lambda conn: conn.execute(
            "DELETE FROM websub_leases WHERE feed_id = %s", (feed_id,)))

"""``feeds.leases.FeedLeases`` on PostgreSQL: several instances share the feed table.

Leasing is one statement: due rows are locked with ``FOR UPDATE SKIP LOCKED`` (instances
leasing at the same moment skip each other's rows instead of waiting) and stamped with the
holder, a fresh token and an expiry. The outer ``UPDATE`` re-checks the expiry on the row's
latest version, so a row leased by a transaction that committed after ours took its snapshot
is never leased twice. Writes of a poll are fenced by the token (``WHERE lease_token = …``).

Per-host politeness across instances: ``feed_hosts`` holds each host's next free start time,
``feed_fetches`` the fetches in flight (one row per lease, expiring with it, so a dead
instance's fetches stop counting). Both are changed under the host row's lock.

The schema is step 2 of the feed store's migrations (:mod:`.feeds`). Times are the callers'
POSIX clocks: instances need synchronised clocks (NTP), as a skew of s seconds shortens or
lengthens the leases they see by s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import psycopg

from feeds.leases import Claim, Lease, new_token
from feeds.model import FeedState
from feeds.store import SeenItem, state_from_json, state_to_json
from pubsubd.storage.postgres.database import PgDatabase

_LEASE = (
    "WITH due AS ("
    " SELECT feed_id, lease_owner FROM feeds WHERE {where}"
    " AND (lease_until IS NULL OR lease_until < %(now)s)"
    " ORDER BY next_fetch NULLS FIRST LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    " UPDATE feeds f SET lease_owner = %(owner)s, lease_token = md5(f.feed_id || %(token)s),"
    " lease_until = %(until)s FROM due WHERE f.feed_id = due.feed_id"
    " AND (f.lease_until IS NULL OR f.lease_until < %(now)s)"
    " RETURNING f.state, f.lease_token, due.lease_owner"
)
_DUE = "active = 1 AND (next_fetch IS NULL OR next_fetch <= %(now)s)"
_PEEK = 64  # feeds next_due_time looks at


class PgFeedLeases:
    """:class:`~feeds.leases.FeedLeases` on :class:`PgDatabase` (the feed store's tables)."""

    def __init__(self, db: PgDatabase, instance_id: str) -> None:
        self.db = db
        self.instance_id = instance_id

    def _lease(self, conn: psycopg.Connection, where: str, params: dict[str, object],
               until: float) -> list[tuple[FeedState, Lease]]:
        # One random token per statement, made unique per feed by hashing in the feed id.
        rows = conn.execute(_LEASE.format(where=where), {
            **params, "owner": self.instance_id, "token": new_token(), "until": until,
        }).fetchall()
        leased = []
        for text, token, previous in rows:
            state = state_from_json(text)
            leased.append((state, Lease(state.feed_id, str(token), until,
                                        taken_over=previous is not None)))
        leased.sort(key=lambda pair: (-math.inf if pair[0].next_fetch is None
                                      else pair[0].next_fetch, pair[0].feed_id))
        return leased

    async def lease_due(self, now: float, limit: int, lease_seconds: float
                        ) -> list[tuple[FeedState, Lease]]:
        if limit <= 0:
            return []
        return await self.db.run(lambda conn: self._lease(
            conn, _DUE, {"now": now, "limit": limit}, now + lease_seconds))

    async def lease_feed(self, feed_id: str, now: float, lease_seconds: float
                         ) -> tuple[FeedState, Lease] | None:
        leased = await self.db.run(lambda conn: self._lease(
            conn, "feed_id = %(feed)s", {"now": now, "limit": 1, "feed": feed_id},
            now + lease_seconds))
        return leased[0] if leased else None

    async def renew(self, leases: Sequence[Lease], now: float, lease_seconds: float
                    ) -> list[Lease]:
        if not leases:
            return []
        until = now + lease_seconds
        tokens = [lease.token for lease in leases]

        def renew(conn: psycopg.Connection) -> set[str]:
            rows = conn.execute(
                "UPDATE feeds SET lease_until = %s WHERE lease_token = ANY(%s)"
                " RETURNING lease_token", (until, tokens)).fetchall()
            conn.execute("UPDATE feed_fetches SET until = %s WHERE token = ANY(%s)",
                         (until, tokens))
            return {str(r[0]) for r in rows}

        kept = await self.db.run(renew)
        return [Lease(lease.feed_id, lease.token, until, lease.taken_over)
                for lease in leases if lease.token in kept]

    async def release(self, lease: Lease) -> None:
        def release(conn: psycopg.Connection) -> None:
            conn.execute("UPDATE feeds SET lease_owner = NULL, lease_token = NULL,"
                         " lease_until = NULL WHERE feed_id = %s AND lease_token = %s",
                         (lease.feed_id, lease.token))
            conn.execute("DELETE FROM feed_fetches WHERE token = %s", (lease.token,))

        await self.db.run(release)

    async def claim(self, lease: Lease, items: Sequence[SeenItem], now: float
                    ) -> Claim | None:
        ids = list(dict.fromkeys(item_id for item_id, _ in items))

        def claim(conn: psycopg.Connection) -> Claim | None:
            # The feed row's lock keeps a takeover from slipping in between check and insert.
            held = conn.execute(
                "SELECT 1 FROM feeds WHERE feed_id = %s AND lease_token = %s FOR UPDATE",
                (lease.feed_id, lease.token)).fetchone()
            if held is None:
                return None
            unique = dict(items)
            fresh = {str(r[0]) for r in conn.execute(
                "INSERT INTO feed_seen (feed_id, item_id, content_hash, last_seen, claim)"
                " SELECT %s, i, h, %s, %s FROM unnest(%s::text[], %s::text[]) AS u (i, h)"
                " ON CONFLICT (feed_id, item_id) DO NOTHING RETURNING item_id",
                (lease.feed_id, now, lease.token, list(unique), list(unique.values()))
            ).fetchall()}
            orphaned = {str(r[0]) for r in conn.execute(
                "UPDATE feed_seen SET claim = %s WHERE feed_id = %s AND item_id = ANY(%s)"
                " AND claim IS NOT NULL AND claim <> %s RETURNING item_id",
                (lease.token, lease.feed_id, ids, lease.token)).fetchall()}
            return Claim(fresh=tuple(i for i in ids if i in fresh),
                         orphaned=tuple(i for i in ids if i in orphaned))

        return await self.db.run(claim)

    async def commit(self, lease: Lease, state: FeedState, items: Sequence[SeenItem],
                     at: float) -> bool:
        def commit(conn: psycopg.Connection) -> bool:
            row = conn.execute(
                "UPDATE feeds SET url = %s, active = %s, next_fetch = %s, state = %s,"
                " lease_owner = NULL, lease_token = NULL, lease_until = NULL"
                " WHERE feed_id = %s AND lease_token = %s RETURNING 1",
                (state.url, int(state.active), state.next_fetch, state_to_json(state),
                 state.feed_id, lease.token)).fetchone()
            if row is None:
                return False  # taken over (or deleted): the new holder's state stands
            unique = dict(items)
            conn.execute(
                "INSERT INTO feed_seen (feed_id, item_id, content_hash, last_seen)"
                " SELECT %s, i, h, %s FROM unnest(%s::text[], %s::text[]) AS u (i, h)"
                " ON CONFLICT (feed_id, item_id) DO UPDATE SET"
                " content_hash = excluded.content_hash, last_seen = excluded.last_seen,"
                " claim = NULL",
                (state.feed_id, at, list(unique), list(unique.values())))
            conn.execute("DELETE FROM feed_fetches WHERE token = %s", (lease.token,))
            return True

        return await self.db.run(commit)

    async def reserve_host(self, lease: Lease, host: str, now: float, spacing: float,
                           max_per_host: int) -> float | None:
        def reserve(conn: psycopg.Connection) -> float | None:
            conn.execute("INSERT INTO feed_hosts (host, next_slot) VALUES (%s, 0)"
                         " ON CONFLICT (host) DO NOTHING", (host,))
            row = conn.execute("SELECT next_slot FROM feed_hosts WHERE host = %s FOR UPDATE",
                               (host,)).fetchone()
            assert row is not None
            conn.execute("DELETE FROM feed_fetches WHERE host = %s AND until < %s", (host, now))
            counted = conn.execute(
                "SELECT COUNT(*) FROM feed_fetches WHERE host = %s AND token <> %s",
                (host, lease.token)).fetchone()
            if max_per_host > 0 and counted is not None and counted[0] >= max_per_host:
                return None
            slot = max(now, float(row[0]))
            conn.execute("UPDATE feed_hosts SET next_slot = %s WHERE host = %s",
                         (slot + spacing, host))
            conn.execute("INSERT INTO feed_fetches (token, host, until) VALUES (%s, %s, %s)"
                         " ON CONFLICT (token) DO UPDATE SET until = excluded.until",
                         (lease.token, host, lease.until))
            return slot

        return await self.db.run(reserve)

    async def next_due_time(self, now: float) -> float | None:
        # The soonest feeds by the lease index, not a scan: a feed past the first _PEEK is
        # due no sooner than the last of them, so that bounds the answer (waking early is
        # harmless, waking late is not).
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT next_fetch, lease_until FROM feeds WHERE active = 1"
            " ORDER BY next_fetch NULLS FIRST LIMIT %s", (_PEEK,)).fetchall())
        if not rows:
            return None
        times = [max(-math.inf if due is None else float(due),
                     -math.inf if until is None else float(until)) for due, until in rows]
        if len(rows) == _PEEK and rows[-1][0] is not None:
            times.append(float(rows[-1][0]))
        return min(times)


__all__ = ["PgFeedLeases"]

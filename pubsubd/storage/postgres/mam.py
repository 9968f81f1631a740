"""XEP-0313 message archives and archiving preferences on PostgreSQL.

Order within an archive is ``seq``, a ``BIGSERIAL``: it grows with every stored message and is
never reused (XEP-0313 §3.1). Preferences are read for every archived message, so they are
loaded when the store opens and kept in memory; changes are committed before memory changes,
and notify the other instances sharing the database (kind ``mam_prefs``, key the owner's bare
JID, see :mod:`.invalidation`), which read that owner's preferences again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import psycopg

from pubsubd.jid import JID
from pubsubd.storage.interfaces import MAM_TRIM_SLACK, ArchivedMessage, Page, Prefs, Query, Row
from pubsubd.storage.postgres.database import PgDatabase

MIGRATIONS = [
    """
    CREATE TABLE mam_messages (
        seq BIGSERIAL PRIMARY KEY,
        owner TEXT NOT NULL,
        uid TEXT NOT NULL,
        stamp BIGINT NOT NULL,
        with_bare TEXT NOT NULL,
        with_full TEXT NOT NULL,
        stanza BYTEA NOT NULL
    );
    CREATE UNIQUE INDEX mam_by_uid ON mam_messages (owner, uid);
    CREATE INDEX mam_by_owner ON mam_messages (owner, seq);
    CREATE INDEX mam_by_with ON mam_messages (owner, with_bare, seq);
    CREATE TABLE mam_prefs (
        owner TEXT PRIMARY KEY,
        default_policy TEXT NOT NULL,
        always TEXT NOT NULL,
        never TEXT NOT NULL
    )
    """,
]


class PgMamStore:
    """:class:`~pubsubd.storage.interfaces.MamStore` on PostgreSQL; see the module docstring."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("mam", MIGRATIONS)
        # Archive sizes as far as this process knows them, so the retention trim runs when an
        # archive outgrows its limit by MAM_TRIM_SLACK, not on every batch. Worker threads
        # share it, hence the lock; an estimate off by a concurrent batch only moves a trim.
        self._sizes: dict[str, int] = {}
        self._sizes_lock = threading.Lock()
        self._prefs = db.run_sync(_read_prefs)
        db.invalidation.subscribe("mam_prefs", self._changed_elsewhere)

    async def _changed_elsewhere(self, key: str | None) -> None:
        if key is None:
            self._prefs = await self.db.read(_read_prefs)
            return
        owner = JID.parse(key)
        prefs = (await self.db.read(lambda conn: _read_prefs(conn, owner))).get(owner)
        if prefs is None:
            self._prefs.pop(owner, None)
        else:
            self._prefs[owner] = prefs

    def prefs(self, owner: JID) -> Prefs | None:
        return self._prefs.get(owner.bare)

    async def set_prefs(self, owner: JID, prefs: Prefs) -> None:
        owner = owner.bare

        def write(conn: psycopg.Connection) -> None:
            conn.execute(
                "INSERT INTO mam_prefs (owner, default_policy, always, never)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (owner) DO UPDATE SET"
                " default_policy = excluded.default_policy, always = excluded.always,"
                " never = excluded.never",
                (str(owner), prefs.default, json.dumps(sorted(prefs.always)),
                 json.dumps(sorted(prefs.never))))
            self.db.notify(conn, "mam_prefs", str(owner))

        await self.db.run(write)
        self._prefs[owner] = prefs

    async def append(self, messages: Sequence[ArchivedMessage], keep: int) -> None:
        """Store ``messages`` in one transaction, then trim each touched archive's oldest
        messages beyond ``keep`` (XEP-0313 §3.2: only the oldest, never a hole)."""

        def write(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO mam_messages (owner, uid, stamp, with_bare, with_full, stanza)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    [(str(m.owner), m.uid, m.stamp, str(m.remote.bare), str(m.remote),
                      m.stanza) for m in messages])
            added: dict[str, int] = {}
            for m in messages:
                added[str(m.owner)] = added.get(str(m.owner), 0) + 1
            for owner, count in added.items():
                with self._sizes_lock:
                    size = self._sizes.get(owner)
                if size is None:
                    row = conn.execute("SELECT COUNT(*) FROM mam_messages WHERE owner = %s",
                                       (owner,)).fetchone()
                    size = int(row[0]) if row else count
                else:
                    size += count
                if size > keep + MAM_TRIM_SLACK or (size > keep and keep < MAM_TRIM_SLACK):
                    conn.execute(
                        "DELETE FROM mam_messages WHERE owner = %s AND seq <= (SELECT seq FROM"
                        " mam_messages WHERE owner = %s ORDER BY seq DESC LIMIT 1 OFFSET %s)",
                        (owner, owner, keep))
                    size = keep
                with self._sizes_lock:
                    self._sizes[owner] = size

        await self.db.run(write)

    async def seqs(self, owner: JID, uids: Sequence[str]) -> dict[str, int]:
        def read(conn: psycopg.Connection) -> dict[str, int]:
            return {str(uid): int(seq) for uid, seq in conn.execute(
                "SELECT uid, seq FROM mam_messages WHERE owner = %s AND uid = ANY(%s)",
                (str(owner.bare), list(uids)))}

        return await self.db.read(read)

    async def page(self, query: Query, limit: int, *, after_seq: int | None = None,
                   before_seq: int | None = None, backward: bool = False) -> Page:
        where, args = _where(query)
        paged, paged_args = where, list(args)
        if after_seq is not None:
            paged += " AND seq > %s"
            paged_args.append(after_seq)
        if before_seq is not None:
            paged += " AND seq < %s"
            paged_args.append(before_seq)
        order = "DESC" if backward else "ASC"

        def read(conn: psycopg.Connection) -> Page:
            rows = [Row(int(seq), uid, int(stamp), bytes(stanza))
                    for seq, uid, stamp, stanza in conn.execute(
                        f"SELECT seq, uid, stamp, stanza FROM mam_messages WHERE {paged}"  # noqa: S608
                        f" ORDER BY seq {order} LIMIT %s",
                        (*paged_args, limit + 1))]
            complete = len(rows) <= limit
            rows = rows[:limit]
            if backward:
                rows.reverse()
            counted = conn.execute(f"SELECT COUNT(*) FROM mam_messages WHERE {where}",  # noqa: S608
                                   args).fetchone()
            first_index = None
            if rows:
                before = conn.execute(
                    f"SELECT COUNT(*) FROM mam_messages WHERE {where} AND seq < %s",  # noqa: S608
                    (*args, rows[0].seq)).fetchone()
                first_index = int(before[0]) if before else 0
            return Page(rows, complete, int(counted[0]) if counted else 0, first_index)

        return await self.db.read(read)

    async def bounds(self, owner: JID) -> tuple[Row, Row] | None:
        def read(conn: psycopg.Connection) -> tuple[Row, Row] | None:
            first = conn.execute("SELECT seq, uid, stamp FROM mam_messages WHERE owner = %s"
                                 " ORDER BY seq ASC LIMIT 1", (str(owner.bare),)).fetchone()
            last = conn.execute("SELECT seq, uid, stamp FROM mam_messages WHERE owner = %s"
                                " ORDER BY seq DESC LIMIT 1", (str(owner.bare),)).fetchone()
            if first is None or last is None:
                return None
            return (Row(int(first[0]), first[1], int(first[2]), b""),
                    Row(int(last[0]), last[1], int(last[2]), b""))

        return await self.db.read(read)

    async def replace_stanza(self, owner: JID, uid: str, stanza: bytes) -> bool:
        def write(conn: psycopg.Connection) -> bool:
            return conn.execute(
                "UPDATE mam_messages SET stanza = %s WHERE owner = %s AND uid = %s",
                (stanza, str(owner.bare), uid)).rowcount > 0

        return await self.db.run(write)

    async def forget(self, owner: JID) -> None:
        owner = owner.bare

        def write(conn: psycopg.Connection) -> None:
            conn.execute("DELETE FROM mam_messages WHERE owner = %s", (str(owner),))
            conn.execute("DELETE FROM mam_prefs WHERE owner = %s", (str(owner),))
            self.db.notify(conn, "mam_prefs", str(owner))
            with self._sizes_lock:
                self._sizes.pop(str(owner), None)

        await self.db.run(write)
        self._prefs.pop(owner, None)


def _where(q: Query) -> tuple[str, tuple[object, ...]]:
    clauses = ["owner = %s"]
    args: list[object] = [str(q.owner.bare)]
    for clause, value in (("with_bare = %s", q.with_bare), ("with_full = %s", q.with_full),
                          ("stamp >= %s", q.start), ("stamp <= %s", q.end),
                          ("seq > %s", q.after_seq), ("seq < %s", q.before_seq)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    if q.uids is not None:
        clauses.append("uid = ANY(%s)")
        args.append(list(q.uids))
    return " AND ".join(clauses), tuple(args)


def _read_prefs(conn: psycopg.Connection, owner: JID | None = None) -> dict[JID, Prefs]:
    """Everyone's archiving preferences, or only ``owner``'s."""
    where, args = (" WHERE owner = %s", (str(owner),)) if owner is not None else ("", ())
    return {JID.parse(who): Prefs(default, frozenset(json.loads(always)),
                                  frozenset(json.loads(never)))
            for who, default, always, never in conn.execute(
                f"SELECT owner, default_policy, always, never FROM mam_prefs{where}", args)}

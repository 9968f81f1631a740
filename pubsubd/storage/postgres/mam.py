"""XEP-0313 message archives and archiving preferences on PostgreSQL.

One row per archived message, kept once even when it belongs to two archives: a message
between two local users that both archive has its sender's archive on the row's ``out`` side
(``out_owner``, the other party there ``out_with_*``) and its recipient's on the ``in`` side
(``in_owner``, ``in_with_*``); every other message has only the ``in`` side. An archive is the
rows where either side names it; a partial index per side keeps it in ``seq`` order.

Order within an archive is ``seq``, a ``BIGSERIAL``: it grows with every stored message and is
never reused (XEP-0313 §3.1). Several instances may write the database at once, so the number
an archive id carries (:func:`~pubsubd.storage.archive_ids.seq_of`) cannot be the key here:
every row inserted on PostgreSQL is found by id through the ``mam_by_uid`` index (``by_uid``
1); rows imported from SQLite with ``by_uid`` 0 are found by the ``seq`` their id carries.

Preferences are read for every archived message, so they are loaded when the store opens and
kept in memory; changes are committed before memory changes, and notify the other instances
sharing the database (kind ``mam_prefs``, key the owner's bare JID, see :mod:`.invalidation`),
which read that owner's preferences again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import psycopg

from pubsubd.jid import JID
from pubsubd.storage.archive_ids import seq_of
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
    # One row per message for both local parties' archives (see the module docstring). Every
    # message moves over as it was, on the in side, and the sequence continues past the last
    # number the old one handed out (a trimmed message's number is not reused either).
    """
    CREATE TABLE mam_archive (
        seq BIGSERIAL PRIMARY KEY,
        uid TEXT NOT NULL,
        stamp BIGINT NOT NULL,
        stanza BYTEA NOT NULL,
        by_uid SMALLINT NOT NULL,
        out_owner TEXT,
        out_with_bare TEXT,
        out_with_full TEXT,
        in_owner TEXT,
        in_with_bare TEXT,
        in_with_full TEXT
    );
    INSERT INTO mam_archive (seq, uid, stamp, stanza, by_uid, in_owner, in_with_bare,
                             in_with_full)
        SELECT seq, uid, stamp, stanza, 1, owner, with_bare, with_full FROM mam_messages;
    SELECT setval(pg_get_serial_sequence('mam_archive', 'seq'), GREATEST(top, 1), top > 0)
        FROM (SELECT GREATEST((SELECT COALESCE(MAX(seq), 0) FROM mam_archive),
                              (SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                               FROM mam_messages_seq_seq)) AS top) AS last;
    DROP TABLE mam_messages;
    CREATE INDEX mam_out ON mam_archive (out_owner, seq, out_with_bare)
        WHERE out_owner IS NOT NULL;
    CREATE INDEX mam_in ON mam_archive (in_owner, seq, in_with_bare) WHERE in_owner IS NOT NULL;
    CREATE INDEX mam_by_uid ON mam_archive (uid) WHERE by_uid = 1
    """,
]

_INSERT = (
    "INSERT INTO mam_archive (uid, stamp, stanza, by_uid, out_owner, out_with_bare,"
    " out_with_full, in_owner, in_with_bare, in_with_full)"
    " VALUES (%s, %s, %s, 1, %s, %s, %s, %s, %s, %s)")


def _ordered(columns: str, out_where: str, in_where: str, order: str) -> str:
    """The first rows in ``order`` of the out-side rows matching ``out_where`` and the in-side
    ones matching ``in_where``; the arguments are those of ``out_where``, the limit, those of
    ``in_where``, the limit, the limit. Each side takes its own first rows along its index
    and the two merge (PostgreSQL 15 sorts the whole of a plain UNION ALL instead)."""
    return (f"(SELECT {columns} FROM mam_archive WHERE {out_where} ORDER BY seq {order}"
            f" LIMIT %s) UNION ALL (SELECT {columns} FROM mam_archive WHERE {in_where}"
            f" ORDER BY seq {order} LIMIT %s) ORDER BY seq {order} LIMIT %s")


# Messages of an archive by id: through mam_by_uid, or by the seq the id carries (rows
# imported with by_uid 0); args (uids, owner, owner, seqs, uids, owner, owner).
_BY_UID = (
    "SELECT uid, seq FROM mam_archive WHERE by_uid = 1 AND uid = ANY(%s)"
    " AND (out_owner = %s OR in_owner = %s)"
    " UNION ALL SELECT uid, seq FROM mam_archive WHERE seq = ANY(%s) AND by_uid = 0"
    " AND uid = ANY(%s) AND (out_owner = %s OR in_owner = %s)")


def _row(m: ArchivedMessage) -> tuple[object, ...]:
    """The insert arguments of one message: one side, or both for a shared one."""
    remote = m.remote
    if m.sender is None:
        return (m.uid, m.stamp, m.stanza, None, None, None,
                str(m.owner.bare), str(remote.bare), str(remote))
    recipient = str(remote.bare)
    return (m.uid, m.stamp, m.stanza, str(m.owner.bare), recipient, str(remote),
            recipient, str(m.sender.bare), str(m.sender))


def _lookup(conn: psycopg.Connection, owner: str, uids: Sequence[str]) -> dict[str, int]:
    """The seqs of those of ``uids`` that are in ``owner``'s archive."""
    uids = list(uids)
    if not uids:
        return {}
    carried = [seq for seq in map(seq_of, uids) if seq is not None]
    return {str(uid): int(seq) for uid, seq in conn.execute(
        _BY_UID, (uids, owner, owner, carried, uids, owner, owner))}


def _clear(conn: psycopg.Connection, cutoffs: dict[str, int | None]) -> None:
    """Take each archive's rows up to its cutoff (all of them for None) out of it: a row
    leaves the archive's side, and goes once no archive keeps it.

    The rows are locked first, in ``seq`` order: two transactions clearing archives that
    share rows (Alice's and Bob's at once) take the locks in the same order and never wait
    for each other in a cycle; what each row still holds is read after its lock is held."""
    if not cutoffs:
        return
    selects: list[str] = []
    args: list[object] = []
    for owner, cutoff in sorted(cutoffs.items()):
        bound = "" if cutoff is None else " AND seq <= %s"
        for side in ("out", "in"):
            selects.append(f"SELECT seq FROM mam_archive WHERE {side}_owner = %s{bound}")
            args.extend([owner] if cutoff is None else [owner, cutoff])
    locked = conn.execute(
        f"SELECT seq, out_owner, in_owner FROM mam_archive WHERE seq IN"  # noqa: S608
        f" ({' UNION ALL '.join(selects)}) ORDER BY seq FOR UPDATE", args).fetchall()
    gone: list[int] = []
    out_cleared: list[int] = []
    in_cleared: list[int] = []

    def leaves(owner: str | None, seq: int) -> bool:
        if owner is None or owner not in cutoffs:
            return owner is None
        cutoff = cutoffs[owner]
        return cutoff is None or seq <= cutoff

    for seq, out_owner, in_owner in locked:
        out_leaves, in_leaves = leaves(out_owner, seq), leaves(in_owner, seq)
        if out_leaves and in_leaves:
            gone.append(seq)
        elif out_leaves and out_owner is not None:
            out_cleared.append(seq)
        elif in_leaves and in_owner is not None:
            in_cleared.append(seq)
    if gone:
        conn.execute("DELETE FROM mam_archive WHERE seq = ANY(%s)", (gone,))
    for side, seqs in (("out", out_cleared), ("in", in_cleared)):
        if seqs:
            conn.execute(f"UPDATE mam_archive SET {side}_owner = NULL,"  # noqa: S608
                         f" {side}_with_bare = NULL, {side}_with_full = NULL"
                         " WHERE seq = ANY(%s)", (seqs,))


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
        """Store ``messages`` in one transaction, one row each (a shared one too), then trim
        each touched archive's oldest messages beyond ``keep`` (XEP-0313 §3.2: only the
        oldest, never a hole)."""

        def write(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                cur.executemany(_INSERT, [_row(m) for m in messages])
            added: dict[str, int] = {}
            for m in messages:
                owner = str(m.owner.bare)
                added[owner] = added.get(owner, 0) + 1
                if m.sender is not None:
                    recipient = str(m.remote.bare)
                    added[recipient] = added.get(recipient, 0) + 1
            cutoffs: dict[str, int | None] = {}
            sizes: dict[str, int] = {}
            for owner, count in added.items():
                with self._sizes_lock:
                    size = self._sizes.get(owner)
                if size is None:
                    row = conn.execute(
                        "SELECT (SELECT COUNT(*) FROM mam_archive WHERE out_owner = %s)"
                        " + (SELECT COUNT(*) FROM mam_archive WHERE in_owner = %s)",
                        (owner, owner)).fetchone()
                    size = int(row[0]) if row else count
                else:
                    size += count
                if size > keep + MAM_TRIM_SLACK or (size > keep and keep < MAM_TRIM_SLACK):
                    row = conn.execute(
                        _ordered("seq", "out_owner = %s", "in_owner = %s", "DESC")
                        + " OFFSET %s", (owner, keep + 1, owner, keep + 1, 1, keep)).fetchone()
                    if row is not None:
                        cutoffs[owner] = int(row[0])
                    size = keep
                sizes[owner] = size
            _clear(conn, cutoffs)
            with self._sizes_lock:
                self._sizes.update(sizes)

        await self.db.run(write)

    async def seqs(self, owner: JID, uids: Sequence[str]) -> dict[str, int]:
        return await self.db.read(lambda conn: _lookup(conn, str(owner.bare), uids))

    async def page(self, query: Query, limit: int, *, after_seq: int | None = None,
                   before_seq: int | None = None, backward: bool = False) -> Page:
        paging, paging_args = "", []
        if after_seq is not None:
            paging += " AND seq > %s"
            paging_args.append(after_seq)
        if before_seq is not None:
            paging += " AND seq < %s"
            paging_args.append(before_seq)
        order = "DESC" if backward else "ASC"

        def read(conn: psycopg.Connection) -> Page:
            found = None
            if query.uids is not None:
                found = list(_lookup(conn, str(query.owner.bare), query.uids).values())
            (out_where, out_args), (in_where, in_args) = (
                _where(side, query, found) for side in ("out", "in"))
            rows = [Row(int(seq), uid, int(stamp), bytes(stanza))
                    for seq, uid, stamp, stanza in conn.execute(
                        _ordered("seq, uid, stamp, stanza", out_where + paging,
                                 in_where + paging, order),
                        (*out_args, *paging_args, limit + 1, *in_args, *paging_args,
                         limit + 1, limit + 1))]
            complete = len(rows) <= limit
            rows = rows[:limit]
            if backward:
                rows.reverse()
            # XEP-0059 §2.6: the count and the first row's index in the whole result set.
            first = rows[0].seq if rows else 0
            counted = conn.execute(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE seq < %s) FROM mam_archive"  # noqa: S608
                f" WHERE {out_where} UNION ALL SELECT COUNT(*), COUNT(*) FILTER"
                f" (WHERE seq < %s) FROM mam_archive WHERE {in_where}",
                (first, *out_args, first, *in_args)).fetchall()
            count = sum(int(n) for n, _ in counted)
            before = sum(int(b) for _, b in counted)
            return Page(rows, complete, count, before if rows else None)

        return await self.db.read(read)

    async def bounds(self, owner: JID) -> tuple[Row, Row] | None:
        bare = str(owner.bare)

        def read(conn: psycopg.Connection) -> tuple[Row, Row] | None:
            first, last = (conn.execute(
                _ordered("seq, uid, stamp", "out_owner = %s", "in_owner = %s", order),
                (bare, 1, bare, 1, 1)).fetchone() for order in ("ASC", "DESC"))
            if first is None or last is None:
                return None
            return (Row(int(first[0]), first[1], int(first[2]), b""),
                    Row(int(last[0]), last[1], int(last[2]), b""))

        return await self.db.read(read)

    async def replace_stanza(self, owner: JID, uid: str, stanza: bytes) -> bool:
        def write(conn: psycopg.Connection) -> bool:
            found = _lookup(conn, str(owner.bare), [uid])
            return bool(found) and conn.execute(
                "UPDATE mam_archive SET stanza = %s WHERE seq = %s",
                (stanza, found[uid])).rowcount > 0

        return await self.db.run(write)

    async def forget(self, owner: JID) -> None:
        """Delete ``owner``'s archive: its side of a shared message goes, the other party's
        copy stays."""
        owner = owner.bare

        def write(conn: psycopg.Connection) -> None:
            _clear(conn, {str(owner): None})
            conn.execute("DELETE FROM mam_prefs WHERE owner = %s", (str(owner),))
            self.db.notify(conn, "mam_prefs", str(owner))
            with self._sizes_lock:
                self._sizes.pop(str(owner), None)

        await self.db.run(write)
        self._prefs.pop(owner, None)


def _where(side: str, q: Query, seqs: list[int] | None) -> tuple[str, tuple[object, ...]]:
    """The filters of ``q`` on the ``side`` ("out" or "in") of the rows; ``seqs`` the rows
    its ids name, if it names any."""
    clauses = [f"{side}_owner = %s"]
    args: list[object] = [str(q.owner.bare)]
    for clause, value in ((f"{side}_with_bare = %s", q.with_bare),
                          (f"{side}_with_full = %s", q.with_full),
                          ("stamp >= %s", q.start), ("stamp <= %s", q.end),
                          ("seq > %s", q.after_seq), ("seq < %s", q.before_seq),
                          ("seq = ANY(%s)", seqs)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return " AND ".join(clauses), tuple(args)


def _read_prefs(conn: psycopg.Connection, owner: JID | None = None) -> dict[JID, Prefs]:
    """Everyone's archiving preferences, or only ``owner``'s."""
    where, args = (" WHERE owner = %s", (str(owner),)) if owner is not None else ("", ())
    return {JID.parse(who): Prefs(default, frozenset(json.loads(always)),
                                  frozenset(json.loads(never)))
            for who, default, always, never in conn.execute(
                f"SELECT owner, default_policy, always, never FROM mam_prefs{where}", args)}

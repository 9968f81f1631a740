"""XEP-0313 message archives and archiving preferences on the shared SQLite database.

One row per message, shared by the archives it belongs to: a message between two local users
who both archive it is one row with a side for each (``out_*``: the sender's archive, ``in_*``:
the recipient's); any other message fills the ``in`` side only. Each side has its own partial
index (owner, seq), so an archive is the union of its two sides in ``seq`` order (XEP-0313
§3.1: ``seq`` grows with every message and is never reused). One row and two index entries per
chat message instead of two rows and four: the archive's share of a chat message's CPU.

The archive id a client sees is random past a sequence number (:mod:`.archive_ids`): a row
takes that number as its ``seq`` when it is larger than every ``seq`` before (this process is
the database's only writer), and is then found by its primary key; a row whose id has no usable
number (ids of older versions, ids from an import) gets the next ``seq`` and goes into the
``mam_by_uid`` index (``by_uid``). Preferences are read for every archived message, so they are
loaded once and kept in memory; changes are committed before memory is updated.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence

from pubsubd.jid import JID
from pubsubd.storage.archive_ids import seq_of
from pubsubd.storage.interfaces import (
    MAM_TRIM_SLACK,
    ArchivedMessage,
    Page,
    Prefs,
    Query,
    Row,
)
from pubsubd.storage.sqlite import Database

__all__ = ["ArchivedMessage", "MamStore", "Page", "Prefs", "Query", "Row", "SqliteMamStore"]

_SCHEMA = [
    """
    CREATE TABLE mam_messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        uid TEXT NOT NULL,
        stamp INTEGER NOT NULL,
        with_bare TEXT NOT NULL,
        with_full TEXT NOT NULL,
        stanza BLOB NOT NULL
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
    """
    DROP INDEX mam_by_owner;
    DROP INDEX mam_by_with;
    CREATE INDEX mam_by_owner_seq ON mam_messages (owner, seq, with_bare)
    """,
    # One row per message for both local parties' archives (see the module docstring). The
    # index (owner, seq, with_bare) of each side serves a whole archive in order and a query
    # "with" a contact without reading the rows it skips. Existing messages keep their seq
    # and id, on the in side, found through mam_by_uid.
    """
    CREATE TABLE mam_archive (
        seq INTEGER PRIMARY KEY,
        uid TEXT NOT NULL,
        stamp INTEGER NOT NULL,
        stanza BLOB NOT NULL,
        by_uid INTEGER NOT NULL,
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
    DROP TABLE mam_messages;
    CREATE INDEX mam_out ON mam_archive (out_owner, seq, out_with_bare)
        WHERE out_owner IS NOT NULL;
    CREATE INDEX mam_in ON mam_archive (in_owner, seq, in_with_bare)
        WHERE in_owner IS NOT NULL;
    CREATE INDEX mam_by_uid ON mam_archive (uid) WHERE by_uid = 1
    """,
]

_COLUMNS = ("seq, uid, stamp, stanza, by_uid, out_owner, out_with_bare, out_with_full,"
            " in_owner, in_with_bare, in_with_full")
_WIDTH = 11  # columns of a row
# Rows per INSERT statement: a batch is written by a few statements of many rows, each bound
# and stepped at once, rather than one step per row. Python's sqlite3 releases the interpreter
# lock around every step, and with the event loop busy each release was a thread switch.
_CHUNK = 256
_INSERT = f"INSERT INTO mam_archive ({_COLUMNS}) VALUES "


def _insert(rows: int) -> str:
    return _INSERT + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)


_INSERT_CHUNK = _insert(_CHUNK)
# An archive may exceed its limit by this many messages before the oldest are trimmed, so the
# trim (an index walk of the whole archive) runs once per this many messages, not per batch.
_TRIM_SLACK = MAM_TRIM_SLACK


class SqliteMamStore:
    """Archives and preferences; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("mam", _SCHEMA)
        self._prefs: dict[JID, Prefs] = {}
        # Archive sizes as far as this process knows them (touched only on the database
        # thread), so the retention trim runs when an archive outgrows the limit, not per batch.
        self._sizes: dict[str, int] = {}
        # The largest seq given out (on the event loop, before the rows are written).
        self._last_seq = 0
        db.run_sync(self._load)

    def _load(self, conn: sqlite3.Connection) -> None:
        for owner, default, always, never in conn.execute(
                "SELECT owner, default_policy, always, never FROM mam_prefs"):
            self._prefs[JID.parse(owner)] = Prefs(
                default, frozenset(json.loads(always)), frozenset(json.loads(never)))
        (top,) = conn.execute("SELECT MAX(seq) FROM mam_archive").fetchone()
        # Past every seq given out before, even those of messages deleted since: new ids carry
        # the time in microseconds, and the next seq given to an id without one is past now.
        self._last_seq = max(int(top or 0), time.time_ns() // 1000)

    # --- preferences ----------------------------------------------------------------------

    def prefs(self, owner: JID) -> Prefs | None:
        return self._prefs.get(owner.bare)

    async def set_prefs(self, owner: JID, prefs: Prefs) -> None:
        owner = owner.bare
        await self.db.run(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO mam_prefs VALUES (?, ?, ?, ?)",
            (str(owner), prefs.default, json.dumps(sorted(prefs.always)),
             json.dumps(sorted(prefs.never)))))
        self._prefs[owner] = prefs

    # --- archive --------------------------------------------------------------------------

    async def append(self, messages: Sequence[ArchivedMessage], keep: int) -> None:
        """Store ``messages`` in one transaction, then drop each touched archive's oldest
        messages beyond ``keep`` (XEP-0313 §3.2: only the oldest, never a hole)."""
        params: list[object] = []  # the rows' values, one after the other
        added: dict[str, int] = {}
        # The text of each JID once per batch: a burst repeats the same few addresses.
        names: dict[JID, str] = {}
        last = self._last_seq
        for owner_jid, uid, stamp, remote_jid, stanza, sender_jid, seq in messages:
            seq = seq_of(uid) if seq is None else seq
            if seq is not None and seq > last:
                by_uid = 0
            else:
                seq, by_uid = last + 1, 1
            last = seq
            owner = names.get(owner_jid)
            if owner is None:
                owner = names[owner_jid] = str(owner_jid)
            remote = names.get(remote_jid)
            if remote is None:
                remote = names[remote_jid] = str(remote_jid)
            # The bare JID is the text before the first '/' (RFC 7622 §3.1).
            remote_bare = remote.partition("/")[0]
            if sender_jid is None:
                params += (seq, uid, stamp, stanza, by_uid, None, None, None,
                           owner, remote_bare, remote)
            else:
                sender = names.get(sender_jid)
                if sender is None:
                    sender = names[sender_jid] = str(sender_jid)
                params += (seq, uid, stamp, stanza, by_uid, owner, remote_bare, remote,
                           remote_bare, sender.partition("/")[0], sender)
                added[remote_bare] = added.get(remote_bare, 0) + 1
            added[owner] = added.get(owner, 0) + 1
        self._last_seq = last

        def chunk(start: int, end: int) -> Callable[[sqlite3.Connection], None]:
            rows = (end - start) // _WIDTH
            sql = _INSERT_CHUNK if rows == _CHUNK else _insert(rows)

            def write(conn: sqlite3.Connection) -> None:
                conn.execute(sql, params[start:end])

            return write

        def trim(conn: sqlite3.Connection) -> None:
            for owner, count in added.items():
                size = self._sizes.get(owner)
                if size is None:
                    size = _size(conn, owner)
                else:
                    size += count
                if size > keep + _TRIM_SLACK or (size > keep and keep < _TRIM_SLACK):
                    row = conn.execute(
                        "SELECT seq FROM mam_archive WHERE out_owner = ? UNION ALL"
                        " SELECT seq FROM mam_archive WHERE in_owner = ?"
                        " ORDER BY seq DESC LIMIT 1 OFFSET ?", (owner, owner, keep)).fetchone()
                    if row is not None:
                        _drop(conn, owner, int(row[0]))
                    size = keep
                self._sizes[owner] = size

        # A slice of _CHUNK rows (about a millisecond) at a time, on the event loop's thread
        # (see Database.write_in_slices: cheaper than the database thread for many rows).
        step = _CHUNK * _WIDTH
        slices = [chunk(start, min(start + step, len(params)))
                  for start in range(0, len(params), step)]
        await self.db.write_in_slices([*slices, trim])

    async def seqs(self, owner: JID, uids: Sequence[str]) -> dict[str, int]:
        """The sequence numbers of those of ``uids`` that are in ``owner``'s archive."""
        bare = str(owner.bare)

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            found: dict[str, int] = {}
            for uid in uids:
                seq = _find(conn, bare, uid)
                if seq is not None:
                    found[uid] = seq
            return found

        return await self.db.run(read, readonly=True)

    async def page(self, query: Query, limit: int, *, after_seq: int | None = None,
                   before_seq: int | None = None, backward: bool = False) -> Page:
        """At most ``limit`` rows matching ``query`` between the RSM bounds (exclusive), in
        chronological order: the first ones, or with ``backward`` the last ones (RSM
        <before/>, XEP-0059 §2.5). ``count`` and ``first_index`` are about the whole result
        set, without the RSM bounds (XEP-0059 §2.6)."""
        sides = [_where(query, side) for side in ("out", "in")]
        bounds = ""
        bound_args: list[object] = []
        if after_seq is not None:
            bounds += " AND seq > ?"
            bound_args.append(after_seq)
        if before_seq is not None:
            bounds += " AND seq < ?"
            bound_args.append(before_seq)
        order = "DESC" if backward else "ASC"
        # Each side in order, at most limit + 1 rows of each, merged: the archive is the
        # union of the owner's two sides.
        select = " UNION ALL ".join(
            f"SELECT * FROM (SELECT seq, uid, stamp, stanza FROM mam_archive WHERE {where}"
            f"{bounds} ORDER BY seq {order} LIMIT ?)" for where, _ in sides)
        select_args: list[object] = []
        for _, args in sides:
            select_args += (*args, *bound_args, limit + 1)
        counted = " + ".join(f"(SELECT COUNT(*) FROM mam_archive WHERE {where})"
                             for where, _ in sides)
        before = " + ".join(f"(SELECT COUNT(*) FROM mam_archive WHERE {where} AND seq < ?)"
                            for where, _ in sides)

        def read(conn: sqlite3.Connection) -> Page:
            rows = [Row(int(seq), uid, int(stamp), bytes(stanza))
                    for seq, uid, stamp, stanza in conn.execute(
                        f"{select} ORDER BY seq {order} LIMIT ?", (*select_args, limit + 1))]
            complete = len(rows) <= limit
            rows = rows[:limit]
            if backward:
                rows.reverse()
            (count,) = conn.execute(f"SELECT {counted}",  # noqa: S608
                                    (*sides[0][1], *sides[1][1])).fetchone()
            first_index = None
            if rows:
                first = rows[0].seq
                (first_index,) = conn.execute(f"SELECT {before}",  # noqa: S608
                                              (*sides[0][1], first, *sides[1][1], first)
                                              ).fetchone()
            return Page(rows, complete, int(count), first_index)

        return await self.db.run(read, readonly=True)

    async def bounds(self, owner: JID) -> tuple[Row, Row] | None:
        """The first and the last message of an archive (XEP-0313 §5), None if it is empty."""
        bare = str(owner.bare)

        def read(conn: sqlite3.Connection) -> tuple[Row, Row] | None:
            ends = []
            for order in ("ASC", "DESC"):
                row = conn.execute(
                    "SELECT * FROM (SELECT seq, uid, stamp FROM mam_archive"  # noqa: S608
                    f" WHERE out_owner = ? ORDER BY seq {order} LIMIT 1) UNION ALL"
                    " SELECT * FROM (SELECT seq, uid, stamp FROM mam_archive"
                    f" WHERE in_owner = ? ORDER BY seq {order} LIMIT 1)"
                    f" ORDER BY seq {order} LIMIT 1", (bare, bare)).fetchone()
                if row is None:
                    return None
                ends.append(Row(int(row[0]), row[1], int(row[2]), b""))
            return ends[0], ends[1]

        return await self.db.run(read, readonly=True)

    async def forget(self, owner: JID) -> None:
        """Delete the archive and the preferences of a deleted account (a message it shares
        stays in the other party's archive)."""
        owner = owner.bare

        def write(conn: sqlite3.Connection) -> None:
            _drop(conn, str(owner), None)
            conn.execute("DELETE FROM mam_prefs WHERE owner = ?", (str(owner),))
            self._sizes.pop(str(owner), None)

        await self.db.run(write)
        self._prefs.pop(owner, None)

    async def replace_stanza(self, owner: JID, uid: str, stanza: bytes) -> bool:
        bare = str(owner.bare)

        def write(conn: sqlite3.Connection) -> bool:
            seq = _find(conn, bare, uid)
            if seq is None:
                return False
            conn.execute("UPDATE mam_archive SET stanza = ? WHERE seq = ?", (stanza, seq))
            return True

        return await self.db.run(write)


MamStore = SqliteMamStore  # the name modules import today


def _size(conn: sqlite3.Connection, owner: str) -> int:
    (size,) = conn.execute("SELECT (SELECT COUNT(*) FROM mam_archive WHERE out_owner = ?)"
                           " + (SELECT COUNT(*) FROM mam_archive WHERE in_owner = ?)",
                           (owner, owner)).fetchone()
    return int(size)


def _find(conn: sqlite3.Connection, owner: str, uid: str) -> int | None:
    """The seq of message ``uid`` of ``owner``'s archive: by the seq in the id, else by the
    index of ids without one."""
    seq = seq_of(uid)
    if seq is not None:
        row = conn.execute("SELECT seq FROM mam_archive WHERE seq = ? AND uid = ?"
                           " AND (out_owner = ? OR in_owner = ?)",
                           (seq, uid, owner, owner)).fetchone()
        if row is not None:
            return int(row[0])
    row = conn.execute("SELECT seq FROM mam_archive WHERE uid = ? AND by_uid = 1"
                       " AND (out_owner = ? OR in_owner = ?)", (uid, owner, owner)).fetchone()
    return int(row[0]) if row is not None else None


def _drop(conn: sqlite3.Connection, owner: str, up_to: int | None) -> None:
    """Take ``owner``'s messages up to seq ``up_to`` (all: None) out of its archive: a row
    nobody else keeps is deleted, a shared one loses ``owner``'s side only."""
    limit, args = ("", ()) if up_to is None else (" AND seq <= ?", (up_to,))
    for side, other in (("out", "in"), ("in", "out")):
        conn.execute(f"DELETE FROM mam_archive WHERE {side}_owner = ?{limit}"  # noqa: S608
                     f" AND {other}_owner IS NULL", (owner, *args))
        conn.execute(f"UPDATE mam_archive SET {side}_owner = NULL, {side}_with_bare = NULL,"  # noqa: S608
                     f" {side}_with_full = NULL WHERE {side}_owner = ?{limit}", (owner, *args))


def _where(q: Query, side: str) -> tuple[str, tuple[object, ...]]:
    """The filters of ``q`` on one side of the rows (``out`` or ``in``)."""
    clauses = [f"{side}_owner = ?"]
    args: list[object] = [str(q.owner.bare)]
    if q.with_bare is not None:
        clauses.append(f"{side}_with_bare = ?")
        args.append(q.with_bare)
    if q.with_full is not None:
        clauses.append(f"{side}_with_full = ?")
        args.append(q.with_full)
    if q.start is not None:
        clauses.append("stamp >= ?")
        args.append(q.start)
    if q.end is not None:
        clauses.append("stamp <= ?")
        args.append(q.end)
    if q.after_seq is not None:
        clauses.append("seq > ?")
        args.append(q.after_seq)
    if q.before_seq is not None:
        clauses.append("seq < ?")
        args.append(q.before_seq)
    if q.uids is not None:
        clauses.append(f"uid IN ({', '.join('?' * len(q.uids))})")
        args.extend(q.uids)
    return " AND ".join(clauses), tuple(args)

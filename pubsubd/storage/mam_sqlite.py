"""XEP-0313 message archives and archiving preferences on the shared SQLite database.

``mam_archive`` holds each message once, however many local archives keep it: a message
between two local users who both archive it is one row with a side for each (``out_*``: the
sender's archive, ``in_*``: the recipient's, each the owner and the other party as addressed,
by their numbers in ``mam_jids``); any other message fills the ``in`` side only. The numbers
are given when a write first names an address and kept in memory: a row binds four numbers
rather than four texts, about a quarter of the database's cost per archived message (the
addresses are read back only to export, upgrade or check an owner). ``mam_postings`` lists what each
archive holds (:mod:`.mam_postings`): rows of (owner, last seq, size, seqs, stamps, contacts),
one per burst of archived messages (a few entries extend the last row instead). A query reads
the owner's postings (no more than the retention limit), filters and counts them in memory
(XEP-0313 §4.1, XEP-0059 §2.6) and reads the page's messages by primary key.

Why postings and not an index (owner, seq) per side: archiving a chat message then wrote a row
and two index entries, most of the archive's CPU on the message path; a posting row is written
once per archive per burst, so a message costs one row. ``seq`` grows with every message and is
never reused (XEP-0313 §3.1).

The archive id a client sees is random past a sequence number (:mod:`.archive_ids`): a row
takes that number as its ``seq`` when it is larger than every ``seq`` before (this process is
the database's only writer), and is then found by its primary key; a row whose id has no usable
number (ids of older versions, ids from an import) gets the next ``seq`` and goes into the
``mam_by_uid`` index (``by_uid``). Preferences are read for every archived message, so they are
loaded once and kept in memory; changes are committed before memory is updated.
"""

from __future__ import annotations

import bisect
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
    plain_messages,
)
from pubsubd.storage.mam_postings import NewEntries, Postings, unpack
from pubsubd.storage.sqlite import Database

__all__ = ["ArchivedMessage", "MamStore", "Page", "Prefs", "Query", "Row", "SqliteMamStore"]



def _address(column: str) -> str:
    """The text of the address a row's ``column`` numbers (see mam_jids)."""
    return f"(SELECT jid FROM mam_jids WHERE id = {column})"


def _bare_of(text: str) -> str:
    """SQL for the bare JID of an address: the text before the first '/' (RFC 7622 §3.1)."""
    return (f"CASE WHEN instr({text}, '/') > 0 THEN substr({text}, 1, instr({text}, '/') - 1)"
            f" ELSE {text} END")


# The columns of an export (shared with PostgreSQL, which keeps the bare JIDs too), as this
# layout gives them, and the columns an imported row fills here.
EXPORT_COLUMNS = (
    f"seq, uid, stamp, stanza, by_uid, {_address('out_owner')},"
    f" {_bare_of(_address('out_with'))}, {_address('out_with')}, {_address('in_owner')},"
    f" {_bare_of(_address('in_with'))}, {_address('in_with')}")
IMPORT_COLUMNS = ("seq", "uid", "stamp", "stanza", "by_uid", "out_owner", "out_with",
                  "in_owner", "in_with")
_ADDRESS_COLUMNS = range(5, 9)  # of a row in IMPORT_COLUMNS order: numbered in mam_jids


def imported_row(row: tuple[object, ...]) -> tuple[object, ...]:
    """An exported ``mam_archive`` row (see :data:`EXPORT_COLUMNS`) as this layout keeps it,
    its addresses still as text (:func:`numbered_rows` numbers them)."""
    seq, uid, stamp, stanza, by_uid, out_owner, _, out_with, in_owner, _, in_with = row
    return (seq, uid, stamp, stanza, by_uid, out_owner, out_with, in_owner, in_with)


def numbered_rows(conn: sqlite3.Connection, rows: list[tuple[object, ...]]
                  ) -> list[tuple[object, ...]]:
    """:func:`imported_row` rows with their addresses replaced by their mam_jids numbers."""
    numbers: dict[object, int | None] = {None: None}
    for row in rows:
        for column in _ADDRESS_COLUMNS:
            text = row[column]
            if text not in numbers:
                numbers[text] = _number(conn, str(text))
    return [tuple(numbers[value] if column in _ADDRESS_COLUMNS else value
                  for column, value in enumerate(row)) for row in rows]


def _number(conn: sqlite3.Connection, jid: str) -> int:
    """The number of address ``jid`` in mam_jids, given one if it has none yet."""
    found = _known_number(conn, jid)
    if found is not None:
        return found
    (given,) = conn.execute("INSERT INTO mam_jids (jid) VALUES (?) RETURNING id",
                            (jid,)).fetchone()
    return int(given)


def _known_number(conn: sqlite3.Connection, jid: str) -> int | None:
    """The number of address ``jid`` in mam_jids; None if no row ever named it."""
    found = conn.execute("SELECT id FROM mam_jids WHERE jid = ?", (jid,)).fetchone()
    return int(found[0]) if found is not None else None


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
    # Postings instead of the two side indices (see the module docstring); the bare JIDs of
    # the other parties are the text before the first '/' of the addresses kept.
    """
    CREATE TABLE mam_rows (
        seq INTEGER PRIMARY KEY,
        uid TEXT NOT NULL,
        stamp INTEGER NOT NULL,
        stanza BLOB NOT NULL,
        by_uid INTEGER NOT NULL,
        out_owner TEXT,
        out_with TEXT,
        in_owner TEXT,
        in_with TEXT
    );
    INSERT INTO mam_rows SELECT seq, uid, stamp, stanza, by_uid, out_owner, out_with_full,
                                in_owner, in_with_full FROM mam_archive;
    DROP TABLE mam_archive;
    ALTER TABLE mam_rows RENAME TO mam_archive;
    CREATE INDEX mam_by_uid ON mam_archive (uid) WHERE by_uid = 1;
    CREATE TABLE mam_postings (
        owner TEXT NOT NULL,
        last INTEGER NOT NULL,
        size INTEGER NOT NULL,
        seqs BLOB NOT NULL,
        stamps BLOB NOT NULL,
        contacts TEXT NOT NULL
    );
    CREATE UNIQUE INDEX mam_postings_by_owner ON mam_postings (owner, last)
    """,
    # (The postings of the upgraded rows are built by the store when it opens: see
    # rebuild_postings.)
    # The four addresses of a row as numbers of mam_jids: binding and storing a number costs
    # a fraction of a text, and a row is written for every archived message.
    """
    CREATE TABLE mam_jids (
        id INTEGER PRIMARY KEY,
        jid TEXT NOT NULL UNIQUE
    );
    INSERT OR IGNORE INTO mam_jids (jid)
        SELECT out_owner FROM mam_archive WHERE out_owner IS NOT NULL
        UNION SELECT out_with FROM mam_archive WHERE out_with IS NOT NULL
        UNION SELECT in_owner FROM mam_archive WHERE in_owner IS NOT NULL
        UNION SELECT in_with FROM mam_archive WHERE in_with IS NOT NULL;
    CREATE TABLE mam_rows (
        seq INTEGER PRIMARY KEY,
        uid TEXT NOT NULL,
        stamp INTEGER NOT NULL,
        stanza BLOB NOT NULL,
        by_uid INTEGER NOT NULL,
        out_owner INTEGER,
        out_with INTEGER,
        in_owner INTEGER,
        in_with INTEGER
    );
    INSERT INTO mam_rows SELECT seq, uid, stamp, stanza, by_uid,
        (SELECT id FROM mam_jids WHERE jid = out_owner),
        (SELECT id FROM mam_jids WHERE jid = out_with),
        (SELECT id FROM mam_jids WHERE jid = in_owner),
        (SELECT id FROM mam_jids WHERE jid = in_with) FROM mam_archive;
    DROP TABLE mam_archive;
    ALTER TABLE mam_rows RENAME TO mam_archive;
    CREATE INDEX mam_by_uid ON mam_archive (uid) WHERE by_uid = 1
    """,
]

_COLUMNS = "seq, uid, stamp, stanza, by_uid, out_owner, out_with, in_owner, in_with"
_WIDTH = 9  # columns of a row
# Rows per INSERT statement: a batch is written by a few statements of many rows, each bound
# and stepped at once, rather than one step per row. Python's sqlite3 releases the interpreter
# lock around every step, and with the event loop busy each release was a thread switch.
_CHUNK = 256
_INSERT = f"INSERT INTO mam_archive ({_COLUMNS}) VALUES "


def _insert(rows: int) -> str:
    return _INSERT + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)


def _insert_fresh(rows: int) -> str:
    """An INSERT of rows whose id carries their seq (by_uid 0) and whose stamp is their seq
    (every message the server archives as it routes it), bound as _FRESH_WIDTH values:
    numbered parameters bind the seq once for both columns (fewer values to bind)."""
    return _INSERT + ",".join(
        f"(?{n + 1}, ?{n + 2}, ?{n + 1}, ?{n + 3}, 0, ?{n + 4}, ?{n + 5}, ?{n + 6}, ?{n + 7})"
        for n in range(0, rows * _FRESH_WIDTH, _FRESH_WIDTH))


_FRESH_WIDTH = 7  # seq, uid, stanza and the four addresses
_FRESH_ADDRESSES = range(3, 7)
_INSERT_CHUNK = _insert(_CHUNK)
_INSERT_FRESH_CHUNK = _insert_fresh(_CHUNK)
# Python's sqlite3 binds int, float, str and bytearray as they are, but asks the adapter
# registry about every other value (a bytes object included) — several times the cost of
# binding it. A stanza is bound as a bytearray (a copy of a few hundred bytes): the same BLOB.
_blob = bytearray
# An archive may exceed its limit by this many messages before the oldest are trimmed, so the
# trim (a read of the whole archive's postings) runs once per this many messages, not per batch.
_TRIM_SLACK = MAM_TRIM_SLACK
# A few entries extend the archive's last posting row while it stays this small: an archive
# that gets a message now and then has a few large rows, not one row per message. A burst's
# entries make a row of their own (extending a row rewrites it whole).
_ROW_ENTRIES = 256
_FEW_ENTRIES = 16
_REBUILT_ROW_ENTRIES = 4096  # entries per posting row that rebuild_postings writes
_IN_LIST = 500  # seqs named in one statement (SQLite allows 32766 parameters)
_NUMBERS_KEPT = 100_000  # addresses whose mam_jids numbers are kept in memory


class SqliteMamStore:
    """Archives and preferences; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("mam", _SCHEMA)
        self._prefs: dict[JID, Prefs] = {}
        # Archive sizes as far as this process knows them, so the retention trim runs when an
        # archive outgrows the limit, not per batch; and the (last seq, size) of each archive's
        # last posting row, to extend it. Both are caches: forgotten when a write fails.
        self._sizes: dict[str, int] = {}
        self._tails: dict[str, tuple[int, int]] = {}
        # The mam_jids numbers of addresses written lately (a cache as well).
        self._numbers: dict[object, int | None] = {None: None}
        # The largest seq given out (on the event loop, before the rows are written).
        self._last_seq = 0
        db.run_sync(self._load)
        if db.run_sync(_unlisted, readonly=True):  # rows of an older layout or an import
            db.run_sync(rebuild_postings)

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
        # The rows' values, one after the other: fresh rows (see _insert_fresh), the others.
        params: list[object] = []
        others: list[object] = []
        postings: dict[str, _Entries] = {}  # owner -> its new entries
        # Each conversation's addresses and postings, found once per batch (a burst repeats
        # the same few), by the identities of its owner, remote and sender JIDs: every one
        # stays alive in ``messages`` while the batch is read, and a JID hashes in Python code.
        conversations: dict[tuple[int, int, int], _Conversation] = {}
        texts: set[str] = set()  # the addresses the rows name
        last = self._last_seq
        for owner_jid, uid, stamp, remote_jid, stanza, sender_jid, seq in plain_messages(
                messages):
            fresh = stamp is seq and seq is not None and seq > last
            if not fresh:
                if seq is None:
                    seq = seq_of(uid)
                if seq is not None and seq > last:
                    by_uid = 0
                else:
                    seq, by_uid = last + 1, 1
            last = seq
            key = (id(owner_jid), id(remote_jid), id(sender_jid))
            found = conversations.get(key)
            if found is None:
                found = conversations[key] = _conversation(owner_jid, remote_jid, sender_jid,
                                                           postings, texts)
            owner, remote, recipient, sender, mine, theirs = found
            mine[0].append(seq)
            mine[1].append(stamp)
            mine[2].append(remote)
            if theirs is None:
                if fresh:
                    params += (seq, uid, _blob(stanza), None, None, owner, remote)
                else:
                    others += (seq, uid, stamp, _blob(stanza), by_uid, None, None, owner, remote)
                continue
            if fresh:
                params += (seq, uid, _blob(stanza), owner, remote, recipient, sender)
            else:
                others += (seq, uid, stamp, _blob(stanza), by_uid, owner, remote, recipient,
                           sender)
            theirs[0].append(seq)
            theirs[1].append(stamp)
            theirs[2].append(sender)
        self._last_seq = last

        numbers = self._numbers

        def number(conn: sqlite3.Connection) -> None:
            """Find (or give) the number of every address the rows name, before they are
            written: the rows' address columns then change in bulk, a number per text."""
            if len(numbers) > _NUMBERS_KEPT:
                self._forget_numbers()
            for text in texts:
                if text not in numbers:
                    numbers[text] = _number(conn, text)

        def chunk(rows: list[object], start: int, end: int, fresh: bool
                  ) -> Callable[[sqlite3.Connection], None]:
            width, addresses = ((_FRESH_WIDTH, _FRESH_ADDRESSES) if fresh
                                else (_WIDTH, _ADDRESS_COLUMNS))
            count = (end - start) // width
            if fresh:
                sql = _INSERT_FRESH_CHUNK if count == _CHUNK else _insert_fresh(count)
            else:
                sql = _INSERT_CHUNK if count == _CHUNK else _insert(count)

            def write(conn: sqlite3.Connection) -> None:
                values = rows[start:end]
                to_number = numbers.__getitem__
                for column in addresses:
                    values[column::width] = map(to_number, values[column::width])
                conn.execute(sql, values)

            return write

        def post(conn: sqlite3.Connection) -> None:
            for owner, (seqs, stamps, contacts) in postings.items():
                self._post(conn, owner, NewEntries(seqs, stamps, contacts))

        def trim(conn: sqlite3.Connection) -> None:
            for owner, entries in postings.items():
                size = self._sizes.get(owner)
                size = _size(conn, owner) if size is None else size + len(entries[0])
                if size > keep + _TRIM_SLACK or (size > keep and keep < _TRIM_SLACK):
                    self._drop(conn, owner, keep)
                    size = keep
                self._sizes[owner] = size

        # A slice of _CHUNK rows (about a millisecond) at a time, on the event loop's thread
        # (see Database.write_in_slices: cheaper than the database thread for many rows).
        slices = [chunk(rows, start, min(start + _CHUNK * width, len(rows)), fresh)
                  for rows, width, fresh in ((params, _FRESH_WIDTH, True),
                                             (others, _WIDTH, False))
                  for start in range(0, len(rows), _CHUNK * width)]
        try:
            await self.db.write_in_slices([number, *slices, post, trim])
        except BaseException:
            self._forget_caches()
            raise

    def _forget_caches(self) -> None:
        """After a failed write: what the caches say may not have been committed."""
        self._sizes.clear()
        self._tails.clear()
        self._forget_numbers()  # numbers given in the failed write are gone with it

    def _forget_numbers(self) -> None:
        """Empty the cache of mam_jids numbers (it always maps None, a missing side, to None)."""
        self._numbers.clear()
        self._numbers[None] = None

    def _post(self, conn: sqlite3.Connection, owner: str, entries: NewEntries) -> None:
        """Add ``entries`` (with larger seqs than any of the archive's) to ``owner``'s
        postings."""
        top, count = entries.seqs[-1], len(entries.seqs)
        seqs, stamps, contacts = entries.encoded()
        tail = self._tails.get(owner)
        if tail is None:
            tail = self._tails[owner] = _tail(conn, owner)
        last, size = tail
        if last and count <= _FEW_ENTRIES and size + count <= _ROW_ENTRIES:
            row = conn.execute("SELECT seqs, stamps, contacts FROM mam_postings"
                               " WHERE owner = ? AND last = ?", (owner, last)).fetchone()
            if row is not None:
                conn.execute("UPDATE mam_postings SET last = ?, size = size + ?, seqs = ?,"
                             " stamps = ?, contacts = ? WHERE owner = ? AND last = ?",
                             (top, count, row[0] + seqs, row[1] + stamps,
                              f"{row[2]}\n{contacts}", owner, last))
                self._tails[owner] = (top, size + count)
                return
        conn.execute("INSERT INTO mam_postings VALUES (?, ?, ?, ?, ?, ?)",
                     (owner, top, count, seqs, stamps, contacts))
        self._tails[owner] = (top, count)

    def _drop(self, conn: sqlite3.Connection, owner: str, keep: int | None) -> None:
        """Take ``owner``'s oldest messages out of its archive, leaving ``keep`` (None: drop
        all): a row nobody else keeps is deleted, a shared one loses ``owner``'s side only."""
        rows = conn.execute("SELECT last, seqs, stamps, contacts FROM mam_postings"
                            " WHERE owner = ? ORDER BY last", (owner,)).fetchall()
        listed = Postings.of_rows(row[1:] for row in rows)
        excess = len(listed) if keep is None else len(listed) - keep
        if excess <= 0:
            return
        dropped = listed.seqs[:excess].tolist()
        cut = dropped[-1]
        for last, *columns in rows:
            if last <= cut:
                conn.execute("DELETE FROM mam_postings WHERE owner = ? AND last = ?",
                             (owner, last))
                continue
            row = Postings.of_rows([columns])  # type: ignore[list-item]
            if row.seqs[0] <= cut:
                kept = row.tail(cut)
                conn.execute("UPDATE mam_postings SET size = ?, seqs = ?, stamps = ?,"
                             " contacts = ? WHERE owner = ? AND last = ?",
                             (len(kept[0]) // 8, *kept, owner, last))
            break  # the rows after this one hold later messages only
        self._tails.pop(owner, None)
        number = _known_number(conn, owner)
        for start in range(0, len(dropped), _IN_LIST):
            seqs = dropped[start:start + _IN_LIST]
            marks = ", ".join("?" * len(seqs))
            for side in ("out", "in"):
                conn.execute(f"UPDATE mam_archive SET {side}_owner = NULL, {side}_with = NULL"  # noqa: S608
                             f" WHERE seq IN ({marks}) AND {side}_owner = ?", (*seqs, number))
            conn.execute(f"DELETE FROM mam_archive WHERE seq IN ({marks})"  # noqa: S608
                         " AND out_owner IS NULL AND in_owner IS NULL", seqs)

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
        owner = str(query.owner.bare)

        def read(conn: sqlite3.Connection) -> Page:
            seqs = _matching(conn, owner, query)
            low = 0 if after_seq is None else bisect.bisect_right(seqs, after_seq)
            high = len(seqs) if before_seq is None else bisect.bisect_left(seqs, before_seq)
            high = max(low, high)
            if backward:
                chosen = seqs[max(low, high - limit):high] if limit else []
            else:
                chosen = seqs[low:min(high, low + limit)]
            complete = high - low <= limit
            rows = _rows(conn, list(chosen))
            first_index = bisect.bisect_left(seqs, chosen[0]) if chosen else None
            return Page(rows, complete, len(seqs), first_index)

        return await self.db.run(read, readonly=True)

    async def bounds(self, owner: JID) -> tuple[Row, Row] | None:
        """The first and the last message of an archive (XEP-0313 §5), None if it is empty."""
        bare = str(owner.bare)

        def read(conn: sqlite3.Connection) -> tuple[Row, Row] | None:
            ends: list[int] = []
            for order in ("ASC", "DESC"):
                row = conn.execute("SELECT seqs FROM mam_postings WHERE owner = ?"  # noqa: S608
                                   f" ORDER BY last {order} LIMIT 1", (bare,)).fetchone()
                seqs = unpack(row[0]) if row is not None else []
                if not seqs:
                    return None
                ends.append(seqs[0] if order == "ASC" else seqs[-1])
            first, last = (Row(r.seq, r.uid, r.stamp, b"") for r in _rows(conn, ends))
            return first, last

        return await self.db.run(read, readonly=True)

    async def forget(self, owner: JID) -> None:
        """Delete the archive and the preferences of a deleted account (a message it shares
        stays in the other party's archive)."""
        owner = owner.bare

        def write(conn: sqlite3.Connection) -> None:
            self._drop(conn, str(owner), None)
            conn.execute("DELETE FROM mam_postings WHERE owner = ?", (str(owner),))
            conn.execute("DELETE FROM mam_prefs WHERE owner = ?", (str(owner),))
            # The addresses no row names any more (the account's own among them, unless a
            # message it shares keeps them): account removal leaves no trace of them.
            conn.execute("DELETE FROM mam_jids WHERE id NOT IN ("
                         "SELECT out_owner FROM mam_archive WHERE out_owner IS NOT NULL"
                         " UNION SELECT out_with FROM mam_archive WHERE out_with IS NOT NULL"
                         " UNION SELECT in_owner FROM mam_archive WHERE in_owner IS NOT NULL"
                         " UNION SELECT in_with FROM mam_archive WHERE in_with IS NOT NULL)")
            # Forgotten here, in the transaction: no batch may number its rows with a
            # number just deleted (batches wait for the database like this write).
            self._forget_numbers()
            self._sizes.pop(str(owner), None)
            self._tails.pop(str(owner), None)

        try:
            await self.db.run(write)
        except BaseException:
            self._forget_caches()
            raise
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


# An archive's new entries in a batch: (seqs, stamps, contacts).
_Entries = tuple[list[int], list[int], list[str]]
# What a batch's messages of one conversation fill in: the texts of the owner, the remote, the
# recipient's bare JID and the sender (the last two empty unless both archives keep the
# messages), and the entries of the owner's archive and of the recipient's (or None).
_Conversation = tuple[str, str, str, str, _Entries, _Entries | None]


def _conversation(owner_jid: JID, remote_jid: JID, sender_jid: JID | None,
                  postings: dict[str, _Entries], texts: set[str]) -> _Conversation:
    """A conversation's texts and postings (see :data:`_Conversation`), noting its addresses
    in ``texts``."""
    owner, remote = str(owner_jid), str(remote_jid)
    mine = postings.setdefault(owner, ([], [], []))
    if sender_jid is None:
        texts.update((owner, remote))
        return owner, remote, "", "", mine, None
    sender = str(sender_jid)
    recipient = remote.partition("/")[0]  # the bare JID: before the first '/' (RFC 7622 §3.1)
    texts.update((owner, remote, recipient, sender))
    return owner, remote, recipient, sender, mine, postings.setdefault(recipient, ([], [], []))


def _size(conn: sqlite3.Connection, owner: str) -> int:
    (size,) = conn.execute("SELECT COALESCE(SUM(size), 0) FROM mam_postings WHERE owner = ?",
                           (owner,)).fetchone()
    return int(size)


def _tail(conn: sqlite3.Connection, owner: str) -> tuple[int, int]:
    """(last seq, size) of ``owner``'s last posting row; (0, 0) if it has none."""
    row = conn.execute("SELECT last, size FROM mam_postings WHERE owner = ?"
                       " ORDER BY last DESC LIMIT 1", (owner,)).fetchone()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


def _matching(conn: sqlite3.Connection, owner: str, q: Query) -> Sequence[int]:
    """The seqs of ``owner``'s messages that pass the filters of ``q``, in order."""
    listed = Postings.of_rows(conn.execute(
        "SELECT seqs, stamps, contacts FROM mam_postings WHERE owner = ? ORDER BY last",
        (owner,)))
    wanted: set[int] | None = None
    if q.uids is not None:
        wanted = {seq for seq in (_find(conn, owner, uid) for uid in q.uids) if seq is not None}
    return listed.select(with_bare=q.with_bare, with_full=q.with_full, start=q.start,
                         end=q.end, after=q.after_seq, before=q.before_seq, wanted=wanted)


def _unlisted(conn: sqlite3.Connection) -> bool:
    """Whether the archive has rows but no postings (an upgrade or an import just wrote it)."""
    return (conn.execute("SELECT 1 FROM mam_postings LIMIT 1").fetchone() is None
            and conn.execute("SELECT 1 FROM mam_archive LIMIT 1").fetchone() is not None)


def rebuild_postings(conn: sqlite3.Connection) -> None:
    """Every archive's postings from the rows (after an upgrade or an import)."""
    conn.execute("DELETE FROM mam_postings")
    current: str | None = None
    entries = NewEntries()

    def flush() -> None:
        if current is not None and entries.seqs:
            conn.execute("INSERT INTO mam_postings VALUES (?, ?, ?, ?, ?, ?)",
                         (current, entries.seqs[-1], len(entries.seqs), *entries.encoded()))

    for owner, seq, stamp, contact in conn.execute(
            "SELECT o.jid, a.seq, a.stamp, w.jid FROM mam_archive a"
            " JOIN mam_jids o ON o.id = a.out_owner JOIN mam_jids w ON w.id = a.out_with"
            " UNION ALL SELECT o.jid, a.seq, a.stamp, w.jid FROM mam_archive a"
            " JOIN mam_jids o ON o.id = a.in_owner JOIN mam_jids w ON w.id = a.in_with"
            " ORDER BY 1, 2"):
        if owner != current or len(entries.seqs) >= _REBUILT_ROW_ENTRIES:
            flush()
            current, entries = owner, NewEntries()
        entries.add(int(seq), int(stamp), contact)
    flush()


def _rows(conn: sqlite3.Connection, seqs: Sequence[int]) -> list[Row]:
    """The messages ``seqs`` (at most a page, or two ends), in seq order."""
    if not seqs:
        return []
    marks = ", ".join("?" * len(seqs))
    return [Row(int(seq), uid, int(stamp), bytes(stanza))
            for seq, uid, stamp, stanza in conn.execute(
                f"SELECT seq, uid, stamp, stanza FROM mam_archive WHERE seq IN ({marks})"  # noqa: S608
                " ORDER BY seq", tuple(seqs))]


def _find(conn: sqlite3.Connection, owner: str, uid: str) -> int | None:
    """The seq of message ``uid`` of ``owner``'s archive: by the seq in the id, else by the
    index of ids without one."""
    number = _known_number(conn, owner)
    if number is None:
        return None
    seq = seq_of(uid)
    if seq is not None:
        row = conn.execute("SELECT seq FROM mam_archive WHERE seq = ? AND uid = ?"
                           " AND (out_owner = ? OR in_owner = ?)",
                           (seq, uid, number, number)).fetchone()
        if row is not None:
            return int(row[0])
    row = conn.execute("SELECT seq FROM mam_archive WHERE uid = ? AND by_uid = 1"
                       " AND (out_owner = ? OR in_owner = ?)", (uid, number, number)).fetchone()
    return int(row[0]) if row is not None else None

"""``pubsubd storage export|import``: every row of every store, between any two backends.

Both SQL backends keep the same tables with the same columns (each PostgreSQL store mirrors its
SQLite twin, see :mod:`pubsubd.storage.postgres`), so a dump is a list of table rows: JSON
lines, one header then one line per row, bytes as base64. Export reads a consistent snapshot
(one transaction); import fills an *empty* database of the current schema in one transaction
and then moves the counters (MAM and pubsub sequence numbers, offline message ids) past the
imported rows, so nothing handed out later collides with an imported number.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pubsubd.storage import mam_sqlite
from pubsubd.storage.backends import Resolved, StorageSettings, open_backend, resolve

FORMAT = "pubsubd-storage-export"
VERSION = 1
BATCH = 1000


@dataclass(frozen=True, slots=True)
class SqliteLayout:
    """How SQLite keeps a table whose columns differ from the shared ones: the expressions
    that read a row as exported, and the columns an imported row fills once converted."""

    select: str
    columns: tuple[str, ...]
    convert: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    # Converted rows as written, given the connection (e.g. addresses kept as numbers).
    resolve: Callable[[Any, list[tuple[Any, ...]]], list[tuple[Any, ...]]] | None = None


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    order: str  # ORDER BY on both backends, except where ``sqlite_order`` differs
    sqlite_order: str | None = None
    sqlite_layout: SqliteLayout | None = None


def _t(name: str, columns: str, order: str, sqlite_order: str | None = None,
       sqlite_layout: SqliteLayout | None = None) -> Table:
    return Table(name, tuple(c.strip() for c in columns.split(",")), order, sqlite_order,
                 sqlite_layout)


# Parents before children (foreign keys). Every table of every store is here; a unit test
# checks the list against the tables both backends create.
TABLES = (
    _t("accounts", "domain, username, enabled, created, last_login, last_logout",
       "domain, username"),
    _t("account_credentials",
       "domain, username, hash, salt, iterations, stored_key, server_key",
       "domain, username, hash"),
    _t("roster_items", "owner, contact, name, groups, subscription, ask, approved",
       "owner, contact"),
    _t("roster_versions", "owner, version", "owner"),
    _t("subscription_requests", "owner, contact, stanza", "owner, contact"),
    _t("offline_messages", "id, owner, stanza", "id"),
    _t("blocklist", "owner, blocked", "owner, blocked"),
    _t("vcards", "owner, vcard", "owner"),
    _t("mam_archive", "seq, uid, stamp, stanza, by_uid, out_owner, out_with_bare,"
       " out_with_full, in_owner, in_with_bare, in_with_full", "seq",
       sqlite_layout=SqliteLayout(mam_sqlite.EXPORT_COLUMNS, mam_sqlite.IMPORT_COLUMNS,
                                  mam_sqlite.imported_row, mam_sqlite.numbered_rows)),
    _t("mam_prefs", "owner, default_policy, always, never", "owner"),
    _t("muc_rooms", "room, config, subject, subject_nick", "room"),
    _t("muc_affiliations", "room, jid, affiliation, nick", "room, jid"),
    _t("private_xml", "owner, namespace, name, data", "owner, namespace, name"),
    _t("admin_motd", "id, text, set_at", "id"),
    _t("pubsub_nodes", "service, node, config, creator, created", "service, node"),
    _t("pubsub_affiliations", "service, node, jid, affiliation", "service, node, jid"),
    # Subscription order is insertion order: rowid on SQLite, pos on PostgreSQL.
    _t("pubsub_subscriptions", "service, node, subid, jid, bare_jid, state, options", "pos",
       "rowid"),
    _t("pubsub_items", "service, node, item_id, payload, publisher, published, seq",
       "service, node, seq"),
    _t("pubsub_held", "service, node, bare_jid, recipient, skipped",
       "service, node, bare_jid"),
    _t("pubsub_held_items", "service, node, bare_jid, item_id, seq",
       "service, node, bare_jid, seq"),
    _t("pubsub_digests", "service, node, address, recipient, started, frequency",
       "service, node, address"),
    # Item order in a batch is insertion order: rowid on SQLite, pos on PostgreSQL.
    _t("pubsub_digest_items", "service, node, address, item_id, payload, publisher, published,"
       " seq", "pos", "rowid"),
    _t("feeds", "feed_id, url, active, next_fetch, state, lease_owner, lease_token,"
       " lease_until", "feed_id"),
    _t("feed_seen", "feed_id, item_id, content_hash, last_seen, claim", "feed_id, item_id"),
    _t("feed_hosts", "host, next_slot", "host"),
    _t("feed_fetches", "token, host, until", "token"),
    _t("feed_contact", "short, feed_id", "short"),
    _t("feed_service", "feed_id, pinned, idle", "feed_id"),
    _t("upload_files", "slot_id, owner, filename, size, content_type, granted, uploaded",
       "slot_id"),
    _t("websub_hub_subscriptions", "topic, callback, secret, expires", "topic, callback"),
    _t("room_feed", "room, node, nick, added_by", "room, node"),
    _t("websub_leases", "feed_id, hub, topic, token, secret, state, requested, expires,"
       " last_push", "feed_id"),
    _t("push_registrations", "owner, service, node, options, enabled", "owner, service, node"),
)


class TransferError(RuntimeError):
    pass


def _archive_row_of_old_layout(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A ``mam_messages`` row of an export made before archives shared rows (seq, owner, uid,
    stamp, with_bare, with_full, stanza) as the ``mam_archive`` row the upgrade makes of it:
    on the in side, found by its id."""
    seq, owner, uid, stamp, with_bare, with_full, stanza = row
    return (seq, uid, stamp, stanza, 1, None, None, None, owner, with_bare, with_full)


# Tables of older exports: the table their rows go to now, and how a row is converted.
_OLD_TABLES = {"mam_messages": ("mam_archive", _archive_row_of_old_layout)}

# SQLite keeps the archive in its own layout (see pubsubd.storage.mam_sqlite): an export
# reads its rows through these expressions, an import converts them (numbering their
# addresses in mam_jids), and the postings (an index SQLite keeps as a table, not exported)
# are rebuilt from the imported rows.
SQLITE_DERIVED_TABLES = frozenset({"mam_postings", "mam_jids"})


def _encode(value: object) -> object:
    if isinstance(value, bytes | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _decode(value: object) -> object:
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value


class _Connection:
    """A DB-API connection to either backend, opened after :func:`prepare` migrated it."""

    def __init__(self, resolved: Resolved, base_dir: Path) -> None:
        self.postgres = resolved.backend == "postgres"
        self.conn: Any
        if self.postgres:
            import psycopg

            self.conn = psycopg.connect(resolved.url)
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        else:
            path = Path(resolved.path)
            self.conn = sqlite3.connect(path if path.is_absolute() else base_dir / path)
            self.conn.execute("BEGIN")

    def tables(self) -> set[str]:
        if self.postgres:
            query = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        else:
            query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        return {str(name) for (name,) in self.conn.execute(query).fetchall()}

    def rows(self, table: Table) -> Iterator[tuple[Any, ...]]:
        order = table.sqlite_order if table.sqlite_order and not self.postgres else table.order
        columns = ", ".join(table.columns)
        if table.sqlite_layout is not None and not self.postgres:
            columns = table.sqlite_layout.select
        cur = self.conn.cursor()
        cur.execute(f"SELECT {columns} FROM {table.name}"  # noqa: S608
                    f" ORDER BY {order}")
        while batch := cur.fetchmany(BATCH):
            yield from batch

    def count(self, table: str) -> int:
        row = self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608
        return int(row[0])

    def insert(self, table: Table, rows: list[tuple[Any, ...]]) -> None:
        columns = table.columns
        if table.sqlite_layout is not None and not self.postgres:
            columns = table.sqlite_layout.columns
            rows = [table.sqlite_layout.convert(row) for row in rows]
            if table.sqlite_layout.resolve is not None:
                rows = table.sqlite_layout.resolve(self.conn, rows)
        marks = ", ".join(["%s" if self.postgres else "?"] * len(columns))
        query = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
        cur = self.conn.cursor()
        cur.executemany(query, rows)

    def item_sequence(self) -> int:
        """The last pubsub item sequence number handed out."""
        if self.postgres:
            row = self.conn.execute(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pubsub_item_seq"
            ).fetchone()
        else:
            row = self.conn.execute("SELECT value FROM pubsub_sequence WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def set_counters(self, item_sequence: int) -> None:
        """Move every counter past the imported rows."""
        if self.postgres:
            for table, column in (("mam_archive", "seq"), ("offline_messages", "id"),
                                  ("pubsub_subscriptions", "pos")):
                self.conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                    f" GREATEST((SELECT MAX({column}) FROM {table}), 1),"
                    f" (SELECT MAX({column}) FROM {table}) IS NOT NULL)")
            top = self.conn.execute(
                "SELECT GREATEST(%s, (SELECT MAX(seq) FROM pubsub_items),"
                " (SELECT MAX(seq) FROM pubsub_held_items))", (item_sequence,)).fetchone()
            if top and top[0]:
                self.conn.execute("SELECT setval('pubsub_item_seq', %s)", (top[0],))
        else:  # AUTOINCREMENT follows explicitly inserted keys by itself
            mam_sqlite.rebuild_postings(self.conn)
            self.conn.execute("UPDATE pubsub_sequence SET value = MAX(value, ?,"
                              " COALESCE((SELECT MAX(seq) FROM pubsub_items), 0),"
                              " COALESCE((SELECT MAX(seq) FROM pubsub_held_items), 0))"
                              " WHERE id = 1", (item_sequence,))

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def prepare(settings: StorageSettings, base_dir: Path) -> Resolved:
    """Create or migrate every store's tables (as the server would at start-up)."""
    open_backend(settings, base_dir).close()  # every store migrates its tables on open
    return resolve(settings)


def export(settings: StorageSettings, base_dir: Path, out: IO[str]) -> dict[str, int]:
    """Write every row of the configured storage to ``out``; returns rows per table."""
    resolved = prepare(settings, base_dir)
    conn = _Connection(resolved, base_dir)
    counts: dict[str, int] = {}
    try:
        present = conn.tables()
        header = {"format": FORMAT, "version": VERSION, "from": resolved.backend,
                  "pubsub_item_sequence": conn.item_sequence()}
        out.write(json.dumps(header) + "\n")
        for table in TABLES:
            if table.name not in present:
                continue
            counts[table.name] = 0
            for row in conn.rows(table):
                out.write(json.dumps({"t": table.name, "r": [_encode(v) for v in row]}) + "\n")
                counts[table.name] += 1
    finally:
        conn.close()
    return counts


def import_(settings: StorageSettings, base_dir: Path, lines: Iterable[str]) -> dict[str, int]:
    """Load an export into the configured storage, which must hold no data yet."""
    resolved = prepare(settings, base_dir)
    by_name = {t.name: t for t in TABLES}
    conn = _Connection(resolved, base_dir)
    counts: dict[str, int] = {}
    try:
        busy = [t.name for t in TABLES if t.name in conn.tables() and conn.count(t.name)]
        if busy:
            raise TransferError(f"the target storage already holds data (in {', '.join(busy)});"
                                " import only into an empty database")
        it = iter(lines)
        header = json.loads(next(it, "{}"))
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise TransferError(f"not a {FORMAT} version {VERSION} file")
        pending: list[tuple[Any, ...]] = []
        current: Table | None = None
        for line in it:
            record = json.loads(line)
            row = tuple(_decode(v) for v in record["r"])
            table = by_name.get(record["t"])
            if table is None and record["t"] in _OLD_TABLES:
                name, convert = _OLD_TABLES[record["t"]]
                table, row = by_name[name], convert(row)
            if table is None:
                raise TransferError(f"unknown table {record['t']!r} in the export")
            if table is not current:
                if current is not None and pending:
                    conn.insert(current, pending)
                current, pending = table, []
            pending.append(row)
            counts[table.name] = counts.get(table.name, 0) + 1
            if len(pending) >= BATCH:
                conn.insert(table, pending)
                pending = []
        if current is not None and pending:
            conn.insert(current, pending)
        conn.set_counters(int(header.get("pubsub_item_sequence", 0)))
        conn.commit()
    finally:
        conn.close()
    return counts

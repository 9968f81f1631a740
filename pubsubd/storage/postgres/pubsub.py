"""The pubsub store (XEP-0060 nodes, items, subscriptions, affiliations, catch-up) on
PostgreSQL.

Rows use the same columns and JSON codecs as :mod:`pubsubd.storage.pubsub_sqlite`, so
``pubsubd storage export|import`` moves them unchanged. Item sequence numbers come from a
``SEQUENCE`` rather than SQLite's one-row counter, which would serialise every publish of every
node; publishes to one node are serialised instead by locking the node's row, which keeps the
``max_items`` trimming exact under concurrent publishers.

Several instances may share the database: every write to a node's configuration, affiliations
or subscriptions notifies the others (kind ``pubsub``, key ``["service", "node"]``, see
:mod:`.invalidation`). The subscriptions of a node are cached, so a publish fans out without
re-reading and re-parsing them, but every use first checks them against the database: the
number of the node's subscription rows and their highest ``pos`` (a sequence: any insert, and
every change, which replaces its row, raises it; a delete lowers the count). A client told by
one instance that it subscribed is thus never missed by another instance's next publish, however
late that instance hears the notification. Nodes and items are read every time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TypeVar

import psycopg

from pubsubd.pubsub.delivery import Hold, Recipient
from pubsubd.pubsub.model import Affiliation, Item, Node, Subscription, bare
from pubsubd.pubsub.store import BatchPutResult, HeldEntry, NewItem, PendingDigest, PutResult
from pubsubd.storage.postgres.database import PgDatabase
from pubsubd.storage.pubsub_sqlite import (
    _config_json,
    _digest_recipient_json,
    _held_meta,
    _item_row,
    _node_row,
    _recipient_json,
    _subscription_row,
)

MIGRATIONS = [
    """
    CREATE TABLE pubsub_nodes (
        service TEXT NOT NULL, node TEXT NOT NULL, config TEXT NOT NULL,
        creator TEXT NOT NULL, created TEXT,
        PRIMARY KEY (service, node)
    );
    CREATE TABLE pubsub_affiliations (
        service TEXT NOT NULL, node TEXT NOT NULL, jid TEXT NOT NULL,
        affiliation TEXT NOT NULL,
        PRIMARY KEY (service, node, jid),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes ON DELETE CASCADE
    );
    CREATE INDEX pubsub_affiliations_jid ON pubsub_affiliations (service, jid);
    CREATE TABLE pubsub_subscriptions (
        service TEXT NOT NULL, node TEXT NOT NULL, subid TEXT NOT NULL,
        jid TEXT NOT NULL, bare_jid TEXT NOT NULL, state TEXT NOT NULL, options TEXT NOT NULL,
        pos BIGSERIAL NOT NULL,
        PRIMARY KEY (service, node, subid),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes ON DELETE CASCADE
    );
    CREATE INDEX pubsub_subscriptions_jid ON pubsub_subscriptions (service, bare_jid);
    CREATE INDEX pubsub_subscriptions_node_jid ON pubsub_subscriptions (service, node, jid);
    CREATE TABLE pubsub_items (
        service TEXT NOT NULL, node TEXT NOT NULL, item_id TEXT NOT NULL,
        payload TEXT NOT NULL, publisher TEXT NOT NULL, published TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (service, node, item_id),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes ON DELETE CASCADE
    );
    CREATE INDEX pubsub_items_seq ON pubsub_items (service, node, seq);
    CREATE SEQUENCE pubsub_item_seq;
    CREATE TABLE pubsub_held (
        service TEXT NOT NULL, node TEXT NOT NULL, bare_jid TEXT NOT NULL,
        recipient TEXT NOT NULL, skipped INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (service, node, bare_jid),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes ON DELETE CASCADE
    );
    CREATE INDEX pubsub_held_jid ON pubsub_held (service, bare_jid);
    CREATE TABLE pubsub_held_items (
        service TEXT NOT NULL, node TEXT NOT NULL, bare_jid TEXT NOT NULL,
        item_id TEXT NOT NULL, seq BIGINT NOT NULL,
        PRIMARY KEY (service, node, bare_jid, item_id),
        FOREIGN KEY (service, node, bare_jid) REFERENCES pubsub_held ON DELETE CASCADE
    )
    """,
    # Digest batches (pubsub#digest), written with the publish that fed them (as on SQLite).
    """
    CREATE TABLE pubsub_digests (
        service TEXT NOT NULL, node TEXT NOT NULL, address TEXT NOT NULL,
        recipient TEXT NOT NULL, started DOUBLE PRECISION NOT NULL,
        frequency DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (service, node, address),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes ON DELETE CASCADE
    );
    CREATE TABLE pubsub_digest_items (
        service TEXT NOT NULL, node TEXT NOT NULL, address TEXT NOT NULL,
        item_id TEXT NOT NULL, payload TEXT NOT NULL, publisher TEXT NOT NULL,
        published TEXT NOT NULL, seq BIGINT NOT NULL, pos BIGSERIAL NOT NULL,
        PRIMARY KEY (service, node, address, item_id),
        FOREIGN KEY (service, node, address) REFERENCES pubsub_digests ON DELETE CASCADE
    )
    """,
]

T = TypeVar("T")

_NODE_COLUMNS = "service, node, config, creator, created"
_SUB_COLUMNS = "node, subid, jid, state, options"
_ITEM_COLUMNS = "item_id, payload, publisher, published, seq"
_HELD_KEY = "service = %s AND node = %s AND bare_jid = %s"
_DIGEST_KEY = "service = %s AND node = %s AND address = %s"


def _lock_node(conn: psycopg.Connection, service: str, node_id: str) -> bool:
    """Lock the node's row for this transaction (False if there is no such node)."""
    return conn.execute("SELECT 1 FROM pubsub_nodes WHERE service = %s AND node = %s"
                        " FOR NO KEY UPDATE", (service, node_id)).fetchone() is not None


def _held_entry(conn: psycopg.Connection, service: str, node_id: str, bare_jid: str,
                meta: str, skipped: int) -> HeldEntry:
    ids = tuple(str(row[0]) for row in conn.execute(
        f"SELECT item_id FROM pubsub_held_items WHERE {_HELD_KEY} ORDER BY seq",
        (service, node_id, bare_jid)))
    recipient, shows = _held_meta(meta)
    return HeldEntry(node_id, bare_jid, recipient, shows, ids, skipped)


_KIND = "pubsub"
_Stamp = tuple[int, int | None]  # a node's subscription rows: how many, and their highest pos


def node_key(service: str, node_id: str) -> str:
    """The key of a node in ``pubsub`` notifications."""
    return json.dumps([service, node_id])


class PgPubSubStore:
    """:class:`~pubsubd.pubsub.store.PubSubStore` on :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("pubsub", MIGRATIONS)
        # node → (its subscriptions' stamp, the subscriptions as last read): the same objects
        # while the stamp holds (the fan-out reuses its delivery candidates while they are).
        self._subscriptions: dict[tuple[str, str], tuple[_Stamp, list[Subscription]]] = {}
        db.invalidation.subscribe(_KIND, self._changed_elsewhere)

    async def _changed_elsewhere(self, key: str | None) -> None:
        # Not needed for correctness (every use checks the stamp); it frees the memory early.
        if key is None:
            self._subscriptions.clear()
            return
        service, node_id = json.loads(key)
        self._forget(service, node_id)

    def _forget(self, service: str, node_id: str) -> None:
        self._subscriptions.pop((service, node_id), None)

    def _notify(self, conn: psycopg.Connection, service: str, node_id: str) -> None:
        self.db.notify(conn, _KIND, node_key(service, node_id))

    async def _write(self, service: str, node_id: str, fn: Callable[[psycopg.Connection], T]) -> T:
        """Run a write to the node's state in one transaction that also notifies the other
        instances; this instance's cached subscriptions of the node are dropped around it."""
        def write(conn: psycopg.Connection) -> T:
            result = fn(conn)
            self._notify(conn, service, node_id)
            return result

        self._forget(service, node_id)
        try:
            return await self.db.run(write)
        finally:
            self._forget(service, node_id)

    # --- nodes ----------------------------------------------------------------------------

    async def create_node(self, node: Node, owner: str | None) -> bool:
        def create(conn: psycopg.Connection) -> bool:
            cur = conn.execute(
                f"INSERT INTO pubsub_nodes ({_NODE_COLUMNS}) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (node.service, node.node_id, _config_json(node.config), node.creator,
                 node.created.isoformat() if node.created else None))
            if cur.rowcount == 0:
                return False
            if owner:
                conn.execute(
                    "INSERT INTO pubsub_affiliations (service, node, jid, affiliation)"
                    " VALUES (%s, %s, %s, %s)",
                    (node.service, node.node_id, bare(owner), Affiliation.OWNER.value))
            return True

        return await self._write(node.service, node.node_id, create)

    async def get_node(self, service: str, node_id: str) -> Node | None:
        row = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_NODE_COLUMNS} FROM pubsub_nodes WHERE service = %s AND node = %s",
            (service, node_id)).fetchone())
        return _node_row(row) if row else None

    async def list_nodes(self, service: str) -> list[Node]:
        rows = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_NODE_COLUMNS} FROM pubsub_nodes WHERE service = %s ORDER BY node",
            (service,)).fetchall())
        return [_node_row(row) for row in rows]

    async def update_node(self, node: Node) -> None:
        await self._write(node.service, node.node_id, lambda conn: conn.execute(
            "UPDATE pubsub_nodes SET config = %s WHERE service = %s AND node = %s",
            (_config_json(node.config), node.service, node.node_id)))

    async def delete_node(self, service: str, node_id: str) -> None:
        await self._write(service, node_id, lambda conn: conn.execute(
            "DELETE FROM pubsub_nodes WHERE service = %s AND node = %s", (service, node_id)))

    # --- affiliations ---------------------------------------------------------------------

    async def get_affiliation(self, service: str, node_id: str, jid: str) -> Affiliation:
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT affiliation FROM pubsub_affiliations"
            " WHERE service = %s AND node = %s AND jid = %s",
            (service, node_id, bare(jid))).fetchone())
        return Affiliation(row[0]) if row else Affiliation.NONE

    async def set_affiliation(self, service: str, node_id: str, jid: str,
                              affiliation: Affiliation) -> None:
        def store(conn: psycopg.Connection) -> None:
            key = (service, node_id, bare(jid))
            if affiliation is Affiliation.NONE:
                conn.execute("DELETE FROM pubsub_affiliations"
                             " WHERE service = %s AND node = %s AND jid = %s", key)
            else:
                conn.execute(
                    "INSERT INTO pubsub_affiliations (service, node, jid, affiliation)"
                    " SELECT %s, %s, %s, %s WHERE EXISTS"
                    " (SELECT 1 FROM pubsub_nodes WHERE service = %s AND node = %s)"
                    " ON CONFLICT (service, node, jid)"
                    " DO UPDATE SET affiliation = excluded.affiliation",
                    (*key, affiliation.value, service, node_id))

        await self._write(service, node_id, store)

    async def list_affiliations(self, service: str, node_id: str) -> dict[str, Affiliation]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT jid, affiliation FROM pubsub_affiliations"
            " WHERE service = %s AND node = %s ORDER BY jid", (service, node_id)).fetchall())
        return {jid: Affiliation(value) for jid, value in rows}

    async def affiliations_of(self, service: str, jid: str) -> dict[str, Affiliation]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT node, affiliation FROM pubsub_affiliations"
            " WHERE service = %s AND jid = %s ORDER BY node", (service, bare(jid))).fetchall())
        return {node_id: Affiliation(value) for node_id, value in rows}

    # --- subscriptions --------------------------------------------------------------------

    async def put_subscription(self, service: str, subscription: Subscription) -> None:
        sub = subscription

        def store(conn: psycopg.Connection) -> None:
            # Replaced as on SQLite (INSERT OR REPLACE): a changed subscription moves last.
            conn.execute("DELETE FROM pubsub_subscriptions"
                         " WHERE service = %s AND node = %s AND subid = %s",
                         (service, sub.node, sub.subid))
            conn.execute(
                "INSERT INTO pubsub_subscriptions"
                " (service, node, subid, jid, bare_jid, state, options)"
                " SELECT %s, %s, %s, %s, %s, %s, %s WHERE EXISTS"
                " (SELECT 1 FROM pubsub_nodes WHERE service = %s AND node = %s)",
                (service, sub.node, sub.subid, sub.jid, sub.bare_jid, sub.state.value,
                 json.dumps(sub.options.to_form(), sort_keys=True), service, sub.node))

        await self._write(service, sub.node, store)

    async def delete_subscription(self, service: str, node_id: str, subid: str) -> bool:
        def delete(conn: psycopg.Connection) -> bool:
            return conn.execute(
                "DELETE FROM pubsub_subscriptions WHERE service = %s AND node = %s"
                " AND subid = %s", (service, node_id, subid)).rowcount > 0

        return await self._write(service, node_id, delete)

    async def list_subscriptions(self, service: str, node_id: str) -> list[Subscription]:
        key = (service, node_id)
        cached = self._subscriptions.get(key)

        def read(conn: psycopg.Connection) -> tuple[_Stamp, list[Subscription]] | None:
            if cached is not None:
                row = conn.execute(
                    "SELECT COUNT(*), MAX(pos) FROM pubsub_subscriptions"
                    " WHERE service = %s AND node = %s", (service, node_id)).fetchone()
                if row is not None and (int(row[0]), row[1]) == cached[0]:
                    return None  # unchanged since it was cached
            rows = conn.execute(
                f"SELECT {_SUB_COLUMNS}, pos FROM pubsub_subscriptions"
                " WHERE service = %s AND node = %s ORDER BY pos", (service, node_id)).fetchall()
            stamp = (len(rows), rows[-1][-1] if rows else None)
            return stamp, [_subscription_row(row[:-1]) for row in rows]

        fresh = await self.db.read(read)
        if fresh is None:
            assert cached is not None
            return list(cached[1])
        self._subscriptions[key] = fresh
        return list(fresh[1])

    async def node_subscriptions_of(self, service: str, node_id: str,
                                    jid: str) -> list[Subscription]:
        rows = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_SUB_COLUMNS} FROM pubsub_subscriptions"
            " WHERE service = %s AND node = %s AND jid = %s ORDER BY pos",
            (service, node_id, jid)).fetchall())
        return [_subscription_row(row) for row in rows]

    async def subscriptions_of(self, service: str, jid: str) -> list[Subscription]:
        rows = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_SUB_COLUMNS} FROM pubsub_subscriptions"
            " WHERE service = %s AND bare_jid = %s ORDER BY node, pos",
            (service, bare(jid))).fetchall())
        return [_subscription_row(row) for row in rows]

    # --- items ----------------------------------------------------------------------------

    async def put_items(self, service: str, node_id: str, items: Sequence[NewItem],
                        max_items: int | None) -> PutResult:
        def put(conn: psycopg.Connection) -> PutResult:
            if not _lock_node(conn, service, node_id):
                raise KeyError(node_id)
            return _put(conn, service, node_id, items, max_items)

        return await self.db.run(put)

    async def put_items_each(self, service: str, node_id: str, items: Sequence[NewItem],
                             max_items: int | None) -> list[PutResult]:
        def put(conn: psycopg.Connection) -> list[PutResult]:
            if not _lock_node(conn, service, node_id):
                raise KeyError(node_id)
            return [_put(conn, service, node_id, [new], max_items) for new in items]

        return await self.db.run(put)

    async def put_changed_items(self, service: str, node_id: str, items: Sequence[NewItem],
                                max_items: int | None) -> BatchPutResult:
        def put(conn: psycopg.Connection) -> BatchPutResult:
            if not _lock_node(conn, service, node_id):
                raise KeyError(node_id)
            written: list[Item] = []
            unchanged: list[str] = []
            for new in items:
                # The node's row lock keeps a concurrent batch from changing the item between
                # this comparison and the write.
                seq = _upsert(conn, service, node_id, new, only_if_changed=True)
                if seq is None:
                    unchanged.append(new.item_id)
                    continue
                written.append(Item(new.item_id, new.payload, new.publisher, new.published, seq))
            evicted = _trim(conn, service, node_id, max_items)
            return BatchPutResult(tuple(written), tuple(unchanged), tuple(evicted))

        return await self.db.run(put)

    async def get_items(self, service: str, node_id: str, item_ids: Sequence[str] | None = None,
                        limit: int | None = None) -> list[Item]:
        def get(conn: psycopg.Connection) -> list[Item]:
            rows = conn.execute(
                f"SELECT {_ITEM_COLUMNS} FROM pubsub_items WHERE service = %s AND node = %s"
                " AND (%s::text[] IS NULL OR item_id = ANY(%s::text[]))"
                " ORDER BY seq DESC LIMIT %s",
                (service, node_id, None if item_ids is None else list(item_ids),
                 None if item_ids is None else list(item_ids), limit)).fetchall()
            return [_item_row(row) for row in rows]

        return await self.db.read(get)

    async def count_items(self, service: str, node_id: str) -> int:
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT COUNT(*) FROM pubsub_items WHERE service = %s AND node = %s",
            (service, node_id)).fetchone())
        return int(row[0]) if row else 0

    async def delete_items(self, service: str, node_id: str, item_ids: Sequence[str]) -> list[str]:
        def delete(conn: psycopg.Connection) -> list[str]:
            gone = {str(r[0]) for r in conn.execute(
                "DELETE FROM pubsub_items WHERE service = %s AND node = %s"
                " AND item_id = ANY(%s) RETURNING item_id", (service, node_id, list(item_ids)))}
            return [i for i in dict.fromkeys(item_ids) if i in gone]

        return await self.db.run(delete)

    async def purge_items(self, service: str, node_id: str) -> list[str]:
        def purge(conn: psycopg.Connection) -> list[str]:
            rows = conn.execute("DELETE FROM pubsub_items WHERE service = %s AND node = %s"
                                " RETURNING seq, item_id", (service, node_id)).fetchall()
            return [str(item_id) for _, item_id in sorted(rows)]

        return await self.db.run(purge)

    # --- catch-up -------------------------------------------------------------------------

    async def hold_items(self, service: str, node_id: str, holds: Sequence[Hold],
                         items: Sequence[Item], cap: int) -> None:
        def hold_all(conn: psycopg.Connection) -> None:
            if not _lock_node(conn, service, node_id):
                return
            for hold in holds:
                key = (service, node_id, hold.bare_jid)
                conn.execute(
                    "INSERT INTO pubsub_held (service, node, bare_jid, recipient)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (service, node, bare_jid)"
                    " DO UPDATE SET recipient = excluded.recipient",
                    (*key, _recipient_json(hold)))
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO pubsub_held_items (service, node, bare_jid, item_id, seq)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (service, node, bare_jid,"
                        " item_id) DO UPDATE SET seq = excluded.seq",
                        [(*key, item.item_id, item.seq) for item in items])
                overflow = [str(r[0]) for r in conn.execute(
                    f"SELECT item_id FROM pubsub_held_items WHERE {_HELD_KEY}"
                    " ORDER BY seq DESC OFFSET %s", (*key, cap))]
                if overflow:
                    conn.execute(f"DELETE FROM pubsub_held_items WHERE {_HELD_KEY}"
                                 " AND item_id = ANY(%s)", (*key, overflow))
                    conn.execute(f"UPDATE pubsub_held SET skipped = skipped + %s"
                                 f" WHERE {_HELD_KEY}", (len(overflow), *key))

        await self.db.run(hold_all)

    async def held_for(self, service: str, bare_jid: str) -> list[HeldEntry]:
        def held(conn: psycopg.Connection) -> list[HeldEntry]:
            rows = conn.execute(
                "SELECT node, recipient, skipped FROM pubsub_held"
                " WHERE service = %s AND bare_jid = %s ORDER BY node",
                (service, bare_jid)).fetchall()
            return [_held_entry(conn, service, node_id, bare_jid, meta, skipped)
                    for node_id, meta, skipped in rows]

        return await self.db.read(held)

    async def take_held(self, service: str, node_id: str, bare_jid: str) -> HeldEntry | None:
        return await self.db.run(lambda conn: _take_held(conn, service, node_id, bare_jid))

    async def forget_held(self, service: str, node_id: str,
                          item_ids: Sequence[str] | None = None) -> None:
        def forget(conn: psycopg.Connection) -> None:
            if item_ids is None:
                conn.execute("DELETE FROM pubsub_held WHERE service = %s AND node = %s",
                             (service, node_id))
            else:
                conn.execute("DELETE FROM pubsub_held_items WHERE service = %s AND node = %s"
                             " AND item_id = ANY(%s)", (service, node_id, list(item_ids)))

        await self.db.run(forget)

    # --- digests ---------------------------------------------------------------------------------

    async def add_digest(self, service: str, node_id: str, recipient: Recipient,
                         items: Sequence[Item], *, started: float, frequency: float) -> None:
        def add(conn: psycopg.Connection) -> None:
            if not _lock_node(conn, service, node_id):
                return
            key = (service, node_id, recipient.address)
            conn.execute(
                "INSERT INTO pubsub_digests VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (service, node, address) DO NOTHING",
                (*key, _digest_recipient_json(recipient), started, frequency))
            for i in items:
                # A republished id moves to the end (a new position), as in the other stores.
                conn.execute(f"DELETE FROM pubsub_digest_items WHERE {_DIGEST_KEY}"
                             " AND item_id = %s", (*key, i.item_id))
                conn.execute(
                    "INSERT INTO pubsub_digest_items (service, node, address, item_id, payload,"
                    " publisher, published, seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (*key, i.item_id, i.payload, i.publisher, i.published.isoformat(), i.seq))

        await self.db.run(add)

    async def take_due_digests(self, service: str, now: float) -> list[PendingDigest]:
        def take(conn: psycopg.Connection) -> list[PendingDigest]:
            rows = conn.execute(
                "SELECT node, address, recipient, started, frequency FROM pubsub_digests"
                " WHERE service = %s AND %s - started >= frequency ORDER BY node, address"
                " FOR UPDATE", (service, now)).fetchall()
            due = []
            for node_id, address, meta, started, frequency in rows:
                key = (service, node_id, address)
                items = tuple(_item_row(row) for row in conn.execute(
                    f"SELECT {_ITEM_COLUMNS} FROM pubsub_digest_items WHERE {_DIGEST_KEY}"
                    " ORDER BY pos", key).fetchall())
                recipient, _ = _held_meta(json.dumps({**json.loads(meta), "shows": None}))
                due.append(PendingDigest(node_id, recipient, float(started), float(frequency),
                                         items))
                conn.execute(f"DELETE FROM pubsub_digests WHERE {_DIGEST_KEY}", key)
            return due

        return await self.db.run(take)

    async def forget_digest_items(
        self, service: str, node_id: str, item_ids: Sequence[str] | None = None
    ) -> None:
        def forget(conn: psycopg.Connection) -> None:
            if item_ids is None:
                conn.execute("DELETE FROM pubsub_digests WHERE service = %s AND node = %s",
                             (service, node_id))
                return
            conn.execute("DELETE FROM pubsub_digest_items WHERE service = %s AND node = %s"
                         " AND item_id = ANY(%s)", (service, node_id, list(item_ids)))
            conn.execute(
                "DELETE FROM pubsub_digests WHERE service = %s AND node = %s AND NOT EXISTS ("
                "SELECT 1 FROM pubsub_digest_items d WHERE d.service = pubsub_digests.service"
                " AND d.node = pubsub_digests.node AND d.address = pubsub_digests.address)",
                (service, node_id))

        await self.db.run(forget)


def _upsert(conn: psycopg.Connection, service: str, node_id: str, new: NewItem, *,
            only_if_changed: bool) -> int | None:
    """Write ``new`` (replacing an item of the same id) with the next sequence number; its
    seq, or None when ``only_if_changed`` and the stored payload is the same."""
    unless_same = (" WHERE pubsub_items.payload IS DISTINCT FROM excluded.payload"
                   if only_if_changed else "")
    row = conn.execute(
        f"INSERT INTO pubsub_items (service, node, {_ITEM_COLUMNS})"  # noqa: S608
        " VALUES (%s, %s, %s, %s, %s, %s, nextval('pubsub_item_seq'))"
        " ON CONFLICT (service, node, item_id) DO UPDATE SET"
        " payload = excluded.payload, publisher = excluded.publisher,"
        f" published = excluded.published, seq = excluded.seq{unless_same} RETURNING seq",
        (service, node_id, new.item_id, new.payload, new.publisher,
         new.published.isoformat())).fetchone()
    return int(row[0]) if row is not None else None


def _put(conn: psycopg.Connection, service: str, node_id: str, items: Sequence[NewItem],
         max_items: int | None) -> PutResult:
    """Store ``items`` (replacing same ids), then trim the node to ``max_items``."""
    stored: list[Item] = []
    for new in items:
        seq = _upsert(conn, service, node_id, new, only_if_changed=False)
        assert seq is not None
        stored.append(Item(new.item_id, new.payload, new.publisher, new.published, seq))
    evicted = _trim(conn, service, node_id, max_items)
    gone = set(evicted)
    return PutResult(tuple(i for i in stored if i.item_id not in gone), tuple(evicted))


def _trim(conn: psycopg.Connection, service: str, node_id: str,
          max_items: int | None) -> list[str]:
    """Delete the node's oldest items beyond ``max_items``; their ids, oldest first."""
    if max_items is None:
        return []
    evicted = [str(r[0]) for r in conn.execute(
        "SELECT item_id FROM pubsub_items WHERE service = %s AND node = %s"
        " ORDER BY seq DESC OFFSET %s", (service, node_id, max_items))]
    conn.execute("DELETE FROM pubsub_items WHERE service = %s AND node = %s"
                 " AND item_id = ANY(%s)", (service, node_id, evicted))
    evicted.reverse()  # oldest first, as the memory store reports them
    return evicted


def _take_held(conn: psycopg.Connection, service: str, node_id: str,
               bare_jid: str) -> HeldEntry | None:
    key = (service, node_id, bare_jid)
    row = conn.execute(f"SELECT recipient, skipped FROM pubsub_held WHERE {_HELD_KEY}"
                       " FOR UPDATE", key).fetchone()
    if row is None:
        return None
    entry = _held_entry(conn, *key, row[0], row[1])
    conn.execute(f"DELETE FROM pubsub_held WHERE {_HELD_KEY}", key)
    return entry

"""SQLite backend of the pubsub store.

Every call is one transaction on the database thread, so a publish (with its max_items
trimming) is committed before the service acknowledges it. Configurations and subscription
options are kept as JSON of their data-form rendering, which is already a validated, versioned
codec; adding a field needs no migration.

A node's subscriptions are also held in memory once read (a publish fans out from them), which
relies on this store being the only writer of its tables: one server process per database,
with the command-line tools going through the server's control socket.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from pubsubd.pubsub.delivery import Hold
from pubsubd.pubsub.model import (
    Affiliation,
    Item,
    MessageType,
    Node,
    NodeConfig,
    Subscription,
    SubscriptionOptions,
    SubscriptionState,
    bare,
)
from pubsubd.pubsub.notifications import Recipient
from pubsubd.pubsub.store import BatchPutResult, HeldEntry, NewItem, PendingDigest, PutResult

from .sqlite import Database

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
        PRIMARY KEY (service, node, subid),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes ON DELETE CASCADE
    );
    CREATE INDEX pubsub_subscriptions_jid ON pubsub_subscriptions (service, bare_jid);
    CREATE TABLE pubsub_items (
        service TEXT NOT NULL, node TEXT NOT NULL, item_id TEXT NOT NULL,
        payload TEXT NOT NULL, publisher TEXT NOT NULL, published TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (service, node, item_id),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes ON DELETE CASCADE
    );
    CREATE INDEX pubsub_items_seq ON pubsub_items (service, node, seq);
    CREATE TABLE pubsub_sequence (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
    INSERT INTO pubsub_sequence (id, value) VALUES (1, 0)
    """,
    # Catch-up: items held for away subscribers, written right after the publish that held
    # them, so they survive a restart (even kill -9).
    """
    CREATE TABLE pubsub_held (
        service TEXT NOT NULL, node TEXT NOT NULL, bare_jid TEXT NOT NULL,
        recipient TEXT NOT NULL, skipped INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (service, node, bare_jid),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes ON DELETE CASCADE
    );
    CREATE INDEX pubsub_held_jid ON pubsub_held (service, bare_jid);
    CREATE TABLE pubsub_held_items (
        service TEXT NOT NULL, node TEXT NOT NULL, bare_jid TEXT NOT NULL,
        item_id TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (service, node, bare_jid, item_id),
        FOREIGN KEY (service, node, bare_jid) REFERENCES pubsub_held ON DELETE CASCADE
    )
    """,
    # A subscribe looks up the subscriber's own subscriptions to the node, not all of them.
    """
    CREATE INDEX pubsub_subscriptions_node_jid ON pubsub_subscriptions (service, node, jid)
    """,
    # Digest batches (pubsub#digest), written with the publish that fed them, so that they
    # survive a restart; items keep their payloads (a transient node stores none).
    """
    CREATE TABLE pubsub_digests (
        service TEXT NOT NULL, node TEXT NOT NULL, address TEXT NOT NULL,
        recipient TEXT NOT NULL, started REAL NOT NULL, frequency REAL NOT NULL,
        PRIMARY KEY (service, node, address),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes ON DELETE CASCADE
    );
    CREATE TABLE pubsub_digest_items (
        service TEXT NOT NULL, node TEXT NOT NULL, address TEXT NOT NULL,
        item_id TEXT NOT NULL, payload TEXT NOT NULL, publisher TEXT NOT NULL,
        published TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (service, node, address, item_id),
        FOREIGN KEY (service, node, address) REFERENCES pubsub_digests ON DELETE CASCADE
    )
    """,
]

_ITEM_COLUMNS = "item_id, payload, publisher, published, seq"


def _node_row(row: sqlite3.Row | tuple[str, str, str, str, str | None]) -> Node:
    service, node_id, config, creator, created = row
    return Node(
        service,
        node_id,
        NodeConfig.from_form(json.loads(config)),
        creator,
        datetime.fromisoformat(created) if created else None,
    )


def _config_json(config: NodeConfig) -> str:
    form = config.to_form()
    del form["pubsub#children"]
    return json.dumps(form, sort_keys=True)


def _subscription_row(row: tuple[str, str, str, str, str]) -> Subscription:
    node_id, subid, jid, state, options = row
    return Subscription(
        node_id,
        jid,
        subid,
        SubscriptionState(state),
        SubscriptionOptions.from_form(json.loads(options)),
    )


def _item_row(row: tuple[str, str, str, str, int]) -> Item:
    item_id, payload, publisher, published, seq = row
    return Item(item_id, payload, publisher, datetime.fromisoformat(published), seq)


def _recipient_json(hold: Hold) -> str:
    r = hold.recipient
    return json.dumps(
        {
            "address": r.address,
            "message_type": r.message_type.value,
            "subids": list(r.subids),
            "collection": r.collection,
            "include_body": r.include_body,
            "shows": None if hold.shows is None else sorted(hold.shows),
        },
        sort_keys=True,
    )


def _held_meta(text: str) -> tuple[Recipient, frozenset[str] | None]:
    data = json.loads(text)
    recipient = Recipient(
        data["address"],
        MessageType(data["message_type"]),
        tuple(data["subids"]),
        data["collection"],
        bool(data["include_body"]),
    )
    shows = data["shows"]
    return recipient, None if shows is None else frozenset(shows)


def _digest_recipient_json(r: Recipient) -> str:
    return json.dumps({"address": r.address, "message_type": r.message_type.value,
                       "subids": list(r.subids), "collection": r.collection,
                       "include_body": r.include_body}, sort_keys=True)


_HELD_KEY = "service = ? AND node = ? AND bare_jid = ?"
_DIGEST_KEY = "service = ? AND node = ? AND address = ?"


def _held_entry(
    conn: sqlite3.Connection, service: str, node_id: str, bare_jid: str, meta: str, skipped: int
) -> HeldEntry:
    ids = tuple(
        row[0]
        for row in conn.execute(
            f"SELECT item_id FROM pubsub_held_items WHERE {_HELD_KEY} ORDER BY seq",
            (service, node_id, bare_jid),
        ).fetchall()
    )
    recipient, shows = _held_meta(meta)
    return HeldEntry(node_id, bare_jid, recipient, shows, ids, skipped)


class SqlitePubSubStore:
    """:class:`~pubsubd.pubsub.store.PubSubStore` on the shared :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("pubsub", MIGRATIONS)
        # The subscriptions of a node, read once on first use and then kept up to date by
        # every write through this store (the only writer of these tables): a publish fans out
        # from memory instead of re-reading and re-parsing every subscription's options.
        # Insertion order is rowid order (INSERT OR REPLACE moves a row to the end).
        self._subscriptions: dict[tuple[str, str], dict[str, Subscription]] = {}
        # Bumped by every subscription write of a node, so a read that raced a write is not
        # kept as the node's cached state.
        self._sub_writes: dict[tuple[str, str], int] = {}

    async def create_node(self, node: Node, owner: str | None) -> bool:
        def create(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO pubsub_nodes VALUES (?, ?, ?, ?, ?)",
                (
                    node.service,
                    node.node_id,
                    _config_json(node.config),
                    node.creator,
                    node.created.isoformat() if node.created else None,
                ),
            )
            if cursor.rowcount == 0:
                return False
            if owner:
                conn.execute(
                    "INSERT INTO pubsub_affiliations VALUES (?, ?, ?, ?)",
                    (node.service, node.node_id, bare(owner), Affiliation.OWNER.value),
                )
            return True

        return await self.db.run(create)

    async def get_node(self, service: str, node_id: str) -> Node | None:
        row = await self.db.run(
            lambda conn: conn.execute(
                "SELECT service, node, config, creator, created FROM pubsub_nodes"
                " WHERE service = ? AND node = ?",
                (service, node_id),
            ).fetchone()
        )
        return _node_row(row) if row else None

    async def list_nodes(self, service: str) -> list[Node]:
        rows = await self.db.run(
            lambda conn: conn.execute(
                "SELECT service, node, config, creator, created FROM pubsub_nodes"
                " WHERE service = ? ORDER BY node",
                (service,),
            ).fetchall()
        )
        return [_node_row(row) for row in rows]

    async def update_node(self, node: Node) -> None:
        await self.db.run(
            lambda conn: conn.execute(
                "UPDATE pubsub_nodes SET config = ? WHERE service = ? AND node = ?",
                (_config_json(node.config), node.service, node.node_id),
            )
        )

    async def delete_node(self, service: str, node_id: str) -> None:
        self._written(service, node_id)
        await self.db.run(
            lambda conn: conn.execute(
                "DELETE FROM pubsub_nodes WHERE service = ? AND node = ?", (service, node_id)
            )
        )
        self._written(service, node_id)  # its subscriptions went with it (ON DELETE CASCADE)

    async def get_affiliation(self, service: str, node_id: str, jid: str) -> Affiliation:
        row = await self.db.run(
            lambda conn: conn.execute(
                "SELECT affiliation FROM pubsub_affiliations"
                " WHERE service = ? AND node = ? AND jid = ?",
                (service, node_id, bare(jid)),
            ).fetchone()
        )
        return Affiliation(row[0]) if row else Affiliation.NONE

    async def set_affiliation(
        self, service: str, node_id: str, jid: str, affiliation: Affiliation
    ) -> None:
        def store(conn: sqlite3.Connection) -> None:
            key = (service, node_id, bare(jid))
            if affiliation is Affiliation.NONE:
                conn.execute(
                    "DELETE FROM pubsub_affiliations WHERE service = ? AND node = ? AND jid = ?",
                    key,
                )
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO pubsub_affiliations"
                    " SELECT ?, ?, ?, ? WHERE EXISTS"
                    " (SELECT 1 FROM pubsub_nodes WHERE service = ? AND node = ?)",
                    (*key, affiliation.value, service, node_id),
                )

        await self.db.run(store)

    async def list_affiliations(self, service: str, node_id: str) -> dict[str, Affiliation]:
        rows = await self.db.run(
            lambda conn: conn.execute(
                "SELECT jid, affiliation FROM pubsub_affiliations"
                " WHERE service = ? AND node = ? ORDER BY jid",
                (service, node_id),
            ).fetchall()
        )
        return {jid: Affiliation(value) for jid, value in rows}

    async def affiliations_of(self, service: str, jid: str) -> dict[str, Affiliation]:
        rows = await self.db.run(
            lambda conn: conn.execute(
                "SELECT node, affiliation FROM pubsub_affiliations"
                " WHERE service = ? AND jid = ? ORDER BY node",
                (service, bare(jid)),
            ).fetchall()
        )
        return {node_id: Affiliation(value) for node_id, value in rows}

    def _written(self, service: str, node_id: str) -> None:
        """Forget the cached subscriptions of a node whose rows changed in a way not mirrored."""
        key = (service, node_id)
        self._sub_writes[key] = self._sub_writes.get(key, 0) + 1
        self._subscriptions.pop(key, None)

    async def put_subscription(self, service: str, subscription: Subscription) -> None:
        sub = subscription
        key = (service, sub.node)
        self._sub_writes[key] = self._sub_writes.get(key, 0) + 1
        cursor = await self.db.run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO pubsub_subscriptions SELECT ?, ?, ?, ?, ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM pubsub_nodes WHERE service = ? AND node = ?)",
                (
                    service,
                    sub.node,
                    sub.subid,
                    sub.jid,
                    sub.bare_jid,
                    sub.state.value,
                    json.dumps(sub.options.to_form(), sort_keys=True),
                    service,
                    sub.node,
                ),
            )
        )
        cached = self._subscriptions.get(key)
        if cached is not None:
            cached.pop(sub.subid, None)
            if cursor.rowcount > 0:  # the node exists
                cached[sub.subid] = sub

    async def delete_subscription(self, service: str, node_id: str, subid: str) -> bool:
        key = (service, node_id)
        self._sub_writes[key] = self._sub_writes.get(key, 0) + 1
        cursor = await self.db.run(
            lambda conn: conn.execute(
                "DELETE FROM pubsub_subscriptions WHERE service = ? AND node = ? AND subid = ?",
                (service, node_id, subid),
            )
        )
        cached = self._subscriptions.get(key)
        if cached is not None:
            cached.pop(subid, None)
        return cursor.rowcount > 0

    async def list_subscriptions(self, service: str, node_id: str) -> list[Subscription]:
        key = (service, node_id)
        cached = self._subscriptions.get(key)
        if cached is not None:
            return list(cached.values())
        writes = self._sub_writes.get(key, 0)
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT node, subid, jid, state, options FROM pubsub_subscriptions"
                " WHERE service = ? AND node = ? ORDER BY rowid",
                (service, node_id),
            ).fetchall()
        )
        subs = [_subscription_row(row) for row in rows]
        if self._sub_writes.get(key, 0) == writes:  # no write raced this read
            self._subscriptions[key] = {s.subid: s for s in subs}
        return subs

    async def node_subscriptions_of(
        self, service: str, node_id: str, jid: str
    ) -> list[Subscription]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT node, subid, jid, state, options FROM pubsub_subscriptions"
                " WHERE service = ? AND node = ? AND jid = ? ORDER BY rowid",
                (service, node_id, jid),
            ).fetchall()
        )
        return [_subscription_row(row) for row in rows]

    async def subscriptions_of(self, service: str, jid: str) -> list[Subscription]:
        rows = await self.db.run(
            lambda conn: conn.execute(
                "SELECT node, subid, jid, state, options FROM pubsub_subscriptions"
                " WHERE service = ? AND bare_jid = ? ORDER BY node, rowid",
                (service, bare(jid)),
            ).fetchall()
        )
        return [_subscription_row(row) for row in rows]

    async def put_items(
        self, service: str, node_id: str, items: Sequence[NewItem], max_items: int | None
    ) -> PutResult:
        def put(conn: sqlite3.Connection) -> PutResult:
            _require_node(conn, service, node_id)
            return _put(conn, service, node_id, items, max_items)

        return await self.db.run(put)

    async def put_items_each(
        self, service: str, node_id: str, items: Sequence[NewItem], max_items: int | None
    ) -> list[PutResult]:
        def put(conn: sqlite3.Connection) -> list[PutResult]:
            _require_node(conn, service, node_id)
            return [_put(conn, service, node_id, [new], max_items) for new in items]

        return await self.db.run(put)

    async def put_changed_items(
        self, service: str, node_id: str, items: Sequence[NewItem], max_items: int | None
    ) -> BatchPutResult:
        def put(conn: sqlite3.Connection) -> BatchPutResult:
            _require_node(conn, service, node_id)
            (seq,) = conn.execute("SELECT value FROM pubsub_sequence WHERE id = 1").fetchone()
            written: list[Item] = []
            unchanged: list[str] = []
            for new in items:
                row = conn.execute(
                    "SELECT payload FROM pubsub_items WHERE service = ? AND node = ?"
                    " AND item_id = ?",
                    (service, node_id, new.item_id),
                ).fetchone()
                if row is not None and row[0] == new.payload:
                    unchanged.append(new.item_id)
                    continue
                seq += 1
                written.append(_insert(conn, service, node_id, new, seq))
            conn.execute("UPDATE pubsub_sequence SET value = ? WHERE id = 1", (seq,))
            evicted = _trim(conn, service, node_id, max_items)
            return BatchPutResult(tuple(written), tuple(unchanged), tuple(evicted))

        return await self.db.run(put)

    async def get_items(
        self,
        service: str,
        node_id: str,
        item_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Item]:
        def get(conn: sqlite3.Connection) -> list[Item]:
            sql = f"SELECT {_ITEM_COLUMNS} FROM pubsub_items WHERE service = ? AND node = ?"
            params: list[object] = [service, node_id]
            if item_ids is not None:
                sql += f" AND item_id IN ({','.join('?' * len(item_ids))})"
                params.extend(item_ids)
            sql += " ORDER BY seq DESC LIMIT ?"
            params.append(-1 if limit is None else limit)
            return [_item_row(row) for row in conn.execute(sql, params).fetchall()]

        return await self.db.run(get)

    async def count_items(self, service: str, node_id: str) -> int:
        row = await self.db.run(
            lambda conn: conn.execute(
                "SELECT COUNT(*) FROM pubsub_items WHERE service = ? AND node = ?",
                (service, node_id),
            ).fetchone()
        )
        return int(row[0])

    async def delete_items(self, service: str, node_id: str, item_ids: Sequence[str]) -> list[str]:
        def delete(conn: sqlite3.Connection) -> list[str]:
            deleted = []
            for item_id in dict.fromkeys(item_ids):
                cursor = conn.execute(
                    "DELETE FROM pubsub_items WHERE service = ? AND node = ? AND item_id = ?",
                    (service, node_id, item_id),
                )
                if cursor.rowcount:
                    deleted.append(item_id)
            return deleted

        return await self.db.run(delete)

    async def purge_items(self, service: str, node_id: str) -> list[str]:
        def purge(conn: sqlite3.Connection) -> list[str]:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT item_id FROM pubsub_items WHERE service = ? AND node = ? ORDER BY seq",
                    (service, node_id),
                ).fetchall()
            ]
            conn.execute(
                "DELETE FROM pubsub_items WHERE service = ? AND node = ?", (service, node_id)
            )
            return ids

        return await self.db.run(purge)

    # --- catch-up ------------------------------------------------------------------------------

    async def hold_items(
        self, service: str, node_id: str, holds: Sequence[Hold], items: Sequence[Item], cap: int
    ) -> None:
        def hold_all(conn: sqlite3.Connection) -> None:
            if not conn.execute(
                "SELECT 1 FROM pubsub_nodes WHERE service = ? AND node = ?", (service, node_id)
            ).fetchone():
                return
            for hold in holds:
                key = (service, node_id, hold.bare_jid)
                conn.execute(
                    "INSERT INTO pubsub_held (service, node, bare_jid, recipient)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (service, node, bare_jid)"
                    " DO UPDATE SET recipient = excluded.recipient",
                    (*key, _recipient_json(hold)),
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO pubsub_held_items VALUES (?, ?, ?, ?, ?)",
                    [(*key, item.item_id, item.seq) for item in items],
                )
                overflow = [
                    row[0]
                    for row in conn.execute(
                        f"SELECT item_id FROM pubsub_held_items WHERE {_HELD_KEY}"
                        " ORDER BY seq DESC LIMIT -1 OFFSET ?",
                        (*key, cap),
                    ).fetchall()
                ]
                if overflow:
                    conn.executemany(
                        f"DELETE FROM pubsub_held_items WHERE {_HELD_KEY} AND item_id = ?",
                        [(*key, item_id) for item_id in overflow],
                    )
                    conn.execute(
                        f"UPDATE pubsub_held SET skipped = skipped + ? WHERE {_HELD_KEY}",
                        (len(overflow), *key),
                    )

        await self.db.run(hold_all)

    async def held_for(self, service: str, bare_jid: str) -> list[HeldEntry]:
        def held(conn: sqlite3.Connection) -> list[HeldEntry]:
            rows = conn.execute(
                "SELECT node, recipient, skipped FROM pubsub_held"
                " WHERE service = ? AND bare_jid = ? ORDER BY node",
                (service, bare_jid),
            ).fetchall()
            return [
                _held_entry(conn, service, node_id, bare_jid, meta, skipped)
                for node_id, meta, skipped in rows
            ]

        return await self.db.run(held)

    async def take_held(self, service: str, node_id: str, bare_jid: str) -> HeldEntry | None:
        def take(conn: sqlite3.Connection) -> HeldEntry | None:
            key = (service, node_id, bare_jid)
            row = conn.execute(
                f"SELECT recipient, skipped FROM pubsub_held WHERE {_HELD_KEY}", key
            ).fetchone()
            if row is None:
                return None
            entry = _held_entry(conn, *key, row[0], row[1])
            conn.execute(f"DELETE FROM pubsub_held WHERE {_HELD_KEY}", key)
            return entry

        return await self.db.run(take)

    async def forget_held(
        self, service: str, node_id: str, item_ids: Sequence[str] | None = None
    ) -> None:
        def forget(conn: sqlite3.Connection) -> None:
            if item_ids is None:
                conn.execute(
                    "DELETE FROM pubsub_held WHERE service = ? AND node = ?", (service, node_id)
                )
                return
            conn.executemany(
                "DELETE FROM pubsub_held_items WHERE service = ? AND node = ? AND item_id = ?",
                [(service, node_id, item_id) for item_id in item_ids],
            )

        await self.db.run(forget)

    # --- digests ---------------------------------------------------------------------------------

    async def add_digest(self, service: str, node_id: str, recipient: Recipient,
                         items: Sequence[Item], *, started: float, frequency: float) -> None:
        def add(conn: sqlite3.Connection) -> None:
            if not conn.execute(
                "SELECT 1 FROM pubsub_nodes WHERE service = ? AND node = ?", (service, node_id)
            ).fetchone():
                return
            key = (service, node_id, recipient.address)
            conn.execute(
                "INSERT INTO pubsub_digests VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (service, node, address) DO NOTHING",
                (*key, _digest_recipient_json(recipient), started, frequency),
            )
            # A republished id moves to the end (a new rowid), as in the memory store.
            conn.executemany(
                "INSERT OR REPLACE INTO pubsub_digest_items VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(*key, i.item_id, i.payload, i.publisher, i.published.isoformat(), i.seq)
                 for i in items],
            )

        await self.db.run(add)

    async def take_due_digests(self, service: str, now: float) -> list[PendingDigest]:
        def take(conn: sqlite3.Connection) -> list[PendingDigest]:
            rows = conn.execute(
                "SELECT node, address, recipient, started, frequency FROM pubsub_digests"
                " WHERE service = ? AND ? - started >= frequency ORDER BY node, address",
                (service, now),
            ).fetchall()
            due = []
            for node_id, address, meta, started, frequency in rows:
                key = (service, node_id, address)
                items = tuple(_item_row(row) for row in conn.execute(
                    f"SELECT {_ITEM_COLUMNS} FROM pubsub_digest_items WHERE {_DIGEST_KEY}"
                    " ORDER BY rowid", key).fetchall())
                recipient, _ = _held_meta(json.dumps({**json.loads(meta), "shows": None}))
                due.append(PendingDigest(node_id, recipient, started, frequency, items))
                conn.execute(f"DELETE FROM pubsub_digests WHERE {_DIGEST_KEY}", key)
            return due

        return await self.db.run(take)

    async def forget_digest_items(
        self, service: str, node_id: str, item_ids: Sequence[str] | None = None
    ) -> None:
        def forget(conn: sqlite3.Connection) -> None:
            if item_ids is None:
                conn.execute("DELETE FROM pubsub_digests WHERE service = ? AND node = ?",
                             (service, node_id))
                return
            conn.executemany(
                "DELETE FROM pubsub_digest_items WHERE service = ? AND node = ? AND item_id = ?",
                [(service, node_id, item_id) for item_id in item_ids],
            )
            conn.execute(
                "DELETE FROM pubsub_digests WHERE service = ? AND node = ? AND NOT EXISTS ("
                "SELECT 1 FROM pubsub_digest_items d WHERE d.service = pubsub_digests.service"
                " AND d.node = pubsub_digests.node AND d.address = pubsub_digests.address)",
                (service, node_id),
            )

        await self.db.run(forget)


def _require_node(conn: sqlite3.Connection, service: str, node_id: str) -> None:
    if not conn.execute(
        "SELECT 1 FROM pubsub_nodes WHERE service = ? AND node = ?", (service, node_id)
    ).fetchone():
        raise KeyError(node_id)


def _insert(conn: sqlite3.Connection, service: str, node_id: str, new: NewItem,
            seq: int) -> Item:
    """Write one item (replacing one with the same id) under sequence number ``seq``."""
    conn.execute(
        "INSERT OR REPLACE INTO pubsub_items VALUES (?, ?, ?, ?, ?, ?, ?)",
        (service, node_id, new.item_id, new.payload, new.publisher,
         new.published.isoformat(), seq),
    )
    return Item(new.item_id, new.payload, new.publisher, new.published, seq)


def _trim(conn: sqlite3.Connection, service: str, node_id: str,
          max_items: int | None) -> list[str]:
    """Delete the node's items beyond the newest ``max_items``; their ids, oldest first (as
    the memory store reports them)."""
    if max_items is None:
        return []
    evicted = [
        row[0]
        for row in conn.execute(
            "SELECT item_id FROM pubsub_items WHERE service = ? AND node = ?"
            " ORDER BY seq DESC LIMIT -1 OFFSET ?",
            (service, node_id, max_items),
        ).fetchall()
    ]
    conn.executemany(
        "DELETE FROM pubsub_items WHERE service = ? AND node = ? AND item_id = ?",
        [(service, node_id, item_id) for item_id in evicted],
    )
    evicted.reverse()
    return evicted


def _put(conn: sqlite3.Connection, service: str, node_id: str, items: Sequence[NewItem],
         max_items: int | None) -> PutResult:
    """Store ``items`` (replacing same ids), then trim the node to ``max_items``."""
    (seq,) = conn.execute("SELECT value FROM pubsub_sequence WHERE id = 1").fetchone()
    stored: list[Item] = []
    for new in items:
        seq += 1
        stored.append(_insert(conn, service, node_id, new, seq))
    conn.execute("UPDATE pubsub_sequence SET value = ? WHERE id = 1", (seq,))
    evicted = _trim(conn, service, node_id, max_items)
    gone = set(evicted)
    return PutResult(tuple(i for i in stored if i.item_id not in gone), tuple(evicted))

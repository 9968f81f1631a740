"""Instant-messaging state on the shared SQLite database: rosters, subscription requests,
offline messages, blocklists and vCards.

Rosters, pending requests and blocklists are read on every presence or message, so they are
loaded into memory once at start-up and kept there; every change is committed to disk first
and applied to memory after, so whatever a client was told survives ``kill -9``. Offline
messages and vCards are read rarely and stay on disk only.
"""

from __future__ import annotations

import json
import sqlite3
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pubsubd.jid import JID
from pubsubd.storage.interfaces import ROSTER_CHANGE_LOG, RosterItem
from pubsubd.storage.sqlite import Database

__all__ = ["ROSTER_CHANGE_LOG", "ImStore", "RosterItem", "SqliteImStore", "im_store"]

_SCHEMA = [
    """
    CREATE TABLE roster_items (
        owner TEXT NOT NULL,
        contact TEXT NOT NULL,
        name TEXT,
        groups TEXT NOT NULL DEFAULT '[]',
        subscription TEXT NOT NULL DEFAULT 'none',
        ask INTEGER NOT NULL DEFAULT 0,
        approved INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (owner, contact)
    );
    CREATE TABLE roster_versions (owner TEXT PRIMARY KEY, version INTEGER NOT NULL);
    CREATE TABLE subscription_requests (
        owner TEXT NOT NULL,
        contact TEXT NOT NULL,
        stanza BLOB NOT NULL,
        PRIMARY KEY (owner, contact)
    );
    CREATE TABLE offline_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        stanza BLOB NOT NULL
    );
    CREATE INDEX offline_by_owner ON offline_messages (owner, id);
    CREATE TABLE blocklist (
        owner TEXT NOT NULL, blocked TEXT NOT NULL, PRIMARY KEY (owner, blocked)
    );
    CREATE TABLE vcards (owner TEXT PRIMARY KEY, vcard BLOB NOT NULL)
    """,
]


@dataclass(slots=True)
class _Roster:
    version: int = 0
    items: dict[JID, RosterItem] = field(default_factory=dict)
    # (version, contact) of recent changes, in memory only; every change after ``floor`` is
    # in it, so a client at a version >= floor can be sent just the changes as pushes.
    changes: deque[tuple[int, JID]] = field(
        default_factory=lambda: deque(maxlen=ROSTER_CHANGE_LOG))
    floor: int = 0


class SqliteImStore:
    """Rosters, requests, offline messages, blocklists, vCards; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("im", _SCHEMA)
        self._rosters: dict[JID, _Roster] = {}
        self._requests: dict[JID, dict[JID, bytes]] = {}
        self._blocked: dict[JID, set[str]] = {}
        db.run_sync(self._load)

    def _load(self, conn: sqlite3.Connection) -> None:
        for owner, version in conn.execute("SELECT owner, version FROM roster_versions"):
            roster = self._rosters.setdefault(JID.parse(owner), _Roster())
            roster.version = roster.floor = version  # nothing older is in the change log
        rows = conn.execute(
            "SELECT owner, contact, name, groups, subscription, ask, approved FROM roster_items")
        for owner, contact, name, groups, sub, ask, approved in rows:
            item = RosterItem(JID.parse(contact), name, tuple(json.loads(groups)), sub,
                              bool(ask), bool(approved))
            self._rosters.setdefault(JID.parse(owner), _Roster()).items[item.contact] = item
        for owner, contact, stanza in conn.execute(
                "SELECT owner, contact, stanza FROM subscription_requests"):
            self._requests.setdefault(JID.parse(owner), {})[JID.parse(contact)] = bytes(stanza)
        for owner, blocked in conn.execute("SELECT owner, blocked FROM blocklist"):
            self._blocked.setdefault(JID.parse(owner), set()).add(blocked)

    # --- rosters (RFC 6121 §2) ------------------------------------------------------------

    def roster(self, owner: JID) -> dict[JID, RosterItem]:
        roster = self._rosters.get(owner.bare)
        return dict(roster.items) if roster else {}

    def item(self, owner: JID, contact: JID) -> RosterItem | None:
        roster = self._rosters.get(owner.bare)
        return roster.items.get(contact.bare) if roster else None

    def version(self, owner: JID) -> int:
        roster = self._rosters.get(owner.bare)
        return roster.version if roster else 0

    def owners(self) -> list[JID]:
        return list(self._rosters)

    async def put_item(self, owner: JID, item: RosterItem) -> int:
        """Create or replace an item; returns the roster's new version (§2.6)."""
        owner = owner.bare
        version = self._next_version(owner, item.contact)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO roster_items (owner, contact, name, groups, subscription,"
                " ask, approved) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(owner), str(item.contact), item.name, json.dumps(list(item.groups)),
                 item.subscription, int(item.ask), int(item.approved)))
            _set_version(conn, owner, version)

        await self.db.run(write)
        self._rosters[owner].items[item.contact] = item
        return version

    async def remove_item(self, owner: JID, contact: JID) -> int:
        owner, contact = owner.bare, contact.bare
        version = self._next_version(owner, contact)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM roster_items WHERE owner = ? AND contact = ?",
                         (str(owner), str(contact)))
            _set_version(conn, owner, version)

        await self.db.run(write)
        self._rosters[owner].items.pop(contact, None)
        return version

    def _next_version(self, owner: JID, contact: JID) -> int:
        # Taken before the write, so concurrent changes never share a version number.
        roster = self._rosters.setdefault(owner, _Roster())
        roster.version += 1
        if len(roster.changes) == roster.changes.maxlen:
            roster.floor = roster.changes[0][0]  # the oldest change is about to be forgotten
        roster.changes.append((roster.version, contact.bare))
        return roster.version

    def changes_since(self, owner: JID, version: int) -> list[tuple[int, JID]] | None:
        """The contacts changed after ``version``, each once with its latest version, oldest
        first; None when the change log does not reach back that far (or ``version`` is not
        one this server handed out)."""
        roster = self._rosters.get(owner.bare)
        current = roster.version if roster else 0
        floor = roster.floor if roster else 0
        if not floor <= version <= current:
            return None
        latest: dict[JID, int] = {}
        for changed, contact in roster.changes if roster else ():
            if changed > version:
                latest.pop(contact, None)
                latest[contact] = changed
        return [(changed, contact) for contact, changed in latest.items()]

    # --- pending inbound subscription requests (RFC 6121 §3.1.3) ---------------------------

    def requests(self, owner: JID) -> dict[JID, bytes]:
        return dict(self._requests.get(owner.bare, {}))

    def has_request(self, owner: JID, contact: JID) -> bool:
        return contact.bare in self._requests.get(owner.bare, {})

    async def set_request(self, owner: JID, contact: JID, stanza: bytes | None) -> None:
        """Remember (or with None, forget) the contact's request, to re-deliver it later."""
        owner, contact = owner.bare, contact.bare

        def write(conn: sqlite3.Connection) -> None:
            if stanza is None:
                conn.execute("DELETE FROM subscription_requests WHERE owner = ? AND contact = ?",
                             (str(owner), str(contact)))
            else:
                conn.execute("INSERT OR REPLACE INTO subscription_requests VALUES (?, ?, ?)",
                             (str(owner), str(contact), stanza))

        await self.db.run(write)
        if stanza is None:
            self._requests.get(owner, {}).pop(contact, None)
        else:
            self._requests.setdefault(owner, {})[contact] = stanza

    # --- offline messages (XEP-0160) ------------------------------------------------------

    async def store_offline(self, owner: JID, stanza: bytes, limit: int) -> bool:
        """Append a message unless ``owner`` already has ``limit`` stored; True if stored."""
        owner = owner.bare

        def write(conn: sqlite3.Connection) -> bool:
            (count,) = conn.execute("SELECT COUNT(*) FROM offline_messages WHERE owner = ?",
                                    (str(owner),)).fetchone()
            if count >= limit:
                return False
            conn.execute("INSERT INTO offline_messages (owner, stanza) VALUES (?, ?)",
                         (str(owner), stanza))
            return True

        return await self.db.run(write)

    async def take_offline(self, owner: JID) -> list[bytes]:
        """Every stored message of ``owner`` in arrival order, removed from storage."""
        owner = owner.bare

        def take(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute("SELECT stanza FROM offline_messages WHERE owner = ? ORDER BY id",
                                (str(owner),)).fetchall()
            conn.execute("DELETE FROM offline_messages WHERE owner = ?", (str(owner),))
            return [bytes(r[0]) for r in rows]

        return await self.db.run(take)

    async def count_offline(self, owner: JID) -> int:
        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT COUNT(*) FROM offline_messages WHERE owner = ?",
                                    (str(owner.bare),)).fetchone()[0])

        return await self.db.run(count)

    # --- blocklists (XEP-0191) ------------------------------------------------------------

    def blocklist(self, owner: JID) -> set[str]:
        return set(self._blocked.get(owner.bare, ()))

    def has_blocklist(self, owner: JID) -> bool:
        """True if ``owner`` blocks anyone (asked for every stanza; copies nothing)."""
        return bool(self._blocked.get(owner.bare))

    def blocks_anyone(self) -> bool:
        return any(self._blocked.values())

    async def block(self, owner: JID, jids: list[str]) -> None:
        owner = owner.bare
        await self.db.run(lambda conn: conn.executemany(
            "INSERT OR IGNORE INTO blocklist VALUES (?, ?)", [(str(owner), j) for j in jids]))
        self._blocked.setdefault(owner, set()).update(jids)

    async def unblock(self, owner: JID, jids: list[str] | None) -> None:
        """Unblock ``jids``, or everything with None."""
        owner = owner.bare

        def write(conn: sqlite3.Connection) -> Any:
            if jids is None:
                return conn.execute("DELETE FROM blocklist WHERE owner = ?", (str(owner),))
            return conn.executemany("DELETE FROM blocklist WHERE owner = ? AND blocked = ?",
                                    [(str(owner), j) for j in jids])

        await self.db.run(write)
        if jids is None:
            self._blocked.pop(owner, None)
        else:
            self._blocked.get(owner, set()).difference_update(jids)

    # --- vCards (XEP-0054) ----------------------------------------------------------------

    async def vcard(self, owner: JID) -> bytes | None:
        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT vcard FROM vcards WHERE owner = ?",
                               (str(owner.bare),)).fetchone()
            return bytes(row[0]) if row else None

        return await self.db.run(read)

    async def set_vcard(self, owner: JID, vcard: bytes) -> None:
        await self.db.run(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO vcards VALUES (?, ?)", (str(owner.bare), vcard)))

    # --- accounts ---------------------------------------------------------------------------

    async def forget(self, owner: JID) -> None:
        """Delete everything stored for a deleted account."""
        owner = owner.bare

        def write(conn: sqlite3.Connection) -> None:
            for table in ("roster_items", "roster_versions", "subscription_requests",
                          "offline_messages", "blocklist", "vcards"):
                conn.execute(f"DELETE FROM {table} WHERE owner = ?", (str(owner),))  # noqa: S608

        await self.db.run(write)
        self._rosters.pop(owner, None)
        self._requests.pop(owner, None)
        self._blocked.pop(owner, None)


def _set_version(conn: sqlite3.Connection, owner: JID, version: int) -> None:
    conn.execute("INSERT OR REPLACE INTO roster_versions VALUES (?, ?)", (str(owner), version))


ImStore = SqliteImStore  # the name modules import today

_STORES: weakref.WeakKeyDictionary[Database, SqliteImStore] = weakref.WeakKeyDictionary()


def im_store(db: Database) -> SqliteImStore:
    """The one store per database, shared by the IM modules."""
    store = _STORES.get(db)
    if store is None:
        store = _STORES[db] = SqliteImStore(db)
    return store

"""Instant-messaging state on PostgreSQL: rosters, subscription requests, offline messages,
blocklists and vCards.

As on SQLite (see :mod:`pubsubd.storage.im_sqlite`), rosters, pending requests and blocklists
are read on every stanza, so they are loaded into memory when the store opens and kept there;
every change is committed first and applied to memory after, so whatever a client was told
survives ``kill -9``. Several instances may share the database: every change also notifies the
others (kind ``im``, key the owner's bare JID, see :mod:`.invalidation`), which reload that
owner's roster, requests and blocklist; a roster changed elsewhere keeps no change log here, so
a client asking for the changes since an older version gets the whole roster (RFC 6121 §2.6.3).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg

from pubsubd.jid import JID
from pubsubd.storage.interfaces import ROSTER_CHANGE_LOG, RosterItem
from pubsubd.storage.postgres.database import PgDatabase

T = TypeVar("T")

MIGRATIONS = [
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
    CREATE TABLE roster_versions (owner TEXT PRIMARY KEY, version BIGINT NOT NULL);
    CREATE TABLE subscription_requests (
        owner TEXT NOT NULL,
        contact TEXT NOT NULL,
        stanza BYTEA NOT NULL,
        PRIMARY KEY (owner, contact)
    );
    CREATE TABLE offline_messages (
        id BIGSERIAL PRIMARY KEY,
        owner TEXT NOT NULL,
        stanza BYTEA NOT NULL
    );
    CREATE INDEX offline_by_owner ON offline_messages (owner, id);
    CREATE TABLE blocklist (
        owner TEXT NOT NULL, blocked TEXT NOT NULL, PRIMARY KEY (owner, blocked)
    );
    CREATE TABLE vcards (owner TEXT PRIMARY KEY, vcard BYTEA NOT NULL)
    """,
]


@dataclass(slots=True)
class _Roster:
    version: int = 0
    items: dict[JID, RosterItem] = field(default_factory=dict)
    # (version, contact) of recent changes, in memory only (RFC 6121 §2.6.3 lets a server
    # answer with the whole roster when it cannot tell the changes); ``floor`` is the oldest
    # version the log still reaches back to.
    changes: deque[tuple[int, JID]] = field(
        default_factory=lambda: deque(maxlen=ROSTER_CHANGE_LOG))
    floor: int = 0


_KIND = "im"


@dataclass(slots=True)
class _Loaded:
    """Rosters, requests and blocklists as read from the database (all owners, or one)."""

    rosters: dict[JID, _Roster] = field(default_factory=dict)
    requests: dict[JID, dict[JID, bytes]] = field(default_factory=dict)
    blocked: dict[JID, set[str]] = field(default_factory=dict)


def _read(conn: psycopg.Connection, owner: JID | None = None) -> _Loaded:
    """Everyone's state, or only ``owner``'s."""
    where, args = (" WHERE owner = %s", (str(owner),)) if owner is not None else ("", ())
    loaded = _Loaded()
    for who, version in conn.execute(f"SELECT owner, version FROM roster_versions{where}",
                                     args):
        roster = loaded.rosters.setdefault(JID.parse(who), _Roster())
        roster.version = roster.floor = int(version)
    for who, contact, name, groups, sub, ask, approved in conn.execute(
            "SELECT owner, contact, name, groups, subscription, ask, approved"
            f" FROM roster_items{where}", args):
        item = RosterItem(JID.parse(contact), name, tuple(json.loads(groups)), sub,
                          bool(ask), bool(approved))
        loaded.rosters.setdefault(JID.parse(who), _Roster()).items[item.contact] = item
    for who, contact, stanza in conn.execute(
            f"SELECT owner, contact, stanza FROM subscription_requests{where}", args):
        loaded.requests.setdefault(JID.parse(who), {})[JID.parse(contact)] = bytes(stanza)
    for who, blocked in conn.execute(f"SELECT owner, blocked FROM blocklist{where}", args):
        loaded.blocked.setdefault(JID.parse(who), set()).add(blocked)
    return loaded


class PgImStore:
    """:class:`~pubsubd.storage.interfaces.ImStore` on PostgreSQL; see the module docstring."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        db.migrate("im", MIGRATIONS)
        loaded = db.run_sync(_read)
        self._rosters: dict[JID, _Roster] = loaded.rosters
        self._requests: dict[JID, dict[JID, bytes]] = loaded.requests
        self._blocked: dict[JID, set[str]] = loaded.blocked
        db.invalidation.subscribe(_KIND, self._changed_elsewhere)

    def _notify(self, conn: psycopg.Connection, owner: JID) -> None:
        self.db.notify(conn, _KIND, str(owner))

    async def _changed_elsewhere(self, key: str | None) -> None:
        """Another instance changed ``key``'s state (None: anyone's): read it again."""
        owner = JID.parse(key) if key is not None else None
        loaded = await self.db.read(lambda conn: _read(conn, owner))
        if owner is None:
            self._rosters, self._requests = loaded.rosters, loaded.requests
            self._blocked = loaded.blocked
            return
        roster = loaded.rosters.get(owner)
        current = self._rosters.get(owner)
        if roster is None:
            self._rosters.pop(owner, None)
        elif current is not None and current.version == roster.version:
            current.items = roster.items  # the roster itself did not change: keep its log
        else:
            self._rosters[owner] = roster
        _replace(self._requests, owner, loaded.requests.get(owner))
        _replace(self._blocked, owner, loaded.blocked.get(owner))

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

    async def put_item(self, owner: JID, item: RosterItem) -> int:
        owner = owner.bare
        version = self._next_version(owner, item.contact)

        def write(conn: psycopg.Connection) -> None:
            conn.execute(
                "INSERT INTO roster_items (owner, contact, name, groups, subscription, ask,"
                " approved) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (owner, contact)"
                " DO UPDATE SET name = excluded.name, groups = excluded.groups,"
                " subscription = excluded.subscription, ask = excluded.ask,"
                " approved = excluded.approved",
                (str(owner), str(item.contact), item.name, json.dumps(list(item.groups)),
                 item.subscription, int(item.ask), int(item.approved)))
            _set_version(conn, owner, version)
            self._notify(conn, owner)

        await self.db.run(write)
        # setdefault: a reload for another instance's change may have replaced the roster
        self._rosters.setdefault(owner, _Roster()).items[item.contact] = item
        return version

    async def remove_item(self, owner: JID, contact: JID) -> int:
        owner, contact = owner.bare, contact.bare
        version = self._next_version(owner, contact)

        def write(conn: psycopg.Connection) -> None:
            conn.execute("DELETE FROM roster_items WHERE owner = %s AND contact = %s",
                         (str(owner), str(contact)))
            _set_version(conn, owner, version)
            self._notify(conn, owner)

        await self.db.run(write)
        self._rosters.setdefault(owner, _Roster()).items.pop(contact, None)
        return version

    def _next_version(self, owner: JID, contact: JID) -> int:
        # Taken before the write, so concurrent changes never share a version number.
        roster = self._rosters.setdefault(owner, _Roster())
        roster.version += 1
        if len(roster.changes) == roster.changes.maxlen:
            roster.floor = roster.changes[0][0]
        roster.changes.append((roster.version, contact.bare))
        return roster.version

    def changes_since(self, owner: JID, version: int) -> list[tuple[int, JID]] | None:
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
        owner, contact = owner.bare, contact.bare

        def write(conn: psycopg.Connection) -> None:
            if stanza is None:
                conn.execute("DELETE FROM subscription_requests WHERE owner = %s"
                             " AND contact = %s", (str(owner), str(contact)))
            else:
                conn.execute("INSERT INTO subscription_requests (owner, contact, stanza)"
                             " VALUES (%s, %s, %s) ON CONFLICT (owner, contact)"
                             " DO UPDATE SET stanza = excluded.stanza",
                             (str(owner), str(contact), stanza))
            self._notify(conn, owner)

        await self.db.run(write)
        if stanza is None:
            self._requests.get(owner, {}).pop(contact, None)
        else:
            self._requests.setdefault(owner, {})[contact] = stanza

    # --- offline messages (XEP-0160) ------------------------------------------------------

    async def store_offline(self, owner: JID, stanza: bytes, limit: int) -> bool:
        owner_s = str(owner.bare)

        def write(conn: psycopg.Connection) -> bool:
            # Concurrent stores for one owner queue here, so the limit is never overshot.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("offline:" + owner_s,))
            row = conn.execute("SELECT COUNT(*) FROM offline_messages WHERE owner = %s",
                               (owner_s,)).fetchone()
            if row is None or row[0] >= limit:
                return False
            conn.execute("INSERT INTO offline_messages (owner, stanza) VALUES (%s, %s)",
                         (owner_s, stanza))
            return True

        return await self.db.run(write)

    async def take_offline(self, owner: JID) -> list[bytes]:
        def take(conn: psycopg.Connection) -> list[bytes]:
            rows = conn.execute(
                "DELETE FROM offline_messages WHERE owner = %s RETURNING id, stanza",
                (str(owner.bare),)).fetchall()
            return [bytes(stanza) for _, stanza in sorted(rows)]

        return await self.db.run(take)

    async def count_offline(self, owner: JID) -> int:
        def count(conn: psycopg.Connection) -> int:
            row = conn.execute("SELECT COUNT(*) FROM offline_messages WHERE owner = %s",
                               (str(owner.bare),)).fetchone()
            return int(row[0]) if row else 0

        return await self.db.read(count)

    # --- blocklists (XEP-0191) ------------------------------------------------------------

    def blocklist(self, owner: JID) -> set[str]:
        return set(self._blocked.get(owner.bare, ()))

    def has_blocklist(self, owner: JID) -> bool:
        return bool(self._blocked.get(owner.bare))

    def blocks_anyone(self) -> bool:
        return any(self._blocked.values())

    async def block(self, owner: JID, jids: list[str]) -> None:
        owner = owner.bare

        def write(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO blocklist (owner, blocked) VALUES (%s, %s)"
                                " ON CONFLICT DO NOTHING", [(str(owner), j) for j in jids])
            self._notify(conn, owner)

        await self.db.run(write)
        self._blocked.setdefault(owner, set()).update(jids)

    async def unblock(self, owner: JID, jids: list[str] | None) -> None:
        owner = owner.bare

        def write(conn: psycopg.Connection) -> None:
            if jids is None:
                conn.execute("DELETE FROM blocklist WHERE owner = %s", (str(owner),))
            else:
                conn.execute("DELETE FROM blocklist WHERE owner = %s AND blocked = ANY(%s)",
                             (str(owner), list(jids)))
            self._notify(conn, owner)

        await self.db.run(write)
        if jids is None:
            self._blocked.pop(owner, None)
        else:
            self._blocked.get(owner, set()).difference_update(jids)

    # --- vCards (XEP-0054) ----------------------------------------------------------------

    async def vcard(self, owner: JID) -> bytes | None:
        def read(conn: psycopg.Connection) -> bytes | None:
            row = conn.execute("SELECT vcard FROM vcards WHERE owner = %s",
                               (str(owner.bare),)).fetchone()
            return bytes(row[0]) if row else None

        return await self.db.read(read)

    async def set_vcard(self, owner: JID, vcard: bytes) -> None:
        await self.db.run(lambda conn: conn.execute(
            "INSERT INTO vcards (owner, vcard) VALUES (%s, %s)"
            " ON CONFLICT (owner) DO UPDATE SET vcard = excluded.vcard",
            (str(owner.bare), vcard)))

    # --- accounts -------------------------------------------------------------------------

    async def forget(self, owner: JID) -> None:
        owner = owner.bare

        def write(conn: psycopg.Connection) -> None:
            for query in ("DELETE FROM roster_items WHERE owner = %s",
                          "DELETE FROM roster_versions WHERE owner = %s",
                          "DELETE FROM subscription_requests WHERE owner = %s",
                          "DELETE FROM offline_messages WHERE owner = %s",
                          "DELETE FROM blocklist WHERE owner = %s",
                          "DELETE FROM vcards WHERE owner = %s"):
                conn.execute(query, (str(owner),))
            self._notify(conn, owner)

        await self.db.run(write)
        self._rosters.pop(owner, None)
        self._requests.pop(owner, None)
        self._blocked.pop(owner, None)


def _replace(cache: dict[JID, T], owner: JID, value: T | None) -> None:
    if value is None:
        cache.pop(owner, None)
    else:
        cache[owner] = value


def _set_version(conn: psycopg.Connection, owner: JID, version: int) -> None:
    conn.execute("INSERT INTO roster_versions (owner, version) VALUES (%s, %s)"
                 " ON CONFLICT (owner) DO UPDATE SET"
                 " version = GREATEST(roster_versions.version, excluded.version)",
                 (str(owner), version))  # concurrent changes may commit out of order

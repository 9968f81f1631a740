"""Accounts on PostgreSQL: SCRAM credentials (never passwords), enabled flag, login times."""

from __future__ import annotations

import time

import psycopg
import trio

from pubsubd.storage.accounts import derive_all
from pubsubd.storage.interfaces import Account, AccountExists
from pubsubd.storage.postgres.database import PgDatabase
from pubsubd.stream.sasl import ScramCredentials

MIGRATIONS = [
    """
    CREATE TABLE accounts (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created DOUBLE PRECISION NOT NULL,
        last_login DOUBLE PRECISION,
        last_logout DOUBLE PRECISION,
        PRIMARY KEY (domain, username)
    );
    CREATE TABLE account_credentials (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        hash TEXT NOT NULL,
        salt BYTEA NOT NULL,
        iterations INTEGER NOT NULL,
        stored_key BYTEA NOT NULL,
        server_key BYTEA NOT NULL,
        PRIMARY KEY (domain, username, hash),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """,
]


class PgAccountStore:
    """:class:`~pubsubd.storage.interfaces.AccountStore` on PostgreSQL.

    Login and logout stamps are written as they come (each an UPDATE of one row): PostgreSQL
    commits concurrent writers in parallel, so the group commit the SQLite store needs for its
    single writer buys nothing here."""

    def __init__(self, db: PgDatabase, iterations: int = 4096) -> None:
        self.db = db
        self.iterations = iterations
        db.migrate("accounts", MIGRATIONS)

    async def create(self, username: str, domain: str, password: str) -> None:
        creds = await trio.to_thread.run_sync(derive_all, password, self.iterations)

        def insert(conn: psycopg.Connection) -> None:
            cur = conn.execute(
                "INSERT INTO accounts (domain, username, created) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING", (domain, username, time.time()))
            if cur.rowcount == 0:
                raise AccountExists(f"{username}@{domain}")
            _write_creds(conn, username, domain, creds)

        await self.db.run(insert)

    async def get(self, username: str, domain: str) -> Account | None:
        return await self.db.read(lambda conn: _read(conn, username, domain))

    async def set_password(self, username: str, domain: str, password: str) -> bool:
        creds = await trio.to_thread.run_sync(derive_all, password, self.iterations)

        def update(conn: psycopg.Connection) -> bool:
            if _read(conn, username, domain) is None:
                return False
            _write_creds(conn, username, domain, creds)
            return True

        return await self.db.run(update)

    async def delete(self, username: str, domain: str) -> bool:
        def delete(conn: psycopg.Connection) -> bool:
            # Other instances remember which accounts exist (the router's KnownAccounts).
            self.db.notify(conn, "account", f"{username}@{domain}")
            return conn.execute("DELETE FROM accounts WHERE domain = %s AND username = %s",
                                (domain, username)).rowcount > 0

        return await self.db.run(delete)

    async def set_enabled(self, username: str, domain: str, enabled: bool) -> bool:
        def update(conn: psycopg.Connection) -> bool:
            return conn.execute(
                "UPDATE accounts SET enabled = %s WHERE domain = %s AND username = %s",
                (int(enabled), domain, username)).rowcount > 0

        return await self.db.run(update)

    async def list(self, domain: str | None = None) -> list[Account]:
        def select(conn: psycopg.Connection) -> list[Account]:
            rows = conn.execute(
                "SELECT username, domain FROM accounts WHERE %s::text IS NULL OR domain = %s"
                " ORDER BY domain, username", (domain, domain)).fetchall()
            return [a for u, d in rows if (a := _read(conn, u, d)) is not None]

        return await self.db.read(select)

    async def record_login(self, username: str, domain: str) -> None:
        await self._stamp("last_login", username, domain)

    async def record_logout(self, username: str, domain: str) -> None:
        await self._stamp("last_logout", username, domain)

    async def _stamp(self, column: str, username: str, domain: str) -> None:
        query = {"last_login": "UPDATE accounts SET last_login = %s"
                               " WHERE domain = %s AND username = %s",
                 "last_logout": "UPDATE accounts SET last_logout = %s"
                                " WHERE domain = %s AND username = %s"}[column]
        when = time.time()
        await self.db.run(lambda conn: conn.execute(query, (when, domain, username)))


def _write_creds(conn: psycopg.Connection, username: str, domain: str,
                 creds: dict[str, ScramCredentials]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO account_credentials"
            " (domain, username, hash, salt, iterations, stored_key, server_key)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (domain, username, hash) DO UPDATE"
            " SET salt = excluded.salt, iterations = excluded.iterations,"
            " stored_key = excluded.stored_key, server_key = excluded.server_key",
            [(domain, username, h, c.salt, c.iterations, c.stored_key, c.server_key)
             for h, c in creds.items()])


def _read(conn: psycopg.Connection, username: str, domain: str) -> Account | None:
    row = conn.execute(
        "SELECT enabled, created, last_login, last_logout FROM accounts"
        " WHERE domain = %s AND username = %s", (domain, username)).fetchone()
    if row is None:
        return None
    creds = {
        h: ScramCredentials(salt=bytes(s), iterations=i, stored_key=bytes(sk),
                            server_key=bytes(svk))
        for h, s, i, sk, svk in conn.execute(
            "SELECT hash, salt, iterations, stored_key, server_key FROM account_credentials"
            " WHERE domain = %s AND username = %s", (domain, username))
    }
    return Account(username, domain, bool(row[0]), row[1], row[2], row[3], creds)

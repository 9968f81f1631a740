"""Accounts: SCRAM credentials (never passwords), enabled flag, registration and login times."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace

from pubsubd.storage.interfaces import Account, AccountExists, AccountStore
from pubsubd.storage.sqlite import Database
from pubsubd.stream.sasl import ScramCredentials, derive_scram_keys

HASHES = ("SHA-1", "SHA-256")

__all__ = ["HASHES", "Account", "AccountExists", "AccountStore", "SqliteAccountStore", "derive_all"]


_SCHEMA = [
    """
    CREATE TABLE accounts (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created REAL NOT NULL,
        last_login REAL,
        last_logout REAL,
        PRIMARY KEY (domain, username)
    );
    CREATE TABLE account_credentials (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        hash TEXT NOT NULL,
        salt BLOB NOT NULL,
        iterations INTEGER NOT NULL,
        stored_key BLOB NOT NULL,
        server_key BLOB NOT NULL,
        PRIMARY KEY (domain, username, hash),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """,
]


def derive_all(password: str, iterations: int) -> dict[str, ScramCredentials]:
    """SCRAM keys for every hash we offer (CPU-heavy: call it off the event loop)."""
    return {h: derive_scram_keys(password, h, iterations=iterations) for h in HASHES}


class SqliteAccountStore:
    def __init__(self, db: Database, iterations: int = 4096) -> None:
        self.db = db
        self.iterations = iterations
        db.migrate("accounts", _SCHEMA)
        # Login and logout stamps not yet written, (domain, username, column) → time. Every
        # login writes two; they are written in group commits (see _stamp), and reads see
        # them at once.
        self._stamps: dict[tuple[str, str, str], float] = {}
        self._flushing = False

    async def _derive(self, password: str) -> dict[str, ScramCredentials]:
        import trio

        return await trio.to_thread.run_sync(derive_all, password, self.iterations)

    async def create(self, username: str, domain: str, password: str) -> None:
        creds = await self._derive(password)

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO accounts (domain, username, created) VALUES (?, ?, ?)",
                    (domain, username, time.time()),
                )
            except sqlite3.IntegrityError:
                raise AccountExists(f"{username}@{domain}") from None
            _write_creds(conn, username, domain, creds)

        await self.db.run(insert)

    async def get(self, username: str, domain: str) -> Account | None:
        return self._with_stamps(await self.db.read(lambda c: _read(c, username, domain)))

    def _with_stamps(self, account: Account | None) -> Account | None:
        """``account`` with the stamps still waiting to be written."""
        if account is None or not self._stamps:
            return account
        key = (account.domain, account.username)
        login = self._stamps.get((*key, "last_login"), account.last_login)
        logout = self._stamps.get((*key, "last_logout"), account.last_logout)
        return replace(account, last_login=login, last_logout=logout)

    async def set_password(self, username: str, domain: str, password: str) -> bool:
        creds = await self._derive(password)

        def update(conn: sqlite3.Connection) -> bool:
            if _read(conn, username, domain) is None:
                return False
            _write_creds(conn, username, domain, creds)
            return True

        return await self.db.run(update)

    async def delete(self, username: str, domain: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM accounts WHERE domain = ? AND username = ?", (domain, username)
            )
            return cur.rowcount > 0

        return await self.db.run(delete)

    async def set_enabled(self, username: str, domain: str, enabled: bool) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE accounts SET enabled = ? WHERE domain = ? AND username = ?",
                (int(enabled), domain, username),
            )
            return cur.rowcount > 0

        return await self.db.run(update)

    async def list(self, domain: str | None = None) -> list[Account]:
        def select(conn: sqlite3.Connection) -> list[Account]:
            rows = conn.execute(
                "SELECT username, domain FROM accounts"
                + (" WHERE domain = ?" if domain else "")
                + " ORDER BY domain, username",
                (domain,) if domain else (),
            ).fetchall()
            return [a for u, d in rows if (a := _read(conn, u, d)) is not None]

        accounts = await self.db.read(select)
        return [a for a in map(self._with_stamps, accounts) if a is not None]

    async def record_login(self, username: str, domain: str) -> None:
        await self._stamp("last_login", username, domain)

    async def record_logout(self, username: str, domain: str) -> None:
        await self._stamp("last_logout", username, domain)

    async def _stamp(self, column: str, username: str, domain: str) -> None:
        """Record a login or logout time, in a group commit with the others.

        The first caller writes everything pending in one transaction, then again for what
        arrived meanwhile, until nothing is left; callers that find a write in progress
        return at once (their stamp rides in the next transaction). Under many logins this
        is one database round trip for many stamps instead of two per login.
        """
        assert column in ("last_login", "last_logout")
        self._stamps[(domain, username, column)] = time.time()
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._stamps:
                batch = self._stamps.copy()

                def write(conn: sqlite3.Connection, batch: dict[tuple[str, str, str], float]
                          = batch) -> None:
                    for (d, u, col), when in batch.items():
                        conn.execute(
                            f"UPDATE accounts SET {col} = ? WHERE domain = ? AND username = ?",
                            (when, d, u),
                        )

                await self.db.run(write)
                for key, when in batch.items():
                    if self._stamps.get(key) == when:  # not stamped again meanwhile
                        del self._stamps[key]
        finally:
            self._flushing = False


def _write_creds(conn: sqlite3.Connection, username: str, domain: str,
                 creds: dict[str, ScramCredentials]) -> None:
    for hash_name, c in creds.items():
        conn.execute(
            "INSERT OR REPLACE INTO account_credentials"
            " (domain, username, hash, salt, iterations, stored_key, server_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (domain, username, hash_name, c.salt, c.iterations, c.stored_key, c.server_key),
        )


def _read(conn: sqlite3.Connection, username: str, domain: str) -> Account | None:
    row = conn.execute(
        "SELECT enabled, created, last_login, last_logout FROM accounts"
        " WHERE domain = ? AND username = ?",
        (domain, username),
    ).fetchone()
    if row is None:
        return None
    creds = {
        h: ScramCredentials(salt=s, iterations=i, stored_key=sk, server_key=svk)
        for h, s, i, sk, svk in conn.execute(
            "SELECT hash, salt, iterations, stored_key, server_key FROM account_credentials"
            " WHERE domain = ? AND username = ?",
            (domain, username),
        )
    }
    return Account(username, domain, bool(row[0]), row[1], row[2], row[3], creds)

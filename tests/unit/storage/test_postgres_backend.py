"""Choosing PostgreSQL by ``storage.url``, its errors, and schema versions on both backends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from pubsubd.config import ConfigError, StorageConfig, loads
from pubsubd.jid import JID
from pubsubd.storage.backends import UnknownBackend, open_backend, resolve
from pubsubd.storage.interfaces import RosterItem
from pubsubd.storage.sqlite import SchemaTooNew

ALICE, BOB = JID.parse("alice@example.org"), JID.parse("bob@example.org")
STORES = {"accounts", "im", "mam", "muc", "private_xml", "pubsub", "feeds", "admin"}


async def test_a_postgresql_url_puts_every_store_in_that_database(pg_url: str,
                                                                  tmp_path: Path) -> None:
    stores = open_backend(StorageConfig(url=pg_url), tmp_path)
    try:
        await stores.ping()
        await stores.accounts.create("alice", "example.org", "pw")
        await stores.im.put_item(ALICE, RosterItem(BOB))
    finally:
        stores.close()
    assert not any(tmp_path.iterdir())  # no SQLite file on the side  # noqa: ASYNC240
    with psycopg.connect(pg_url) as conn:
        names = {name for (name,) in conn.execute("SELECT name FROM schema_versions")}
        row = conn.execute("SELECT COUNT(*) FROM accounts").fetchone()
    assert STORES <= names
    assert row == (1,)


def test_backend_postgres_with_the_url_is_the_same_choice(pg_url: str) -> None:
    assert resolve(StorageConfig(backend="postgres", url=pg_url)).backend == "postgres"
    assert resolve(StorageConfig(url=pg_url)).backend == "postgres"


def test_a_sqlite_url_names_the_file(tmp_path: Path) -> None:
    relative = resolve(StorageConfig(url="sqlite:///var/other.sqlite3"))
    assert (relative.backend, relative.path) == ("sqlite", "var/other.sqlite3")
    absolute = resolve(StorageConfig(url=f"sqlite:///{tmp_path}/x.sqlite3"))
    assert absolute.path == f"{tmp_path}/x.sqlite3"


@pytest.mark.parametrize(("storage", "message"), [
    ("{backend: postgres}", "storage.url: required with backend postgres"),
    ("{url: 'mysql://db/x'}", "storage.url: expected postgresql://"),
    ("{backend: memory, url: 'postgresql://db/x'}", "storage.backend: 'memory' contradicts"),
    ("{backend: postgres, url: 'sqlite:///x.db'}", "storage.backend: 'postgres' contradicts"),
    ("{url: 'postgresql://db/x', pool_size: 0}", "storage.pool_size: must be at least 1"),
])
def test_storage_mistakes_are_config_errors_naming_the_key(storage: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        loads(f"storage: {storage}\n")
    with pytest.raises(UnknownBackend):
        resolve(loads("").storage.__class__(**_fields(storage)))


def _fields(storage: str) -> dict[str, object]:
    import yaml

    data = yaml.safe_load(storage)
    assert isinstance(data, dict)
    return data


def test_postgres_refuses_a_schema_newer_than_it_knows(pg_url: str, tmp_path: Path) -> None:
    open_backend(StorageConfig(url=pg_url), tmp_path).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE schema_versions SET version = version + 1 WHERE name = 'mam'")
    with pytest.raises(SchemaTooNew, match="'mam' tables are at schema version"):
        open_backend(StorageConfig(url=pg_url), tmp_path)


def test_sqlite_refuses_a_schema_newer_than_it_knows(tmp_path: Path) -> None:
    open_backend(StorageConfig(path="db.sqlite3"), tmp_path).close()
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        conn.execute("UPDATE schema_versions SET version = version + 1 WHERE name = 'pubsub'")
    with pytest.raises(SchemaTooNew, match="'pubsub' tables are at schema version"):
        open_backend(StorageConfig(path="db.sqlite3"), tmp_path)


def test_migrating_twice_changes_nothing(pg_url: str, tmp_path: Path) -> None:
    open_backend(StorageConfig(url=pg_url), tmp_path).close()
    with psycopg.connect(pg_url) as conn:
        before = conn.execute("SELECT name, version FROM schema_versions ORDER BY 1").fetchall()
    open_backend(StorageConfig(url=pg_url), tmp_path).close()
    with psycopg.connect(pg_url) as conn:
        after = conn.execute("SELECT name, version FROM schema_versions ORDER BY 1").fetchall()
    assert before == after

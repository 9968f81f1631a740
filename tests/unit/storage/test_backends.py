"""The backend factory: the configured backend, one SQLite file for all stores, errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pubsubd.config import StorageConfig
from pubsubd.jid import JID
from pubsubd.storage.backends import BACKENDS, UnknownBackend, open_backend
from pubsubd.storage.interfaces import RosterItem

from .backend_params import BACKENDS as CONTRACT_BACKENDS
from .backend_params import Settings

ALICE, BOB = JID.parse("alice@example.org"), JID.parse("bob@example.org")


def test_every_backend_runs_the_contract_suites() -> None:
    assert set(BACKENDS) == set(CONTRACT_BACKENDS)


async def test_sqlite_is_the_default_with_every_store_in_one_file(tmp_path: Path) -> None:
    stores = open_backend(StorageConfig(path="var/server.sqlite3"), tmp_path)
    try:
        await stores.ping()
        await stores.accounts.create("alice", "example.org", "pw")
        await stores.im.put_item(ALICE, RosterItem(BOB))
    finally:
        stores.close()
    conn = sqlite3.connect(tmp_path / "var" / "server.sqlite3")
    try:
        names = {name for (name,) in conn.execute("SELECT name FROM schema_versions")}
        (accounts,) = conn.execute("SELECT COUNT(*) FROM accounts").fetchone()
    finally:
        conn.close()
    assert {"accounts", "im", "mam", "muc", "private_xml", "pubsub", "feeds"} <= names
    assert accounts == 1


def test_an_absolute_path_is_taken_as_is(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "db.sqlite3"
    stores = open_backend(Settings("sqlite", str(target)), tmp_path / "base")
    stores.close()
    assert target.exists()
    assert not (tmp_path / "base").exists()


def test_memory_writes_no_file(tmp_path: Path) -> None:
    open_backend(Settings("memory", "var/server.sqlite3"), tmp_path).close()
    assert list(tmp_path.iterdir()) == []


async def test_memory_keeps_nothing_between_openings(tmp_path: Path) -> None:
    settings = Settings("memory", "var/server.sqlite3")
    stores = open_backend(settings, tmp_path)
    await stores.ping()
    await stores.accounts.create("alice", "example.org", "pw")
    assert await stores.accounts.get("alice", "example.org") is not None
    stores.close()
    again = open_backend(settings, tmp_path)
    assert await again.accounts.get("alice", "example.org") is None


def test_an_unknown_backend_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownBackend, match="'oracle'.*memory, postgres, sqlite"):
        open_backend(Settings("oracle", "x"), tmp_path)

"""Storage on the hot paths: read-only transactions, grouped login stamps."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from pubsubd.storage.accounts import SqliteAccountStore
from pubsubd.storage.sqlite import Database


def _other_writer_can_lock(path: Path) -> bool:
    """Whether a second connection can take the write lock right now."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def test_read_transactions_take_no_write_lock(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    try:
        assert db.run_sync(lambda c: _other_writer_can_lock(tmp_path / "db.sqlite3"),
                           readonly=True)
        # A write transaction holds the lock from its start, so it never fails half-way.
        assert not db.run_sync(lambda c: _other_writer_can_lock(tmp_path / "db.sqlite3"))
    finally:
        db.close()


async def test_read_sees_committed_writes(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    try:
        await db.run(lambda c: c.execute("CREATE TABLE t (x INTEGER)"))
        await db.run(lambda c: c.execute("INSERT INTO t VALUES (7)"))
        assert await db.read(lambda c: c.execute("SELECT x FROM t").fetchall()) == [(7,)]
        with pytest.raises(ZeroDivisionError):
            await db.read(lambda c: 1 / 0)  # rolled back, the connection stays usable
        assert await db.run(lambda c: c.execute("SELECT x FROM t").fetchall(),
                            readonly=True) == [(7,)]
    finally:
        db.close()


async def test_login_stamps_are_grouped_visible_at_once_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = Database(path)
    store = SqliteAccountStore(db, iterations=4096)
    names = [f"u{i}" for i in range(20)]
    for name in names:
        await store.create(name, "example.org", "secret")
    transactions = 0
    original = db.run

    async def counting_run(fn, *, readonly=False):  # type: ignore[no-untyped-def]
        nonlocal transactions
        transactions += not readonly
        return await original(fn, readonly=readonly)

    db.run = counting_run  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(store.record_login, name, "example.org")
            nursery.start_soon(store.record_logout, name, "example.org")
        await trio.lowlevel.checkpoint()
        # Visible before they reach the disk, to every reader of the store.
        first = await store.get("u0", "example.org")
        assert first is not None and first.last_login is not None
    assert transactions < len(names)  # 40 stamps, a few transactions
    db.close()
    reopened = SqliteAccountStore(Database(path), iterations=4096)
    accounts = await reopened.list("example.org")
    assert len(accounts) == len(names)
    assert all(a.last_login is not None and a.last_logout is not None for a in accounts)
    reopened.db.close()


async def test_subscriptions_are_read_from_disk_once_per_node(tmp_path: Path) -> None:
    """A publish fans out from memory: listing a node's subscriptions again runs no query,
    and what changes later is seen without one."""
    from pubsubd.pubsub.model import Node, NodeConfig, Subscription
    from pubsubd.storage.pubsub_sqlite import SqlitePubSubStore

    db = Database(tmp_path / "db.sqlite3")
    store = SqlitePubSubStore(db)
    statements: list[str] = []
    db.run_sync(lambda c: c.set_trace_callback(statements.append))
    try:
        svc = "pubsub.example.org"
        await store.create_node(Node(svc, "n", NodeConfig(), "a@example.org"), "a@example.org")
        for i in range(50):
            await store.put_subscription(svc, Subscription("n", f"u{i}@example.org", f"s{i}"))
        assert len(await store.list_subscriptions(svc, "n")) == 50
        selects = [s for s in statements if s.startswith("SELECT") and "subscriptions" in s]
        assert len(selects) == 1
        for _ in range(10):
            assert len(await store.list_subscriptions(svc, "n")) == 50
        await store.delete_subscription(svc, "n", "s0")
        assert len(await store.list_subscriptions(svc, "n")) == 49
        assert [s for s in statements
                if s.startswith("SELECT") and "subscriptions" in s] == selects
    finally:
        db.close()

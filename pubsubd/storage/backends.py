"""The one place where the storage backend is chosen: ``open_backend(config.storage, base_dir)``.

A backend is a function building every store of :class:`Stores` from the storage settings;
:data:`BACKENDS` maps the configured name (``storage.backend``) to it. Modules only ever see
the protocols of :mod:`pubsubd.storage.interfaces`. To add a backend (PostgreSQL, say):

1. write one class per protocol, e.g. ``im_postgres.py`` next to ``im_sqlite.py``;
2. write its opener (like :func:`open_sqlite`) and register it in :data:`BACKENDS`;
3. add its name to ``BACKENDS`` in ``tests/unit/storage/backend_params.py``: every contract
   suite then runs on it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pubsubd.storage.accounts import SqliteAccountStore
from pubsubd.storage.feed_contacts_sqlite import SqliteFeedContactStore, SqliteFeedMarkStore
from pubsubd.storage.feeds_sqlite import SqliteFeedStore
from pubsubd.storage.im_sqlite import im_store
from pubsubd.storage.interfaces import (
    AccountStore,
    FeedContactStore,
    FeedMarkStore,
    FeedStore,
    ImStore,
    MamStore,
    MotdStore,
    MucStore,
    PrivateStore,
    PubSubStore,
    RoomFeedStore,
    UploadStore,
    WebSubStore,
)
from pubsubd.storage.mam_sqlite import SqliteMamStore
from pubsubd.storage.memory import (
    MemoryAccountStore,
    MemoryFeedContactStore,
    MemoryFeedMarkStore,
    MemoryFeedStore,
    MemoryImStore,
    MemoryMamStore,
    MemoryMotdStore,
    MemoryMucStore,
    MemoryPrivateStore,
    MemoryPubSubStore,
    MemoryRoomFeedStore,
    MemoryUploadStore,
    MemoryWebSubStore,
)
from pubsubd.storage.motd_sqlite import SqliteMotdStore
from pubsubd.storage.muc_sqlite import SqliteMucStore
from pubsubd.storage.private_sqlite import SqlitePrivateStore
from pubsubd.storage.pubsub_sqlite import SqlitePubSubStore
from pubsubd.storage.room_feeds_sqlite import SqliteRoomFeedStore
from pubsubd.storage.sqlite import Database
from pubsubd.storage.upload_sqlite import SqliteUploadStore
from pubsubd.storage.websub_sqlite import SqliteWebSubStore

DEFAULT_BACKEND = "sqlite"


class StorageSettings(Protocol):
    """What a backend reads of the ``storage`` configuration."""

    @property
    def backend(self) -> str: ...

    @property
    def path(self) -> str: ...


async def _nothing_to_check() -> None:
    return None


def _nothing_to_close() -> None:
    return None


@dataclass(slots=True)
class Stores:
    """One instance of every store, all on the same backend."""

    accounts: AccountStore
    im: ImStore
    mam: MamStore
    muc: MucStore
    private: PrivateStore
    pubsub: PubSubStore
    feeds: FeedStore
    motd: MotdStore
    uploads: UploadStore
    feed_contacts: FeedContactStore
    feed_marks: FeedMarkStore
    websub: WebSubStore
    room_feeds: RoomFeedStore
    ping: Callable[[], Awaitable[None]] = field(default=_nothing_to_check)
    """Raises if the backend cannot answer a trivial query (health checks)."""
    close: Callable[[], None] = field(default=_nothing_to_close)
    """Releases connections; the stores must not be used afterwards."""


Opener = Callable[[StorageSettings, Path, int], Stores]


def open_memory(settings: StorageSettings, base_dir: Path, scram_iterations: int) -> Stores:
    """Everything in this process's memory: for tests and throw-away servers."""
    return Stores(
        accounts=MemoryAccountStore(scram_iterations),
        im=MemoryImStore(),
        mam=MemoryMamStore(),
        muc=MemoryMucStore(),
        private=MemoryPrivateStore(),
        pubsub=MemoryPubSubStore(),
        feeds=MemoryFeedStore(),
        motd=MemoryMotdStore(),
        uploads=MemoryUploadStore(),
        feed_contacts=MemoryFeedContactStore(),
        feed_marks=MemoryFeedMarkStore(),
        websub=MemoryWebSubStore(),
        room_feeds=MemoryRoomFeedStore(),
    )


def open_sqlite(settings: StorageSettings, base_dir: Path, scram_iterations: int) -> Stores:
    """One SQLite file (``storage.path``, relative to ``base_dir``) shared by every store."""
    path = Path(settings.path)
    db = Database(path if path.is_absolute() or settings.path == ":memory:" else base_dir / path)

    async def ping() -> None:
        await db.read(_select_one)

    return Stores(
        accounts=SqliteAccountStore(db, scram_iterations),
        im=im_store(db),  # the instance modules that still build their own stores share
        mam=SqliteMamStore(db),
        muc=SqliteMucStore(db),
        private=SqlitePrivateStore(db),
        pubsub=SqlitePubSubStore(db),
        feeds=SqliteFeedStore(db),
        motd=SqliteMotdStore(db),
        uploads=SqliteUploadStore(db),
        feed_contacts=SqliteFeedContactStore(db),
        feed_marks=SqliteFeedMarkStore(db),
        websub=SqliteWebSubStore(db),
        room_feeds=SqliteRoomFeedStore(db),
        ping=ping,
        close=db.close,
    )


def _select_one(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1").fetchone()


BACKENDS: dict[str, Opener] = {"sqlite": open_sqlite, "memory": open_memory}


class UnknownBackend(ValueError):
    pass


def open_backend(settings: StorageSettings, base_dir: Path, *,
                 scram_iterations: int = 4096) -> Stores:
    """Open the configured backend's stores (``storage.backend``, default SQLite)."""
    name = settings.backend
    opener = BACKENDS.get(name)
    if opener is None:
        raise UnknownBackend(
            f"storage.backend: unknown {name!r}, expected one of {', '.join(sorted(BACKENDS))}")
    return opener(settings, base_dir, scram_iterations)

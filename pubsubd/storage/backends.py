"""The one place where the storage backend is chosen: ``open_backend(config.storage, base_dir)``.

A backend is a function building every store of :class:`Stores` from the storage settings;
:data:`BACKENDS` maps the configured name (``storage.backend``) to it. Modules only ever see
the protocols of :mod:`pubsubd.storage.interfaces`. Backends: ``memory``, ``sqlite`` (the
``*_sqlite.py`` files) and ``postgres`` (the ``postgres/`` package). A store added to
:class:`Stores` needs a class in each, a contract suite in ``tests/unit/storage/`` (it runs on
every name in ``backend_params.BACKENDS``) and its tables in ``transfer.TABLES``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from feeds.leases import FeedLeases
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
    Invalidation,
    MamStore,
    MotdStore,
    MucStore,
    PrivateStore,
    PubSubStore,
    PushStore,
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
    MemoryInvalidation,
    MemoryMamStore,
    MemoryMotdStore,
    MemoryMucStore,
    MemoryPrivateStore,
    MemoryPubSubStore,
    MemoryPushStore,
    MemoryRoomFeedStore,
    MemoryUploadStore,
    MemoryWebSubStore,
)
from pubsubd.storage.motd_sqlite import SqliteMotdStore
from pubsubd.storage.muc_sqlite import SqliteMucStore
from pubsubd.storage.private_sqlite import SqlitePrivateStore
from pubsubd.storage.pubsub_sqlite import SqlitePubSubStore
from pubsubd.storage.push_sqlite import SqlitePushStore
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

    @property
    def url(self) -> str | None:
        """``postgresql://...`` or ``sqlite:///...``; None (or empty) for ``backend``."""
        ...

    @property
    def pool_size(self) -> int: ...


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
    push: PushStore
    lease_feeds: Callable[[str], FeedLeases] | None = None
    """Feed leases shared by every instance on the database, given this instance's id; None
    where only one process uses the store (the poller then leases in memory)."""
    ping: Callable[[], Awaitable[None]] = field(default=_nothing_to_check)
    """Raises if the backend cannot answer a trivial query (health checks)."""
    close: Callable[[], None] = field(default=_nothing_to_close)
    """Releases connections; the stores must not be used afterwards."""
    invalidation: Invalidation = field(default_factory=MemoryInvalidation)
    """Changes other instances sharing the database commit (nothing on memory and SQLite,
    which one process owns); run for the server's lifetime by the composition root."""


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
        push=MemoryPushStore(),
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
        push=SqlitePushStore(db),
        ping=ping,
        close=db.close,
    )


def _select_one(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1").fetchone()


def open_postgres(settings: StorageSettings, base_dir: Path, scram_iterations: int) -> Stores:
    """Every store on one PostgreSQL database (``storage.url``), schemas migrated on open."""
    from pubsubd.storage import postgres as pg

    db = pg.PgDatabase(resolve(settings).url, max_connections=settings.pool_size)
    try:
        return Stores(
            accounts=pg.PgAccountStore(db, scram_iterations),
            im=pg.PgImStore(db),
            mam=pg.PgMamStore(db),
            muc=pg.PgMucStore(db),
            private=pg.PgPrivateStore(db),
            pubsub=pg.PgPubSubStore(db),
            feeds=pg.PgFeedStore(db),
            motd=pg.PgMotdStore(db),
            uploads=pg.PgUploadStore(db),
            feed_contacts=pg.PgFeedContactStore(db),
            feed_marks=pg.PgFeedMarkStore(db),
            websub=pg.PgWebSubStore(db),
            room_feeds=pg.PgRoomFeedStore(db),
            push=pg.PgPushStore(db),
            lease_feeds=lambda instance: pg.PgFeedLeases(db, instance),
            ping=db.ping,
            close=db.close,
            invalidation=db.invalidation,
        )
    except BaseException:
        db.close()
        raise


BACKENDS: dict[str, Opener] = {"sqlite": open_sqlite, "memory": open_memory,
                               "postgres": open_postgres}


class UnknownBackend(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Resolved:
    """The settings as one backend reads them, after ``url`` had its say."""

    backend: str
    path: str
    url: str
    pool_size: int


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite:///"


def resolve(settings: StorageSettings) -> Resolved:
    """Which backend the settings name: a ``url`` decides by its scheme (``backend`` may
    repeat it), else ``backend``. Raises :class:`UnknownBackend` naming the key at fault."""
    url = getattr(settings, "url", "") or ""
    pool_size = getattr(settings, "pool_size", 8)
    name, path = settings.backend, settings.path
    if url.startswith(POSTGRES_SCHEMES):
        if name not in ("postgres", DEFAULT_BACKEND):
            raise UnknownBackend(f"storage.backend: {name!r} contradicts storage.url, a"
                                 " PostgreSQL URL (use backend: postgres, or leave it out)")
        name = "postgres"
    elif url.startswith(SQLITE_SCHEME):
        if name != DEFAULT_BACKEND:
            raise UnknownBackend(f"storage.backend: {name!r} contradicts storage.url, a"
                                 " SQLite URL (use backend: sqlite, or leave it out)")
        path = url[len(SQLITE_SCHEME):] or path  # sqlite:////abs/path: an absolute path
    elif url:
        raise UnknownBackend(f"storage.url: expected postgresql://... or sqlite:///..., not"
                             f" {url.split('://')[0]}://...")
    elif name == "postgres":
        raise UnknownBackend("storage.url: required with backend postgres"
                             " (postgresql://user:password@host/database)")
    if name not in BACKENDS:
        raise UnknownBackend(
            f"storage.backend: unknown {name!r}, expected one of {', '.join(sorted(BACKENDS))}")
    if pool_size < 1:
        raise UnknownBackend("storage.pool_size: must be at least 1")
    return Resolved(name, path, url, pool_size)


def open_backend(settings: StorageSettings, base_dir: Path, *,
                 scram_iterations: int = 4096) -> Stores:
    """Open the configured backend's stores (``storage.url`` or ``storage.backend``, default
    SQLite)."""
    resolved = resolve(settings)
    return BACKENDS[resolved.backend](resolved, base_dir, scram_iterations)

"""Persistence: narrow per-feature store protocols over one embedded SQLite database.

:func:`open_stores` is the one place stores are built; the composition root hands each module
the store it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pubsubd.config import Config
from pubsubd.storage.accounts import SqliteAccountStore
from pubsubd.storage.feeds_sqlite import SqliteFeedStore
from pubsubd.storage.im_sqlite import ImStore, im_store
from pubsubd.storage.mam_sqlite import MamStore
from pubsubd.storage.motd_sqlite import SqliteMotdStore
from pubsubd.storage.muc_sqlite import SqliteMucStore
from pubsubd.storage.private_sqlite import PrivateXmlStore
from pubsubd.storage.pubsub_sqlite import SqlitePubSubStore
from pubsubd.storage.sqlite import Database

__all__ = ["Stores", "open_stores"]


@dataclass(frozen=True, slots=True)
class Stores:
    """Every store of the server, over one database (closed with :meth:`close`)."""

    db: Database
    accounts: SqliteAccountStore
    im: ImStore  # rosters, subscription requests, offline messages, blocklists, vCards
    mam: MamStore
    muc: SqliteMucStore
    private: PrivateXmlStore
    pubsub: SqlitePubSubStore  # pubsub.<domain> and PEP share it
    motd: SqliteMotdStore
    feeds: SqliteFeedStore

    def close(self) -> None:
        self.db.close()


def open_stores(config: Config, base_dir: Path) -> Stores:
    """Open the database named by ``storage.path`` (relative to ``base_dir``), migrate it, and
    build every store on it."""
    path = Path(config.storage.path)
    db = Database(path if path.is_absolute() else base_dir / path)
    return Stores(
        db=db,
        accounts=SqliteAccountStore(db, config.auth.scram_iterations),
        im=im_store(db),
        mam=MamStore(db),
        muc=SqliteMucStore(db),
        private=PrivateXmlStore(db),
        pubsub=SqlitePubSubStore(db),
        motd=SqliteMotdStore(db),
        feeds=SqliteFeedStore(db),
    )

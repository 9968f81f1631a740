"""The PostgreSQL backend: every store protocol of :mod:`pubsubd.storage.interfaces` on one
database (``storage.url: postgresql://...``), one file per area, each with its versioned
schema steps (:mod:`.migrations`).

:func:`open_postgres` builds the stores; they share one :class:`~.database.PgDatabase` (a
connection pool run from worker threads, see its docstring for why).
"""

from __future__ import annotations

from pubsubd.storage.postgres.accounts import PgAccountStore
from pubsubd.storage.postgres.database import PgDatabase
from pubsubd.storage.postgres.feed_contacts import PgFeedContactStore, PgFeedMarkStore
from pubsubd.storage.postgres.feed_leases import PgFeedLeases
from pubsubd.storage.postgres.feeds import PgFeedStore
from pubsubd.storage.postgres.im import PgImStore
from pubsubd.storage.postgres.mam import PgMamStore
from pubsubd.storage.postgres.migrations import SchemaTooNew
from pubsubd.storage.postgres.motd import PgMotdStore
from pubsubd.storage.postgres.muc import PgMucStore
from pubsubd.storage.postgres.private import PgPrivateStore
from pubsubd.storage.postgres.pubsub import PgPubSubStore
from pubsubd.storage.postgres.push import PgPushStore
from pubsubd.storage.postgres.room_feeds import PgRoomFeedStore
from pubsubd.storage.postgres.uploads import PgUploadStore
from pubsubd.storage.postgres.websub import PgWebSubStore

__all__ = [
    "PgAccountStore",
    "PgDatabase",
    "PgFeedContactStore",
    "PgFeedLeases",
    "PgFeedMarkStore",
    "PgFeedStore",
    "PgImStore",
    "PgMamStore",
    "PgMotdStore",
    "PgMucStore",
    "PgPrivateStore",
    "PgPubSubStore",
    "PgPushStore",
    "PgRoomFeedStore",
    "PgUploadStore",
    "PgWebSubStore",
    "SchemaTooNew",
]

"""Every store the server uses, as ``typing.Protocol``s, with the records they speak in.

This is the one place to look for what a storage backend must provide. Modules depend on these
protocols only; :mod:`pubsubd.storage.backends` picks the implementations (SQLite, in-memory,
later others) from the configuration. Each protocol lists exactly what modules call.

Some reads are synchronous (rosters, subscription requests, blocklists, MAM preferences): they
are asked for on every stanza, so every backend keeps them in memory, loaded when it opens, and
writes through to durable storage before updating memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, Protocol, overload

from feeds.push import LeaseStore, PushLease
from feeds.store import FeedStore
from pubsubd.jid import JID
from pubsubd.pubsub.store import PubSubStore
from pubsubd.stream.sasl import ScramCredentials

__all__ = [
    "ROSTER_CHANGE_LOG",
    "Account",
    "AccountExists",
    "AccountStore",
    "ArchivedMessage",
    "BlocklistStore",
    "FeedContactStore",
    "FeedMarkStore",
    "FeedStore",
    "HubSubscription",
    "HubSubscriptionStore",
    "Invalidation",
    "InvalidationHandler",
    "LeaseStore",
    "ImStore",
    "MAM_TRIM_SLACK",
    "MamStore",
    "MotdStore",
    "MucStore",
    "OfflineStore",
    "Page",
    "per_archive",
    "Prefs",
    "PrivateStore",
    "PubSubStore",
    "PushLease",
    "PushRegistration",
    "PushStore",
    "Query",
    "RosterItem",
    "RosterStore",
    "RoomFeed",
    "RoomFeedStore",
    "Row",
    "StoredRoom",
    "SubscriptionRequestStore",
    "UploadRecord",
    "UploadStore",
    "VCardStore",
    "WebSubStore",
]


# --- accounts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    username: str  # the prepared localpart
    domain: str
    enabled: bool
    created: float
    last_login: float | None
    last_logout: float | None
    credentials: dict[str, ScramCredentials]

    @property
    def jid(self) -> str:
        return f"{self.username}@{self.domain}"


class AccountExists(Exception):
    pass


class AccountStore(Protocol):
    """SCRAM credentials (never passwords) for every offered hash, enabled flag, login times."""

    async def create(self, username: str, domain: str, password: str) -> None:
        """Raises :class:`AccountExists` if the account is already there."""
        ...

    async def get(self, username: str, domain: str) -> Account | None: ...

    async def set_password(self, username: str, domain: str, password: str) -> bool:
        """New SCRAM keys; False if there is no such account."""
        ...

    async def delete(self, username: str, domain: str) -> bool: ...

    async def set_enabled(self, username: str, domain: str, enabled: bool) -> bool: ...

    async def list(self, domain: str | None = None) -> list[Account]:
        """Every account (of ``domain``), ordered by domain then username."""
        ...

    async def record_login(self, username: str, domain: str) -> None: ...

    async def record_logout(self, username: str, domain: str) -> None: ...


# --- instant messaging (RFC 6121, XEP-0160, XEP-0191, XEP-0054) ----------------------------


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One roster item (RFC 6121 §2.1.2); ``ask`` is the pending-out flag."""

    contact: JID
    name: str | None = None
    groups: tuple[str, ...] = ()
    subscription: str = "none"
    ask: bool = False
    approved: bool = False


ROSTER_CHANGE_LOG = 64  # changes remembered per user for roster versioning (RFC 6121 §2.6.3)


class RosterStore(Protocol):
    """Rosters with versions (RFC 6121 §2.6); every owner and contact is taken as bare."""

    def roster(self, owner: JID) -> dict[JID, RosterItem]: ...

    def item(self, owner: JID, contact: JID) -> RosterItem | None: ...

    def version(self, owner: JID) -> int:
        """0 for a roster never changed; every change adds one."""
        ...

    async def put_item(self, owner: JID, item: RosterItem) -> int:
        """Create or replace an item; returns the roster's new version."""
        ...

    async def remove_item(self, owner: JID, contact: JID) -> int:
        """Returns the roster's new version (a removal is a change too, §2.6.3)."""
        ...

    def changes_since(self, owner: JID, version: int) -> list[tuple[int, JID]] | None:
        """The contacts changed after ``version``, each once with its latest version, oldest
        first; None when the change log (:data:`ROSTER_CHANGE_LOG` entries, which need not
        survive a restart) does not reach back that far, or ``version`` is not one handed out."""
        ...


class SubscriptionRequestStore(Protocol):
    """Pending inbound subscription requests (RFC 6121 §3.1.3), kept to re-deliver them."""

    def requests(self, owner: JID) -> dict[JID, bytes]: ...

    def has_request(self, owner: JID, contact: JID) -> bool: ...

    async def set_request(self, owner: JID, contact: JID, stanza: bytes | None) -> None:
        """Remember the request's stanza, or with None forget it."""
        ...


class OfflineStore(Protocol):
    """Messages for offline users (XEP-0160), in arrival order."""

    async def store_offline(self, owner: JID, stanza: bytes, limit: int) -> bool:
        """Append unless ``owner`` already has ``limit`` stored; True if stored."""
        ...

    async def take_offline(self, owner: JID) -> list[bytes]:
        """Every stored message in arrival order, removed from storage."""
        ...


class BlocklistStore(Protocol):
    """Blocked JIDs per owner (XEP-0191), as the strings the client sent."""

    def blocklist(self, owner: JID) -> set[str]: ...

    def has_blocklist(self, owner: JID) -> bool:
        """True if ``owner`` blocks anyone (asked for every stanza, so it must be cheap)."""
        ...

    def blocks_anyone(self) -> bool:
        """True if any owner blocks anyone (asked when blocklists change, not per stanza)."""
        ...

    async def block(self, owner: JID, jids: list[str]) -> None: ...

    async def unblock(self, owner: JID, jids: list[str] | None) -> None:
        """Unblock ``jids``, or everything with None."""
        ...


class VCardStore(Protocol):
    """One serialized vCard (XEP-0054) per owner."""

    async def vcard(self, owner: JID) -> bytes | None: ...

    async def set_vcard(self, owner: JID, vcard: bytes) -> None: ...


class ImStore(RosterStore, SubscriptionRequestStore, OfflineStore, BlocklistStore, VCardStore,
              Protocol):
    """All instant-messaging state of an account, in one store so deletion is one call."""

    async def forget(self, owner: JID) -> None:
        """Delete everything stored for a deleted account."""
        ...


# --- message archives (XEP-0313) -----------------------------------------------------------


class ArchivedMessage(NamedTuple):
    """One message to store in ``owner``'s archive; ``stamp`` in microseconds since the epoch,
    ``remote`` the other party (the recipient of an outgoing message, else the sender).

    ``sender`` set: a message between two local users that both archive, stored once for both
    archives (one row, one id): ``owner`` is the sender's bare JID, ``remote`` the recipient as
    addressed, and the message is also in the archive of ``remote.bare``, where the other
    party is ``sender`` (the sender's full JID). Ids are unique within an archive, not across
    archives (XEP-0359 §3), so sharing one is allowed.

    A named tuple: one is made for every archived message, and a tuple is built in a fraction
    of the time a frozen dataclass takes."""

    owner: JID
    uid: str
    stamp: int
    remote: JID
    stanza: bytes
    sender: JID | None = None
    # The number ``uid`` carries, when the caller drew it with ``archive_ids.next_id``: a
    # store need not decode the id (``seq_of(uid)`` otherwise).
    seq: int | None = None


_FIELDS = len(ArchivedMessage._fields)
_as_message = partial(tuple.__new__, ArchivedMessage)  # (7 fields) -> ArchivedMessage


class ArchiveBatch(Sequence[ArchivedMessage]):
    """Messages waiting to be written, as the fields of one :class:`ArchivedMessage` after
    the other in one list: queuing a message makes no object that the garbage collector
    tracks (a tuple per message kept until the write made the youngest generation fill up
    and be collected several times as often). Read as a sequence, each message is a tuple
    made when it is read; a store that only unpacks the fields reads :meth:`plain`."""

    __slots__ = ("fields",)

    def __init__(self, fields: list[Any] | None = None) -> None:
        self.fields: list[Any] = [] if fields is None else fields  # owner, uid, stamp, ...

    def __len__(self) -> int:
        return len(self.fields) // _FIELDS

    @overload
    def __getitem__(self, index: int) -> ArchivedMessage: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ArchivedMessage]: ...

    def __getitem__(self, index: int | slice) -> ArchivedMessage | Sequence[ArchivedMessage]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * _FIELDS
        return _as_message(self.fields[start:start + _FIELDS])

    def __iter__(self) -> Iterator[ArchivedMessage]:
        return map(_as_message, self.plain())

    def plain(self) -> Iterator[tuple[Any, ...]]:
        """The messages' fields in :class:`ArchivedMessage` order, as plain tuples (the
        iterator reuses a tuple nobody kept: no allocation per message)."""
        fields = iter(self.fields)
        return zip(*(fields,) * _FIELDS, strict=True)


def plain_messages(messages: Sequence[ArchivedMessage]) -> Iterable[tuple[Any, ...]]:
    """``messages`` as tuples of their fields, without making one per message if queued."""
    return messages.plain() if isinstance(messages, ArchiveBatch) else messages


def per_archive(messages: Sequence[ArchivedMessage]) -> Iterator[ArchivedMessage]:
    """Each message once per archive it belongs to (a shared one twice), ``sender`` unset."""
    for m in messages:
        if m.sender is None:
            yield m
        else:
            yield ArchivedMessage(m.owner, m.uid, m.stamp, m.remote, m.stanza)
            yield ArchivedMessage(m.remote.bare, m.uid, m.stamp, m.sender, m.stanza)


@dataclass(frozen=True, slots=True)
class Prefs:
    """XEP-0441 preferences: a default policy and JIDs always or never archived."""

    default: str
    always: frozenset[str] = frozenset()
    never: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Query:
    """The filters of a query on one archive (XEP-0313 §4.1); ``start``/``end`` are inclusive
    stamps, ``after_seq``/``before_seq`` exclusive bounds resolved from after-id/before-id.
    A ``with_bare`` equal to the owner selects the messages between the owner's resources."""

    owner: JID
    with_bare: str | None = None
    with_full: str | None = None
    start: int | None = None
    end: int | None = None
    after_seq: int | None = None
    before_seq: int | None = None
    uids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    uid: str
    stamp: int
    stanza: bytes


@dataclass(slots=True)
class Page:
    rows: list[Row] = field(default_factory=list)
    complete: bool = True
    count: int = 0
    first_index: int | None = None


class MamStore(Protocol):
    """Archives and archiving preferences. Order within an archive is a sequence number that
    grows with every stored message and is never reused, even after deletion (XEP-0313 §3.1)."""

    def prefs(self, owner: JID) -> Prefs | None: ...

    async def set_prefs(self, owner: JID, prefs: Prefs) -> None: ...

    async def append(self, messages: Sequence[ArchivedMessage], keep: int) -> None:
        """Store ``messages`` at once, then drop each touched archive's oldest messages beyond
        ``keep`` (XEP-0313 §3.2: only the oldest, never a hole). A backend may let an archive
        of ``keep`` >= :data:`MAM_TRIM_SLACK` grow by up to that many before it trims."""
        ...

    async def seqs(self, owner: JID, uids: Sequence[str]) -> dict[str, int]:
        """The sequence numbers of those of ``uids`` that are in ``owner``'s archive."""
        ...

    async def page(self, query: Query, limit: int, *, after_seq: int | None = None,
                   before_seq: int | None = None, backward: bool = False) -> Page:
        """At most ``limit`` rows matching ``query`` between the RSM bounds (exclusive), in
        chronological order: the first ones, or with ``backward`` the last ones (XEP-0059
        §2.5). ``count`` and ``first_index`` are about the whole result set, without the RSM
        bounds (XEP-0059 §2.6); ``complete`` is False if more rows lie beyond ``limit``."""
        ...

    async def bounds(self, owner: JID) -> tuple[Row, Row] | None:
        """The first and last message (stanza left empty) of an archive (XEP-0313 §5), None
        if it is empty."""
        ...

    async def forget(self, owner: JID) -> None:
        """Delete the archive and the preferences of a deleted account."""
        ...

    async def replace_stanza(self, owner: JID, uid: str, stanza: bytes) -> bool:
        """Put ``stanza`` in place of message ``uid`` (same position, stamp and id): the
        tombstone of a retracted message (XEP-0425 §4); False if it is not in the archive."""
        ...


MAM_TRIM_SLACK = 100
"""How far an archive may outgrow its limit before a backend must trim it (see append)."""


# --- multi-user chat (XEP-0045) ------------------------------------------------------------


@dataclass(slots=True)
class StoredRoom:
    """What survives a restart: configuration (a JSON-able dict), subject, affiliations and
    the nicknames registered by affiliated users (XEP-0045 §7.10; bare JID -> nick; a nick of
    a JID without an affiliation is not kept)."""

    room: str
    config: dict[str, object]
    subject: str = ""
    subject_nick: str = ""
    affiliations: dict[str, str] = field(default_factory=dict)
    nicks: dict[str, str] = field(default_factory=dict)


class MucStore(Protocol):
    """Persistent rooms only (XEP-0045 §10.1.3), keyed by the room's bare JID."""

    async def load(self, room: str) -> StoredRoom | None: ...

    async def save(self, stored: StoredRoom) -> None:
        """Replace the room's configuration, subject and whole affiliation list at once."""
        ...

    async def delete(self, room: str) -> None: ...

    async def public_rooms(self) -> list[tuple[str, str]]:
        """(room JID, name) of stored rooms whose configuration (``public``, default true)
        makes them public; in no particular order."""
        ...

    async def count_owned(self, owner: str) -> int:
        """How many stored rooms list the bare JID ``owner`` with affiliation ``owner``
        (the rooms-per-user quota, ``limits.max_rooms_per_user``)."""
        ...


# --- private XML storage (XEP-0049) --------------------------------------------------------


class PrivateStore(Protocol):
    """Serialized fragments per (bare owner, namespace, element name)."""

    async def get(self, owner: JID, namespace: str, name: str) -> bytes | None: ...

    async def put(self, owner: JID, fragments: list[tuple[str, str, bytes]],
                  max_entries: int, *, max_bytes: int | None = None) -> bool:
        """Store every (namespace, name, data) at once, replacing older ones with the same key;
        False (and nothing stored) if the owner would then hold more than ``max_entries``
        fragments, or more than ``max_bytes`` bytes of them in all."""
        ...

    async def forget(self, owner: JID) -> None:
        """Delete everything stored for a deleted account."""
        ...


# --- message of the day (XEP-0133 §4.24-4.26) ---------------------------------------------


class MotdStore(Protocol):
    """The one message of the day of the server, None when there is none."""

    def load(self) -> str | None:
        """The text, read synchronously once while the server starts (before any client)."""
        ...

    async def get(self) -> str | None: ...

    async def set(self, text: str | None) -> None: ...


# --- HTTP file upload (XEP-0363) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """A slot granted for one file, and once ``uploaded`` is set, the stored file."""

    slot_id: str  # also the file's name on disk and part of its URL
    owner: str  # the bare JID that asked for the slot
    filename: str
    size: int  # bytes, exactly what the PUT must carry
    content_type: str
    granted: float  # when the slot was given (its PUT must follow within slot_timeout)
    uploaded: float | None = None  # when the file was stored


class UploadStore(Protocol):
    """Upload slots and the files stored through them, for quotas, serving and expiry."""

    async def add(self, record: UploadRecord) -> None: ...

    async def get(self, slot_id: str) -> UploadRecord | None: ...

    async def mark_uploaded(self, slot_id: str, when: float) -> bool:
        """Record the file as stored; False if the slot is unknown or was already used."""
        ...

    async def bytes_used(self, owner: str, slots_since: float) -> int:
        """Bytes of the owner's stored files, plus slots granted since ``slots_since`` whose
        upload is still to come (they reserve their size)."""
        ...

    async def expired(self, uploaded_before: float, granted_before: float,
                      limit: int = 500) -> list[UploadRecord]:
        """Files stored before ``uploaded_before`` and unused slots granted before
        ``granted_before``, oldest first."""
        ...

    async def delete(self, slot_id: str) -> None: ...
# --- the feed service's person-facing state -------------------------------------------------


class FeedContactStore(Protocol):
    """Short names of feeds' contacts (``<short>@pubsub.<domain>``): chosen once, stable across
    restarts, unique per service; read once at start, then written through."""

    async def load(self) -> dict[str, str]:
        """Every ``{short name: feed id}``."""
        ...

    async def add(self, short: str, feed_id: str) -> None: ...

    async def forget(self, feed_id: str) -> None: ...


class FeedMarkStore(Protocol):
    """Admin pins (polled without subscribers) and idleness (asleep for want of subscribers)
    of feeds; an admin pause is not idleness, so a new subscriber never undoes it."""

    async def set(self, feed_id: str, *, pinned: bool | None = None,
                  idle: bool | None = None) -> None: ...

    async def get(self, feed_id: str) -> tuple[bool, bool]:
        """(pinned, idle)."""
        ...

    async def forget(self, feed_id: str) -> None: ...


# --- feeds posted into group chat rooms -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomFeed:
    """A feed posted into a room (XEP-0045) by the feed service's occupant ``nick``; the
    filters and digest live in the pubsub subscription of the room JID to the feed node."""

    room: str  # bare room JID, local or on another server
    node: str  # the feed node
    nick: str  # the occupant's nick in the room (the feed title when it was subscribed)
    added_by: str  # bare JID or occupant JID of the owner/admin who asked for it


class RoomFeedStore(Protocol):
    """Feed subscriptions of rooms, keyed by (room, node): which rooms the service rejoins
    after a restart, and under which nick."""

    async def put(self, feed: RoomFeed) -> None: ...

    async def remove(self, room: str, node: str) -> bool: ...

    async def list_all(self) -> list[RoomFeed]:
        """Every room feed, ordered by room then node."""
        ...


# --- WebSub (W3C WebSub): subscribers of our hub, and our leases at other hubs ------------


@dataclass(frozen=True, slots=True)
class HubSubscription:
    """A verified subscription of a web callback to one of our topics (W3C WebSub §5.1)."""

    topic: str
    callback: str
    secret: str | None
    expires: float  # POSIX seconds; the lease ends then unless renewed


class HubSubscriptionStore(Protocol):
    """Subscriptions of our WebSub hub, keyed by (topic, callback)."""

    async def put_subscription(self, sub: HubSubscription) -> None:
        """Insert, or replace the one with the same topic and callback (a renewal)."""
        ...

    async def delete_subscription(self, topic: str, callback: str) -> bool: ...

    async def subscriptions_for(self, topic: str, now: float) -> list[HubSubscription]:
        """The unexpired subscriptions of ``topic``."""
        ...

    async def expire_subscriptions(self, now: float) -> int:
        """Delete the expired ones; how many were deleted."""
        ...

    async def count_subscriptions(self) -> int: ...


class WebSubStore(HubSubscriptionStore, LeaseStore, Protocol):
    """Both sides of WebSub, on one backend."""


# --- shared state: invalidation of caches when another instance writes --------------------

InvalidationHandler = Callable[[str | None], Awaitable[None]]
"""Called with the key another instance changed, or None when anything may have changed (the
listening connection was lost and is back): the cache drops or reloads it."""


class Invalidation(Protocol):
    """Changes committed by other server instances on the same database, by kind of state.

    A backend that one process owns (memory, SQLite) never reports anything: every write goes
    through that process's own stores, which keep their caches current. PostgreSQL, shared by
    several instances, reports other instances' writes (LISTEN/NOTIFY, delivered on commit)."""

    @property
    def live(self) -> bool:
        """Whether other instances' changes are being heard right now: a cache that other
        instances' writes can make stale may serve reads only while this is true."""
        ...

    def subscribe(self, kind: str, handler: InvalidationHandler) -> None:
        """Call ``handler`` for every change of ``kind`` made elsewhere."""
        ...

    async def run(self) -> None:
        """Listen and dispatch for the server's lifetime (returns at once when there is
        nothing to hear)."""
        ...


# --- push notifications (XEP-0357) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushRegistration:
    """An app server a client enabled for its account (XEP-0357 §5)."""

    owner: str  # the account's bare JID
    service: str  # the JID of the app server's XMPP Push Service
    node: str  # its node for this device ("" when the client named none)
    options: bytes  # the publish-options data form, serialized (b"" when none)


class PushStore(Protocol):
    """Registrations per account, keyed by (owner, service, node); they outlive sessions and
    restarts, since a phone enables push once and then sleeps."""

    async def registrations(self, owner: str) -> list[PushRegistration]:
        """The owner's registrations, oldest first."""
        ...

    async def put(self, registration: PushRegistration) -> None:
        """Insert, or replace the options of the one with the same key (§5: the last wins)."""
        ...

    async def remove(self, owner: str, service: str, node: str | None = None) -> int:
        """Delete one registration, or with ``node`` None all of ``service`` (§6); how many."""
        ...

    async def any_registered(self) -> bool:
        """Whether any account has a registration (the module watches messages only then)."""
        ...

    async def forget(self, owner: str) -> None:
        """Delete every registration of a deleted account."""
        ...

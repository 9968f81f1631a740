"""In-memory implementations of every store in :mod:`pubsubd.storage.interfaces`.

They keep the semantics of the SQLite stores (ordering, quotas, versions, atomic batches) and
pass the same contract tests, so a server or a test can run without a database file; nothing
survives the process. The pubsub and feed stores come from their own packages.
"""

from __future__ import annotations

import builtins
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import trio

from feeds.store import MemoryFeedStore
from pubsubd.jid import JID
from pubsubd.pubsub.store import MemoryPubSubStore
from pubsubd.storage.accounts import derive_all
from pubsubd.storage.interfaces import (
    ROSTER_CHANGE_LOG,
    Account,
    AccountExists,
    ArchivedMessage,
    HubSubscription,
    InvalidationHandler,
    Page,
    Prefs,
    PushLease,
    PushRegistration,
    Query,
    RoomFeed,
    RosterItem,
    Row,
    StoredRoom,
    UploadRecord,
    per_archive,
)
from pubsubd.stream.sasl import ScramCredentials

__all__ = [
    "MemoryAccountStore",
    "MemoryFeedContactStore",
    "MemoryFeedMarkStore",
    "MemoryFeedStore",
    "MemoryImStore",
    "MemoryInvalidation",
    "MemoryMamStore",
    "MemoryMotdStore",
    "MemoryMucStore",
    "MemoryPrivateStore",
    "MemoryPubSubStore",
    "MemoryPushStore",
    "MemoryRoomFeedStore",
    "MemoryUploadStore",
    "MemoryWebSubStore",
]


# --- accounts ------------------------------------------------------------------------------


class MemoryAccountStore:
    """Accounts keyed by (domain, username), with SCRAM keys derived as the SQLite store does."""

    def __init__(self, iterations: int = 4096) -> None:
        self.iterations = iterations
        self._accounts: dict[tuple[str, str], Account] = {}

    async def _derive(self, password: str) -> dict[str, ScramCredentials]:
        return await trio.to_thread.run_sync(derive_all, password, self.iterations)

    async def create(self, username: str, domain: str, password: str) -> None:
        creds = await self._derive(password)
        key = (domain, username)
        if key in self._accounts:  # checked after the await, as the database would
            raise AccountExists(f"{username}@{domain}")
        self._accounts[key] = Account(username, domain, True, time.time(), None, None, creds)

    async def get(self, username: str, domain: str) -> Account | None:
        return _copy(self._accounts.get((domain, username)))

    async def set_password(self, username: str, domain: str, password: str) -> bool:
        creds = await self._derive(password)
        account = self._accounts.get((domain, username))
        if account is None:
            return False
        self._accounts[(domain, username)] = replace(
            account, credentials={**account.credentials, **creds})
        return True

    async def delete(self, username: str, domain: str) -> bool:
        return self._accounts.pop((domain, username), None) is not None

    async def set_enabled(self, username: str, domain: str, enabled: bool) -> bool:
        return self._update(username, domain, enabled=enabled)

    async def list(self, domain: str | None = None) -> builtins.list[Account]:
        return [a for key in sorted(self._accounts)
                if (a := _copy(self._accounts[key])) is not None
                and (not domain or a.domain == domain)]

    async def record_login(self, username: str, domain: str) -> None:
        self._update(username, domain, last_login=time.time())

    async def record_logout(self, username: str, domain: str) -> None:
        self._update(username, domain, last_logout=time.time())

    def _update(self, username: str, domain: str, **changes: object) -> bool:
        account = self._accounts.get((domain, username))
        if account is None:
            return False
        self._accounts[(domain, username)] = replace(account, **changes)  # type: ignore[arg-type]
        return True


def _copy(account: Account | None) -> Account | None:
    """A copy whose credentials dict the caller may change without touching the store."""
    return None if account is None else replace(account, credentials=dict(account.credentials))


# --- instant messaging ---------------------------------------------------------------------


@dataclass(slots=True)
class _Roster:
    version: int = 0
    items: dict[JID, RosterItem] = field(default_factory=dict)
    # (version, contact) of recent changes; every change after ``floor`` is in it.
    changes: deque[tuple[int, JID]] = field(
        default_factory=lambda: deque(maxlen=ROSTER_CHANGE_LOG))
    floor: int = 0


class MemoryImStore:
    """Rosters, requests, offline messages, blocklists and vCards in dictionaries."""

    def __init__(self) -> None:
        self._rosters: dict[JID, _Roster] = {}
        self._requests: dict[JID, dict[JID, bytes]] = {}
        self._offline: dict[JID, list[bytes]] = {}
        self._blocked: dict[JID, set[str]] = {}
        self._vcards: dict[JID, bytes] = {}

    # rosters (RFC 6121 §2)

    def roster(self, owner: JID) -> dict[JID, RosterItem]:
        roster = self._rosters.get(owner.bare)
        return dict(roster.items) if roster else {}

    def item(self, owner: JID, contact: JID) -> RosterItem | None:
        roster = self._rosters.get(owner.bare)
        return roster.items.get(contact.bare) if roster else None

    def version(self, owner: JID) -> int:
        roster = self._rosters.get(owner.bare)
        return roster.version if roster else 0

    async def put_item(self, owner: JID, item: RosterItem) -> int:
        roster, version = self._change(owner.bare, item.contact)
        roster.items[item.contact] = item
        return version

    async def remove_item(self, owner: JID, contact: JID) -> int:
        roster, version = self._change(owner.bare, contact.bare)
        roster.items.pop(contact.bare, None)
        return version

    def _change(self, owner: JID, contact: JID) -> tuple[_Roster, int]:
        roster = self._rosters.setdefault(owner, _Roster())
        roster.version += 1
        if len(roster.changes) == roster.changes.maxlen:
            roster.floor = roster.changes[0][0]  # the oldest change is about to be forgotten
        roster.changes.append((roster.version, contact.bare))
        return roster, roster.version

    def changes_since(self, owner: JID, version: int) -> list[tuple[int, JID]] | None:
        roster = self._rosters.get(owner.bare)
        current, floor = (roster.version, roster.floor) if roster else (0, 0)
        if not floor <= version <= current:
            return None
        latest: dict[JID, int] = {}
        for changed, contact in roster.changes if roster else ():
            if changed > version:
                latest.pop(contact, None)
                latest[contact] = changed
        return [(changed, contact) for contact, changed in latest.items()]

    # pending inbound subscription requests (RFC 6121 §3.1.3)

    def requests(self, owner: JID) -> dict[JID, bytes]:
        return dict(self._requests.get(owner.bare, {}))

    def has_request(self, owner: JID, contact: JID) -> bool:
        return contact.bare in self._requests.get(owner.bare, {})

    async def set_request(self, owner: JID, contact: JID, stanza: bytes | None) -> None:
        if stanza is None:
            self._requests.get(owner.bare, {}).pop(contact.bare, None)
        else:
            self._requests.setdefault(owner.bare, {})[contact.bare] = stanza

    # offline messages (XEP-0160)

    async def store_offline(self, owner: JID, stanza: bytes, limit: int) -> bool:
        queue = self._offline.setdefault(owner.bare, [])
        if len(queue) >= limit:
            return False
        queue.append(stanza)
        return True

    async def take_offline(self, owner: JID) -> list[bytes]:
        return self._offline.pop(owner.bare, [])

    async def count_offline(self, owner: JID) -> int:
        return len(self._offline.get(owner.bare, ()))

    # blocklists (XEP-0191)

    def blocklist(self, owner: JID) -> set[str]:
        return set(self._blocked.get(owner.bare, ()))

    def has_blocklist(self, owner: JID) -> bool:
        return bool(self._blocked.get(owner.bare))

    def blocks_anyone(self) -> bool:
        return any(self._blocked.values())

    async def block(self, owner: JID, jids: list[str]) -> None:
        self._blocked.setdefault(owner.bare, set()).update(jids)

    async def unblock(self, owner: JID, jids: list[str] | None) -> None:
        if jids is None:
            self._blocked.pop(owner.bare, None)
        else:
            self._blocked.get(owner.bare, set()).difference_update(jids)

    # vCards (XEP-0054)

    async def vcard(self, owner: JID) -> bytes | None:
        return self._vcards.get(owner.bare)

    async def set_vcard(self, owner: JID, vcard: bytes) -> None:
        self._vcards[owner.bare] = vcard

    async def forget(self, owner: JID) -> None:
        for table in (self._rosters, self._requests, self._offline, self._blocked,
                      self._vcards):
            table.pop(owner.bare, None)


# --- message archives (XEP-0313) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Archived:
    row: Row
    with_bare: str
    with_full: str


class MemoryMamStore:
    """Archives as lists in sequence order; one sequence for all archives, never reused."""

    def __init__(self) -> None:
        self._prefs: dict[JID, Prefs] = {}
        self._archives: dict[str, list[_Archived]] = {}
        self._uids: dict[str, set[str]] = {}  # per archive, for the uniqueness of ids
        self._last_seq = 0

    def prefs(self, owner: JID) -> Prefs | None:
        return self._prefs.get(owner.bare)

    async def set_prefs(self, owner: JID, prefs: Prefs) -> None:
        self._prefs[owner.bare] = prefs

    async def append(self, messages: Sequence[ArchivedMessage], keep: int) -> None:
        messages = list(per_archive(messages))
        new = {(str(m.owner), m.uid) for m in messages}
        if len(new) < len(messages) or any(uid in self._uids.get(o, ()) for o, uid in new):
            # All or nothing, like the database's unique (owner, uid) index.
            raise ValueError("archive id already in use")
        for m in messages:
            self._last_seq += 1
            row = Row(self._last_seq, m.uid, m.stamp, m.stanza)
            self._archives.setdefault(str(m.owner), []).append(
                _Archived(row, str(m.remote.bare), str(m.remote)))
            self._uids.setdefault(str(m.owner), set()).add(m.uid)
        for owner in {o for o, _ in new}:
            archive = self._archives[owner]
            dropped = archive[:max(0, len(archive) - keep)]  # the oldest only (XEP-0313 §3.2)
            del archive[:len(dropped)]
            self._uids[owner].difference_update(a.row.uid for a in dropped)

    async def seqs(self, owner: JID, uids: Sequence[str]) -> dict[str, int]:
        wanted = set(uids)
        return {a.row.uid: a.row.seq for a in self._archives.get(str(owner.bare), ())
                if a.row.uid in wanted}

    async def page(self, query: Query, limit: int, *, after_seq: int | None = None,
                   before_seq: int | None = None, backward: bool = False) -> Page:
        matching = [a.row for a in self._archives.get(str(query.owner.bare), ())
                    if _matches(a, query)]
        paged = [r for r in matching
                 if (after_seq is None or r.seq > after_seq)
                 and (before_seq is None or r.seq < before_seq)]
        rows = paged[-limit:] if backward and limit else paged[:limit] if limit else []
        first_index = None
        if rows:
            first_index = sum(1 for r in matching if r.seq < rows[0].seq)
        return Page(rows, len(paged) <= limit, len(matching), first_index)

    async def bounds(self, owner: JID) -> tuple[Row, Row] | None:
        archive = self._archives.get(str(owner.bare))
        if not archive:
            return None
        return replace(archive[0].row, stanza=b""), replace(archive[-1].row, stanza=b"")

    async def forget(self, owner: JID) -> None:
        self._archives.pop(str(owner.bare), None)
        self._uids.pop(str(owner.bare), None)
        self._prefs.pop(owner.bare, None)

    async def replace_stanza(self, owner: JID, uid: str, stanza: bytes) -> bool:
        archive = self._archives.get(str(owner.bare), [])
        for index, archived in enumerate(archive):
            if archived.row.uid == uid:
                archive[index] = replace(archived, row=replace(archived.row, stanza=stanza))
                return True
        return False


def _matches(a: _Archived, q: Query) -> bool:
    row = a.row
    return ((q.with_bare is None or a.with_bare == q.with_bare)
            and (q.with_full is None or a.with_full == q.with_full)
            and (q.start is None or row.stamp >= q.start)
            and (q.end is None or row.stamp <= q.end)
            and (q.after_seq is None or row.seq > q.after_seq)
            and (q.before_seq is None or row.seq < q.before_seq)
            and (q.uids is None or row.uid in q.uids))


# --- multi-user chat (XEP-0045) ------------------------------------------------------------


class MemoryMucStore:
    """Rooms kept as the JSON a database would hold, so a loaded room shares nothing with the
    saved one and a configuration that could not be stored fails here too."""

    def __init__(self) -> None:
        self._rooms: dict[str, tuple[str, str, str, dict[str, str], dict[str, str]]] = {}

    async def load(self, room: str) -> StoredRoom | None:
        row = self._rooms.get(room)
        if row is None:
            return None
        config, subject, nick, affiliations, nicks = row
        return StoredRoom(room, json.loads(config), subject, nick, dict(affiliations), dict(nicks))

    async def save(self, stored: StoredRoom) -> None:
        nicks = {jid: nick for jid, nick in stored.nicks.items()
                 if jid in stored.affiliations and nick}
        self._rooms[stored.room] = (json.dumps(stored.config), stored.subject,
                                    stored.subject_nick, dict(stored.affiliations), nicks)

    async def delete(self, room: str) -> None:
        self._rooms.pop(room, None)

    async def public_rooms(self) -> list[tuple[str, str]]:
        found = []
        for room, (config, *_) in self._rooms.items():
            data = json.loads(config)
            if data.get("public", True):
                found.append((room, str(data.get("name") or "")))
        return found

    async def count_owned(self, owner: str) -> int:
        return sum(1 for *_, affiliations, _ in self._rooms.values()
                   if affiliations.get(owner) == "owner")


# --- private XML storage (XEP-0049) --------------------------------------------------------


class MemoryPrivateStore:
    """Fragments per bare owner, keyed by (namespace, element name)."""

    def __init__(self) -> None:
        self._fragments: dict[JID, dict[tuple[str, str], bytes]] = {}

    async def get(self, owner: JID, namespace: str, name: str) -> bytes | None:
        return self._fragments.get(owner.bare, {}).get((namespace, name))

    async def put(self, owner: JID, fragments: list[tuple[str, str, bytes]],
                  max_entries: int, *, max_bytes: int | None = None) -> bool:
        merged = dict(self._fragments.get(owner.bare, {}))
        merged.update(((ns, name), data) for ns, name, data in fragments)
        if len(merged) > max_entries:
            return False
        if max_bytes is not None and sum(map(len, merged.values())) > max_bytes:
            return False
        self._fragments[owner.bare] = merged
        return True

    async def forget(self, owner: JID) -> None:
        self._fragments.pop(owner.bare, None)


# --- message of the day --------------------------------------------------------------------


class MemoryMotdStore:
    def __init__(self) -> None:
        self._text: str | None = None

    def load(self) -> str | None:
        return self._text

    async def get(self) -> str | None:
        return self._text

    async def set(self, text: str | None) -> None:
        self._text = text


# --- HTTP file upload ----------------------------------------------------------------------


class MemoryUploadStore:
    def __init__(self) -> None:
        self._records: dict[str, UploadRecord] = {}

    async def add(self, record: UploadRecord) -> None:
        self._records[record.slot_id] = record

    async def get(self, slot_id: str) -> UploadRecord | None:
        return self._records.get(slot_id)

    async def mark_uploaded(self, slot_id: str, when: float) -> bool:
        record = self._records.get(slot_id)
        if record is None or record.uploaded is not None:
            return False
        self._records[slot_id] = replace(record, uploaded=when)
        return True

    async def bytes_used(self, owner: str, slots_since: float) -> int:
        return sum(r.size for r in self._records.values() if r.owner == owner
                   and (r.uploaded is not None or r.granted >= slots_since))

    async def expired(self, uploaded_before: float, granted_before: float,
                      limit: int = 500) -> list[UploadRecord]:
        found = [r for r in self._records.values()
                 if (r.uploaded is not None and r.uploaded < uploaded_before)
                 or (r.uploaded is None and r.granted < granted_before)]
        return sorted(found, key=lambda r: (r.granted, r.slot_id))[:limit]

    async def delete(self, slot_id: str) -> None:
        self._records.pop(slot_id, None)
# --- the feed service's person-facing state ---------------------------------------------------


class MemoryFeedContactStore:
    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    async def load(self) -> dict[str, str]:
        return dict(self.names)

    async def add(self, short: str, feed_id: str) -> None:
        self.names[short] = feed_id

    async def forget(self, feed_id: str) -> None:
        self.names = {s: f for s, f in self.names.items() if f != feed_id}


class MemoryFeedMarkStore:
    def __init__(self) -> None:
        self.marks: dict[str, tuple[bool, bool]] = {}

    async def set(self, feed_id: str, *, pinned: bool | None = None,
                  idle: bool | None = None) -> None:
        old_pinned, old_idle = self.marks.get(feed_id, (False, False))
        self.marks[feed_id] = (old_pinned if pinned is None else pinned,
                               old_idle if idle is None else idle)

    async def get(self, feed_id: str) -> tuple[bool, bool]:
        return self.marks.get(feed_id, (False, False))

    async def forget(self, feed_id: str) -> None:
        self.marks.pop(feed_id, None)
# --- WebSub --------------------------------------------------------------------------------


class MemoryWebSubStore:
    def __init__(self) -> None:
        self._subs: dict[tuple[str, str], HubSubscription] = {}
        self._leases: dict[str, PushLease] = {}

    async def put_subscription(self, sub: HubSubscription) -> None:
        self._subs[(sub.topic, sub.callback)] = sub

    async def delete_subscription(self, topic: str, callback: str) -> bool:
        return self._subs.pop((topic, callback), None) is not None

    async def subscriptions_for(self, topic: str, now: float) -> list[HubSubscription]:
        return [s for (t, _), s in self._subs.items() if t == topic and s.expires > now]

    async def expire_subscriptions(self, now: float) -> int:
        gone = [key for key, s in self._subs.items() if s.expires <= now]
        for key in gone:
            del self._subs[key]
        return len(gone)

    async def count_subscriptions(self) -> int:
        return len(self._subs)

    async def all_leases(self) -> list[PushLease]:
        return list(self._leases.values())

    async def put_lease(self, lease: PushLease) -> None:
        self._leases[lease.feed_id] = lease

    async def delete_lease(self, feed_id: str) -> None:
        self._leases.pop(feed_id, None)


# --- feeds posted into rooms ----------------------------------------------------------------


class MemoryRoomFeedStore:
    def __init__(self) -> None:
        self.feeds: dict[tuple[str, str], RoomFeed] = {}

    async def put(self, feed: RoomFeed) -> None:
        self.feeds[(feed.room, feed.node)] = feed

    async def remove(self, room: str, node: str) -> bool:
        return self.feeds.pop((room, node), None) is not None

    async def list_all(self) -> list[RoomFeed]:
        return [self.feeds[key] for key in sorted(self.feeds)]


# --- invalidation ----------------------------------------------------------------------------


class MemoryInvalidation:
    """:class:`~pubsubd.storage.interfaces.Invalidation` of a backend one process owns (memory
    and SQLite): no other instance writes, so there is never anything to hear, and caches are
    always safe (``live``)."""

    live = True

    def subscribe(self, kind: str, handler: InvalidationHandler) -> None:
        return None

    async def run(self) -> None:
        return None


# --- push notification registrations (XEP-0357) ---------------------------------------------


class MemoryPushStore:
    def __init__(self) -> None:
        self._by_owner: dict[str, dict[tuple[str, str], PushRegistration]] = {}

    async def registrations(self, owner: str) -> list[PushRegistration]:
        return list(self._by_owner.get(owner, {}).values())

    async def put(self, registration: PushRegistration) -> None:
        regs = self._by_owner.setdefault(registration.owner, {})
        # A replaced registration keeps its place: the order is that of first enabling.
        regs[(registration.service, registration.node)] = registration

    async def remove(self, owner: str, service: str, node: str | None = None) -> int:
        regs = self._by_owner.get(owner, {})
        gone = [key for key in regs if key[0] == service and (node is None or key[1] == node)]
        for key in gone:
            del regs[key]
        if not regs:
            self._by_owner.pop(owner, None)
        return len(gone)

    async def any_registered(self) -> bool:
        return bool(self._by_owner)

    async def forget(self, owner: str) -> None:
        self._by_owner.pop(owner, None)

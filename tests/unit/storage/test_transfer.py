"""``pubsubd storage export|import``: a SQLite database populated through every store moves to
PostgreSQL (and back) with every store reading the same content."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from feeds.model import FeedState
from feeds.push import LeaseState, PushLease
from pubsubd.config import StorageConfig
from pubsubd.jid import JID
from pubsubd.pubsub.delivery import Hold
from pubsubd.pubsub.model import MessageType, Node, NodeConfig, Subscription
from pubsubd.pubsub.notifications import Recipient
from pubsubd.pubsub.store import NewItem
from pubsubd.storage import transfer
from pubsubd.storage.archive_ids import new_uid
from pubsubd.storage.backends import Stores, open_backend
from pubsubd.storage.interfaces import (
    ArchivedMessage,
    HubSubscription,
    Prefs,
    PushRegistration,
    Query,
    RosterItem,
    StoredRoom,
    UploadRecord,
)
from tests.pg import Cluster

ALICE, BOB = JID.parse("alice@example.org"), JID.parse("bob@example.org/phone")
ALICE_DESK = JID.parse("alice@example.org/desk")
SVC = "pubsub.example.org"
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
UPLOAD = UploadRecord("slot1", "alice@example.org", "cat.jpg", 1234, "image/jpeg", 10.0)
HUB_SUB = HubSubscription("https://example.org/feed", "https://sub.example/cb", None, 9e9)
LEASE = PushLease("news", "https://hub.example/", "https://example.org/feed", "tok", "sec",
                  LeaseState.ACTIVE, 5.0, 6.0, None)
HOLD = Hold("bob@example.org", frozenset({"away"}),
            Recipient("bob@example.org/phone", MessageType.HEADLINE, ("s1",)))


async def populate(stores: Stores) -> None:
    await stores.accounts.create("alice", "example.org", "secret")
    await stores.accounts.create("bob", "example.org", "hunter2")
    await stores.accounts.set_enabled("bob", "example.org", False)
    await stores.accounts.record_login("alice", "example.org")
    im = stores.im
    await im.put_item(ALICE, RosterItem(BOB.bare, "Bob", ("friends", "work"), "both"))
    await im.put_item(ALICE, RosterItem(JID.parse("carol@example.org"), ask=True))
    await im.remove_item(ALICE, JID.parse("carol@example.org"))
    await im.set_request(ALICE, JID.parse("dave@example.org"), b"<presence type='subscribe'/>")
    await im.store_offline(ALICE, b"<message>one</message>", 10)
    await im.store_offline(ALICE, b"<message>two \xc3\xa9</message>", 10)
    await im.block(ALICE, ["eve@example.org", "spam.example"])
    await im.set_vcard(ALICE, b"<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>")
    await stores.mam.set_prefs(ALICE, Prefs("roster", frozenset({"bob@example.org"})))
    await stores.mam.append([ArchivedMessage(ALICE, f"uid{i}", 1_000_000 + i, BOB,
                                             f"<message>{i}</message>".encode())
                             for i in range(5)], keep=100)
    # Alice's message to Bob kept once for both archives, and one of Bob's own.
    await stores.mam.append([ArchivedMessage(ALICE, new_uid(), 1_000_010, BOB,
                                             b"<message>shared</message>", sender=ALICE_DESK),
                             ArchivedMessage(BOB.bare, "b1", 1_000_011, ALICE_DESK,
                                             b"<message>to bob</message>")], keep=100)
    await stores.muc.save(StoredRoom("room@muc.example.org", {"name": "Room", "public": True},
                                     "Hello", "alice", {"alice@example.org": "owner"},
                                     {"alice@example.org": "ally"}))
    await stores.private.put(ALICE, [("storage:bookmarks", "storage", b"<storage/>")], 10)
    await stores.motd.set("Maintenance at noon")
    pubsub = stores.pubsub
    await pubsub.create_node(Node(SVC, "news", NodeConfig(title="News"), "alice@example.org",
                                  WHEN), "alice@example.org")
    await pubsub.create_node(Node(SVC, "other", NodeConfig(), "alice@example.org", None), None)
    await pubsub.put_subscription(SVC, Subscription("news", "bob@example.org/phone", "s1"))
    await pubsub.put_subscription(SVC, Subscription("news", "carol@example.org", "s0"))
    put = await pubsub.put_items(SVC, "news", [NewItem(f"i{n}", f"<p>{n}</p>",
                                                       "alice@example.org", WHEN)
                                               for n in range(3)], 10)
    await pubsub.hold_items(SVC, "news", [HOLD], list(put.items), 10)
    await stores.feeds.put_feed(FeedState("news", "https://example.org/feed", title="News",
                                          next_fetch=1234.5))
    await stores.feeds.mark_seen("news", [("e1", "h1"), ("e2", "h2")], at=99.0)
    await stores.feed_contacts.add("news", "news")
    await stores.feed_marks.set("news", pinned=True)
    await stores.uploads.add(UPLOAD)
    await stores.uploads.mark_uploaded(UPLOAD.slot_id, 11.5)
    await stores.websub.put_subscription(HUB_SUB)
    await stores.websub.put_lease(LEASE)
    await stores.push.put(PushRegistration("alice@example.org", "push.example", "dev1",
                                           b"<x xmlns='jabber:x:data'/>"))


async def snapshot(stores: Stores) -> dict[str, Any]:
    """What every store answers about the populated data."""
    im, pubsub = stores.im, stores.pubsub
    accounts = await stores.accounts.list()
    return {
        "accounts": [(a.jid, a.enabled, a.created, a.last_login, a.credentials)
                     for a in accounts],
        "roster": (im.roster(ALICE), im.version(ALICE), im.requests(ALICE)),
        "blocked": im.blocklist(ALICE),
        "vcard": await im.vcard(ALICE),
        "offline": await im.take_offline(ALICE),
        "prefs": stores.mam.prefs(ALICE),
        "mam": await stores.mam.page(Query(ALICE), 10),
        "mam_bounds": await stores.mam.bounds(ALICE),
        "mam_bob": await stores.mam.page(Query(BOB.bare), 10),
        "mam_bob_with_alice": await stores.mam.page(Query(BOB, with_full=str(ALICE_DESK)), 10),
        "muc": (await stores.muc.load("room@muc.example.org"), await stores.muc.public_rooms()),
        "private": await stores.private.get(ALICE, "storage:bookmarks", "storage"),
        "motd": await stores.motd.get(),
        "nodes": await pubsub.list_nodes(SVC),
        "affiliations": await pubsub.list_affiliations(SVC, "news"),
        "subscriptions": await pubsub.list_subscriptions(SVC, "news"),
        "items": await pubsub.get_items(SVC, "news"),
        "held": await pubsub.held_for(SVC, "bob@example.org"),
        "feeds": await stores.feeds.list_feeds(),
        "seen": await stores.feeds.seen_hashes("news", ["e1", "e2", "e3"]),
        "feed_contacts": await stores.feed_contacts.load(),
        "feed_marks": await stores.feed_marks.get("news"),
        "upload": await stores.uploads.get(UPLOAD.slot_id),
        "websub": (await stores.websub.subscriptions_for(HUB_SUB.topic, 0.0),
                   await stores.websub.all_leases()),
        "push": await stores.push.registrations("alice@example.org"),
    }


async def test_sqlite_to_postgres_and_back_keeps_every_store(pg_url: str,
                                                             tmp_path: Path) -> None:
    sqlite = StorageConfig(path="old.sqlite3")
    stores = open_backend(sqlite, tmp_path)
    await populate(stores)
    stores.close()

    dump = io.StringIO()
    exported = transfer.export(sqlite, tmp_path, dump)
    assert exported["mam_archive"] == 7 and exported["feed_contact"] == 1
    assert exported["upload_files"] == exported["websub_leases"] == 1
    postgres = StorageConfig(url=pg_url)
    imported = transfer.import_(postgres, tmp_path, io.StringIO(dump.getvalue()))
    assert imported == {table: n for table, n in exported.items() if n}

    before, after = open_backend(sqlite, tmp_path), open_backend(postgres, tmp_path)
    try:
        assert await snapshot(after) == await snapshot(before)
        # Counters continue past the imported numbers: nothing handed out twice.
        more = await after.pubsub.put_items(SVC, "news", [NewItem("new", "<p/>", "a", WHEN)],
                                            None)
        assert more.items[0].seq > max(i.seq for i in await before.pubsub.get_items(SVC,
                                                                                     "news"))
        await _archives_continue(after)
    finally:
        before.close()
        after.close()

    # And back: PostgreSQL to a new SQLite file, item for item.
    back = io.StringIO()
    transfer.export(postgres, tmp_path, back)
    returned = StorageConfig(url=f"sqlite:///{tmp_path}/new.sqlite3")
    transfer.import_(returned, tmp_path, io.StringIO(back.getvalue()))
    again = io.StringIO()
    transfer.export(returned, tmp_path, again)
    assert again.getvalue().splitlines()[1:] == back.getvalue().splitlines()[1:]


async def _archives_continue(stores: Stores) -> None:
    """Both archives of the shared message came over, and later messages follow them."""
    alice = await stores.mam.page(Query(ALICE), 10)
    bob = await stores.mam.page(Query(BOB.bare), 10)
    assert [r.stanza for r in alice.rows][-1] == bob.rows[0].stanza == (
        b"<message>shared</message>")
    assert alice.rows[-1].uid == bob.rows[0].uid and [r.uid for r in bob.rows][1:] == ["b1"]
    later = ArchivedMessage(ALICE, new_uid(), 2_000_000, BOB, b"<m/>", sender=ALICE_DESK)
    await stores.mam.append([later], 100)
    for owner, before in ((ALICE, alice), (BOB.bare, bob)):
        page = await stores.mam.page(Query(owner), 10)
        assert page.rows[:-1] == before.rows
        assert page.rows[-1].uid == later.uid and page.rows[-1].seq > before.rows[-1].seq


async def test_postgres_to_postgres_keeps_every_store(pg_cluster: Cluster,
                                                      tmp_path: Path) -> None:
    source = StorageConfig(url=pg_cluster.new_database())
    stores = open_backend(source, tmp_path)
    await populate(stores)
    stores.close()
    dump = io.StringIO()
    exported = transfer.export(source, tmp_path, dump)
    assert exported["mam_archive"] == 7
    target = StorageConfig(url=pg_cluster.new_database())
    assert transfer.import_(target, tmp_path, io.StringIO(dump.getvalue())) == {
        table: n for table, n in exported.items() if n}
    before, after = open_backend(source, tmp_path), open_backend(target, tmp_path)
    try:
        assert await snapshot(after) == await snapshot(before)
        await _archives_continue(after)
    finally:
        before.close()
        after.close()


async def test_import_refuses_storage_that_holds_data(tmp_path: Path) -> None:
    sqlite = StorageConfig(path="a.sqlite3")
    stores = open_backend(sqlite, tmp_path)
    await stores.accounts.create("alice", "example.org", "secret")
    stores.close()
    dump = io.StringIO()
    transfer.export(sqlite, tmp_path, dump)
    with pytest.raises(transfer.TransferError, match="already holds data.*accounts"):
        transfer.import_(sqlite, tmp_path, io.StringIO(dump.getvalue()))


async def test_an_export_of_the_older_archive_layout_imports(tmp_path: Path) -> None:
    """Rows of ``mam_messages`` (exports made before archives shared rows) land in
    ``mam_archive`` with their ids and order."""
    header = {"format": transfer.FORMAT, "version": transfer.VERSION}
    rows = [[seq, str(ALICE), f"old{seq}", 1_000_000 + seq, str(BOB.bare), str(BOB),
             {"b64": "PG0vPg=="}] for seq in (3, 7)]
    lines = [json.dumps(header)] + [json.dumps({"t": "mam_messages", "r": r}) for r in rows]
    target = StorageConfig(path="new.sqlite3")
    assert transfer.import_(target, tmp_path, lines) == {"mam_archive": 2}
    stores = open_backend(target, tmp_path)
    try:
        page = await stores.mam.page(Query(ALICE, with_bare=str(BOB.bare)), 10)
        assert [(r.uid, r.stanza) for r in page.rows] == [("old3", b"<m/>"), ("old7", b"<m/>")]
        assert list(await stores.mam.seqs(ALICE, ["old7"])) == ["old7"]
    finally:
        stores.close()


def test_the_table_list_covers_every_table_and_column_of_both_backends(
        pg_url: str, tmp_path: Path) -> None:
    transfer.prepare(StorageConfig(path="t.sqlite3"), tmp_path)
    transfer.prepare(StorageConfig(url=pg_url), tmp_path)
    with sqlite3.connect(tmp_path / "t.sqlite3") as conn:
        lite = {n: {str(c[1]) for c in conn.execute(f"PRAGMA table_info({n})")}
                for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    with psycopg.connect(pg_url) as conn:
        pg: dict[str, set[str]] = {}
        for table, column in conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema()"):
            pg.setdefault(table, set()).add(column)
    pg["pubsub_subscriptions"].discard("pos")  # PostgreSQL's stand-in for SQLite's rowid
    pg["pubsub_digest_items"].discard("pos")
    listed = {t.name: set(t.columns) for t in transfer.TABLES}
    bookkeeping = {"schema_versions", "sqlite_sequence", "pubsub_sequence"}
    # SQLite's archive layout: fewer columns, read and written through its conversions.
    for table in transfer.TABLES:
        if table.sqlite_layout is not None:
            assert lite.pop(table.name) == set(table.sqlite_layout.columns)
            lite[table.name] = listed[table.name]
    bookkeeping |= transfer.SQLITE_DERIVED_TABLES
    assert {n: c for n, c in lite.items() if n not in bookkeeping} == listed
    assert {n: c for n, c in pg.items() if n not in bookkeeping} == listed

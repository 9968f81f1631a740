"""The PostgreSQL message archive beyond the contract: the upgrade from one row per archive
(``mam_messages``) to one row per message (``mam_archive``), rows imported from SQLite that are
found by the number their id carries, and instances trimming archives that share rows."""

from __future__ import annotations

from pathlib import Path

import psycopg
import trio

from pubsubd.config import StorageConfig
from pubsubd.jid import JID
from pubsubd.storage.archive_ids import new_uid, seq_of
from pubsubd.storage.backends import Stores, open_backend
from pubsubd.storage.interfaces import ArchivedMessage, Query, Row
from pubsubd.storage.postgres.mam import MIGRATIONS
from pubsubd.storage.postgres.migrations import current_version, migrate

ALICE, BOB, CAROL, ZED = (JID.parse(f"{who}@example.org") for who in ("alice", "bob", "carol",
                                                                         "zed"))
ALICE_DESK, BOB_PHONE = JID.parse("alice@example.org/desk"), JID.parse("bob@example.org/phone")


async def test_the_upgrade_keeps_every_message_its_id_and_order(pg_url: str,
                                                                 tmp_path: Path) -> None:
    generated = new_uid()
    old = [(ALICE, "id1", BOB_PHONE), (BOB, "id1", ALICE_DESK), (ALICE, generated, CAROL),
           (ALICE, "id3", BOB.with_resource("desk")), (ZED, "z1", ALICE)]
    with psycopg.connect(pg_url) as conn:  # a database the previous version wrote
        migrate(conn, "mam", MIGRATIONS[:1])
        seqs = [conn.execute(
            "INSERT INTO mam_messages (owner, uid, stamp, with_bare, with_full, stanza)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING seq",
            (str(owner), uid, n, str(remote.bare), str(remote), f"<m n='{n}'/>".encode()),
        ).fetchall()[0][0] for n, (owner, uid, remote) in enumerate(old)]
        conn.execute("DELETE FROM mam_messages WHERE owner = %s", (str(ZED),))  # the newest
    stores = open_backend(StorageConfig(url=pg_url), tmp_path)
    try:
        mam = stores.mam
        page = await mam.page(Query(ALICE), 10)
        assert page.rows == [Row(seqs[n], old[n][1], n, f"<m n='{n}'/>".encode())
                             for n in (0, 2, 3)]
        assert await mam.seqs(ALICE, ["id1", generated, "z1"]) == {"id1": seqs[0],
                                                                   generated: seqs[2]}
        assert [r.uid for r in (await mam.page(Query(ALICE, with_bare=str(BOB)), 10)).rows] == [
            "id1", "id3"]
        assert [r.uid for r in (await mam.page(Query(BOB, with_full=str(ALICE_DESK)),
                                               10)).rows] == ["id1"]
        assert await mam.bounds(ZED) is None
        await mam.append([ArchivedMessage(ALICE, "new", 9, CAROL, b"<m/>")], 100)
        assert (await mam.seqs(ALICE, ["new"]))["new"] > seqs[-1]  # never a deleted number
    finally:
        stores.close()
    with psycopg.connect(pg_url) as conn:
        assert current_version(conn, "mam") == len(MIGRATIONS)
        assert conn.execute("SELECT to_regclass('mam_messages')").fetchone() == (None,)


async def test_rows_imported_from_sqlite_are_found_by_the_number_their_id_carries(
        pg_url: str, tmp_path: Path) -> None:
    stores = open_backend(StorageConfig(url=pg_url), tmp_path)
    mam = stores.mam
    alone, both = new_uid(), new_uid()
    forged = alone[:10] + ("A" if alone[10] != "A" else "B") + alone[11:]  # same number
    try:
        with psycopg.connect(pg_url) as conn:  # as SQLite writes them: by_uid 0
            conn.execute(
                "INSERT INTO mam_archive (seq, uid, stamp, stanza, by_uid, out_owner,"
                " out_with_bare, out_with_full, in_owner, in_with_bare, in_with_full) VALUES"
                " (%s, %s, 1, '<a/>', 0, NULL, NULL, NULL, %s, %s, %s),"
                " (%s, %s, 2, '<b/>', 0, %s, %s, %s, %s, %s, %s)",
                (seq_of(alone), alone, str(ALICE), str(CAROL), str(CAROL),
                 seq_of(both), both, str(ALICE), str(BOB), str(BOB_PHONE), str(BOB),
                 str(ALICE), str(ALICE_DESK)))
        assert await mam.seqs(ALICE, [alone, both, forged]) == {alone: seq_of(alone),
                                                                both: seq_of(both)}
        assert await mam.seqs(BOB, [alone, both]) == {both: seq_of(both)}
        found = await mam.page(Query(BOB, uids=(both, alone)), 10)
        assert [r.uid for r in found.rows] == [both]
        assert await mam.replace_stanza(ALICE, alone, b"<gone/>")
        assert not await mam.replace_stanza(BOB, alone, b"<x/>")
        assert [r.stanza for r in (await mam.page(Query(ALICE), 10)).rows] == [b"<gone/>",
                                                                             b"<b/>"]
    finally:
        stores.close()


async def test_instances_trimming_archives_that_share_rows_leave_no_orphan(
        pg_url: str, tmp_path: Path) -> None:
    """Alice's and Bob's archives share every row and both are trimmed on every message, by
    two instances at once: neither waits for the other forever (a deadlock would fail an
    append), and no row stays that no archive keeps."""
    first, second = (open_backend(StorageConfig(url=pg_url), tmp_path) for _ in range(2))
    keep, rounds = 3, 40

    async def chat(stores: Stores, sender: JID, recipient: JID) -> None:
        mam = stores.mam
        for n in range(rounds):
            await mam.append([ArchivedMessage(sender.bare, new_uid(), n, recipient,
                                              b"<m/>", sender=sender)], keep)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(chat, first, ALICE_DESK, BOB_PHONE)
            nursery.start_soon(chat, second, BOB_PHONE, ALICE_DESK)
        with psycopg.connect(pg_url) as conn:
            orphans = conn.execute("SELECT COUNT(*) FROM mam_archive"
                                   " WHERE out_owner IS NULL AND in_owner IS NULL").fetchone()
        assert orphans == (0,)
        for owner in (ALICE, BOB):
            page = await first.mam.page(Query(owner), 10 * rounds)
            assert keep <= page.count <= keep + 1  # one more when a trim ran concurrently
    finally:
        first.close()
        second.close()

"""The SQLite archive keeps a message between two local users once for both archives, finds
new ids by the sequence number they carry, and upgrades archives of the older layout (one row
per archive, an index of ids) without losing a message, its id or its place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pubsubd.jid import JID
from pubsubd.storage.archive_ids import new_uid
from pubsubd.storage.interfaces import ArchivedMessage, Query
from pubsubd.storage.mam_sqlite import _SCHEMA, SqliteMamStore
from pubsubd.storage.sqlite import Database

ALICE = JID.parse("alice@example.org")
BOB = JID.parse("bob@example.org")
ALICE_DESK = JID.parse("alice@example.org/desk")


def rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT by_uid, out_owner, in_owner FROM mam_archive"
                            " ORDER BY seq").fetchall()


async def test_a_shared_message_is_one_row_found_by_its_seq(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    store = SqliteMamStore(db)
    uid = new_uid()
    await store.append([ArchivedMessage(ALICE, uid, 1, BOB, b"<m/>", ALICE_DESK)], 100)
    assert rows(tmp_path / "db.sqlite3") == [(0, "alice@example.org", "bob@example.org")]
    assert list(await store.seqs(ALICE, [uid])) == [uid]
    assert list(await store.seqs(BOB, [uid])) == [uid]
    # The right position with the wrong random part finds nothing.
    forged = uid[:-3] + ("AAA" if not uid.endswith("AAA") else "BBB")
    assert await store.seqs(BOB, [forged]) == {}
    db.close()


async def test_older_archives_are_upgraded_whole(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = Database(path)
    db.migrate("mam", _SCHEMA[:2])  # the layout of the previous version
    db.run_sync(lambda conn: conn.executemany(
        "INSERT INTO mam_messages (owner, uid, stamp, with_bare, with_full, stanza)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(str(ALICE), f"old{n}", n, str(BOB), f"{BOB}/phone", f"<m n='{n}'/>".encode())
         for n in range(3)] + [(str(BOB), "old0", 9, str(ALICE), str(ALICE_DESK), b"<b/>")]))
    db.close()

    db = Database(path)
    store = SqliteMamStore(db)
    page = await store.page(Query(ALICE), 10)
    assert [r.uid for r in page.rows] == ["old0", "old1", "old2"]
    assert [r.stanza for r in page.rows] == [b"<m n='0'/>", b"<m n='1'/>", b"<m n='2'/>"]
    seqs = await store.seqs(ALICE, ["old1"])
    later = await store.page(Query(ALICE), 10, after_seq=seqs["old1"])
    assert [r.uid for r in later.rows] == ["old2"]
    assert [r.uid for r in (await store.page(Query(BOB, with_bare=str(ALICE)), 10)).rows] \
        == ["old0"]
    # New messages come after the old ones, in both ways of finding them.
    uid = new_uid()
    await store.append([ArchivedMessage(ALICE, uid, 10, BOB, b"<new/>", ALICE_DESK)], 100)
    page = await store.page(Query(ALICE), 10)
    assert [r.uid for r in page.rows] == ["old0", "old1", "old2", uid]
    assert (await store.page(Query(BOB), 10)).count == 2
    db.close()

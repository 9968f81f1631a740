"""The SQLite archive keeps a message between two local users once for both archives, finds
new ids by the sequence number they carry, and upgrades archives of the older layout (one row
per archive, an index of ids) without losing a message, its id or its place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pubsubd.jid import JID
from pubsubd.storage.archive_ids import new_uid, next_id
from pubsubd.storage.interfaces import ArchiveBatch, ArchivedMessage, Query
from pubsubd.storage.mam_sqlite import _SCHEMA, SqliteMamStore
from pubsubd.storage.sqlite import Database

ALICE = JID.parse("alice@example.org")
BOB = JID.parse("bob@example.org")
ALICE_DESK = JID.parse("alice@example.org/desk")


def rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT by_uid, (SELECT jid FROM mam_jids WHERE id = out_owner),"
                            " (SELECT jid FROM mam_jids WHERE id = in_owner) FROM mam_archive"
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


async def test_messages_queued_as_routed_and_others_are_written_alike(tmp_path: Path) -> None:
    """A queued message whose stamp is its seq is written by the statement that binds the
    seq once; one with its own stamp (or an id without a seq) by the other: both the same."""
    db = Database(tmp_path / "db.sqlite3")
    store = SqliteMamStore(db)
    routed, alone = next_id(), next_id()
    batch = ArchiveBatch()
    batch.fields += (ALICE, routed[1], routed[0], BOB, b"<r/>", ALICE_DESK, routed[0])
    batch.fields += (ALICE, alone[1], 7, BOB, b"<a/>", None, alone[0])  # a stamp of its own
    batch.fields += (BOB, "plain-id", 8, ALICE_DESK, b"<p/>", None, None)
    await store.append(batch, 100)
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        assert conn.execute("SELECT seq = ?, stamp = seq, by_uid FROM mam_archive WHERE uid = ?",
                            (routed[0], routed[1])).fetchone() == (1, 1, 0)
        assert conn.execute("SELECT seq = ?, stamp, by_uid FROM mam_archive WHERE uid = ?",
                            (alone[0], alone[1])).fetchone() == (1, 7, 0)
        assert conn.execute("SELECT stamp, by_uid FROM mam_archive WHERE uid = 'plain-id'"
                            ).fetchone() == (8, 1)
    assert rows(tmp_path / "db.sqlite3") == [
        (0, "alice@example.org", "bob@example.org"), (0, None, "alice@example.org"),
        (1, None, "bob@example.org")]
    page = await store.page(Query(ALICE), 10)
    assert [(r.uid, r.stamp, r.stanza) for r in page.rows] == [
        (routed[1], routed[0], b"<r/>"), (alone[1], 7, b"<a/>")]
    assert [(r.uid, r.stamp) for r in (await store.page(Query(BOB), 10)).rows] == [
        (routed[1], routed[0]), ("plain-id", 8)]
    assert await store.seqs(BOB, [routed[1], "plain-id"]) == {
        routed[1]: routed[0], "plain-id": (await store.seqs(BOB, ["plain-id"]))["plain-id"]}
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


async def test_archives_of_the_side_index_layout_are_upgraded_whole(tmp_path: Path) -> None:
    """The previous layout (a side index per archive) becomes rows and postings: every message
    keeps its id, place and stamp in both archives, and "with" filters still apply."""
    path = tmp_path / "db.sqlite3"
    db = Database(path)
    db.migrate("mam", _SCHEMA[:3])
    shared, alone = new_uid(), new_uid()
    db.run_sync(lambda conn: conn.executemany(
        "INSERT INTO mam_archive VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(5, shared, 50, b"<shared/>", 1, str(ALICE), str(BOB), f"{BOB}/phone", str(BOB),
          str(ALICE), str(ALICE_DESK)),
         (6, alone, 60, b"<alone/>", 1, None, None, None, str(ALICE), "carol@example.org",
          "carol@example.org/x")]))
    db.close()

    db = Database(path)
    store = SqliteMamStore(db)
    page = await store.page(Query(ALICE), 10)
    assert [(r.uid, r.stamp, r.stanza) for r in page.rows] == [
        (shared, 50, b"<shared/>"), (alone, 60, b"<alone/>")]
    assert [r.uid for r in (await store.page(Query(BOB), 10)).rows] == [shared]
    with_bob = await store.page(Query(ALICE, with_bare=str(BOB)), 10)
    assert [r.uid for r in with_bob.rows] == [shared]
    with_desk = await store.page(Query(BOB, with_full=str(ALICE_DESK)), 10)
    assert [r.uid for r in with_desk.rows] == [shared]
    assert await store.seqs(BOB, [shared, alone]) == {shared: 5}
    db.close()


async def test_archives_with_addresses_as_text_are_upgraded_whole(tmp_path: Path) -> None:
    """Rows that named their parties as text get numbers of mam_jids: queries, ids,
    trimming and deleting an account work on them as before."""
    path = tmp_path / "db.sqlite3"
    db = Database(path)
    db.migrate("mam", _SCHEMA[:4])
    shared, alone, third = new_uid(), new_uid(), new_uid()
    db.run_sync(lambda conn: conn.executemany(
        "INSERT INTO mam_archive VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(5, shared, 50, b"<shared/>", 1, str(ALICE), f"{BOB}/phone", str(BOB), str(ALICE_DESK)),
         (6, alone, 60, b"<alone/>", 1, None, None, str(ALICE), "carol@example.org/x"),
         (7, third, 70, b"<third/>", 1, None, None, str(ALICE), "carol@example.org/x")]))
    db.close()

    db = Database(path)
    store = SqliteMamStore(db)
    assert [r.uid for r in (await store.page(Query(ALICE), 10)).rows] == [shared, alone, third]
    assert [r.uid for r in (await store.page(Query(BOB), 10)).rows] == [shared]
    carol = await store.page(Query(ALICE, with_bare="carol@example.org"), 10)
    assert [r.uid for r in carol.rows] == [alone, third]
    assert await store.seqs(ALICE, [shared, third]) == {shared: 5, third: 7}
    assert rows(path) == [(1, "alice@example.org", "bob@example.org"),
                          (1, None, "alice@example.org"), (1, None, "alice@example.org")]
    # Trimming to two messages: Alice's oldest two go, the shared one stays in Bob's.
    uid = new_uid()
    await store.append([ArchivedMessage(ALICE, uid, 80, BOB, b"<new/>", ALICE_DESK)], 2)
    assert [r.uid for r in (await store.page(Query(ALICE), 10)).rows] == [third, uid]
    assert [r.uid for r in (await store.page(Query(BOB), 10)).rows] == [shared, uid]
    assert await store.seqs(ALICE, [shared]) == {}
    assert await store.seqs(BOB, [shared]) == {shared: 5}
    await store.forget(BOB)
    assert (await store.page(Query(BOB), 10)).count == 0
    kept = (await store.seqs(ALICE, [uid]))[uid]
    with sqlite3.connect(path) as conn:  # nobody keeps the others any more
        assert conn.execute("SELECT seq FROM mam_archive").fetchall() == [(7,), (kept,)]
    db.close()


async def test_a_deleted_account_leaves_no_address_nobody_names(tmp_path: Path) -> None:
    """Forgetting an archive removes the addresses of mam_jids that no row names any more
    (the account's own and its contacts'), and keeps those a remaining message names."""
    path = tmp_path / "db.sqlite3"
    db = Database(path)
    store = SqliteMamStore(db)
    far = JID.parse("romeo@far.example/balcony")
    await store.append([
        ArchivedMessage(ALICE, new_uid(), 1, far, b"<a/>"),  # Alice's archive only
        ArchivedMessage(BOB, new_uid(), 2, JID.parse("alice@example.org/desk"), b"<s/>",
                        JID.parse("bob@example.org/laptop")),  # Bob's and Alice's
    ], 100)

    def addresses() -> set[str]:
        with sqlite3.connect(path) as conn:
            return {jid for (jid,) in conn.execute("SELECT jid FROM mam_jids")}

    assert str(far) in addresses()
    await store.forget(ALICE)
    # Bob's side of the shared row names him and Alice's full JID; nothing names Romeo,
    # Alice's bare JID or Bob's full one (her side of the row) any more.
    assert addresses() == {"bob@example.org", "alice@example.org/desk"}
    await store.forget(BOB)
    assert addresses() == set()
    # New messages still get numbers (the store forgot the ones it had in memory).
    await store.append([ArchivedMessage(BOB, new_uid(), 3, far, b"<n/>")], 100)
    assert addresses() == {"bob@example.org", str(far)}
    assert [r.stanza for r in (await store.page(Query(BOB), 10)).rows] == [b"<n/>"]
    db.close()


def postings(path: Path, owner: JID) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [int(size) for (size,) in conn.execute(
            "SELECT size FROM mam_postings WHERE owner = ? ORDER BY last", (str(owner),))]


async def test_small_bursts_extend_the_last_posting_row(tmp_path: Path) -> None:
    """An archive that gets one message at a time is listed by a few large rows, not a row
    per message; a burst gets a row of its own; every message stays listed once, in order."""
    path = tmp_path / "db.sqlite3"
    db = Database(path)
    store = SqliteMamStore(db)
    uids = []
    for n in range(300):
        uid = new_uid()
        uids.append(uid)
        await store.append([ArchivedMessage(ALICE, uid, n, BOB, b"<m/>", ALICE_DESK)], 10_000)
    assert postings(path, ALICE) == [256, 44]
    assert postings(path, BOB) == [256, 44]
    burst = [ArchivedMessage(ALICE, new_uid(), 1000 + n, BOB, b"<b/>") for n in range(300)]
    await store.append(burst, 10_000)
    assert postings(path, ALICE) == [256, 44, 300]
    page = await store.page(Query(ALICE), 1000)
    assert [r.uid for r in page.rows] == uids + [m.uid for m in burst]
    assert page.count == 600
    db.close()

    reopened = SqliteMamStore(Database(path))  # the last row's size is read back, not assumed
    await reopened.append([ArchivedMessage(ALICE, new_uid(), 2000, BOB, b"<c/>")], 10_000)
    assert postings(path, ALICE) == [256, 44, 300, 1]
    reopened.db.close()


async def test_trimming_rewrites_the_postings_it_cuts(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = Database(path)
    store = SqliteMamStore(db)
    uids = [new_uid() for _ in range(10)]
    for n, uid in enumerate(uids):
        await store.append([ArchivedMessage(ALICE, uid, n, BOB, b"<m/>", ALICE_DESK)], 4)
    assert sum(postings(path, ALICE)) == 4
    assert [r.uid for r in (await store.page(Query(ALICE), 10)).rows] == uids[-4:]
    # Bob keeps 4 as well; the rows both dropped are gone.
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM mam_archive").fetchone() == (4,)
    db.close()

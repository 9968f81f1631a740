"""MamStore contract: preferences, archive order, query filters, RSM paging, retention,
account deletion, durability."""

from __future__ import annotations

import pytest

from pubsubd.jid import JID
from pubsubd.storage.archive_ids import new_uid
from pubsubd.storage.interfaces import (
    MAM_TRIM_SLACK,
    ArchivedMessage,
    MamStore,
    Prefs,
    Query,
    Row,
)

from .backend_params import Backend

ALICE = JID.parse("alice@example.org")
BOB_PHONE = JID.parse("bob@example.org/phone")
BOB_DESK = JID.parse("bob@example.org/desk")
CAROL = JID.parse("carol@example.net/x")
KEEP_ALL = 10_000


@pytest.fixture
def mam(backend: Backend) -> MamStore:
    return backend.stores.mam


def msg(n: int, remote: JID = BOB_PHONE, owner: JID = ALICE) -> ArchivedMessage:
    return ArchivedMessage(owner, f"id{n}", 1_000_000 * n, remote, f"<m n='{n}'/>".encode())


async def fill(mam: MamStore, remotes: list[JID], owner: JID = ALICE) -> None:
    await mam.append([msg(n, r, owner) for n, r in enumerate(remotes)], KEEP_ALL)


async def uids(mam: MamStore, query: Query, limit: int = 100, **rsm: object) -> list[str]:
    return [r.uid for r in (await mam.page(query, limit, **rsm)).rows]  # type: ignore[arg-type]


async def test_preferences_round_trip(backend: Backend) -> None:
    mam = backend.stores.mam
    assert mam.prefs(ALICE) is None
    prefs = Prefs("roster", frozenset({"bob@example.org"}), frozenset({"spam@example.com"}))
    await mam.set_prefs(JID.parse("alice@example.org/desk"), prefs)
    assert mam.prefs(ALICE) == prefs
    await mam.set_prefs(ALICE, Prefs("never"))
    mam = backend.reopen().mam
    assert mam.prefs(JID.parse("alice@example.org/phone")) == Prefs("never")
    assert mam.prefs(JID.parse("bob@example.org")) is None


async def test_messages_come_back_in_archive_order_with_growing_sequence(mam: MamStore) -> None:
    assert await mam.bounds(ALICE) is None
    await mam.append([msg(0), msg(1, CAROL)], KEEP_ALL)
    await mam.append([msg(2, BOB_DESK)], KEEP_ALL)
    page = await mam.page(Query(ALICE), 10)
    assert [r.uid for r in page.rows] == ["id0", "id1", "id2"]
    assert [r.stanza for r in page.rows] == [b"<m n='0'/>", b"<m n='1'/>", b"<m n='2'/>"]
    assert [r.stamp for r in page.rows] == [0, 1_000_000, 2_000_000]
    seqs = [r.seq for r in page.rows]
    assert seqs == sorted(set(seqs))
    assert (page.complete, page.count, page.first_index) == (True, 3, 0)
    assert await mam.seqs(ALICE, ["id2", "nope", "id0"]) == {"id0": seqs[0], "id2": seqs[2]}
    assert await mam.bounds(JID.parse("alice@example.org/desk")) == (
        Row(seqs[0], "id0", 0, b""), Row(seqs[2], "id2", 2_000_000, b""))


async def test_archives_are_separate(mam: MamStore) -> None:
    bob = BOB_PHONE.bare
    await mam.append([msg(0), msg(1, ALICE, owner=bob)], KEEP_ALL)
    assert await mam.seqs(ALICE, ["id1"]) == {}
    assert await uids(mam, Query(bob)) == ["id1"]
    assert (await mam.page(Query(ALICE), 10)).count == 1
    assert await mam.bounds(JID.parse("nobody@example.org")) is None


async def test_query_filters(mam: MamStore) -> None:
    await fill(mam, [BOB_PHONE, CAROL, BOB_DESK, ALICE.bare, BOB_PHONE])
    seqs = await mam.seqs(ALICE, [f"id{n}" for n in range(5)])
    assert await uids(mam, Query(ALICE, with_bare="bob@example.org")) == ["id0", "id2", "id4"]
    assert await uids(mam, Query(ALICE, with_full=str(BOB_PHONE))) == ["id0", "id4"]
    assert await uids(mam, Query(ALICE, with_bare=str(ALICE))) == ["id3"]  # own resources
    assert await uids(mam, Query(ALICE, start=1_000_000, end=3_000_000)) == ["id1", "id2", "id3"]
    assert await uids(mam, Query(ALICE, start=3_000_001)) == ["id4"]
    assert await uids(mam, Query(ALICE, after_seq=seqs["id1"], before_seq=seqs["id4"])) == [
        "id2", "id3"]
    assert await uids(mam, Query(ALICE, uids=("id4", "id1", "zz"))) == ["id1", "id4"]
    assert await uids(mam, Query(ALICE, with_bare="bob@example.org", start=1, end=3_000_000)) == [
        "id2"]
    assert await uids(mam, Query(ALICE, with_bare="nobody@example.org")) == []


async def test_rsm_pages_forward_and_backward(mam: MamStore) -> None:
    await fill(mam, [BOB_PHONE, CAROL] * 4)  # id0..id7, Bob on the even ones
    seqs = await mam.seqs(ALICE, [f"id{n}" for n in range(8)])
    bob = Query(ALICE, with_bare="bob@example.org")

    first = await mam.page(bob, 2)
    assert [r.uid for r in first.rows] == ["id0", "id2"]
    assert (first.complete, first.count, first.first_index) == (False, 4, 0)
    second = await mam.page(bob, 2, after_seq=first.rows[-1].seq)
    assert [r.uid for r in second.rows] == ["id4", "id6"]
    assert (second.complete, second.count, second.first_index) == (True, 4, 2)
    empty = await mam.page(bob, 2, after_seq=second.rows[-1].seq)
    assert (empty.rows, empty.complete, empty.count, empty.first_index) == ([], True, 4, None)

    last = await mam.page(bob, 3, backward=True)  # RSM <before/>: the last page
    assert [r.uid for r in last.rows] == ["id2", "id4", "id6"]
    assert (last.complete, last.count, last.first_index) == (False, 4, 1)
    earlier = await mam.page(bob, 3, before_seq=last.rows[0].seq, backward=True)
    assert [r.uid for r in earlier.rows] == ["id0"]
    assert (earlier.complete, earlier.first_index) == (True, 0)

    window = await mam.page(Query(ALICE), 10, after_seq=seqs["id1"], before_seq=seqs["id5"])
    assert [r.uid for r in window.rows] == ["id2", "id3", "id4"]
    assert (window.count, window.first_index) == (8, 2)  # count ignores the RSM bounds

    within = Query(ALICE, after_seq=seqs["id3"])  # after-id is part of the result set
    page = await mam.page(within, 1)
    assert ([r.uid for r in page.rows], page.count, page.first_index) == (["id4"], 4, 0)

    none = await mam.page(Query(ALICE), 0)  # <max>0</max>: only the count
    assert (none.rows, none.count, none.complete) == ([], 8, False)


async def test_retention_drops_the_oldest_only(mam: MamStore) -> None:
    await mam.append([msg(n) for n in range(3)], keep=5)
    await mam.append([msg(n) for n in range(3, 7)], keep=5)
    await mam.append([msg(0, owner=BOB_PHONE.bare)], keep=5)
    assert await uids(mam, Query(ALICE)) == ["id2", "id3", "id4", "id5", "id6"]
    assert await mam.seqs(ALICE, ["id0", "id1", "id2"]) == {
        "id2": (await mam.seqs(ALICE, ["id2"]))["id2"]}
    bounds = await mam.bounds(ALICE)
    assert bounds is not None and (bounds[0].uid, bounds[1].uid) == ("id2", "id6")
    await mam.append([msg(7)], keep=2)
    assert await uids(mam, Query(ALICE)) == ["id6", "id7"]
    assert await uids(mam, Query(BOB_PHONE.bare)) == ["id0"]  # other archives untouched


async def test_large_archives_stay_within_the_limit_and_the_slack(mam: MamStore) -> None:
    keep = MAM_TRIM_SLACK
    total = 3 * MAM_TRIM_SLACK + 7
    for start in range(0, total, 50):
        await mam.append([msg(n) for n in range(start, min(start + 50, total))], keep)
        kept = await uids(mam, Query(ALICE), limit=10 * total)
        end = min(start + 50, total)
        if end <= keep:
            assert len(kept) == end
        else:
            assert keep <= len(kept) <= keep + MAM_TRIM_SLACK
        assert kept == [f"id{n}" for n in range(end - len(kept), end)]  # a suffix, no hole


async def test_sequence_numbers_are_never_reused(mam: MamStore) -> None:
    await mam.append([msg(0), msg(1)], KEEP_ALL)
    highest = max((await mam.seqs(ALICE, ["id0", "id1"])).values())
    await mam.forget(ALICE)
    await mam.append([msg(0)], keep=1)
    assert (await mam.seqs(ALICE, ["id0"]))["id0"] > highest


async def test_forget_deletes_archive_and_preferences(backend: Backend) -> None:
    mam = backend.stores.mam
    bob = BOB_PHONE.bare
    await mam.append([msg(0), msg(1, owner=bob)], KEEP_ALL)
    await mam.set_prefs(ALICE, Prefs("always"))
    await mam.set_prefs(bob, Prefs("roster"))
    await mam.forget(JID.parse("alice@example.org/desk"))
    await _only_bob_is_left(mam)
    await _only_bob_is_left(backend.reopen().mam)


async def _only_bob_is_left(mam: MamStore) -> None:
    assert mam.prefs(ALICE) is None and await mam.bounds(ALICE) is None
    assert (await mam.page(Query(ALICE), 10)).count == 0
    assert mam.prefs(BOB_PHONE.bare) == Prefs("roster")
    assert await uids(mam, Query(BOB_PHONE.bare)) == ["id1"]


async def test_archive_survives_reopening(backend: Backend) -> None:
    await fill(backend.stores.mam, [BOB_PHONE, CAROL, BOB_DESK])
    before = await backend.stores.mam.page(Query(ALICE), 10)
    mam = backend.reopen().mam
    assert await mam.page(Query(ALICE), 10) == before
    await mam.append([msg(9)], KEEP_ALL)
    assert (await mam.seqs(ALICE, ["id9"]))["id9"] > before.rows[-1].seq


# --- one message kept once for both local parties' archives (ArchivedMessage.sender) --------

BOB = BOB_PHONE.bare
ALICE_DESK = JID.parse("alice@example.org/desk")


def shared(n: int, uid: str | None = None) -> ArchivedMessage:
    """Message ``n`` from Alice's desk to Bob's phone, in both archives."""
    return ArchivedMessage(ALICE, uid or new_uid(), 1_000_000 * n, BOB_PHONE,
                           f"<m n='{n}'/>".encode(), sender=ALICE_DESK)


async def test_a_shared_message_is_in_both_archives_under_one_id(backend: Backend) -> None:
    mam = backend.stores.mam
    both = shared(1)
    await mam.append([msg(0, CAROL), both, msg(2, CAROL, owner=BOB)], KEEP_ALL)
    assert await uids(mam, Query(ALICE)) == ["id0", both.uid]
    assert await uids(mam, Query(BOB)) == [both.uid, "id2"]
    # Each archive sees the other party: Bob for Alice, Alice's desk for Bob.
    assert await uids(mam, Query(ALICE, with_bare=str(BOB))) == [both.uid]
    assert await uids(mam, Query(ALICE, with_full=str(BOB_PHONE))) == [both.uid]
    assert await uids(mam, Query(ALICE, with_bare=str(ALICE))) == []
    assert await uids(mam, Query(BOB, with_bare=str(ALICE))) == [both.uid]
    assert await uids(mam, Query(BOB, with_full=str(ALICE_DESK))) == [both.uid]
    assert await uids(mam, Query(BOB, with_full=str(BOB_PHONE))) == []
    assert await uids(mam, Query(BOB, with_bare=str(BOB))) == []
    assert await uids(mam, Query(BOB, uids=(both.uid, "id0"))) == [both.uid]
    alice, bob = await mam.page(Query(ALICE), 10), await mam.page(Query(BOB), 10)
    assert (alice.count, bob.count) == (2, 2)
    assert alice.rows[1].stanza == bob.rows[0].stanza == b"<m n='1'/>"
    assert set(await mam.seqs(ALICE, [both.uid, "id2"])) == {both.uid}
    assert set(await mam.seqs(BOB, [both.uid, "id0"])) == {both.uid}
    bounds = await mam.bounds(BOB)
    assert bounds is not None and (bounds[0].uid, bounds[1].uid) == (both.uid, "id2")
    first = await mam.page(Query(BOB), 1, backward=True)
    assert ([r.uid for r in first.rows], first.count, first.first_index) == (["id2"], 2, 1)
    again = await backend.reopen().mam.page(Query(BOB), 10)
    assert [r.uid for r in again.rows] == [both.uid, "id2"]


async def test_trimming_one_archive_leaves_the_other_partys_copy(mam: MamStore) -> None:
    chat = [shared(n) for n in range(4)]
    await mam.append(chat, KEEP_ALL)
    await mam.append([msg(10, CAROL), msg(11, CAROL)], keep=2)  # Alice's archive only
    assert await uids(mam, Query(ALICE)) == ["id10", "id11"]
    assert await uids(mam, Query(BOB)) == [m.uid for m in chat]
    assert await mam.seqs(ALICE, [chat[0].uid]) == {}
    assert set(await mam.seqs(BOB, [chat[0].uid])) == {chat[0].uid}
    await mam.append([msg(12, CAROL, owner=BOB)], keep=1)  # Bob's archive only
    assert await uids(mam, Query(BOB)) == ["id12"]
    assert await uids(mam, Query(ALICE)) == ["id10", "id11"]
    late = shared(13)
    await mam.append([late], keep=2)  # both archives, each trimmed to its newest two
    assert await uids(mam, Query(ALICE)) == ["id11", late.uid]
    assert await uids(mam, Query(BOB)) == ["id12", late.uid]


async def test_forgetting_one_party_leaves_the_others_copy(backend: Backend) -> None:
    mam = backend.stores.mam
    chat = [shared(n) for n in range(3)]
    await mam.append([*chat, msg(5, CAROL)], KEEP_ALL)
    await mam.forget(ALICE_DESK)
    assert await mam.bounds(ALICE) is None
    assert await uids(mam, Query(BOB, with_full=str(ALICE_DESK))) == [m.uid for m in chat]
    assert await uids(backend.reopen().mam, Query(BOB)) == [m.uid for m in chat]
    mam = backend.stores.mam
    await mam.forget(BOB)
    assert await mam.bounds(BOB) is None and await mam.bounds(ALICE) is None
    await mam.append([shared(7, chat[0].uid)], KEEP_ALL)  # the id is free again in both
    assert await uids(mam, Query(ALICE)) == await uids(mam, Query(BOB)) == [chat[0].uid]


async def test_generated_and_chosen_ids_both_find_their_messages(mam: MamStore) -> None:
    generated = [new_uid() for _ in range(3)]
    await mam.append([ArchivedMessage(ALICE, generated[0], 0, CAROL, b"<a/>"), msg(1),
                      ArchivedMessage(ALICE, generated[1], 2, BOB_DESK, b"<c/>"),
                      ArchivedMessage(BOB, generated[2], 3, CAROL, b"<d/>")], KEEP_ALL)
    page = await mam.page(Query(ALICE), 10)
    assert [r.uid for r in page.rows] == [generated[0], "id1", generated[1]]
    found = await mam.seqs(ALICE, [*generated, "id1", "id9"])
    assert found == {r.uid: r.seq for r in page.rows}  # not Bob's generated id
    assert set(await mam.seqs(BOB, generated)) == {generated[2]}
    # The same position with another random part is no id of this archive (archive_ids).
    forged = generated[0][:10] + ("A" if generated[0][10] != "A" else "B") + generated[0][11:]
    assert await mam.seqs(ALICE, [forged]) == {}
    assert await uids(mam, Query(ALICE, uids=(generated[1], forged, "id1"))) == [
        "id1", generated[1]]
    assert await mam.replace_stanza(ALICE, generated[1], b"<tombstone/>")
    assert not await mam.replace_stanza(ALICE, generated[2], b"<x/>")  # Bob's, not Alice's
    assert (await mam.page(Query(ALICE, uids=(generated[1],)), 10)).rows[0].stanza == (
        b"<tombstone/>")

"""ImStore contract: rosters and their versions, subscription requests, offline messages,
blocklists, vCards, account deletion, durability."""

from __future__ import annotations

import pytest

from pubsubd.jid import JID
from pubsubd.storage.interfaces import ROSTER_CHANGE_LOG, ImStore, RosterItem

from .backend_params import Backend

ALICE = JID.parse("alice@example.org")
ALICE_DESK = JID.parse("alice@example.org/desk")
BOB = JID.parse("bob@example.org")
CAROL = JID.parse("carol@example.net")


@pytest.fixture
def im(backend: Backend) -> ImStore:
    return backend.stores.im


# --- rosters (RFC 6121 §2) -------------------------------------------------------------------


async def test_roster_items_round_trip_keyed_by_bare_owner(im: ImStore) -> None:
    assert (im.roster(ALICE), im.version(ALICE), im.item(ALICE, BOB)) == ({}, 0, None)
    bob = RosterItem(BOB, "Bob", ("friends", "work"), "both", ask=True, approved=True)
    assert await im.put_item(ALICE_DESK, bob) == 1
    assert im.roster(ALICE) == {BOB: bob}
    assert im.item(ALICE_DESK, JID.parse("bob@example.org/phone")) == bob
    assert im.roster(BOB) == {}
    replaced = RosterItem(BOB, None, (), "to")
    assert await im.put_item(ALICE, replaced) == 2
    assert im.item(ALICE, BOB) == replaced
    im.roster(ALICE).clear()  # a copy
    assert im.item(ALICE, BOB) == replaced


async def test_every_change_gets_the_next_version(im: ImStore) -> None:
    assert await im.put_item(ALICE, RosterItem(BOB)) == 1
    assert await im.put_item(ALICE, RosterItem(CAROL)) == 2
    assert await im.remove_item(ALICE_DESK, JID.parse("bob@example.org/x")) == 3
    assert im.version(ALICE) == 3
    assert im.roster(ALICE) == {CAROL: RosterItem(CAROL)}
    assert im.version(BOB) == 0  # versions are per roster


async def test_changes_since_lists_each_contact_once_at_its_latest_version(
        im: ImStore) -> None:
    await im.put_item(ALICE, RosterItem(BOB))  # 1
    await im.put_item(ALICE, RosterItem(CAROL))  # 2
    await im.put_item(ALICE, RosterItem(BOB, "Bobby"))  # 3
    await im.remove_item(ALICE, CAROL)  # 4
    assert im.changes_since(ALICE, 0) == [(3, BOB), (4, CAROL)]
    assert im.changes_since(ALICE_DESK, 2) == [(3, BOB), (4, CAROL)]
    assert im.changes_since(ALICE, 3) == [(4, CAROL)]
    assert im.changes_since(ALICE, 4) == []
    assert im.changes_since(ALICE, 5) is None  # never handed out
    assert im.changes_since(ALICE, -1) is None
    assert im.changes_since(BOB, 0) == []


async def test_changes_since_is_none_beyond_the_change_log(im: ImStore) -> None:
    contacts = [JID.parse(f"c{i}@example.org") for i in range(ROSTER_CHANGE_LOG + 5)]
    for contact in contacts:
        await im.put_item(ALICE, RosterItem(contact))
    last = len(contacts)
    assert im.changes_since(ALICE, 0) is None
    assert im.changes_since(ALICE, 4) is None
    recent = im.changes_since(ALICE, last - ROSTER_CHANGE_LOG)
    assert recent == [(v, contacts[v - 1]) for v in range(last - ROSTER_CHANGE_LOG + 1, last + 1)]


async def test_rosters_survive_reopening(backend: Backend) -> None:
    im = backend.stores.im
    bob = RosterItem(BOB, "Bob", ("g",), "from", ask=True, approved=False)
    await im.put_item(ALICE, bob)
    await im.put_item(ALICE, RosterItem(CAROL))
    await im.remove_item(ALICE, CAROL)
    im = backend.reopen().im
    assert im.roster(ALICE) == {BOB: bob}
    assert im.version(ALICE) == 3
    assert im.changes_since(ALICE, 3) == []
    assert im.changes_since(ALICE, 1) in (None, [(3, CAROL)])  # the log may be forgotten
    assert await im.put_item(ALICE, RosterItem(CAROL)) == 4  # versions never go back


# --- subscription requests (RFC 6121 §3.1.3) ---------------------------------------------------


async def test_subscription_requests_are_kept_until_forgotten(backend: Backend) -> None:
    im = backend.stores.im
    assert im.requests(ALICE) == {} and not im.has_request(ALICE, BOB)
    await im.set_request(ALICE_DESK, JID.parse("bob@example.org/phone"), b"<presence a='1'/>")
    await im.set_request(ALICE, CAROL, b"<presence c='1'/>")
    await im.set_request(ALICE, BOB, b"<presence a='2'/>")  # replaces
    assert im.has_request(ALICE, JID.parse("bob@example.org/x"))
    assert not im.has_request(BOB, ALICE)
    im = backend.reopen().im
    assert im.requests(ALICE_DESK) == {BOB: b"<presence a='2'/>", CAROL: b"<presence c='1'/>"}
    await im.set_request(ALICE, BOB, None)
    await im.set_request(ALICE, BOB, None)  # forgetting twice is harmless
    assert im.requests(ALICE) == {CAROL: b"<presence c='1'/>"}
    im.requests(ALICE).clear()  # a copy
    assert im.has_request(ALICE, CAROL)


# --- offline messages (XEP-0160) ---------------------------------------------------------------


async def test_offline_messages_in_arrival_order_up_to_the_limit(backend: Backend) -> None:
    im = backend.stores.im
    for n in range(3):
        assert await im.store_offline(ALICE_DESK, f"<m n='{n}'/>".encode(), limit=3)
    assert not await im.store_offline(ALICE, b"<m n='3'/>", limit=3)
    assert await im.store_offline(BOB, b"<m to='bob'/>", limit=3)  # quota is per owner
    im = backend.reopen().im
    assert await im.take_offline(ALICE) == [b"<m n='0'/>", b"<m n='1'/>", b"<m n='2'/>"]
    assert await im.take_offline(ALICE) == []  # taken means removed
    assert await im.store_offline(ALICE, b"<m n='4'/>", limit=3)
    assert await im.take_offline(ALICE) == [b"<m n='4'/>"]
    assert await im.take_offline(BOB) == [b"<m to='bob'/>"]


async def test_offline_limit_zero_stores_nothing(im: ImStore) -> None:
    assert not await im.store_offline(ALICE, b"<m/>", limit=0)
    assert await im.take_offline(ALICE) == []


# --- blocklists (XEP-0191) ---------------------------------------------------------------------


async def test_blocking_and_unblocking(backend: Backend) -> None:
    im = backend.stores.im
    assert im.blocklist(ALICE) == set() and not im.has_blocklist(ALICE)
    assert not im.blocks_anyone()
    await im.block(ALICE_DESK, ["bob@example.org", "example.net"])
    await im.block(ALICE, ["example.net", "carol@example.net/res"])  # blocking twice is fine
    assert im.has_blocklist(ALICE) and not im.has_blocklist(BOB) and im.blocks_anyone()
    im = backend.reopen().im
    assert im.blocklist(ALICE) == {"bob@example.org", "example.net", "carol@example.net/res"}
    await im.unblock(ALICE, ["example.net", "never@blocked"])
    assert im.blocklist(ALICE) == {"bob@example.org", "carol@example.net/res"}
    im.blocklist(ALICE).clear()  # a copy
    assert im.has_blocklist(ALICE)
    im = backend.reopen().im
    assert im.blocks_anyone()
    await im.unblock(ALICE, ["bob@example.org", "carol@example.net/res"])
    assert not im.has_blocklist(ALICE) and not im.blocks_anyone()  # an emptied list counts not
    await im.block(ALICE, ["bob@example.org"])
    await im.unblock(ALICE, None)
    assert im.blocklist(ALICE) == set() and not im.has_blocklist(ALICE)
    assert not im.blocks_anyone()
    im = backend.reopen().im
    assert not im.has_blocklist(ALICE) and not im.blocks_anyone()


# --- vCards (XEP-0054) ---------------------------------------------------------------------


async def test_vcards_are_replaced_and_durable(backend: Backend) -> None:
    im = backend.stores.im
    assert await im.vcard(ALICE) is None
    await im.set_vcard(ALICE_DESK, b"<vCard><FN>A</FN></vCard>")
    await im.set_vcard(ALICE, b"<vCard><FN>Alice</FN></vCard>")
    im = backend.reopen().im
    assert await im.vcard(JID.parse("alice@example.org/phone")) == b"<vCard><FN>Alice</FN></vCard>"
    assert await im.vcard(BOB) is None


# --- account deletion ----------------------------------------------------------------------


async def test_forget_deletes_everything_of_one_account(backend: Backend) -> None:
    im = backend.stores.im
    for owner, other in ((ALICE, BOB), (BOB, ALICE)):
        await im.put_item(owner, RosterItem(other))
        await im.set_request(owner, CAROL, b"<presence/>")
        await im.store_offline(owner, b"<m/>", limit=10)
        await im.block(owner, ["spam@example.com"])
        await im.set_vcard(owner, b"<vCard/>")
    await im.forget(ALICE_DESK)
    await _only_bob_is_left(im)
    await _only_bob_is_left(backend.reopen().im)


async def _only_bob_is_left(im: ImStore) -> None:
    assert (im.roster(ALICE), im.version(ALICE), im.requests(ALICE)) == ({}, 0, {})
    assert im.blocklist(ALICE) == set() and await im.vcard(ALICE) is None
    assert im.roster(BOB) == {ALICE: RosterItem(ALICE)} and im.version(BOB) == 1
    assert im.has_request(BOB, CAROL) and im.has_blocklist(BOB)
    assert await im.vcard(BOB) == b"<vCard/>"
    assert await im.take_offline(ALICE) == []
    assert await im.take_offline(BOB) == [b"<m/>"]
    await im.store_offline(BOB, b"<m/>", limit=10)  # put back for the next look

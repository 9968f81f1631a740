"""PrivateStore contract: fragments per (bare owner, namespace, name), quota, deletion."""

from __future__ import annotations

import pytest

from pubsubd.jid import JID
from pubsubd.storage.interfaces import PrivateStore

from .backend_params import Backend

ALICE = JID.parse("alice@example.org")
BOB = JID.parse("bob@example.org")
BOOKMARKS = ("storage:bookmarks", "storage")
ROSTERNOTES = ("storage:rosternotes", "storage")


@pytest.fixture
def private(backend: Backend) -> PrivateStore:
    return backend.stores.private


async def test_fragments_are_keyed_by_namespace_and_name(private: PrivateStore) -> None:
    assert await private.get(ALICE, *BOOKMARKS) is None
    assert await private.put(JID.parse("alice@example.org/desk"), [
        (*BOOKMARKS, b"<storage xmlns='storage:bookmarks'/>"),
        (*ROSTERNOTES, b"<storage xmlns='storage:rosternotes'/>"),
        ("storage:bookmarks", "other", b"<other/>"),
    ], max_entries=10)
    assert await private.get(ALICE, *BOOKMARKS) == b"<storage xmlns='storage:bookmarks'/>"
    assert await private.get(ALICE, "storage:bookmarks", "other") == b"<other/>"
    assert await private.get(JID.parse("alice@example.org/phone"), *ROSTERNOTES) == (
        b"<storage xmlns='storage:rosternotes'/>")
    assert await private.get(BOB, *BOOKMARKS) is None
    assert await private.get(ALICE, "storage:other", "storage") is None


async def test_put_replaces_the_same_key(private: PrivateStore) -> None:
    assert await private.put(ALICE, [(*BOOKMARKS, b"<old/>")], max_entries=1)
    assert await private.put(ALICE, [(*BOOKMARKS, b"<new/>")], max_entries=1)  # no new entry
    assert await private.get(ALICE, *BOOKMARKS) == b"<new/>"


async def test_a_put_beyond_the_quota_stores_nothing(private: PrivateStore) -> None:
    assert await private.put(ALICE, [(*BOOKMARKS, b"<a/>")], max_entries=2)
    assert not await private.put(ALICE, [(*BOOKMARKS, b"<b/>"), (*ROSTERNOTES, b"<c/>"),
                                         ("x", "y", b"<d/>")], max_entries=2)
    assert await private.get(ALICE, *BOOKMARKS) == b"<a/>"  # unchanged: all or nothing
    assert await private.get(ALICE, *ROSTERNOTES) is None
    assert await private.put(BOB, [(*BOOKMARKS, b"<e/>"), (*ROSTERNOTES, b"<f/>")],
                             max_entries=2)  # the quota is per owner


async def test_a_put_beyond_the_byte_quota_stores_nothing(private: PrivateStore) -> None:
    assert await private.put(ALICE, [(*BOOKMARKS, b"x" * 60)], 10, max_bytes=100)
    assert not await private.put(ALICE, [(*ROSTERNOTES, b"y" * 60)], 10, max_bytes=100)
    assert await private.get(ALICE, *ROSTERNOTES) is None
    # Replacing a fragment counts its new size, not both.
    assert await private.put(ALICE, [(*BOOKMARKS, b"z" * 90)], 10, max_bytes=100)
    assert await private.put(BOB, [(*BOOKMARKS, b"w" * 100)], 10, max_bytes=100)


async def test_forget_and_durability(backend: Backend) -> None:
    private = backend.stores.private
    await private.put(ALICE, [(*BOOKMARKS, b"<a/>")], max_entries=5)
    await private.put(BOB, [(*BOOKMARKS, b"<b/>")], max_entries=5)
    await private.forget(JID.parse("alice@example.org/desk"))
    private = backend.reopen().private
    assert await private.get(ALICE, *BOOKMARKS) is None
    assert await private.get(BOB, *BOOKMARKS) == b"<b/>"
    assert await private.put(ALICE, [(*BOOKMARKS, b"<1/>"), (*ROSTERNOTES, b"<2/>")],
                             max_entries=2)  # forgotten entries no longer count

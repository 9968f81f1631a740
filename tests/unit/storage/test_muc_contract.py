"""MucStore contract: persistent rooms round-trip, replace, delete, public listing, durability."""

from __future__ import annotations

import pytest

from pubsubd.storage.interfaces import MucStore, StoredRoom

from .backend_params import Backend

ROOM = "coffee@conference.example.org"


@pytest.fixture
def muc(backend: Backend) -> MucStore:
    return backend.stores.muc


def room(jid: str = ROOM, **config: object) -> StoredRoom:
    return StoredRoom(
        jid, {"name": "Coffee", "members_only": False, "max_users": 30, "owners": ["a"],
              **config},
        "Beans", "alice", {"alice@example.org": "owner", "bob@example.org": "member"})


async def test_rooms_round_trip_and_share_nothing_with_the_caller(muc: MucStore) -> None:
    assert await muc.load(ROOM) is None
    saved = room()
    await muc.save(saved)
    loaded = await muc.load(ROOM)
    assert loaded == saved
    assert loaded is not None
    loaded.config["name"] = "changed"
    loaded.affiliations.clear()
    saved.config["owners"].append("b")  # type: ignore[attr-defined]
    assert await muc.load(ROOM) == room()


async def test_save_replaces_configuration_subject_and_every_affiliation(muc: MucStore) -> None:
    await muc.save(room())
    newer = StoredRoom(ROOM, {"name": "Tea"}, "", "", {"carol@example.net": "admin"})
    await muc.save(newer)
    assert await muc.load(ROOM) == newer


async def test_delete_removes_the_room_and_its_affiliations(muc: MucStore) -> None:
    await muc.save(room())
    await muc.save(room("tea@conference.example.org"))
    await muc.delete(ROOM)
    await muc.delete(ROOM)  # deleting twice is harmless
    assert await muc.load(ROOM) is None
    await muc.save(StoredRoom(ROOM, {}))
    assert await muc.load(ROOM) == StoredRoom(ROOM, {})  # no affiliation came back
    assert await muc.load("tea@conference.example.org") == room("tea@conference.example.org")


async def test_public_rooms_are_the_stored_rooms_not_marked_hidden(muc: MucStore) -> None:
    assert await muc.public_rooms() == []
    await muc.save(room())
    await muc.save(room("hidden@conference.example.org", public=False))
    await muc.save(StoredRoom("plain@conference.example.org", {"public": True}))
    await muc.save(StoredRoom("bare@conference.example.org", {"name": None}))
    assert sorted(await muc.public_rooms()) == [
        ("bare@conference.example.org", ""),
        (ROOM, "Coffee"),
        ("plain@conference.example.org", ""),
    ]


async def test_rooms_survive_reopening(backend: Backend) -> None:
    await backend.stores.muc.save(room())
    muc = backend.reopen().muc
    assert await muc.load(ROOM) == room()
    assert await muc.public_rooms() == [(ROOM, "Coffee")]


async def test_registered_nicks_belong_to_affiliated_users(backend: Backend) -> None:
    """XEP-0045 §7.10: a registered nick is kept with its user's affiliation, and only then."""
    muc = backend.stores.muc
    stored = StoredRoom(ROOM, {}, affiliations={"bob@example.org": "member"},
                        nicks={"bob@example.org": "bobby", "eve@example.org": "eve"})
    await muc.save(stored)
    expected = StoredRoom(ROOM, {}, affiliations={"bob@example.org": "member"},
                          nicks={"bob@example.org": "bobby"})
    assert await muc.load(ROOM) == expected
    assert await backend.reopen().muc.load(ROOM) == expected


async def test_count_owned_counts_the_stored_rooms_a_user_owns(backend: Backend) -> None:
    """The rooms-per-user quota: only ``owner`` affiliations count, each room once, and
    replaced or deleted rooms stop counting."""
    muc = backend.stores.muc
    assert await muc.count_owned("alice@example.org") == 0
    await muc.save(room())
    await muc.save(room("tea@conference.example.org"))
    await muc.save(StoredRoom("other@conference.example.org", {},
                              affiliations={"alice@example.org": "admin"}))
    assert await muc.count_owned("alice@example.org") == 2
    assert await muc.count_owned("bob@example.org") == 0  # a member owns nothing
    await muc.save(StoredRoom(ROOM, {}, affiliations={"bob@example.org": "owner"}))
    await muc.delete("tea@conference.example.org")
    assert await muc.count_owned("alice@example.org") == 0
    assert await muc.count_owned("bob@example.org") == 1
    assert await backend.reopen().muc.count_owned("bob@example.org") == 1

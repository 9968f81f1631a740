"""FeedContactStore and FeedMarkStore contracts (the feed service's own state), over every
backend."""

from __future__ import annotations

from pubsubd.storage.interfaces import FeedContactStore, FeedMarkStore

from .backend_params import Backend


def contacts_of(backend: Backend) -> FeedContactStore:
    return backend.stores.feed_contacts


def marks_of(backend: Backend) -> FeedMarkStore:
    return backend.stores.feed_marks


async def test_contact_names_are_added_replaced_and_forgotten(backend: Backend) -> None:
    contacts = contacts_of(backend)
    assert await contacts.load() == {}
    await contacts.add("news", "https://e.org/feed")
    await contacts.add("blog", "https://b.org/atom")
    assert await contacts.load() == {"news": "https://e.org/feed", "blog": "https://b.org/atom"}
    await contacts.forget("https://e.org/feed")
    assert await contacts.load() == {"blog": "https://b.org/atom"}
    await contacts.forget("https://never.example/")  # unknown: nothing happens
    assert await contacts.load() == {"blog": "https://b.org/atom"}


async def test_contact_names_survive_reopening(backend: Backend) -> None:
    await contacts_of(backend).add("news", "https://e.org/feed")
    assert await backend.reopen().feed_contacts.load() == {"news": "https://e.org/feed"}


async def test_marks_change_one_flag_at_a_time(backend: Backend) -> None:
    marks = marks_of(backend)
    assert await marks.get("f") == (False, False)
    await marks.set("f", pinned=True)
    assert await marks.get("f") == (True, False)
    await marks.set("f", idle=True)
    assert await marks.get("f") == (True, True)
    await marks.set("f", pinned=False)
    assert await marks.get("f") == (False, True)
    await marks.set("f")  # nothing to change
    assert await marks.get("f") == (False, True)
    assert await marks.get("g") == (False, False)
    await marks.forget("f")
    assert await marks.get("f") == (False, False)


async def test_marks_survive_reopening(backend: Backend) -> None:
    await marks_of(backend).set("f", pinned=True, idle=True)
    assert await backend.reopen().feed_marks.get("f") == (True, True)

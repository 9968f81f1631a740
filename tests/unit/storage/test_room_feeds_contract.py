"""RoomFeedStore contract (feeds posted into group chat rooms), over every backend."""

from __future__ import annotations

from pubsubd.storage.interfaces import RoomFeed

from .backend_params import Backend

NEWS = RoomFeed("lounge@conference.example.org", "https://e.org/feed", "News", "o@example.org")
BLOG = RoomFeed("lounge@conference.example.org", "https://b.org/atom", "Blog", "o@example.org")
AWAY = RoomFeed("den@muc.other.example", "https://e.org/feed", "News", "x@other.example")


async def test_room_feeds_are_keyed_by_room_and_node(backend: Backend) -> None:
    store = backend.stores.room_feeds
    assert await store.list_all() == []
    for feed in (NEWS, BLOG, AWAY):
        await store.put(feed)
    assert await store.list_all() == [AWAY, BLOG, NEWS]
    renamed = RoomFeed(NEWS.room, NEWS.node, "News 2", "a@example.org")
    await store.put(renamed)  # same (room, node): replaced, not added
    assert await store.list_all() == [AWAY, BLOG, renamed]
    assert await store.remove(NEWS.room, NEWS.node)
    assert not await store.remove(NEWS.room, NEWS.node)
    assert await store.list_all() == [AWAY, BLOG]


async def test_room_feeds_survive_reopening(backend: Backend) -> None:
    await backend.stores.room_feeds.put(NEWS)
    assert await backend.reopen().room_feeds.list_all() == [NEWS]

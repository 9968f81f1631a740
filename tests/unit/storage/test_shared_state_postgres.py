"""Two instances on one PostgreSQL database: what one writes, the other's caches see.

Each test opens the stores twice on the same database, as two pubsubd processes would, runs the
second one's invalidation listener, writes through the first, and waits for the second to have
heard the change (a handler subscribed after the store's own is called after it) before reading.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import trio

from pubsubd.composition import KnownAccounts
from pubsubd.config import StorageConfig
from pubsubd.core.hooks import HookBus
from pubsubd.core.session import SessionRegistry
from pubsubd.jid import JID
from pubsubd.pubsub.model import Affiliation, Node, NodeConfig, Subscription
from pubsubd.pubsub.store import NewItem
from pubsubd.storage.backends import Stores, open_backend
from pubsubd.storage.interfaces import InvalidationHandler, Prefs, RosterItem
from pubsubd.storage.postgres.invalidation import PgInvalidation

SERVICE = "pubsub.example.org"
ALICE, BOB, CAROL = (JID.parse(f"{who}@example.org") for who in ("alice", "bob", "carol"))


class Heard:
    """The changes an instance heard, in order, with a way to wait for the next one."""

    def __init__(self, stores: Stores, *kinds: str) -> None:
        self.keys: list[tuple[str, str | None]] = []
        self._changed = trio.Event()
        for kind in kinds:
            stores.invalidation.subscribe(kind, self._recorder(kind))

    def _recorder(self, kind: str) -> InvalidationHandler:
        async def record(key: str | None) -> None:
            self.keys.append((kind, key))
            self._changed.set()
            self._changed = trio.Event()

        return record

    async def until(self, kind: str, key: str | None, *more_kinds: str) -> None:
        """Wait until ``key`` of ``kind`` (and of each of ``more_kinds``) was heard."""
        wanted = {(k, key) for k in (kind, *more_kinds)}
        with trio.fail_after(10):
            while not wanted <= set(self.keys):
                await self._changed.wait()
        self.keys.clear()


KINDS = ("pubsub", "im", "mam_prefs", "account", "feed_contact", "motd")


class Pair:
    def __init__(self, a: Stores, b: Stores) -> None:
        self.a, self.b = a, b
        self.heard = Heard(b, *KINDS)

    @property
    def listener(self) -> PgInvalidation:
        bus = self.b.invalidation
        assert isinstance(bus, PgInvalidation)
        return bus


@pytest.fixture
async def pair(pg_url: str, tmp_path: Path) -> AsyncIterator[Pair]:
    settings = StorageConfig(url=pg_url)
    a = open_backend(settings, tmp_path)
    b = open_backend(settings, tmp_path)
    try:
        pair = Pair(a, b)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.invalidation.run)
            await trio.testing.wait_all_tasks_blocked()
            yield pair
            nursery.cancel_scope.cancel()
    finally:
        a.close()
        b.close()


def node_key(node_id: str) -> str:
    return json.dumps([SERVICE, node_id])


async def make_node(pair: Pair, node_id: str) -> None:
    assert await pair.a.pubsub.create_node(Node(SERVICE, node_id, creator="owner@example.org"),
                                           "owner@example.org")
    await pair.heard.until("pubsub", node_key(node_id))


async def test_a_subscription_made_through_one_instance_is_seen_by_the_other(pair: Pair) -> None:
    await make_node(pair, "news")
    assert await pair.b.pubsub.list_subscriptions(SERVICE, "news") == []  # now cached on B
    sub = Subscription("news", "alice@example.org/phone", "s1")
    await pair.a.pubsub.put_subscription(SERVICE, sub)
    await pair.heard.until("pubsub", node_key("news"))
    assert await pair.b.pubsub.list_subscriptions(SERVICE, "news") == [sub]
    assert await pair.a.pubsub.delete_subscription(SERVICE, "news", "s1")
    await pair.heard.until("pubsub", node_key("news"))
    assert await pair.b.pubsub.list_subscriptions(SERVICE, "news") == []


async def test_the_same_subscription_objects_are_handed_out_until_one_changes(pair: Pair) -> None:
    # The fan-out reuses its delivery candidates while the objects are the same ones.
    await make_node(pair, "news")
    await pair.a.pubsub.put_subscription(SERVICE, Subscription("news", "alice@example.org", "s1"))
    await pair.heard.until("pubsub", node_key("news"))
    first = await pair.b.pubsub.list_subscriptions(SERVICE, "news")
    again = await pair.b.pubsub.list_subscriptions(SERVICE, "news")
    assert all(x is y for x, y in zip(first, again, strict=True))
    await pair.a.pubsub.put_subscription(SERVICE, Subscription("news", "bob@example.org", "s2"))
    await pair.heard.until("pubsub", node_key("news"))
    changed = await pair.b.pubsub.list_subscriptions(SERVICE, "news")
    assert [s.subid for s in changed] == ["s1", "s2"]


async def test_affiliation_and_configuration_changes_are_announced_and_read(pair: Pair) -> None:
    await make_node(pair, "news")
    await pair.a.pubsub.set_affiliation(SERVICE, "news", "bob@example.org", Affiliation.OUTCAST)
    await pair.heard.until("pubsub", node_key("news"))
    assert await pair.b.pubsub.get_affiliation(SERVICE, "news",
                                               "bob@example.org") is Affiliation.OUTCAST
    node = await pair.a.pubsub.get_node(SERVICE, "news")
    assert node is not None
    await pair.a.pubsub.update_node(replace(node, config=NodeConfig(title="Changed")))
    await pair.heard.until("pubsub", node_key("news"))
    seen = await pair.b.pubsub.get_node(SERVICE, "news")
    assert seen is not None and seen.config.title == "Changed"


async def test_a_deleted_node_takes_its_cached_subscriptions_along(pair: Pair) -> None:
    await make_node(pair, "news")
    await pair.a.pubsub.put_subscription(SERVICE, Subscription("news", "alice@example.org", "s1"))
    await pair.heard.until("pubsub", node_key("news"))
    assert len(await pair.b.pubsub.list_subscriptions(SERVICE, "news")) == 1
    await pair.a.pubsub.delete_node(SERVICE, "news")
    await pair.heard.until("pubsub", node_key("news"))
    assert await pair.b.pubsub.get_node(SERVICE, "news") is None
    assert await pair.b.pubsub.list_subscriptions(SERVICE, "news") == []


async def test_items_are_read_from_the_database_so_a_publish_needs_no_notice(pair: Pair) -> None:
    await make_node(pair, "news")
    now = datetime.now(UTC)
    await pair.a.pubsub.put_items(SERVICE, "news", [NewItem("i1", "<x/>", "a@b", now)], 10)
    assert [i.item_id for i in await pair.b.pubsub.get_items(SERVICE, "news")] == ["i1"]


async def test_roster_requests_and_blocklist_changes_reach_the_other_instance(pair: Pair) -> None:
    a, b = pair.a.im, pair.b.im
    await a.put_item(ALICE, RosterItem(BOB, "Bob", ("Friends",), "both"))
    await pair.heard.until("im", str(ALICE))
    assert b.item(ALICE, BOB) == RosterItem(BOB, "Bob", ("Friends",), "both")
    assert b.version(ALICE) == a.version(ALICE)
    await a.remove_item(ALICE, BOB)
    await pair.heard.until("im", str(ALICE))
    assert b.roster(ALICE) == {}
    assert b.changes_since(ALICE, 0) is None  # changed elsewhere: the whole roster, no log
    await a.set_request(ALICE, CAROL, b"<presence type='subscribe'/>")
    await pair.heard.until("im", str(ALICE))
    assert b.has_request(ALICE, CAROL)
    await a.block(ALICE, ["spam@example.net"])
    await pair.heard.until("im", str(ALICE))
    assert b.blocklist(ALICE) == {"spam@example.net"}
    await a.unblock(ALICE, None)
    await pair.heard.until("im", str(ALICE))
    assert not b.has_blocklist(ALICE)


async def test_archiving_preferences_changed_elsewhere_apply(pair: Pair) -> None:
    prefs = Prefs("never", frozenset({"bob@example.org"}), frozenset())
    await pair.a.mam.set_prefs(ALICE, prefs)
    await pair.heard.until("mam_prefs", str(ALICE))
    assert pair.b.mam.prefs(ALICE) == prefs


async def test_an_instance_does_not_hear_its_own_changes(pair: Pair) -> None:
    await pair.b.im.put_item(ALICE, RosterItem(BOB))
    await pair.a.im.put_item(ALICE, RosterItem(CAROL))  # heard after B's own, if B heard that
    await pair.heard.until("im", str(ALICE))
    assert pair.listener.heard == 1
    assert set(pair.b.im.roster(ALICE)) == {BOB, CAROL}


async def test_a_lost_listener_stops_caching_and_reloads_everything_once_back(pair: Pair,
                                                                       pg_url: str) -> None:
    await make_node(pair, "news")
    assert await pair.b.pubsub.list_subscriptions(SERVICE, "news") == []  # cached on B
    assert pair.listener.live
    pid = pair.listener.backend_pid
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # Changes nobody announces: only a reload after the reconnection can bring them.
        admin.execute("INSERT INTO roster_items (owner, contact) VALUES (%s, %s)",
                      (str(ALICE), str(BOB)))
        admin.execute("INSERT INTO pubsub_subscriptions (service, node, subid, jid, bare_jid,"
                      " state, options) VALUES (%s, 'news', 's9', %s, %s, 'subscribed', '{}')",
                      (SERVICE, str(ALICE), str(ALICE)))
    # Back: anything may have changed, so every cache reloaded.
    await pair.heard.until("im", None, *KINDS)
    assert pair.listener.live and pair.listener.backend_pid not in (None, pid)
    assert pair.b.im.item(ALICE, BOB) is not None
    assert [s.subid for s in await pair.b.pubsub.list_subscriptions(SERVICE, "news")] == ["s9"]


async def test_an_instance_sees_its_own_writes_at_once_while_it_caches(pair: Pair) -> None:
    await make_node(pair, "news")
    assert pair.listener.live
    assert await pair.b.pubsub.list_subscriptions(SERVICE, "news") == []  # cached
    sub = Subscription("news", "alice@example.org", "s1")
    await pair.b.pubsub.put_subscription(SERVICE, sub)
    assert await pair.b.pubsub.list_subscriptions(SERVICE, "news") == [sub]
    await pair.b.pubsub.delete_subscription(SERVICE, "news", "s1")
    assert await pair.b.pubsub.list_subscriptions(SERVICE, "news") == []


async def test_an_account_deleted_elsewhere_is_no_longer_known_to_exist(pair: Pair) -> None:
    known = KnownAccounts(pair.b.accounts, SessionRegistry(), HookBus(), pair.b.invalidation)
    await pair.a.accounts.create("alice", "example.org", "pw")
    assert await known.exists(ALICE)  # remembered from now on
    assert await pair.a.accounts.delete("alice", "example.org")
    await pair.heard.until("account", str(ALICE))
    assert not await known.exists(ALICE)


async def test_feed_contact_names_are_announced(pair: Pair) -> None:
    await pair.a.feed_contacts.add("near-news", "feed-1")
    await pair.heard.until("feed_contact", "feed-1")
    assert await pair.b.feed_contacts.load() == {"near-news": "feed-1"}
    await pair.a.feed_contacts.forget("feed-1")
    await pair.heard.until("feed_contact", "feed-1")


async def test_a_message_of_the_day_set_elsewhere_is_announced(pair: Pair) -> None:
    await pair.a.motd.set("Maintenance at noon")
    await pair.heard.until("motd", None)  # one MOTD: no key
    assert await pair.b.motd.get() == "Maintenance at noon"


async def test_cached_subscriptions_are_checked_on_every_use_so_no_notice_can_be_late(
        pair: Pair, pg_url: str, tmp_path: Path) -> None:
    # A third instance that hears nothing: what a client was told by A must still count at its
    # very next fan-out, before any notification could arrive.
    deaf = open_backend(StorageConfig(url=pg_url), tmp_path)
    try:
        await make_node(pair, "news")
        assert await deaf.pubsub.list_subscriptions(SERVICE, "news") == []  # cached
        first = Subscription("news", "alice@example.org", "s1")
        await pair.a.pubsub.put_subscription(SERVICE, first)
        assert await deaf.pubsub.list_subscriptions(SERVICE, "news") == [first]
        cached = await deaf.pubsub.list_subscriptions(SERVICE, "news")
        assert cached[0] is (await deaf.pubsub.list_subscriptions(SERVICE, "news"))[0]
        await pair.a.pubsub.put_subscription(SERVICE, replace(first, jid="alice@example.org/x"))
        assert [s.jid for s in await deaf.pubsub.list_subscriptions(SERVICE, "news")] == [
            "alice@example.org/x"]
        await pair.a.pubsub.put_subscription(SERVICE, Subscription("news", "b@example.org", "s2"))
        await pair.a.pubsub.delete_subscription(SERVICE, "news", "s1")
        assert [s.subid for s in await deaf.pubsub.list_subscriptions(SERVICE, "news")] == ["s2"]
    finally:
        deaf.close()

"""The fan-out of an instance sharing its PostgreSQL database with another: a subscription made
through the other instance reaches this one's next publish (its cached subscriptions and
delivery candidates of the node are dropped on the other's NOTIFY), and a deleted one stops
receiving."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import trio

from pubsubd.modules.shared_state import SharedStateModule
from pubsubd.pubsub.model import NodeConfig, PublishModel
from pubsubd.pubsub.service import PubSubService, ServiceConfig
from pubsubd.storage.postgres import PgDatabase, PgPubSubStore

from .conftest import OWNER, SERVICE, Clock, Presence, Roster

READER = "reader@example.org"
NODE_KEY = json.dumps([SERVICE, "news"])


def service_on(db: PgDatabase) -> PubSubService:
    online = Presence(shows={f"{READER}/phone": "online"})
    return PubSubService(PgPubSubStore(db), Roster(), online, service=SERVICE,
                         config=ServiceConfig(local_domains=frozenset({"example.org"})),
                         clock=Clock())


class Instances:
    def __init__(self, url: str) -> None:
        self.dbs = [PgDatabase(url, max_connections=2) for _ in range(2)]
        self.a, self.b = (service_on(db) for db in self.dbs)
        self.heard = trio.Event()

        async def heard(key: str | None) -> None:  # called after the store's and the module's
            if key == NODE_KEY:
                self.heard.set()

        self.module = SharedStateModule(invalidation=self.dbs[1].invalidation,
                                        services=lambda jid: self.b if jid == SERVICE else None)
        self.module.setup()
        self.dbs[1].invalidation.subscribe("pubsub", heard)

    async def through_a(self, change: object) -> None:
        """Wait until B heard of the change A made to the node."""
        self.heard = trio.Event()
        await change  # type: ignore[misc]
        with trio.fail_after(10):
            await self.heard.wait()

    async def publish_through_b(self, item_id: str) -> set[str]:
        outcome = await self.b.publish(OWNER, "news", f"<entry id='{item_id}'/>", item_id)
        return {r.address for n in outcome.notifications for r in n.recipients}


@pytest.fixture
async def instances(pg_url: str) -> AsyncIterator[Instances]:
    pair = Instances(pg_url)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pair.module.run)
            await trio.testing.wait_all_tasks_blocked()
            yield pair
            nursery.cancel_scope.cancel()
    finally:
        for db in pair.dbs:
            db.close()


async def test_a_subscription_made_elsewhere_reaches_the_next_publish(
        instances: Instances) -> None:
    await instances.through_a(instances.a.create_node(
        OWNER, "news", config=NodeConfig(publish_model=PublishModel.OPEN)))
    assert await instances.publish_through_b("before") == set()  # B's candidates: none
    await instances.through_a(instances.a.subscribe(READER, "news", READER))
    assert await instances.publish_through_b("first") == {READER}
    subs = await instances.a.store.list_subscriptions(SERVICE, "news")
    await instances.through_a(instances.a.unsubscribe(READER, "news", READER, subs[0].subid))
    assert await instances.publish_through_b("second") == set()

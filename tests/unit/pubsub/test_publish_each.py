"""Pipelined publishes stored together (group commit): one write for the burst, and for each
publish the outcome it would have had published on its own, in order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pubsubd.pubsub.batch import PipelinedPublish
from pubsubd.pubsub.errors import PubSubError
from pubsubd.pubsub.outcomes import PublishOutcome
from pubsubd.pubsub.service import PubSubService, ServiceConfig
from pubsubd.pubsub.store import MemoryPubSubStore, NewItem, PutResult

from .conftest import OWNER, Clock, Presence, Roster

BOB, CAROL = "bob@example.org", "carol@example.org"
NODE = "news"


class CountingStore(MemoryPubSubStore):
    """The memory store, counting the transactions that write items."""

    def __init__(self) -> None:
        super().__init__()
        self.item_writes = 0

    async def put_items(self, service: str, node_id: str, items: Sequence[NewItem],
                        max_items: int | None) -> PutResult:
        self.item_writes += 1
        return await super().put_items(service, node_id, items, max_items)

    async def put_items_each(self, service: str, node_id: str, items: Sequence[NewItem],
                             max_items: int | None) -> list[PutResult]:
        self.item_writes += 1
        return await super().put_items_each(service, node_id, items, max_items)


class CountingPresence(Presence):
    """Presence that counts how often delivery asks for an account's resources."""

    asked: int = 0

    def available_resources(self, bare_jid: str) -> Mapping[str, str]:
        self.asked += 1
        return super().available_resources(bare_jid)


async def world() -> tuple[PubSubService, CountingStore, CountingPresence]:
    store = CountingStore()
    presence = CountingPresence({f"{BOB}/desk": "online", f"{CAROL}/desk": "away"})
    service = PubSubService(store, Roster(), presence, service="pubsub.example.org",
                            config=ServiceConfig(local_domains=frozenset({"example.org"})),
                            clock=Clock())
    # Two items at most, so the burst trims (and notifies retractions) as it goes; Carol
    # only wants items about "rust", and gets hers while online only.
    await service.create_node(OWNER, NODE, {"pubsub#max_items": ["2"],
                                            "pubsub#presence_based_delivery": ["true"]})
    await service.subscribe(BOB, NODE, BOB)
    await service.subscribe(CAROL, NODE, CAROL)
    return service, store, presence


BURST = [
    PipelinedPublish(OWNER, "a", "<e>a</e>", "all about rust"),
    PipelinedPublish(OWNER, "b", "<e>b</e>", "nothing"),
    PipelinedPublish(BOB, "c", "<e>c</e>", "bob is no publisher"),  # §7.1.3.1 forbidden
    PipelinedPublish(OWNER, "d", "x" * 70_000, "too big"),  # §7.1.3.5
    PipelinedPublish(OWNER, "a", "<e>a2</e>", "rust again"),  # replaces "a"
    PipelinedPublish(OWNER, "e", "<e>e</e>", "more rust"),
]


def summary(outcome: PublishOutcome | PubSubError) -> object:
    if isinstance(outcome, PubSubError):
        return ("error", outcome.condition, outcome.pubsub_condition)
    return (outcome.item_id, [
        (n.kind.value, [i.item_id for i in n.items], list(n.item_ids),
         sorted(r.address for r in n.recipients))
        for n in outcome.notifications])


async def one_by_one(service: PubSubService) -> list[object]:
    found: list[object] = []
    for p in BURST:
        try:
            outcome: PublishOutcome | PubSubError = await service.publish(
                p.requester, NODE, p.payload, p.item_id, text=p.text)
        except PubSubError as error:
            outcome = error
        found.append(summary(outcome))
    return found


async def test_a_burst_is_one_write_with_the_outcomes_of_one_publish_after_the_other() -> None:
    alone, _, _ = await world()
    expected = await one_by_one(alone)
    service, store, _ = await world()
    writes = store.item_writes
    outcomes = await service.publish_each(NODE, BURST)
    assert store.item_writes - writes == 1
    assert [summary(o) for o in outcomes] == expected
    assert [i.item_id for i in await store.get_items("pubsub.example.org", NODE)] == ["e", "a"]
    # The example is what it claims: refusals, a retraction, and items to both subscribers.
    kinds = {k for s in expected if s[0] != "error" for k, *_ in s[1]}  # type: ignore[index]
    assert kinds == {"items", "retract"}
    assert sum(1 for s in expected if s[0] == "error") == 2  # type: ignore[index]


async def test_presence_is_asked_once_per_subscriber_and_burst() -> None:
    alone, _, presence = await world()
    before = presence.asked
    await one_by_one(alone)
    asked_one_by_one = presence.asked - before
    service, _, presence = await world()
    before = presence.asked
    await service.publish_each(NODE, BURST)
    # Retractions are planned as they happen; the items' plan once for the burst.
    assert presence.asked - before < asked_one_by_one


async def test_a_missing_node_is_created_by_the_first_publish_as_alone() -> None:
    service, store, _ = await world()
    outcomes = await service.publish_each("fresh", [
        PipelinedPublish(OWNER, "x", "<e>x</e>"), PipelinedPublish(OWNER, "y", "<e>y</e>")])
    assert [o.item_id for o in outcomes if isinstance(o, PublishOutcome)] == ["x", "y"]
    assert [i.item_id for i in await store.get_items("pubsub.example.org", "fresh")] == ["y", "x"]

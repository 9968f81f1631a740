"""PushStore contract (XEP-0357 registrations), on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from pubsubd.storage.interfaces import PushRegistration

from .backend_params import Backend

ALICE, BOB = "alice@example.org", "bob@example.org"
FORM = b"<x xmlns='jabber:x:data' type='submit'/>"


def reg(service: str, node: str, options: bytes = b"", owner: str = ALICE) -> PushRegistration:
    return PushRegistration(owner, service, node, options)


async def test_registrations_are_kept_per_owner_in_enabling_order(backend: Backend) -> None:
    push = backend.stores.push
    assert await push.registrations(ALICE) == []
    await push.put(reg("push.one", "n1", FORM))
    await push.put(reg("push.two", ""))
    await push.put(reg("push.one", "n2"))
    await push.put(reg("push.one", "n1", b"", owner=BOB))
    # Enabling the same service and node again replaces the options (XEP-0357 §5).
    await push.put(reg("push.one", "n1", b"<new/>"))
    expected = [reg("push.one", "n1", b"<new/>"), reg("push.two", ""), reg("push.one", "n2")]
    assert await push.registrations(ALICE) == expected
    push = backend.reopen().push  # durable: a phone enables push once
    assert await push.registrations(ALICE) == expected
    assert await push.registrations(BOB) == [reg("push.one", "n1", owner=BOB)]


async def test_disable_one_node_or_a_whole_service_and_forget(backend: Backend) -> None:
    push = backend.stores.push
    for service, node in (("push.one", "n1"), ("push.one", "n2"), ("push.two", "n1")):
        await push.put(reg(service, node))
    await push.put(reg("push.one", "n1", owner=BOB))
    assert await push.remove(ALICE, "push.one", "n2") == 1
    assert await push.remove(ALICE, "push.one", "missing") == 0
    assert [r.node for r in await push.registrations(ALICE)] == ["n1", "n1"]
    assert await push.remove(ALICE, "push.one") == 1  # §6: no node, every node of it
    assert await push.registrations(ALICE) == [reg("push.two", "n1")]
    await push.forget(ALICE)
    assert await push.registrations(ALICE) == []
    assert await push.registrations(BOB) == [reg("push.one", "n1", owner=BOB)]


async def test_any_registered_tells_whether_anyone_enabled_push(backend: Backend) -> None:
    push = backend.stores.push
    assert not await push.any_registered()
    await push.put(reg("push.one", "n1"))
    await push.put(reg("push.one", "n1", owner=BOB))
    assert await push.any_registered()
    await push.forget(BOB)
    assert await backend.reopen().push.any_registered()
    await backend.stores.push.remove(ALICE, "push.one")
    assert not await backend.stores.push.any_registered()

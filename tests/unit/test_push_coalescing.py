"""XEP-0357 push decisions in process: which stored messages push, how a burst is counted into
few pushes, and what an app server's error does — on virtual time (trio's autojump clock), so
the coalescing window costs nothing. The app server is an in-process component that answers
every publish through the router, as an external one would."""

from __future__ import annotations

import trio
import trio.testing
from lxml import etree

from pubsubd import ns
from pubsubd.config import PushConfig
from pubsubd.core.disco_registry import DiscoRegistry
from pubsubd.core.hooks import HookBus
from pubsubd.core.router import Router, Stanza
from pubsubd.core.session import SessionRegistry
from pubsubd.jid import JID
from pubsubd.modules.xep0030_disco import DiscoModule
from pubsubd.modules.xep0357_push import PUSH, PushModule
from pubsubd.storage.interfaces import PushRegistration
from pubsubd.storage.memory import MemoryPushStore
from pubsubd.xml import builders

ALICE = "alice@example.org"
APP = "push.example"
WINDOW = 30.0


class Accounts:
    async def exists(self, jid: JID) -> bool:
        return True


class AppServer:
    """Records each publish's summary; answers with an error for node "broken"."""

    def __init__(self, router: Router) -> None:
        self.domain = APP
        self.router = router
        self.counts: list[tuple[str, int]] = []

    async def receive(self, st: Stanza) -> None:
        node = st.element.find(f".//{{{ns.PUBSUB}}}publish")
        assert node is not None
        summary = st.element.find(f".//{{{PUSH}}}notification")
        assert summary is not None
        count = summary.xpath(".//*[@var='message-count']/*/text()")
        self.counts.append((node.get("node", ""), int(count[0])))
        type_ = "error" if node.get("node") == "broken" else "result"
        reply = builders.iq(type_, to=str(st.from_), from_=APP, id_=st.element.get("id"))
        await self.router.route(Stanza(reply, JID.parse(APP), st.from_))


def message(body: str) -> etree._Element:
    return builders.message(to=ALICE, from_="bob@example.org/desk", type_="chat", body=body)


async def test_bursts_are_counted_and_batched_entries_push_nothing(
        autojump_clock: trio.testing.MockClock) -> None:
    sessions, hooks = SessionRegistry(), HookBus()
    router = Router(["example.org"], sessions, hooks, Accounts())
    app = AppServer(router)
    router.add_component(app)
    store = MemoryPushStore()
    module = PushModule(settings=PushConfig(coalesce=WINDOW), store=store, router=router,
                        hooks=hooks, sessions=sessions,
                        disco=DiscoModule(router=router, registry=DiscoRegistry()))
    module.setup()
    await store.put(PushRegistration(ALICE, APP, "phone", b""))
    await store.put(PushRegistration(ALICE, APP, "broken", b""))

    async def offline(body: str, *, deferrable: bool = False) -> None:
        stanza = Stanza(message(body), JID.parse("bob@example.org/desk"), JID.parse(ALICE),
                        deferrable=deferrable)
        assert not await hooks.fire("message/offline", stanza)  # storage still takes it

    async with trio.open_nursery() as nursery:
        nursery.start_soon(module.run)
        await offline("a feed entry, batched", deferrable=True)
        await trio.testing.wait_all_tasks_blocked()
        assert app.counts == []  # batched entries wake nobody

        await offline("first")
        await trio.testing.wait_all_tasks_blocked()
        # The first wakes every device at once (the two publishes run side by side).
        assert sorted(app.counts) == [("broken", 1), ("phone", 1)]
        # "broken" answered with an error: disabled (XEP-0357 §7.1).
        assert [r.node for r in await store.registrations(ALICE)] == ["phone"]

        for n in range(5):
            await offline(f"burst {n}")
        await trio.testing.wait_all_tasks_blocked()
        assert len(app.counts) == 2  # within the window: counted, not pushed
        await trio.sleep(WINDOW)
        await trio.testing.wait_all_tasks_blocked()
        assert app.counts[2:] == [("phone", 5)]
        nursery.cancel_scope.cancel()

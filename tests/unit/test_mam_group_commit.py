"""Archive writes are gathered into one transaction per burst (group commit), off the routing
path: a batch is written after a short delay, or at once when enough messages wait; a query
first writes what is queued.

Time is a MockClock that only moves when the test moves it, so "at once" means before any
delay could have passed.
"""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from pubsubd import ns
from pubsubd.app import Server
from pubsubd.config import loads
from pubsubd.core.session import Session
from pubsubd.jid import JID
from pubsubd.modules.xep0313_mam import FLUSH_DELAY, FLUSH_ROWS, MamModule
from pubsubd.storage.interfaces import Prefs, Query
from pubsubd.xml import builders

ALICE = JID.parse("alice@example.test/desk")
BOB = JID.parse("bob@example.test/phone")


def make_server(tmp_path: Path) -> Server:
    return Server(loads(f"""
domains: [example.test]
data_dir: {tmp_path / "var"}
storage: {{path: {tmp_path / "var" / "db.sqlite3"}}}
control: {{enabled: false}}
mam: {{max_messages_per_user: {FLUSH_ROWS}}}
"""), base_dir=tmp_path)


_inboxes: list[trio.MemoryReceiveChannel[bytes]] = []  # kept open while a test runs


def bind(srv: Server, jid: JID) -> Session:
    send, recv = trio.open_memory_channel[bytes](100_000)
    _inboxes.append(recv)
    session = Session(jid, send, lambda error: None)
    srv.ctx.sessions.add(session)
    return session


async def chat(srv: Server, sender: Session, count: int) -> None:
    for i in range(count):
        msg = builders.stanza("message", to=str(BOB), type_="chat")
        builders.child(msg, "jabber:client", "body").text = f"message {i}"
        await srv.ctx.router.route_from_client(sender, msg)


async def archived(mam: MamModule, owner: JID) -> int:
    """How many messages the store holds for ``owner`` (the store itself: no flush)."""
    await trio.testing.wait_all_tasks_blocked()  # a started write is queued on the database
    return (await mam.store.page(Query(owner.bare), 1)).count


def run_with_server(tmp_path: Path, test) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(tmp_path)
    mam = next(m for m in srv.modules if isinstance(m, MamModule))
    clock = trio.testing.MockClock()  # never moves by itself

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mam.run)
            await test(srv, mam, clock)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main, clock=clock)
    finally:
        srv.services.stores.close()


def test_a_full_batch_is_written_without_waiting(tmp_path: Path) -> None:
    async def test(srv: Server, mam: MamModule, clock: trio.testing.MockClock) -> None:
        alice, _ = bind(srv, ALICE), bind(srv, BOB)
        # Each message is one row for both archives: FLUSH_ROWS messages fill a batch.
        await chat(srv, alice, FLUSH_ROWS)
        assert await archived(mam, BOB) == FLUSH_ROWS
        assert await archived(mam, ALICE) == FLUSH_ROWS

    run_with_server(tmp_path, test)


def test_a_burst_waits_for_the_delay_or_a_query(tmp_path: Path) -> None:
    async def test(srv: Server, mam: MamModule, clock: trio.testing.MockClock) -> None:
        alice, _ = bind(srv, ALICE), bind(srv, BOB)
        await chat(srv, alice, 10)
        assert await archived(mam, BOB) == 0  # gathered, not yet written
        clock.jump(FLUSH_DELAY)
        assert await archived(mam, BOB) == 10
        await chat(srv, alice, 5)
        assert await archived(mam, BOB) == 10
        # A query of the archive sees every message routed before it.
        query = builders.iq("set", to=str(BOB.bare))
        builders.child(query, "urn:xmpp:mam:2", "query")
        await srv.ctx.router.route_from_client(srv.ctx.sessions.get(BOB), query)  # type: ignore[arg-type]
        assert await archived(mam, BOB) == 15

    run_with_server(tmp_path, test)


def test_a_message_between_two_local_archives_is_kept_once(tmp_path: Path) -> None:
    """One queued entry and one id for the sender's and the recipient's archive; a recipient
    whose preferences refuse the sender keeps nothing, the sender's copy stays."""

    async def test(srv: Server, mam: MamModule, clock: trio.testing.MockClock) -> None:
        alice, bob = bind(srv, ALICE), bind(srv, BOB)
        await chat(srv, alice, 1)
        assert len(mam._pending) == 1
        await mam._flush()
        ids = [(await mam.store.page(Query(owner.bare), 10)).rows[0].uid
               for owner in (ALICE, BOB)]
        assert ids[0] == ids[1]

        # Bob's client sets his preferences (XEP-0441 §3), as a client does.
        iq = builders.stanza("iq", type_="set", id_="prefs")
        prefs = builders.child(iq, ns.MAM, "prefs")
        prefs.set("default", "always")
        builders.child(builders.child(prefs, ns.MAM, "never"), ns.MAM, "jid").text = str(
            ALICE.bare)
        await srv.ctx.router.route_from_client(bob, iq)
        assert mam.store.prefs(BOB) == Prefs("always", never=frozenset({str(ALICE.bare)}))
        await chat(srv, alice, 1)
        await mam._flush()
        assert await archived(mam, ALICE) == 2
        assert await archived(mam, BOB) == 1

    run_with_server(tmp_path, test)

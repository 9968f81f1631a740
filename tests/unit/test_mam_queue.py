"""The archive's queue of messages waiting to be written: the store reads each message as an
ArchivedMessage carrying the sequence number of its id (which is also its stamp), and the
queue itself makes no object the garbage collector tracks per message."""

from __future__ import annotations

import gc
from pathlib import Path

import trio

from pubsubd.app import Server
from pubsubd.modules.xep0313_mam import MamModule
from pubsubd.storage.archive_ids import seq_of
from pubsubd.storage.interfaces import ArchivedMessage, Query
from pubsubd.xml import builders
from tests.unit.test_mam_group_commit import ALICE, BOB, bind, chat, make_server


def run(tmp_path: Path, test) -> None:  # type: ignore[no-untyped-def]
    srv = make_server(tmp_path)
    mam = next(m for m in srv.modules if isinstance(m, MamModule))
    try:
        trio.run(test, srv, mam)
    finally:
        srv.services.stores.close()


def test_queued_messages_read_back_with_their_ids_numbers(tmp_path: Path) -> None:
    async def test(srv: Server, mam: MamModule) -> None:
        alice, _ = bind(srv, ALICE), bind(srv, BOB)
        await chat(srv, alice, 3)
        queued = mam._pending
        assert len(queued) == 3
        messages = list(queued)
        assert [queued[i] for i in range(3)] == messages == list(queued[0:3])
        assert queued[-1] == messages[2]
        for m in messages:
            assert isinstance(m, ArchivedMessage)
            assert (m.owner, m.remote, m.sender) == (ALICE.bare, BOB, ALICE)
            assert m.seq == m.stamp == seq_of(m.uid)
            # Archived as sent, for both archives: the id is the result's (XEP-0313 §4.2),
            # not a stanza-id by one of the two parties inside the shared copy.
            assert m.stanza.startswith(b"<message") and b"stanza-id" not in m.stanza
        seqs = [m.stamp for m in messages]
        assert seqs == sorted(set(seqs))  # strictly growing
        await mam._flush()
        assert len(mam._pending) == 0
        page = await mam.store.page(Query(BOB.bare), 10)
        assert [(r.uid, r.stamp) for r in page.rows] == [(m.uid, m.stamp) for m in messages]

    run(tmp_path, test)


def test_queuing_makes_no_tracked_object_per_message(tmp_path: Path) -> None:
    async def test(srv: Server, mam: MamModule) -> None:
        alice, _ = bind(srv, ALICE), bind(srv, BOB)
        await chat(srv, alice, 10)  # every cache on the way is filled
        count = 500
        gc.collect()
        gc.disable()
        try:
            before = gc.get_count()[0]
            await chat(srv, alice, count)
            grown = gc.get_count()[0] - before
        finally:
            gc.enable()
        assert len(mam._pending) == count + 10
        assert grown < count // 2

    run(tmp_path, test)


def test_a_stanza_id_forged_for_the_recipient_is_not_archived(tmp_path: Path) -> None:
    """XEP-0359 §3 rule 2: a stanza-id a sender wrote claiming to be the recipient's archive
    is removed, from the delivered message and from the copy both archives share."""
    async def test(srv: Server, mam: MamModule) -> None:
        alice, _ = bind(srv, ALICE), bind(srv, BOB)
        msg = builders.stanza("message", to=str(BOB), type_="chat")
        builders.child(msg, "jabber:client", "body").text = "hello"
        forged = builders.child(msg, "urn:xmpp:sid:0", "stanza-id")
        forged.set("by", str(BOB.bare))
        forged.set("id", "forged")
        await srv.ctx.router.route_from_client(alice, msg)
        (queued,) = list(mam._pending)
        assert queued.sender == ALICE  # one entry for both archives
        assert b"forged" not in queued.stanza

    run(tmp_path, test)

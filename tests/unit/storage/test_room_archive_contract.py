"""MamStore as a room's archive (XEP-0313 on a MUC room): retractions leave a tombstone in
place of the message, at its position and with its id (XEP-0425), and survive a restart."""

from __future__ import annotations

from pubsubd.jid import JID
from pubsubd.storage.interfaces import ArchivedMessage, Query

from .backend_params import Backend

ROOM = JID.parse("lobby@conference.example.org")
OTHER_ROOM = JID.parse("other@conference.example.org")


def said(n: int, room: JID = ROOM) -> ArchivedMessage:
    return ArchivedMessage(room, f"id{n}", 1_000_000 * n, JID.parse(f"{room}/nick{n}"),
                           f"<message n='{n}'/>".encode())


async def test_a_retracted_message_keeps_its_place_and_id(backend: Backend) -> None:
    mam = backend.stores.mam
    await mam.append([said(1), said(2), said(3), said(2, OTHER_ROOM)], 100)
    assert await mam.replace_stanza(ROOM, "id2", b"<message tombstone='1'/>")
    assert not await mam.replace_stanza(ROOM, "nope", b"<x/>")
    page = await mam.page(Query(ROOM), 10)
    assert [(r.uid, r.stamp, r.stanza) for r in page.rows] == [
        ("id1", 1_000_000, b"<message n='1'/>"),
        ("id2", 2_000_000, b"<message tombstone='1'/>"),
        ("id3", 3_000_000, b"<message n='3'/>")]
    other = await mam.page(Query(OTHER_ROOM), 10)
    assert [r.stanza for r in other.rows] == [b"<message n='2'/>"]  # another archive untouched
    reopened = await backend.reopen().mam.page(Query(ROOM, with_full=f"{ROOM}/nick2"), 10)
    assert [r.stanza for r in reopened.rows] == [b"<message tombstone='1'/>"]

"""What an idle client connection keeps: no lxml parser while it rests between stanzas.

A bound connection parks its stream parser (pubsubd.stream.parser) after the read that bound
it and after a read that ends a silence; the stanzas that follow are handled as before.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio
import trio.testing

from pubsubd.core.context import ServerContext
from pubsubd.net import c2s
from pubsubd.net.c2s import C2SConnection

from .test_negotiation import JULIET_PLAIN, SASL, Wire, ctx, with_config  # noqa: F401

SESSION_IQ = "<iq type='set' id='{}'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"


async def bound(nursery: trio.Nursery, ctx: ServerContext) -> tuple[C2SConnection, Wire]:  # noqa: F811
    """A connection authenticated with PLAIN and bound to juliet@example.org/balcony."""
    lax = with_config(ctx, replace(ctx.config, auth=replace(ctx.config.auth,
                                                              allow_plain_without_tls=True)))
    client, server = trio.testing.memory_stream_pair()
    conn = C2SConnection(lax, server, "192.0.2.1")
    nursery.start_soon(conn.run)
    wire = Wire(client)
    await wire.open()
    await wire.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{JULIET_PLAIN}</auth>")
    await wire.until("</success>")
    await wire.open()
    await wire.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                    "<resource>balcony</resource></bind></iq>")
    assert "<jid>juliet@example.org/balcony</jid>" in await wire.until("</iq>")
    return conn, wire


async def test_a_bound_connection_rests_without_a_parser(ctx: ServerContext) -> None:  # noqa: F811
    async with trio.open_nursery() as nursery:
        conn, wire = await bound(nursery, ctx)
        await trio.testing.wait_all_tasks_blocked()
        assert conn.parser.parked
        await wire.send(" ")  # a keep-alive leaves it parked
        await trio.testing.wait_all_tasks_blocked()
        assert conn.parser.parked
        await wire.send(SESSION_IQ.format("s1"))  # the next stanza is parsed and answered
        assert 'id="s1"' in await wire.until("/>")
        await trio.testing.wait_all_tasks_blocked()
        assert not conn.parser.parked  # a read right after another: the stream is busy
        await wire.send(SESSION_IQ.format("s2"))
        assert 'id="s2"' in await wire.until("/>")
        await wire.send("</stream:stream>")
        assert (await wire.rest()).endswith("</stream:stream>")
    assert len(ctx.sessions) == 0


async def test_a_read_after_a_silence_parks_the_parser_again(
    ctx: ServerContext, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setattr(c2s, "PARK_AFTER", 0.0)  # every read ends a silence
    async with trio.open_nursery() as nursery:
        conn, wire = await bound(nursery, ctx)
        for i in range(3):
            await wire.send(SESSION_IQ.format(f"s{i}"))
            assert f'id="s{i}"' in await wire.until("/>")
            await trio.testing.wait_all_tasks_blocked()
            assert conn.parser.parked
        await wire.send("</stream:stream>")  # the close is read without a parser
        assert (await wire.rest()).endswith("</stream:stream>")
        assert conn.parser.parked


async def test_connection_state_lives_in_slots(ctx: ServerContext) -> None:  # noqa: F811
    """Every attribute a connection sets has a slot: an instance dict of some 40 entries would
    cost more than a kilobyte per connection. A new attribute goes into ``__slots__``."""
    async with trio.open_nursery() as nursery:
        conn, wire = await bound(nursery, ctx)
        await trio.testing.wait_all_tasks_blocked()
        assert vars(conn) == {}, "add these to C2SConnection.__slots__"
        nursery.cancel_scope.cancel()

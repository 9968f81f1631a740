"""A stanza for an idle plain-TCP client is written without waking the connection's writer.

``Session.send`` hands the bytes to the direct-writes task when the connection's writer waits
on an empty outbox, instead of queueing them and waking the writer task; what the kernel does
not take, and everything while something is queued or held (XEP-0352), still goes through the
writer, in order.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
import trio
import trio.testing

from pubsubd.core.context import ServerContext
from pubsubd.errors import StreamCondition, StreamError
from pubsubd.net import c2s
from pubsubd.net.c2s import C2SConnection

from .test_negotiation import Wire, ctx, plain_login_and_bind, with_config  # noqa: F401

CHAT = "<message to='juliet@example.org/balcony' type='chat' id='{}'><body>hi</body></message>"


@asynccontextmanager
async def bound_over_tcp(ctx: ServerContext,  # noqa: F811
                         ) -> AsyncIterator[tuple[C2SConnection, Wire, socket.socket]]:
    """A connection on a real socket pair, bound to juliet@example.org/balcony; also the
    client's raw socket, to read without giving the server's tasks a turn."""
    lax = with_config(ctx, replace(ctx.config, auth=replace(ctx.config.auth,
                                                              allow_plain_without_tls=True)))
    server_sock, client_sock = trio.socket.socketpair()
    conn = C2SConnection(lax, trio.SocketStream(server_sock), "192.0.2.1")
    wire = Wire(trio.SocketStream(client_sock))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        bound = await plain_login_and_bind(wire, "balcony")
        assert "<jid>juliet@example.org/balcony</jid>" in bound
        await trio.testing.wait_all_tasks_blocked()  # the writer waits on its outbox
        raw = socket.socket(fileno=client_sock.detach())
        raw.setblocking(False)
        try:
            yield conn, wire, raw
        finally:
            nursery.cancel_scope.cancel()
            raw.close()


def read_now(raw: socket.socket) -> bytes:
    """What the client socket holds right now (no checkpoint: no server task runs)."""
    out = b""
    while True:
        try:
            chunk = raw.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def writer_parked(conn: C2SConnection) -> bool:
    """The writer waits on its outbox and nothing was handed to it."""
    stats = conn._outbox_recv.statistics()
    return stats.tasks_waiting_receive == 1 and stats.current_buffer_used == 0


async def until_read(raw: socket.socket, size: int) -> bytes:
    got = b""
    with trio.fail_after(10):
        while len(got) < size:
            await trio.lowlevel.wait_readable(raw)
            got += read_now(raw)
    return got


async def test_an_idle_connection_gets_the_stanza_without_its_writer(
        ctx: ServerContext) -> None:  # noqa: F811
    async with bound_over_tcp(ctx) as (conn, _wire, raw):
        session = conn.session
        assert session is not None
        assert session.send(CHAT.format("m1").encode())
        assert session.send(CHAT.format("m2").encode())
        assert writer_parked(conn)  # not woken: the direct-writes task has them
        expected = (CHAT.format("m1") + CHAT.format("m2")).encode()
        assert await until_read(raw, len(expected)) == expected  # in one write
        assert writer_parked(conn)
        assert session.send(CHAT.format("m3").encode())
        assert writer_parked(conn)
        assert await until_read(raw, len(CHAT.format("m3"))) == CHAT.format("m3").encode()


async def test_what_the_kernel_does_not_take_is_finished_by_the_writer_in_order(
        ctx: ServerContext) -> None:  # noqa: F811
    async with bound_over_tcp(ctx) as (conn, _wire, raw):
        session = conn.session
        assert session is not None
        big = CHAT.format("big").replace("hi", "x" * (1 << 20)).encode()
        assert session.send(big)  # more than a socket buffer: a partial write
        assert session.send(CHAT.format("next").encode())  # joins it
        await trio.testing.wait_all_tasks_blocked()  # written in part, the rest to the writer
        assert session.send(CHAT.format("after").encode())  # queued behind the rest
        expected = big + CHAT.format("next").encode() + CHAT.format("after").encode()
        assert await until_read(raw, len(expected)) == expected


async def test_an_inactive_client_still_has_its_notifications_held(
        ctx: ServerContext) -> None:  # noqa: F811
    async with bound_over_tcp(ctx) as (conn, wire, raw):
        session = conn.session
        assert session is not None
        conn._on_client_state(False)  # XEP-0352 <inactive/>
        headline = b"<message to='juliet@example.org/balcony' type='headline'/>"
        assert session.send(headline)
        await trio.testing.wait_all_tasks_blocked()
        assert read_now(raw) == b""  # held by the writer, not written directly
        assert conn.client_state.held == 1
        assert session.send(CHAT.format("m1").encode())  # while one is held: the writer
        await trio.testing.wait_all_tasks_blocked()
        assert read_now(raw) == CHAT.format("m1").encode()
        conn._on_client_state(True)
        await trio.testing.wait_all_tasks_blocked()
        assert read_now(raw) == headline


async def test_a_direct_write_is_counted_for_stream_management(
        ctx: ServerContext) -> None:  # noqa: F811
    async with bound_over_tcp(ctx) as (conn, wire, raw):
        session = conn.session
        assert session is not None
        raw.setblocking(True)
        raw.sendall(b"<enable xmlns='urn:xmpp:sm:3'/>")
        raw.setblocking(False)
        with trio.fail_after(5):
            got = b""
            while b"<enabled" not in got:
                await trio.lowlevel.wait_readable(raw)
                got += read_now(raw)
        await trio.testing.wait_all_tasks_blocked()
        assert conn.sm is not None and conn._sm_counting
        assert session.send(CHAT.format("m1").encode())
        assert writer_parked(conn)
        assert [bytes(data) for data in conn.sm.unacked] == [CHAT.format("m1").encode()]
        assert await until_read(raw, len(CHAT.format("m1"))) == CHAT.format("m1").encode()


SM_CHAT = (b"<message xmlns='jabber:client' from='romeo@example.org/orchard'"
           b" to='juliet@example.org/balcony' type='chat'><body>hi</body></message>")
HEADLINE = b"<message from='example.org' to='juliet@example.org/balcony' type='headline'/>"


async def enable_sm(raw: socket.socket) -> None:
    """XEP-0198 on, its answer read: a shutdown then hands unacked messages over."""
    raw.setblocking(True)
    raw.sendall(b"<enable xmlns='urn:xmpp:sm:3'/>")
    raw.setblocking(False)
    await until_read(raw, 1)
    await trio.testing.wait_all_tasks_blocked()
    read_now(raw)


async def until_stream_end(raw: socket.socket) -> bytes:
    got = b""
    with trio.fail_after(5):
        while b"</stream:stream>" not in got:
            await trio.lowlevel.wait_readable(raw)
            got += read_now(raw)
    return got


async def test_a_shutdown_writes_what_was_taken_but_not_what_the_hand_over_keeps(
        ctx: ServerContext) -> None:  # noqa: F811
    async with bound_over_tcp(ctx) as (conn, _wire, raw):
        session = conn.session
        assert session is not None
        await enable_sm(raw)
        assert session.send(SM_CHAT) and session.send(HEADLINE)
        assert writer_parked(conn)  # both taken for a direct write, not written yet
        conn.close_with(StreamError(StreamCondition.SYSTEM_SHUTDOWN))
        got = await until_stream_end(raw)
        assert HEADLINE in got
        assert SM_CHAT not in got  # the hand-over has it (RFC 6121 §8.5), not the wire
        assert got.index(HEADLINE) < got.index(b"system-shutdown")


async def test_a_shutdown_leaves_what_the_hand_over_keeps_when_the_kernel_took_nothing(
        ctx: ServerContext, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    async with bound_over_tcp(ctx) as (conn, _wire, raw):
        session = conn.session
        assert session is not None
        await enable_sm(raw)
        assert session.send(SM_CHAT) and session.send(HEADLINE)

        def full(fd: int, data: bytes) -> int:
            raise BlockingIOError  # the client's buffer is full: the kernel takes nothing

        with monkeypatch.context() as patch:
            patch.setattr(c2s.os, "write", full)
            conn._flush_direct()  # the direct-writes pass, refused: both wait for the writer
        conn.close_with(StreamError(StreamCondition.SYSTEM_SHUTDOWN))  # before the writer runs
        got = await until_stream_end(raw)
        assert HEADLINE in got
        assert SM_CHAT not in got  # kept for the hand-over (offline storage), never on the wire


async def test_writer_waits_tells_what_the_channel_statistics_tell() -> None:
    """``writer_waits`` reads the channel's waiting receivers without building statistics:
    true only while a task waits in ``receive()``, false again once bytes were handed to it
    (a direct write then would overtake them)."""
    from pubsubd.net.direct_writes import writer_waits

    send, recv = trio.open_memory_channel[bytes](4)
    got: list[bytes] = []

    async def writer() -> None:
        got.append(await recv.receive())

    assert not writer_waits(recv)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert writer_waits(recv) and recv.statistics().tasks_waiting_receive == 1
        send.send_nowait(b"first")
        assert not writer_waits(recv) and recv.statistics().tasks_waiting_receive == 0
    assert got == [b"first"]

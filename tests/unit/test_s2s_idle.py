"""A peer server's stream that says nothing is closed with connection-timeout (RFC 6120
§4.9.3.4) once its limit has passed, not sooner: ``handshake_timeout`` while no domain pair
is verified. The idle watch looks after the silence (no deadline per read); trio's virtual
clock lets the limit pass without real waiting."""

from __future__ import annotations

import trio
import trio.testing

from pubsubd.config import S2SConfig
from pubsubd.core.hooks import HookBus
from pubsubd.core.router import Router
from pubsubd.core.session import SessionRegistry
from pubsubd.net.idle_watch import idle_watch
from pubsubd.net.s2s import S2SService

DOMAIN = "example.org"
HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server'"
          " xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'"
          f" to='{DOMAIN}' from='remote.example' version='1.0'>")


class NoAccounts:
    async def exists(self, jid: object) -> bool:
        return False


async def read_until_closed(stream: trio.abc.Stream) -> bytes:
    received = b""
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return received
        if not chunk:
            return received
        received += chunk


async def test_a_silent_peer_stream_times_out_after_the_handshake_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = 30.0
    router = Router([DOMAIN], SessionRegistry(), HookBus(), NoAccounts())
    service = S2SService(S2SConfig(require_tls=False, handshake_timeout=limit), router,
                         "secret", None, 65536)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.handle_incoming, server, "192.0.2.9")
        await client.send_all(HEADER.encode())
        started = trio.current_time()
        received = b""
        while b"</stream:features>" not in received:
            received += await client.receive_some(65536)
        # The header was answered; the stream waits for more, looked after by the watch.
        (stream,) = service.incoming
        assert stream in idle_watch()._watched
        received += await read_until_closed(client)
        waited = trio.current_time() - started
    text = received.decode()
    assert "<connection-timeout" in text and text.endswith("</stream:stream>")
    # Not before the limit; after it within the watch's period (a tenth of the limit).
    assert limit <= waited <= limit * 1.1 + 0.01
    assert not service.incoming  # and the watch forgot it
    assert not idle_watch()._watched

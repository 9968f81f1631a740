"""The accept loop: a failing connection handler ends that connection, not the listener."""

from __future__ import annotations

import trio
import trio.testing

from pubsubd.net.listener import Listener


async def _echo_or_fail(stream: trio.abc.Stream, peer: str) -> None:
    data = await stream.receive_some(100)
    if data == b"boom":
        raise RuntimeError("a bug reached by one connection")
    await stream.send_all(data)
    await stream.aclose()


async def _exchange(port: int, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        return bytes(await stream.receive_some(100))


async def test_a_handler_exception_leaves_the_listener_serving() -> None:
    listener = Listener("127.0.0.1", 0, _echo_or_fail, 10, "metrics")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(listener.serve)
        assert await _exchange(port, b"ping") == b"ping"
        assert await _exchange(port, b"boom") == b""  # closed, nothing answered
        assert await _exchange(port, b"ping again") == b"ping again"
        await trio.testing.wait_all_tasks_blocked()  # the last handler has finished
        assert listener.open_connections == 0 and not listener.per_ip
        nursery.cancel_scope.cancel()

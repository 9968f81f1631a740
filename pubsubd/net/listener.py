"""Accept loops: one task per connection, a cap on connections per client IP."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger(__name__)

ConnectionHandler = Callable[[trio.abc.Stream, str], Awaitable[None]]


class Listener:
    def __init__(self, address: str, port: int, handler: ConnectionHandler,
                 max_per_ip: int, name: str) -> None:
        self.address = address
        self.port = port
        self.handler = handler
        self.max_per_ip = max_per_ip
        self.name = name
        self.per_ip: Counter[str] = Counter()
        self.bound_port = port

    async def serve(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.address)
        self.bound_port = listeners[0].socket.getsockname()[1]
        log.info("%s listening on %s:%d", self.name, self.address, self.bound_port)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)
            task_status.started(self.bound_port)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE and friends: back off, keep serving
                    log.error("accept failed on %s: %s", self.name, exc)
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(self._handle, stream)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            peer = stream.socket.getpeername()[0]
        except OSError:
            await stream.aclose()
            return
        if self.per_ip[peer] >= self.max_per_ip:
            log.warning("refusing connection from %s: too many connections", peer)
            await stream.aclose()
            return
        self.per_ip[peer] += 1
        try:
            await self.handler(stream, peer)
        finally:
            self.per_ip[peer] -= 1
            if not self.per_ip[peer]:
                del self.per_ip[peer]

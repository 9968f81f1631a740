"""Accept loops: one task per connection, a cap on connections per client IP.

Accepting and serving are separate: connection tasks run in a nursery the caller owns, so
stopping the accept loops (first step of a graceful shutdown) leaves open streams alive until
they have been closed properly.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger(__name__)

ConnectionHandler = Callable[[trio.abc.Stream, str], Awaitable[None]]


class Listener:
    def __init__(self, address: str, port: int, handler: ConnectionHandler,
                 max_per_ip: int, name: str, *,
                 refuse: ConnectionHandler | None = None,
                 per_ip: Counter[str] | None = None) -> None:
        """``refuse`` answers a connection over the per-IP cap (e.g. with a stream error)
        before it is closed; without it the socket is just closed. Listeners given the same
        ``per_ip`` counter share one cap (a client's STARTTLS and Direct TLS ports add up)."""
        self.address = address
        self.port = port
        self.handler = handler
        self.refuse = refuse
        self.max_per_ip = max_per_ip
        self.name = name
        self.per_ip: Counter[str] = per_ip if per_ip is not None else Counter()
        self.open_connections = 0  # served by this listener alone (``per_ip`` may be shared)
        self.bound_port = port

    async def serve(self, connections: trio.Nursery | None = None, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept until cancelled; connections run in ``connections`` (default: here)."""
        try:
            listeners = await trio.open_tcp_listeners(self.port, host=self.address)
        except OSError as exc:  # busy port, address not on this host: say which listener
            raise OSError(exc.errno, f"{self.name} listener on {self.address}:{self.port}: "
                                     f"{exc.strerror or exc}") from None
        self.bound_port = listeners[0].socket.getsockname()[1]
        log.info("%s listening on %s:%d", self.name, self.address, self.bound_port)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, connections or nursery)
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
            try:
                if self.refuse is not None:
                    await self.refuse(stream, peer)
            finally:
                await stream.aclose()
            return
        self.per_ip[peer] += 1
        self.open_connections += 1
        try:
            await self.handler(stream, peer)
        except Exception:
            # A bug reached by one connection (HTTP, metrics, WebSocket upgrade...) must end
            # that connection only, never the nursery every other connection runs in.
            log.exception("%s connection from %s failed", self.name, peer)
            await _abort(stream)
        finally:
            self.open_connections -= 1
            self.per_ip[peer] -= 1
            if not self.per_ip[peer]:
                del self.per_ip[peer]


async def _abort(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(1) as scope:
        scope.shield = True
        try:
            await stream.aclose()
        except Exception:  # noqa: BLE001 - already broken; closing is all that is left
            pass

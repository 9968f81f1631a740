"""The server process: builds everything through :mod:`pubsubd.composition` (the composition
root), then runs the listeners and the modules' tasks in the long-lived nurseries.

Shutdown is graceful in two steps: stop accepting, then close every stream with
``<system-shutdown/>`` (RFC 6120 §4.9.3.20), let modules flush, and close storage.
"""

from __future__ import annotations

import logging
import signal
import ssl
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

from pubsubd.composition import Services, build_modules, build_services
from pubsubd.config import Config
from pubsubd.core.disco_registry import DiscoRegistry, Identity
from pubsubd.core.module import Module
from pubsubd.core.session import SessionRegistry
from pubsubd.errors import StreamCondition, StreamError
from pubsubd.net.bosh import BoshManager
from pubsubd.net.c2s import C2SConnection, refuse
from pubsubd.net.http import Request, Response
from pubsubd.net.listener import ConnectionHandler, Listener
from pubsubd.net.websocket import WEBSOCKET_KINDS, WebSocketC2S, WebSocketSite, serve_websocket
from pubsubd.stream.bosh import BoshLimits

__all__ = ["DiscoRegistry", "Identity", "Server", "serve"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Module)


class Server:
    """The running server: listeners, client streams and the modules' lifetimes.

    What it shares with modules is built by :func:`pubsubd.composition.build_services`, the
    modules by :func:`pubsubd.composition.build_modules`.
    """

    def __init__(self, config: Config, *, base_dir: Path | None = None,
                 modules: Callable[[Services, Server], None] = build_modules) -> None:
        """``modules`` builds the modules: the full server by default, or
        :func:`pubsubd.composition.build_component_modules` for ``pubsubd component``."""
        self.services: Services = build_services(config, base_dir or Path.cwd())
        s = self.services
        self.config = config
        self.ctx = s.ctx
        self.sessions: SessionRegistry = s.sessions
        self.lifecycle = s.lifecycle
        self.listeners: list[Listener] = s.listeners
        self.connections: set[C2SConnection] = s.connections  # every open client stream
        self._c2s_per_ip: Counter[str] = Counter()
        self.ports: dict[str, int] = {}
        self.modules: list[Module] = []
        self.bosh = self._bosh_manager()
        modules(s, self)

    def _bosh_manager(self) -> BoshManager | None:
        bosh = self.config.bosh
        if not bosh.enabled:
            return None
        limits = BoshLimits(bosh.max_wait, bosh.max_hold, bosh.inactivity, bosh.polling,
                            bosh.max_requests)
        return BoshManager(self.ctx, limits, cors_origins=bosh.cors_origins,
                           run_session=self._serve_c2s)

    def add_module(self, module: M) -> M:
        """Load ``module``: advertise its features, then set it up."""
        self.modules.append(module)
        self.services.disco.features.update(module.features)
        module.setup()
        return module

    @property
    def restart_requested(self) -> bool:
        return self.lifecycle.restart_requested

    async def _direct_tls(self, stream: trio.abc.Stream) -> trio.abc.Stream | None:
        """XEP-0368: TLS from the first byte; None when the handshake fails."""
        assert self.ctx.tls is not None
        tls_stream = trio.SSLStream(stream, self.ctx.tls, server_side=True)
        try:
            with trio.fail_after(self.config.limits.handshake_timeout):
                await tls_stream.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError, OSError):
            await stream.aclose()
            return None
        return tls_stream

    async def _c2s(self, stream: trio.abc.Stream, peer: str, direct_tls: bool) -> None:
        if direct_tls:
            secured = await self._direct_tls(stream)
            if secured is None:
                return
            stream = secured
        await self._serve_c2s(C2SConnection(self.ctx, stream, peer, direct_tls=direct_tls))

    async def _serve_c2s(self, conn: C2SConnection) -> None:
        """Run one client stream, tracked so a shutdown can close it properly."""
        if self.ctx.shutting_down:
            conn.close_with(StreamError(StreamCondition.SYSTEM_SHUTDOWN))
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    async def _websocket(self, stream: trio.abc.Stream, peer: str, tls: bool) -> None:
        """RFC 7395 client streams and XEP-0156 discovery on one HTTP listener."""
        if tls:
            secured = await self._direct_tls(stream)
            if secured is None:
                return
            stream = secured
        site = WebSocketSite(tls, self.config.limits.max_stanza_bytes,
                             self.config.limits.handshake_timeout, self.config.primary_domain,
                             self.listeners, bosh=self.bosh is not None)
        bosh = self.bosh

        async def http_bind(request: Request) -> Response:
            assert bosh is not None
            return await bosh.handle(request, over_tls=tls)

        await serve_websocket(stream, site,
                              lambda ws: self._serve_c2s(WebSocketC2S(self.ctx, ws, peer)),
                              http_bind if bosh is not None else None, peer)

    async def _refuse_c2s(self, stream: trio.abc.Stream, peer: str, direct_tls: bool) -> None:
        # RFC 6120 §4.9.3.18: exceeding a local limit is a policy-violation stream error.
        if direct_tls:
            secured = await self._direct_tls(stream)
            if secured is None:
                return
            stream = secured
        await refuse(self.ctx, stream, peer,
                     StreamError(StreamCondition.POLICY_VIOLATION,
                                 "too many connections from your address"))

    async def run(self, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown`; report ``self`` (with bound ports) once listening."""
        self.lifecycle.mark_started()
        try:
            async with trio.open_nursery() as services:
                for module in self.modules:
                    services.start_soon(module.run)
                async with trio.open_nursery() as connections:
                    if self.bosh is not None:
                        connections.start_soon(self.bosh.run)
                    async with trio.open_nursery() as listeners:
                        for i, spec in enumerate(self.config.listeners):
                            handler = self._handler_for(spec.kind)
                            if handler is None:
                                continue
                            listener = Listener(spec.address, spec.port, handler,
                                                self.config.limits.connections_per_ip,
                                                spec.kind, refuse=self._refuser_for(spec.kind),
                                                per_ip=self._per_ip(spec.kind))
                            self.listeners.append(listener)
                            port = await listeners.start(listener.serve, connections)
                            self.ports.setdefault(spec.kind, port)
                            self.ports[f"{spec.kind}:{i}"] = port
                        task_status.started(self)
                        log.info("pubsubd serving %s", ", ".join(self.config.domains))
                        await self.lifecycle.wait_for_shutdown()
                        listeners.cancel_scope.cancel()  # step 1: accept no more
                    for module in self.modules:  # modules may still tell peers
                        with trio.move_on_after(5):
                            await module.closing()
                    await self._close_sessions()  # step 2: close open streams properly
                    connections.cancel_scope.cancel()
                for module in self.modules:
                    with trio.move_on_after(10):
                        await module.stop()
                services.cancel_scope.cancel()
        finally:
            self.services.stores.close()
            log.info("pubsubd stopped")

    def _per_ip(self, kind: str) -> Counter[str] | None:
        """Client listeners share one count of connections per address."""
        return self._c2s_per_ip if kind in ("c2s", "c2s_tls", *WEBSOCKET_KINDS) else None

    def _refuser_for(self, kind: str) -> ConnectionHandler | None:
        if kind in ("c2s", "c2s_tls"):
            return lambda s, p: self._refuse_c2s(s, p, kind == "c2s_tls")
        return None

    def _handler_for(self, kind: str) -> ConnectionHandler | None:
        if kind == "c2s":
            return lambda s, p: self._c2s(s, p, False)
        if kind == "c2s_tls":
            return lambda s, p: self._c2s(s, p, True)
        if kind in WEBSOCKET_KINDS:
            return lambda s, p: self._websocket(s, p, kind == "websocket_tls")
        return self.services.listener_kinds.get(kind)

    async def _close_sessions(self) -> None:
        """RFC 6120 §4.9.3.20: every stream, negotiating or bound, ends with system-shutdown."""
        self.ctx.shutting_down = True
        for session in list(self.sessions):
            session.close(StreamError(StreamCondition.SYSTEM_SHUTDOWN, "the server is stopping"))
        for conn in list(self.connections):
            conn.close_with(StreamError(StreamCondition.SYSTEM_SHUTDOWN, "the server is stopping"))
        # Streams and sessions end in many places (and detached resumable sessions end on
        # their own): nothing signals "all gone", so poll for at most five seconds.
        with trio.move_on_after(5):
            while self.connections or len(self.sessions):  # noqa: ASYNC110
                await trio.sleep(0.05)

    def shutdown(self) -> None:
        self.lifecycle.shutdown()


async def serve(config: Config, base_dir: Path | None = None, *,
                on_listening: Callable[[dict[str, int]], None] | None = None,
                modules: Callable[[Services, Server], None] = build_modules) -> bool:
    """Run a server until SIGTERM or SIGINT (or an admin's stop); True if a restart was asked.

    ``on_listening`` gets the bound ports once every listener accepts connections."""
    server = Server(config, base_dir=base_dir, modules=modules)

    async def stop_on_signal() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s; shutting down", signal.Signals(signum).name)
                server.shutdown()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_signal)

        async def run_then_stop(task_status: trio.TaskStatus[Server]) -> None:
            await server.run(task_status)  # returns after a signal or an admin's stop / restart
            nursery.cancel_scope.cancel()

        await nursery.start(run_then_stop)
        if on_listening is not None:
            on_listening(dict(server.ports))
    return server.restart_requested

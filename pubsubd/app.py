"""Composition root: storage, router, modules, listeners; owns the long-lived nurseries.

Shutdown is graceful in two steps: stop accepting, then close every stream with
``<system-shutdown/>`` (RFC 6120 §4.9.3.20), let modules flush, and close storage.
"""

from __future__ import annotations

import logging
import signal
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from pathlib import Path

import trio
from lxml import etree

from pubsubd.auth_throttle import AuthThrottle
from pubsubd.config import Config
from pubsubd.core.context import ServerContext
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import Router
from pubsubd.core.session import SessionRegistry
from pubsubd.errors import StreamCondition, StreamError
from pubsubd.jid import JID
from pubsubd.metrics import Metrics
from pubsubd.modules.control_socket import ControlOp
from pubsubd.net.c2s import C2SConnection, refuse
from pubsubd.net.listener import ConnectionHandler, Listener
from pubsubd.net.tls import ensure_self_signed, server_context
from pubsubd.net.websocket import WEBSOCKET_KINDS, WebSocketC2S, WebSocketSite, serve_websocket
from pubsubd.storage.accounts import SqliteAccountStore
from pubsubd.storage.sqlite import Database

if TYPE_CHECKING:
    from pubsubd.modules.xep0060_pubsub.component import PubSubComponent
    from pubsubd.presence_view import PresenceView

log = logging.getLogger(__name__)


@dataclass
class Identity:
    category: str
    type: str
    name: str


@dataclass
class DiscoRegistry:
    """What the server says about itself in XEP-0030; modules add to it."""

    identities: list[Identity] = field(default_factory=list)
    features: set[str] = field(default_factory=set)
    items: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # jid, node, name
    extensions: list[etree._Element] = field(default_factory=list)  # XEP-0128 forms


class Accounts:
    """The router's view of accounts: does a local user exist?

    Asked for every stanza to a local user, so the answer avoids the database when it can: a
    user with a bound session exists, and accounts seen once are remembered until deleted.
    """

    def __init__(self, store: SqliteAccountStore, sessions: SessionRegistry,
                 hooks: HookBus) -> None:
        self.store = store
        self.sessions = sessions
        self._known: set[JID] = set()
        hooks.on("account/deleted", self._forget)

    async def exists(self, jid: JID) -> bool:
        if jid.local is None:
            return False
        bare = jid.bare
        if bare in self._known or self.sessions.resources(bare):
            return True
        if await self.store.get(jid.local, jid.domain) is None:
            return False
        if len(self._known) > 100_000:
            self._known.clear()
        self._known.add(bare)
        return True

    async def _forget(self, jid: JID) -> bool:
        self._known.discard(jid.bare)
        return False


class Server:
    # Set by the modules that provide them (RFC 6121 presence, the XEP-0060 component).
    presence: PresenceView
    pubsub: PubSubComponent

    def __init__(self, config: Config, *, base_dir: Path | None = None) -> None:
        self.config = config
        self.base_dir = base_dir or Path.cwd()
        self.db = Database(self._path(config.storage.path))
        self.accounts = SqliteAccountStore(self.db, config.auth.scram_iterations)
        self.hooks = HookBus()
        self.sessions = SessionRegistry()
        self.router = Router(config.domains, self.sessions, self.hooks,
                             Accounts(self.accounts, self.sessions, self.hooks))
        self.disco = DiscoRegistry()
        self.disco.identities.append(Identity("server", "im", "pubsubd"))
        self.throttle = AuthThrottle(
            config.auth.failures_before_delay, config.auth.failure_window, 0.5,
            config.auth.max_delay, trio.current_time if _in_trio() else _monotonic,
        )
        tls, cert_der = self._tls()
        self.ctx = ServerContext(config, self.router, self.sessions, self.hooks, self.accounts,
                                 self.throttle, tls, cert_der)
        self.modules: list[Module] = []
        self.listeners: list[Listener] = []
        self.connections: set[C2SConnection] = set()  # every open client stream, bound or not
        self._c2s_per_ip: Counter[str] = Counter()
        self.ports: dict[str, int] = {}
        self.metrics = Metrics()  # Prometheus counters and gauges any module may feed
        # Listener kinds served by modules (e.g. "metrics" → an HTTP handler), set in setup().
        self.listener_kinds: dict[str, ConnectionHandler] = {}
        # Operations of the local control socket (`pubsubd admin`): name → async fn(args).
        self.control_ops: dict[str, ControlOp] = {}
        self.restart_requested = False  # set before shutdown() to have the process re-exec
        self._shutdown = trio.Event()
        self.started_at = 0.0
        from pubsubd.modules import default_modules

        for module_cls in default_modules():
            self.add_module(module_cls(self))

    def add_module(self, module: Module) -> None:
        self.modules.append(module)
        self.disco.features.update(module.features)
        module.setup()

    def module(self, name: str) -> Module | None:
        return next((m for m in self.modules if m.name == name), None)

    def _path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path

    def _tls(self) -> tuple[ssl.SSLContext | None, bytes | None]:
        cfg = self.config.tls
        if cfg.certificate and cfg.key:
            cert, key = self._path(cfg.certificate), self._path(cfg.key)
        else:
            cert, key = ensure_self_signed(self._path(self.config.data_dir), list(self.config.domains))
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
        return server_context(cert, key), der

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
                             self.listeners)
        await serve_websocket(stream, site,
                              lambda ws: self._serve_c2s(WebSocketC2S(self.ctx, ws, peer)))

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
        self.started_at = trio.current_time()
        self.throttle._clock = trio.current_time
        try:
            async with trio.open_nursery() as services:
                for module in self.modules:
                    services.start_soon(module.run)
                async with trio.open_nursery() as connections:
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
                        await self._shutdown.wait()
                        listeners.cancel_scope.cancel()  # step 1: accept no more
                    await self._close_sessions()  # step 2: close open streams properly
                    connections.cancel_scope.cancel()
                for module in self.modules:
                    with trio.move_on_after(10):
                        await module.stop()
                services.cancel_scope.cancel()
        finally:
            self.db.close()
            log.info("pubsubd stopped")

    def _per_ip(self, kind: str) -> Counter[str] | None:
        """Client listeners share one count of connections per address."""
        return self._c2s_per_ip if kind in ("c2s", "c2s_tls", *WEBSOCKET_KINDS) else None

    def _refuser_for(self, kind: str):  # type: ignore[no-untyped-def]
        if kind in ("c2s", "c2s_tls"):
            return lambda s, p: self._refuse_c2s(s, p, kind == "c2s_tls")
        return None

    def _handler_for(self, kind: str):  # type: ignore[no-untyped-def]
        if kind == "c2s":
            return lambda s, p: self._c2s(s, p, False)
        if kind == "c2s_tls":
            return lambda s, p: self._c2s(s, p, True)
        if kind in WEBSOCKET_KINDS:
            return lambda s, p: self._websocket(s, p, kind == "websocket_tls")
        extra = self.listener_kinds.get(kind) or self.ctx.pre_auth_iq.get(f"listener:{kind}")
        return extra

    async def _close_sessions(self) -> None:
        """RFC 6120 §4.9.3.20: every stream, negotiating or bound, ends with system-shutdown."""
        self.ctx.shutting_down = True
        for session in list(self.sessions):
            session.close(StreamError(StreamCondition.SYSTEM_SHUTDOWN, "the server is stopping"))
        for conn in list(self.connections):
            conn.close_with(StreamError(StreamCondition.SYSTEM_SHUTDOWN, "the server is stopping"))
        with trio.move_on_after(5):
            while self.connections or len(self.sessions):
                await trio.sleep(0.05)

    def shutdown(self) -> None:
        self._shutdown.set()


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def _monotonic() -> float:
    import time

    return time.monotonic()


async def serve(config: Config, base_dir: Path | None = None, *,
                on_listening: Callable[[dict[str, int]], None] | None = None) -> bool:
    """Run a server until SIGTERM or SIGINT (or an admin's stop); True if a restart was asked.

    ``on_listening`` gets the bound ports once every listener accepts connections."""
    server = Server(config, base_dir=base_dir)

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

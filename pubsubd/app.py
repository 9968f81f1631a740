"""Composition root: storage, router, modules, listeners; owns the long-lived nurseries.

Shutdown is graceful in two steps: stop accepting, then close every stream with
``<system-shutdown/>`` (RFC 6120 §4.9.3.20), let modules flush, and close storage.
"""

from __future__ import annotations

import logging
import signal
import ssl
from dataclasses import dataclass, field
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
from pubsubd.net.c2s import C2SConnection
from pubsubd.net.listener import Listener
from pubsubd.net.tls import ensure_self_signed, server_context
from pubsubd.storage.accounts import SqliteAccountStore
from pubsubd.storage.sqlite import Database

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
    """The router's view of accounts: does a local user exist?"""

    def __init__(self, store: SqliteAccountStore) -> None:
        self.store = store

    async def exists(self, jid: JID) -> bool:
        if jid.local is None:
            return False
        return await self.store.get(jid.local, jid.domain) is not None


class Server:
    def __init__(self, config: Config, *, base_dir: Path | None = None) -> None:
        self.config = config
        self.base_dir = base_dir or Path.cwd()
        self.db = Database(self._path(config.storage.path))
        self.accounts = SqliteAccountStore(self.db, config.auth.scram_iterations)
        self.hooks = HookBus()
        self.sessions = SessionRegistry()
        self.router = Router(config.domains, self.sessions, self.hooks, Accounts(self.accounts))
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
        self.ports: dict[str, int] = {}
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

    async def _c2s(self, stream: trio.abc.Stream, peer: str, direct_tls: bool) -> None:
        if direct_tls:
            assert self.ctx.tls is not None
            tls_stream = trio.SSLStream(stream, self.ctx.tls, server_side=True)
            try:
                with trio.fail_after(self.config.limits.handshake_timeout):
                    await tls_stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError, OSError):
                await stream.aclose()
                return
            stream = tls_stream
        conn = C2SConnection(self.ctx, stream, peer, direct_tls=direct_tls)
        await conn.run()

    async def run(self, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown`; report ``self`` (with bound ports) once listening."""
        self.started_at = trio.current_time()
        self.throttle._clock = trio.current_time
        try:
            async with trio.open_nursery() as services:
                for module in self.modules:
                    services.start_soon(module.run)
                async with trio.open_nursery() as listeners:
                    for i, spec in enumerate(self.config.listeners):
                        handler = self._handler_for(spec.kind)
                        if handler is None:
                            continue
                        listener = Listener(spec.address, spec.port, handler,
                                            self.config.limits.connections_per_ip, spec.kind)
                        self.listeners.append(listener)
                        port = await listeners.start(listener.serve)
                        self.ports.setdefault(spec.kind, port)
                        self.ports[f"{spec.kind}:{i}"] = port
                    task_status.started(self)
                    log.info("pubsubd serving %s", ", ".join(self.config.domains))
                    await self._shutdown.wait()
                    listeners.cancel_scope.cancel()
                await self._close_sessions()
                for module in self.modules:
                    with trio.move_on_after(10):
                        await module.stop()
                services.cancel_scope.cancel()
        finally:
            self.db.close()
            log.info("pubsubd stopped")

    def _handler_for(self, kind: str):  # type: ignore[no-untyped-def]
        if kind == "c2s":
            return lambda s, p: self._c2s(s, p, False)
        if kind == "c2s_tls":
            return lambda s, p: self._c2s(s, p, True)
        extra = self.ctx.pre_auth_iq.get(f"listener:{kind}")
        return extra

    async def _close_sessions(self) -> None:
        self.ctx.shutting_down = True
        for session in list(self.sessions):
            session.close(StreamError(StreamCondition.SYSTEM_SHUTDOWN, "the server is stopping"))
        with trio.move_on_after(5):
            while len(self.sessions):
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


async def serve(config: Config, base_dir: Path | None = None) -> None:
    """Run a server until SIGTERM or SIGINT."""
    server = Server(config, base_dir=base_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s; shutting down", signal.Signals(signum).name)
                server.shutdown()
                break

"""The ``metrics`` listener: Prometheus text at ``/metrics`` and a liveness check at ``/health``.

This module also feeds the server-wide counters that need no other module: stanzas in (a
``*/pre`` hook sees every stanza a client sends), stanzas out (an observer of the session
registry sees every stanza queued to a client), authentication failures (observed on the
throttle every failure passes), and two probes run in :meth:`MetricsModule.run`: event-loop
lag and the round trip of a trivial storage query. ``/health`` answers 503 when either is too
slow, or when the probes stopped running.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from pubsubd.auth_throttle import AuthThrottle
from pubsubd.config import MetricsConfig
from pubsubd.core.hooks import Handler, HookBus
from pubsubd.core.lifecycle import ServerLifecycle
from pubsubd.core.module import Module
from pubsubd.core.router import Stanza
from pubsubd.core.session import Session, SessionRegistry
from pubsubd.metrics import CONTENT_TYPE, Metrics
from pubsubd.net.http import Request, Response, serve_http
from pubsubd.net.http_routes import HttpRoutes
from pubsubd.net.listener import ConnectionHandler, Listener

REQUEST_TIMEOUT = 10.0  # seconds for a scraper to send its request
PROBE_INTERVAL = 1.0  # seconds between two event-loop / storage probes


class MetricsModule(Module):
    name = "metrics"

    def __init__(self, *, settings: MetricsConfig, metrics: Metrics, sessions: SessionRegistry,
                 hooks: HookBus, throttle: AuthThrottle,
                 storage_ping: Callable[[], Awaitable[None]],
                 lifecycle: ServerLifecycle, listeners: Sequence[Listener],
                 listener_kinds: dict[str, ConnectionHandler],
                 routes: HttpRoutes | None = None, exposed: bool = True) -> None:
        super().__init__()
        # Whether a ``metrics`` listener serves /metrics: without one, nobody can read the
        # per-stanza counters, so they are not kept (no hook, no observer on the hot paths).
        self.exposed = exposed
        self.settings = settings
        self.metrics = metrics
        self.sessions = sessions
        self.hooks = hooks
        self.throttle = throttle
        self.storage_ping = storage_ping  # raises or stalls when storage cannot answer
        self.lifecycle = lifecycle
        self.listeners = listeners  # filled once the server binds them
        self.listener_kinds = listener_kinds
        self.routes = routes  # paths other modules serve (node feeds, WebSub)

    def setup(self) -> None:
        cfg = self.settings
        sessions = self.sessions
        self.max_lag = cfg.health_max_lag
        self.storage_timeout = cfg.health_storage_timeout
        self.lag = 0.0
        self.storage_ok = True
        self.last_probe = 0.0
        live = self.metrics.live
        live.sessions = lambda: len(sessions)
        live.connections = self._connections
        self._out_counters: dict[bytes, Callable[[], None]] = {}
        if cfg.enabled and self.exposed:
            for kind in ("message", "presence", "iq"):
                self.hooks.on(f"{kind}/pre", _counter_of_client_stanzas(
                    self.metrics.stanzas_in.labels(kind).inc), priority=10_000)
            # Labelled children looked up once: counting is on the path of every stanza.
            self._out_counters = {prefix: self.metrics.stanzas_out.labels(kind).inc
                                  for prefix, kind in OUT_KINDS.items()}
            self.sessions.sent_observers.append(self._count_outgoing)
        self.throttle.on_failure.append(self.metrics.auth_failures.inc)
        if cfg.enabled:
            self.listener_kinds["metrics"] = self.serve_http

    def _connections(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for listener in self.listeners:
            # Not per_ip: client listeners share that counter for their common per-IP cap.
            counts[listener.name] = counts.get(listener.name, 0) + listener.open_connections
        return counts

    def _count_outgoing(self, session: Session, data: bytes) -> None:
        inc = self._out_counters.get(data[:3])
        if inc is not None:
            inc()

    # --- probes ------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._lag_probe)
            nursery.start_soon(self._storage_probe)

    async def _lag_probe(self) -> None:
        while True:
            expected = trio.current_time() + PROBE_INTERVAL
            await trio.sleep(PROBE_INTERVAL)
            self.lag = max(0.0, trio.current_time() - expected)
            self.last_probe = trio.current_time()
            self.metrics.event_loop_lag.set(self.lag)

    async def _storage_probe(self) -> None:
        while True:
            self.storage_ok = await self.storage_round_trip() is not None
            await trio.sleep(PROBE_INTERVAL)

    async def storage_round_trip(self) -> float | None:
        """Seconds for a trivial query through the storage thread; None if it timed out."""
        start = trio.current_time()
        with trio.move_on_after(self.storage_timeout):
            await self.storage_ping()
            elapsed = trio.current_time() - start
            self.metrics.storage_latency.observe(elapsed)
            return elapsed
        return None

    async def health(self) -> tuple[bool, dict[str, Any]]:
        now = trio.current_time()
        problems = []
        if self.lag > self.max_lag:
            problems.append(f"event loop lag {self.lag:.3f}s")
        started = self.lifecycle.started_at
        if now - max(self.last_probe, started) > 3 * PROBE_INTERVAL + self.max_lag:
            problems.append("event loop probe is not running")
        latency = await self.storage_round_trip()
        if latency is None:
            problems.append("storage query timed out")
        report = {"status": "fail" if problems else "ok", "problems": problems,
                  "event_loop_lag": round(self.lag, 6),
                  "storage_latency": None if latency is None else round(latency, 6),
                  "sessions": len(self.sessions)}
        return not problems, report

    # --- HTTP ----------------------------------------------------------------------------

    async def serve_http(self, stream: trio.abc.Stream, peer: str) -> None:
        await serve_http(stream, self._respond, timeout=REQUEST_TIMEOUT, peer=peer)

    async def _respond(self, request: Request) -> Response:
        routed = self.routes.find(request.path) if self.routes else None
        if routed is not None:
            return await routed(request)
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n")
        if request.path == "/metrics":
            return Response(200, self.metrics.render(), CONTENT_TYPE,
                            [("Cache-Control", "no-store")])
        if request.path == "/health":
            ok, report = await self.health()
            return Response(200 if ok else 503, json.dumps(report).encode() + b"\n",
                            "application/json", [("Cache-Control", "no-store")])
        return Response(404, b"not found: try /metrics or /health\n")


def _counter_of_client_stanzas(inc: Callable[..., None]) -> Handler:
    """A ``*/pre`` hook that counts the stanzas clients send, and lets routing go on."""

    async def count(st: Stanza) -> bool:
        if st.origin is not None:
            inc()
        return False

    return count


# The first bytes of a serialized stanza → its kind, for the stanzas-out counter.
OUT_KINDS = {b"<me": "message", b"<pr": "presence", b"<iq": "iq"}

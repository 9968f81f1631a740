"""The ``metrics`` listener: Prometheus text at ``/metrics`` and a liveness check at ``/health``.

This module also feeds the server-wide counters that need no other module: stanzas in (a
``*/pre`` hook sees every stanza a client sends), stanzas out (each session's outbox is wrapped
when it is bound), authentication failures (through the throttle every failure passes), and two
probes run in :meth:`MetricsModule.run`: event-loop lag and the round trip of a trivial storage
query. ``/health`` answers 503 when either is too slow, or when the probes stopped running.
"""

from __future__ import annotations

import json
from typing import Any

import h11
import trio

from pubsubd.core.module import Module
from pubsubd.core.router import Stanza
from pubsubd.core.session import Session
from pubsubd.metrics import CONTENT_TYPE

MAX_REQUEST_BYTES = 16384
REQUEST_TIMEOUT = 10.0  # seconds for a scraper to send its request
PROBE_INTERVAL = 1.0  # seconds between two event-loop / storage probes


class MetricsModule(Module):
    name = "metrics"

    def setup(self) -> None:
        server = self.server
        self.metrics = server.metrics
        cfg = server.config.metrics
        self.max_lag = cfg.health_max_lag
        self.storage_timeout = cfg.health_storage_timeout
        self.lag = 0.0
        self.storage_ok = True
        self.last_probe = 0.0
        live = self.metrics.live
        live.sessions = lambda: len(server.sessions)
        live.connections = self._connections
        for kind in ("message", "presence", "iq"):
            server.hooks.on(f"{kind}/pre", self._stanza_in, priority=10_000)
        server.hooks.on("session/bound", self._count_outgoing, priority=10_000)
        _count_failures(server.throttle, self.metrics.auth_failures.inc)
        if cfg.enabled:
            server.listener_kinds["metrics"] = self.serve_http

    def _connections(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for listener in self.server.listeners:
            counts[listener.name] = counts.get(listener.name, 0) + sum(listener.per_ip.values())
        return counts

    async def _stanza_in(self, st: Stanza) -> bool:
        if st.origin is not None:
            self.metrics.stanza_in(st.kind)
        return False  # only counting: routing goes on

    async def _count_outgoing(self, session: Session) -> bool:
        counting = _CountingOutbox(session.outbox, self.metrics.stanza_out)
        session.outbox = counting  # type: ignore[assignment]
        return False

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
        """Seconds for ``SELECT 1`` through the storage thread; None if it timed out."""
        start = trio.current_time()
        with trio.move_on_after(self.storage_timeout):
            await self.server.db.run(lambda conn: conn.execute("SELECT 1").fetchone())
            elapsed = trio.current_time() - start
            self.metrics.storage_latency.observe(elapsed)
            return elapsed
        return None

    async def health(self) -> tuple[bool, dict[str, Any]]:
        now = trio.current_time()
        problems = []
        if self.lag > self.max_lag:
            problems.append(f"event loop lag {self.lag:.3f}s")
        started = self.server.started_at
        if now - max(self.last_probe, started) > 3 * PROBE_INTERVAL + self.max_lag:
            problems.append("event loop probe is not running")
        latency = await self.storage_round_trip()
        if latency is None:
            problems.append("storage query timed out")
        report = {"status": "fail" if problems else "ok", "problems": problems,
                  "event_loop_lag": round(self.lag, 6),
                  "storage_latency": None if latency is None else round(latency, 6),
                  "sessions": len(self.server.sessions)}
        return not problems, report

    # --- HTTP/1.1 (h11) ------------------------------------------------------------------

    async def serve_http(self, stream: trio.abc.Stream, peer: str) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        try:
            async with stream:
                while True:
                    with trio.move_on_after(REQUEST_TIMEOUT):
                        request = await _next_request(conn, stream)
                        if request is None:
                            return
                        await self._respond(conn, stream, request)
                        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                            return
                        conn.start_next_cycle()
                        continue
                    return
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _respond(self, conn: h11.Connection, stream: trio.abc.Stream,
                       request: h11.Request) -> None:
        path = request.target.decode("ascii", "replace").split("?", 1)[0]
        if request.method not in (b"GET", b"HEAD"):
            status, ctype, body = 405, "text/plain", b"method not allowed\n"
        elif path == "/metrics":
            status, ctype, body = 200, CONTENT_TYPE, self.metrics.render()
        elif path == "/health":
            ok, report = await self.health()
            status, ctype = (200 if ok else 503), "application/json"
            body = json.dumps(report).encode() + b"\n"
        else:
            status, ctype, body = 404, "text/plain", b"not found: try /metrics or /health\n"
        headers = [("content-type", ctype), ("content-length", str(len(body))),
                   ("cache-control", "no-store")]
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
        if request.method != b"HEAD":
            await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))


async def _next_request(conn: h11.Connection, stream: trio.abc.Stream) -> h11.Request | None:
    """The next complete request (its body, if any, is read and ignored)."""
    request: h11.Request | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            if not data and conn.their_state is not h11.DONE:
                return None
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            return None


class _CountingOutbox:
    """A session outbox that counts what is queued by stanza kind, then passes it on."""

    _KINDS = {b"<me": "message", b"<pr": "presence", b"<iq": "iq"}

    def __init__(self, inner: trio.MemorySendChannel[bytes], count: Any) -> None:
        self._inner = inner
        self._count = count

    def send_nowait(self, data: bytes) -> None:
        self._inner.send_nowait(data)
        kind = self._KINDS.get(data[:3])
        if kind is not None:
            self._count(kind)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _count_failures(throttle: Any, count: Any) -> None:
    """Count every failed authentication: the c2s code reports each one to the throttle."""
    original = throttle.failure

    def failure(*args: Any, **kwargs: Any) -> Any:
        count()
        return original(*args, **kwargs)

    throttle.failure = failure

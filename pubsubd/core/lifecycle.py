"""The server's life as modules see it: when it started, and how to end it."""

from __future__ import annotations

import trio


class ServerLifecycle:
    """Start time, and graceful shutdown or restart on request (the admin commands use it)."""

    def __init__(self) -> None:
        self.started_at = 0.0  # trio clock; set when the server starts serving
        self.restart_requested = False  # the process re-executes itself after the shutdown
        self._stop = trio.Event()

    def mark_started(self) -> None:
        self.started_at = trio.current_time()

    def shutdown(self) -> None:
        """Begin a graceful shutdown (RFC 6120 §4.9.3.20 for every open stream)."""
        self._stop.set()

    def request_restart(self) -> None:
        """Shut down, then have the process start again."""
        self.restart_requested = True
        self.shutdown()

    async def wait_for_shutdown(self) -> None:
        await self._stop.wait()

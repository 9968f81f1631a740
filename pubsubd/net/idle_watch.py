"""One task that ends client connections which stayed silent for too long.

A bound client connection that sends nothing for ``limits.idle_timeout`` seconds is closed
with ``<connection-timeout/>`` (RFC 6120 §4.9.3.4). A deadline on each socket read said so
exactly, but moving a trio deadline costs a few microseconds, twice per read: on a busy server
that was paid for every message to know something that matters once in minutes. Instead each
connection notes when it last read and whether it now waits for input, and this task looks at
all of them a few times per timeout: a connection is closed after at least its timeout of
silence, and at most a tenth of it (up to :data:`MAX_PERIOD`) later. Only a connection
waiting for input is ever cancelled, so a stanza being routed is never cut short.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

log = logging.getLogger(__name__)

MAX_PERIOD = 30.0  # seconds between two looks, at most
MIN_PERIOD = 0.05  # ... and at least


class Watched(Protocol):
    def idle_expired(self, now: float) -> bool:
        """Waiting for input, and silent for its whole timeout at ``now``."""
        ...

    def time_out(self) -> None:
        """End the connection with a connection-timeout stream error."""
        ...


class IdleWatch:
    """The connections being watched, and the system task that looks at them."""

    __slots__ = ("_watched", "_period", "_task")

    def __init__(self) -> None:
        self._watched: set[Watched] = set()
        self._period = MAX_PERIOD
        self._task = trio.lowlevel.spawn_system_task(self._run, name="pubsubd idle watch")

    def add(self, conn: Watched, timeout: float) -> None:
        self._period = max(MIN_PERIOD, min(self._period, timeout / 10))
        self._watched.add(conn)

    def discard(self, conn: Watched) -> None:
        self._watched.discard(conn)

    def expire(self, now: float) -> int:
        """Time out every watched connection whose silence has lasted; how many did."""
        expired = [conn for conn in self._watched if conn.idle_expired(now)]
        for conn in expired:
            self._watched.discard(conn)
            try:
                conn.time_out()
            except Exception:  # one connection's fault must not end the watch
                log.exception("could not time out %r", conn)
        return len(expired)

    async def _run(self) -> None:
        while True:
            await trio.sleep(self._period)
            self.expire(trio.current_time())


_CURRENT: trio.lowlevel.RunVar[IdleWatch] = trio.lowlevel.RunVar("idle_watch")


def idle_watch() -> IdleWatch:
    """This trio run's watch (started on first use)."""
    try:
        return _CURRENT.get()
    except LookupError:
        watch = IdleWatch()
        _CURRENT.set(watch)
        return watch

"""One task that looks after silent client connections: keep-alives and the idle limit.

A bound client connection that sends nothing for ``limits.idle_timeout`` seconds is closed
with ``<connection-timeout/>`` (RFC 6120 §4.9.3.4), and one we sent nothing for
``limits.keepalive_interval`` gets a whitespace keep-alive (RFC 6120 §4.6.1; an XEP-0198
request if stanzas wait for acknowledgement). Deadlines on each socket read and each wait of
the writer said so exactly, but setting a trio deadline costs a few microseconds, paid for
every message to know something that matters once in minutes. Instead each connection notes
when it last read and when its writer began to wait, and this task looks at all of them a few
times per limit: a limit takes effect after at least its time and at most a tenth of it (up to
:data:`MAX_PERIOD`) later. Only a connection waiting for input is ever timed out, so a stanza
being routed is never cut short; a keep-alive goes out only between stanzas.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

log = logging.getLogger(__name__)

MAX_PERIOD = 30.0  # seconds between two looks, at most
MIN_PERIOD = 0.05  # ... and at least


class Watched(Protocol):
    def look(self, now: float) -> bool:
        """Act on the connection's silence at ``now``; True when it was timed out."""
        ...


class IdleWatch:
    """The connections being watched, and the system task that looks at them."""

    __slots__ = ("_watched", "_period")

    def __init__(self) -> None:
        self._watched: set[Watched] = set()
        self._period = MAX_PERIOD
        trio.lowlevel.spawn_system_task(self._run, name="pubsubd idle watch")

    def add(self, conn: Watched, shortest: float) -> None:
        """Watch ``conn``, whose shortest limit is ``shortest`` seconds."""
        self._period = max(MIN_PERIOD, min(self._period, shortest / 10))
        self._watched.add(conn)

    def discard(self, conn: Watched) -> None:
        self._watched.discard(conn)

    def look(self, now: float) -> None:
        """Let every watched connection act on its silence; forget those timed out."""
        expired = []
        for conn in self._watched:
            try:
                if conn.look(now):
                    expired.append(conn)
            except Exception:  # one connection's fault must not end the watch
                log.exception("could not look after %r", conn)
        for conn in expired:
            self._watched.discard(conn)

    async def _run(self) -> None:
        while True:
            await trio.sleep(self._period)
            self.look(trio.current_time())


_CURRENT: trio.lowlevel.RunVar[IdleWatch] = trio.lowlevel.RunVar("idle_watch")


def idle_watch() -> IdleWatch:
    """This trio run's watch (started on first use)."""
    try:
        return _CURRENT.get()
    except LookupError:
        watch = IdleWatch()
        _CURRENT.set(watch)
        return watch

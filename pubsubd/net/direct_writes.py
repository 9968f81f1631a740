"""One task that writes, once per scheduler pass, what was queued for idle client connections.

Waking each recipient's writer task for every stanza costs a task switch per connection; with
many connections each carrying little (500 chat pairs, a fan-out to 1,000 subscribers) that
switch costs more than the write. A connection whose writer waits on an empty outbox instead
hands its bytes here: everything queued for it until this task runs goes out in one write, and
this one task wakes once for all connections that got something meanwhile.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

log = logging.getLogger(__name__)


class DirectWriter(Protocol):
    def _flush_direct(self) -> None: ...


def _abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED


class DirectWrites:
    """The connections with bytes to write, and the system task that writes them."""

    __slots__ = ("_pending", "_task", "_parked")

    def __init__(self) -> None:
        self._pending: list[DirectWriter] = []
        self._parked = False
        self._task = trio.lowlevel.spawn_system_task(self._run, name="pubsubd direct writes")

    def add(self, conn: DirectWriter) -> None:
        """``conn`` has bytes waiting: write them at the next scheduler pass."""
        self._pending.append(conn)
        if self._parked:
            self._parked = False
            trio.lowlevel.reschedule(self._task)

    async def _run(self) -> None:
        while True:
            while self._pending:
                pending, self._pending = self._pending, []
                for conn in pending:
                    try:
                        conn._flush_direct()
                    except Exception:  # one connection's fault must not end the server
                        log.exception("direct write to %r failed", conn)
            self._parked = True
            await trio.lowlevel.wait_task_rescheduled(_abort)


_CURRENT: trio.lowlevel.RunVar[DirectWrites] = trio.lowlevel.RunVar("direct_writes")


def direct_writes() -> DirectWrites:
    """This trio run's writer task (started on first use)."""
    try:
        return _CURRENT.get()
    except LookupError:
        writes = DirectWrites()
        _CURRENT.set(writes)
        return writes

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


def _probe_waiting_tasks() -> bool:
    """Whether this trio keeps a receive channel's waiting tasks where we read them."""
    _, recv = trio.open_memory_channel[bytes](0)
    tasks = getattr(getattr(recv, "_state", None), "receive_tasks", None)
    return isinstance(tasks, dict)


_WAITING_TASKS_READABLE = _probe_waiting_tasks()


def writer_waits(outbox: trio.MemoryReceiveChannel[bytes]) -> bool:
    """A task waits in ``outbox.receive()`` (a connection's writer on an empty outbox).

    What ``statistics().tasks_waiting_receive`` tells, read from the channel's state: the
    statistics object costs about 2 µs to build, and this is asked twice per message
    delivered. A trio that keeps its state elsewhere gets the public call."""
    if _WAITING_TASKS_READABLE:
        return bool(outbox._state.receive_tasks)  # type: ignore[attr-defined]
    return bool(outbox.statistics().tasks_waiting_receive)


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

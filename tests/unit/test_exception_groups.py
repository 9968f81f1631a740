"""The error that ended a connection, picked from its tasks' exception group."""

from __future__ import annotations

import trio

from pubsubd.errors import StreamCondition, StreamError
from pubsubd.net.exception_groups import decisive


def test_a_stream_error_wins_over_the_other_tasks_failure() -> None:
    error = StreamError(StreamCondition.NOT_WELL_FORMED)
    group = BaseExceptionGroup("tasks", [OSError("reset"), ExceptionGroup("inner", [error])])
    assert decisive(group) is error


def test_without_a_stream_error_the_first_real_failure_is_chosen() -> None:
    lost = trio.BrokenResourceError()
    assert decisive(BaseExceptionGroup("tasks", [lost, ValueError()])) is lost


def test_only_cancellations_leave_nothing_to_report() -> None:
    async def cancelled_group() -> BaseExceptionGroup:
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.sleep(1)
            except trio.Cancelled as exc:
                return BaseExceptionGroup("tasks", [exc])
        raise AssertionError("not cancelled")

    assert decisive(trio.run(cancelled_group)) is None

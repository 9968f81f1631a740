"""Which error ended a connection whose reader and writer tasks failed together."""

from __future__ import annotations

import trio

from pubsubd.errors import StreamError


def decisive(group: BaseExceptionGroup) -> BaseException | None:
    """The error that ended a connection: a stream error first, then anything not Cancelled.

    A stream error is what the peer must be told (RFC 6120 §4.9); the other task's failure is
    usually a consequence of it. None when the group holds only cancellations.
    """
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)

    walk(group)
    return next((e for e in leaves if isinstance(e, StreamError)), leaves[0] if leaves else None)

"""The operations of the local control socket (``pubsubd admin``), by name.

Modules register operations while they are set up; the control socket module serves them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["ControlOp", "ControlOps"]

ControlOp = Callable[[dict[str, Any]], Awaitable[Any]]  # async fn(args) -> JSON value


class ControlOps(dict[str, ControlOp]):
    """Name → operation. A plain mapping, so callers may also use ``ops[name] = fn``."""

    def register(self, name: str, op: ControlOp) -> None:
        self[name] = op

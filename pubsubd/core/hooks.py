"""A tiny event bus: modules hook named events; the first handler that returns True wins.

Event names spell the routing, e.g. ``message/bare`` or ``presence/full``; handlers run in
descending priority, so a filter (blocking, carbons) can see a stanza before delivery does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[bool | None]]


class HookBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[tuple[int, int, Handler]]] = {}
        self._order = 0

    def on(self, event: str, handler: Handler, priority: int = 0) -> None:
        self._order += 1
        handlers = self._handlers.setdefault(event, [])
        handlers.append((priority, -self._order, handler))
        handlers.sort(key=lambda h: (h[0], h[1]), reverse=True)

    def has(self, event: str) -> bool:
        return bool(self._handlers.get(event))

    async def fire(self, event: str, payload: Any) -> bool:
        """Run the handlers of ``event``; True as soon as one of them handled it."""
        for _, _, handler in self._handlers.get(event, ()):
            if await handler(payload):
                return True
        return False

    async def notify(self, event: str, payload: Any) -> None:
        """Run every handler of ``event`` (an announcement, not a claim); log their failures."""
        for _, _, handler in self._handlers.get(event, ()):
            try:
                await handler(payload)
            except Exception:
                log.exception("handler for %s failed", event)

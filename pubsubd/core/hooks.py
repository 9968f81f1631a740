"""A tiny event bus: modules hook named events; the first handler that returns True wins.

Event names spell the routing, e.g. ``message/bare`` or ``presence/full``; handlers run in
descending priority, so a filter (blocking, carbons) can see a stanza before delivery does.

A module whose feature nobody uses at the moment (no blocklist, no carbons) keeps its handlers
off the bus with :meth:`HookBus.off` and adds them again when someone starts using it: a
stanza then pays nothing for features that are off, instead of one call per handler to learn
that they are. Handler lists are replaced, never changed in place, so a change made while an
event is being fired affects the next firing only.
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
        handlers = [*self._handlers.get(event, ()), (priority, -self._order, handler)]
        handlers.sort(key=lambda h: (h[0], h[1]), reverse=True)
        self._handlers[event] = handlers

    def off(self, event: str, handler: Handler) -> None:
        """Remove ``handler`` from ``event`` (nothing if it is not there)."""
        handlers = [h for h in self._handlers.get(event, ()) if h[2] != handler]
        if handlers:
            self._handlers[event] = handlers
        else:
            self._handlers.pop(event, None)

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

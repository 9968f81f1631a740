"""A tiny event bus: modules hook named events; the first handler that returns True wins.

Event names spell the routing, e.g. ``message/bare`` or ``presence/full``; handlers run in
descending priority, so a filter (blocking, carbons) can see a stanza before delivery does.

A module whose feature nobody uses at the moment (no blocklist, no carbons) keeps its handlers
off the bus with :meth:`HookBus.off` and adds them again when someone starts using it: a
stanza then pays nothing for features that are off, instead of one call per handler to learn
that they are. Handler lists are replaced, never changed in place, so a change made while an
event is being fired affects the next firing only.

A handler that never waits (e.g. the archive's, which only queues) may be a plain function,
hooked with :meth:`HookBus.on_plain`: calling it costs no coroutine, and while every handler of
an event is plain, :meth:`HookBus.fire_now` runs them all without one for the firing either.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[bool | None]]
PlainHandler = Callable[[Any], bool | None]


class _Hooked(NamedTuple):
    priority: int
    order: int  # minus the registration's number: the earlier first among equal priorities
    handler: Handler | None
    plain: PlainHandler | None  # set instead of ``handler`` for a plain function


class HookBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[_Hooked]] = {}
        # The handlers of each event whose handlers are all plain functions; None for an
        # event with one to await. An event nobody hooks is not here.
        self._plain: dict[str, tuple[PlainHandler, ...] | None] = {}
        self._order = 0

    def on(self, event: str, handler: Handler, priority: int = 0) -> None:
        self._add(event, priority, handler, None)

    def on_plain(self, event: str, handler: PlainHandler, priority: int = 0) -> None:
        """Hook a plain function: like :meth:`on`, for a handler that never waits."""
        self._add(event, priority, None, handler)

    def _add(self, event: str, priority: int, handler: Handler | None,
             plain: PlainHandler | None) -> None:
        self._order += 1
        handlers = [*self._handlers.get(event, ()),
                    _Hooked(priority, -self._order, handler, plain)]
        handlers.sort(key=lambda h: (h.priority, h.order), reverse=True)
        self._set(event, handlers)

    def off(self, event: str, handler: Handler | PlainHandler) -> None:
        """Remove ``handler`` from ``event`` (nothing if it is not there)."""
        self._set(event, [h for h in self._handlers.get(event, ())
                          if h.handler != handler and h.plain != handler])

    def _set(self, event: str, handlers: list[_Hooked]) -> None:
        if not handlers:
            self._handlers.pop(event, None)
            self._plain.pop(event, None)
            return
        self._handlers[event] = handlers
        plain = tuple(h.plain for h in handlers if h.plain is not None)
        self._plain[event] = plain if len(plain) == len(handlers) else None

    def has(self, event: str) -> bool:
        return bool(self._handlers.get(event))

    def fire_now(self, event: str, payload: Any) -> bool | None:
        """What :meth:`fire` would say, found without a coroutine when every handler of
        ``event`` is a plain function (or none is hooked); None when one is to be awaited:
        then :meth:`fire` is the way, and nothing has run yet."""
        plain = self._plain.get(event, ())
        if plain is None:
            return None
        for handler in plain:
            if handler(payload):
                return True
        return False

    async def fire(self, event: str, payload: Any) -> bool:
        """Run the handlers of ``event``; True as soon as one of them handled it."""
        for _, _, handler, plain in self._handlers.get(event, ()):
            if plain is not None:
                if plain(payload):
                    return True
            elif handler is not None and await handler(payload):
                return True
        return False

    async def notify(self, event: str, payload: Any) -> None:
        """Run every handler of ``event`` (an announcement, not a claim); log their failures."""
        for _, _, handler, plain in self._handlers.get(event, ()):
            try:
                if plain is not None:
                    plain(payload)
                elif handler is not None:
                    await handler(payload)
            except Exception:
                log.exception("handler for %s failed", event)

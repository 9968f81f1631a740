"""Plain-function handlers on the hook bus: the same rules as coroutine handlers (priority
order, the first True wins, off/on), and fire_now runs an event's handlers without a
coroutine only while all of them are plain."""

from __future__ import annotations

from typing import Any

import trio

from pubsubd.core.hooks import HookBus


class Calls:
    """Handlers that record their calls and answer as told."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def plain(self, name: str, answer: bool | None = False) -> Any:
        def handler(payload: object) -> bool | None:
            self.log.append(f"{name}:{payload}")
            return answer
        return handler

    def waiting(self, name: str, answer: bool | None = False) -> Any:
        async def handler(payload: object) -> bool | None:
            await trio.lowlevel.checkpoint()
            self.log.append(f"{name}:{payload}")
            return answer
        return handler


def test_plain_and_waiting_handlers_run_by_priority_then_registration() -> None:
    bus, calls = HookBus(), Calls()
    bus.on("e", calls.waiting("low"), priority=10)
    bus.on_plain("e", calls.plain("high"), priority=60)
    bus.on_plain("e", calls.plain("mid-first"), priority=50)
    bus.on("e", calls.waiting("mid-second"), priority=50)
    assert trio.run(bus.fire, "e", 1) is False
    assert calls.log == ["high:1", "mid-first:1", "mid-second:1", "low:1"]


def test_the_first_true_wins_for_plain_handlers_too() -> None:
    bus, calls = HookBus(), Calls()
    bus.on_plain("e", calls.plain("first", answer=True), priority=5)
    bus.on("e", calls.waiting("never"))
    assert trio.run(bus.fire, "e", 2) is True
    assert calls.log == ["first:2"]


def test_fire_now_runs_plain_handlers_in_order_and_stops_at_true() -> None:
    bus, calls = HookBus(), Calls()
    bus.on_plain("e", calls.plain("a"), priority=2)
    bus.on_plain("e", calls.plain("b", answer=True), priority=1)
    bus.on_plain("e", calls.plain("c"))
    assert bus.fire_now("e", 3) is True
    assert calls.log == ["a:3", "b:3"]
    assert bus.fire_now("nobody hooks this", 3) is False


def test_fire_now_declines_while_a_handler_must_be_awaited() -> None:
    bus, calls = HookBus(), Calls()
    plain, waiting = calls.plain("plain"), calls.waiting("waiting")
    bus.on_plain("e", plain, priority=1)
    bus.on("e", waiting)
    assert bus.fire_now("e", 4) is None
    assert calls.log == []  # nothing ran: fire is the way, and runs them all once
    bus.off("e", waiting)
    assert bus.fire_now("e", 5) is False
    assert calls.log == ["plain:5"]


def test_off_removes_a_plain_handler_and_the_event_when_it_was_the_last() -> None:
    bus, calls = HookBus(), Calls()
    handler = calls.plain("x", answer=True)
    bus.on_plain("e", handler)
    assert bus.has("e")
    bus.off("e", handler)
    assert not bus.has("e")
    assert bus.fire_now("e", 6) is False
    assert trio.run(bus.fire, "e", 6) is False
    assert calls.log == []


def test_notify_runs_every_handler_plain_or_not_despite_failures() -> None:
    bus, calls = HookBus(), Calls()

    def broken(payload: object) -> bool:
        raise RuntimeError("broken handler")

    bus.on_plain("e", broken, priority=3)
    bus.on_plain("e", calls.plain("plain", answer=True), priority=2)
    bus.on("e", calls.waiting("waiting"), priority=1)
    trio.run(bus.notify, "e", 7)
    assert calls.log == ["plain:7", "waiting:7"]

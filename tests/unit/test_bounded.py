"""BoundedMap: state keyed by what peers choose stays within its cap and its age limit."""

from __future__ import annotations

from pubsubd.core.bounded import BoundedMap
from pubsubd.core.router import Router
from pubsubd.presence_view import PresenceView


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_oldest_entries_go_beyond_the_cap() -> None:
    evicted: list[int] = []
    m: BoundedMap[int, str] = BoundedMap(3, on_evict=lambda k, _: evicted.append(k))
    for i in range(10):
        m[i] = str(i)
    assert list(m) == [7, 8, 9] and evicted == list(range(7))


def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    m: BoundedMap[str, int] = BoundedMap(100, ttl=10.0, clock=clock)
    m["old"] = 1
    clock.now = 5.0
    m["young"] = 2
    clock.now = 12.0
    assert "old" not in m and m.get("young") == 2
    m["new"] = 3  # a write drops whatever expired
    assert sorted(m) == ["new", "young"]


def test_router_and_caps_cache_are_bounded() -> None:
    # Both are filled with keys remote entities choose (unanswered ids, invented ver strings).
    router = Router(["example.org"], None, None, None)  # type: ignore[arg-type]
    for i in range(20_000):
        router.iq_result_handlers[str(i)] = None  # type: ignore[assignment]
    assert len(router.iq_result_handlers) <= 10_000
    view = PresenceView(None, None)  # type: ignore[arg-type]
    for i in range(20_000):
        view.caps_features[str(i)] = frozenset()
    assert len(view.caps_features) <= 10_000

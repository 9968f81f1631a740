"""A mapping with a size cap and an optional age limit, for state remote entities can grow.

Pending IQ callbacks, the entity-caps cache and the caps queries in flight are all keyed by
values a peer chooses (ids it never answers, ``ver`` strings it invents); a plain dict would
keep them forever. The oldest entries go first: when the cap is reached, and once older than
``ttl`` seconds (checked lazily on every write, so no task is needed).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(MutableMapping[K, V], Generic[K, V]):
    def __init__(self, max_entries: int, ttl: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_evict: Callable[[K, V], None] | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._on_evict = on_evict
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __getitem__(self, key: K) -> V:
        born, value = self._items[key]
        if self.ttl is not None and self._clock() - born > self.ttl:
            self._evict(key)
            raise KeyError(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self.expire()
        self._items.pop(key, None)
        self._items[key] = (self._clock(), value)
        while len(self._items) > self.max_entries:
            self._evict(next(iter(self._items)))

    def __delitem__(self, key: K) -> None:
        del self._items[key]

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def expire(self) -> None:
        """Drop every entry older than ``ttl``."""
        if self.ttl is None:
            return
        limit = self._clock() - self.ttl
        while self._items:
            key, (born, _) = next(iter(self._items.items()))
            if born >= limit:
                break
            self._evict(key)

    def _evict(self, key: K) -> None:
        _, value = self._items.pop(key)
        if self._on_evict is not None:
            self._on_evict(key, value)

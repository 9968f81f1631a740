"""A sliding-window rate limit per key (a client address), in bounded memory.

Used where one request creates lasting state, such as an in-band registration creating an
account: a client may do it ``rate`` times per ``window`` seconds, and beyond that is told to
wait (RFC 6120 §8.3.3.18 resource-constraint, type wait).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from pubsubd.core.bounded import BoundedMap


class RateLimiter:
    def __init__(self, rate: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000) -> None:
        if rate < 0 or window <= 0:
            raise ValueError("invalid rate limit")
        self.rate = rate
        self.window = window
        self._clock = clock
        # A key idle for a whole window has nothing left to remember.
        self._seen: BoundedMap[str, deque[float]] = BoundedMap(max_keys, ttl=window)

    def allow(self, key: str) -> bool:
        """Count one event for ``key``; False (and not counted) when over the rate."""
        now = self._clock()
        stamps = self._seen.get(key)
        if stamps is None:
            stamps = deque(maxlen=max(self.rate, 1))
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if len(stamps) >= self.rate:
            return False
        stamps.append(now)
        self._seen[key] = stamps  # refreshes its age: the window restarts with each event
        return True

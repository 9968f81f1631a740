"""Slow down password guessing without locking anyone out.

Failures are counted in a sliding window per client IP (one host spraying many accounts)
and per username (many hosts guessing one account). Past ``max_failures`` the answer to the
next attempt is delayed, doubling with every further failure up to ``max_delay``. Delays
rather than lockouts keep an attacker from denying a victim access for long (RFC 6120 §13.8
asks servers to resist dictionary attacks). The clock is injected, so all of it is pure.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable

from pubsubd.core.bounded import BoundedMap

__all__ = ["AuthThrottle"]


class AuthThrottle:
    """Failure counters keyed by IP and by username, in bounded memory."""

    def __init__(
        self,
        max_failures: int,
        window: float,
        base_delay: float,
        max_delay: float,
        clock: Callable[[], float],
        *,
        max_entries: int = 10_000,
    ) -> None:
        if max_failures < 0 or window <= 0 or base_delay <= 0 or max_delay < base_delay:
            raise ValueError("invalid throttle parameters")
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_failures = max_failures
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._max_entries = max_entries
        # Beyond this many failures in a window the delay is already capped, so older
        # timestamps need not be kept: bounds memory per key.
        doublings = math.ceil(math.log2(max_delay / base_delay)) if max_delay > base_delay else 0
        self._keep = max_failures + doublings + 1
        # Oldest-touched first; evicted from the front when full.
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        # The time the last slowed-down attempt per key was (or will be) answered.
        self._slots: BoundedMap[tuple[str, str], float] = BoundedMap(max_entries, ttl=window)
        # Called once per recorded failure (e.g. a metrics counter); observers, not policy.
        self.on_failure: list[Callable[[], None]] = []

    def __len__(self) -> int:
        """How many keys are tracked (for tests and metrics)."""
        return len(self._failures)

    def _recent(self, key: tuple[str, str], now: float) -> int:
        stamps = self._failures.get(key)
        if stamps is None:
            return 0
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return 0
        return len(stamps)

    def delay_for(self, ip: str, username: str) -> float:
        """Seconds to wait before answering this attempt (0.0 while under the threshold)."""
        now = self._clock()
        count = max(self._recent(("ip", ip), now), self._recent(("user", username), now))
        excess = count - self.max_failures
        if excess < 0:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** min(excess, 64))

    def reserve(self, ip: str, username: str) -> float:
        """Seconds to wait before answering this attempt, queued behind the others.

        :meth:`delay_for` alone is per attempt: forty parallel connections from one address
        would each wait once and then guess together. Here, once slowing down, attempts from
        one IP, and attempts at one account, are spaced by the delay: parallel connections
        share it instead of multiplying the guessing rate.
        """
        delay = self.delay_for(ip, username)
        if delay <= 0:
            return 0.0
        now = self._clock()
        keys = (("ip", ip), ("user", username))
        start = max([now + delay] + [self._slots.get(k, now) + delay for k in keys])
        for key in keys:
            self._slots[key] = start
        return start - now

    def failure(self, ip: str, username: str) -> None:
        """Record a failed attempt."""
        now = self._clock()
        for key in (("ip", ip), ("user", username)):
            self._recent(key, now)
            stamps = self._failures.get(key)
            if stamps is None:
                stamps = self._failures[key] = deque(maxlen=self._keep)
            else:
                self._failures.move_to_end(key)
            stamps.append(now)
        self._evict(now)
        for observer in self.on_failure:
            observer()

    def success(self, ip: str, username: str) -> None:
        """Forget the account's failures: its owner got in.

        The IP's count is left to expire, so a valid account cannot be used to reset the
        counter of a host that keeps guessing at other accounts.
        """
        self._failures.pop(("user", username), None)

    def _evict(self, now: float) -> None:
        while len(self._failures) > self._max_entries:
            self._failures.popitem(last=False)
        # Drop a few expired keys from the cold end, so idle memory shrinks over time.
        for _ in range(2):
            if not self._failures:
                break
            key = next(iter(self._failures))
            if self._failures[key][-1] > now - self.window:
                break
            del self._failures[key]

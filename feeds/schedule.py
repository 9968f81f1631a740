"""When to fetch a feed next: pure functions of the past, with time and randomness injected.

Politeness rules, in the order they apply: an error backs off exponentially (with jitter, so
feeds failing together do not retry together); otherwise the feed's adaptive interval, never
below what the publisher asked for (RSS ``<ttl>``, Cache-Control max-age or Expires); a
Retry-After is a floor in both cases; the result is moved out of ``<skipHours>``/``<skipDays>``.
Everything is clamped to configured bounds so no feed can push itself out for a month or pull
us into polling every second.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

Random = Callable[[], float]  # uniform in [0, 1)


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    base_interval: float = 1800.0
    min_interval: float = 300.0
    max_interval: float = 86400.0
    error_base: float = 300.0
    error_max: float = 6 * 3600.0
    max_retry_after: float = 86400.0
    jitter: float = 0.1
    host_spacing: float = 1.0


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def adapt_interval(
    policy: SchedulePolicy,
    interval: float,
    *,
    changed: bool,
    now: float,
    last_change: float | None,
) -> float:
    """Move the interval toward half the observed time between changes.

    Polling at half the change period catches most entries within one period while a quiet feed
    drifts slowly (25% per unchanged poll) toward the maximum.
    """
    if changed:
        if last_change is None:
            return clamp(interval, policy.min_interval, policy.max_interval)
        target = max(0.0, now - last_change) / 2
        return clamp((interval + target) / 2, policy.min_interval, policy.max_interval)
    return clamp(interval * 1.25, policy.min_interval, policy.max_interval)


def error_delay(policy: SchedulePolicy, streak: int, rng: Random = random.random) -> float:
    """Exponential back-off: base, 2×base, 4×base... up to ``error_max``, ±jitter."""
    delay = min(policy.error_max, policy.error_base * 2 ** max(0, streak - 1))
    return delay * (1 + policy.jitter * (2 * rng() - 1))


def skip_window(when: float, skip_hours: Collection[int], skip_days: Collection[int]) -> float:
    """The first moment at or after ``when`` outside the skipped GMT hours and weekdays.

    RSS 2.0 ``<skipHours>`` lists GMT hours 0-23 and ``<skipDays>`` weekdays (0 = Monday here),
    during which aggregators should not read the feed.
    """
    if not skip_hours and not skip_days:
        return when
    candidate = when
    for _ in range(24 * 8):
        t = time.gmtime(candidate)
        if t.tm_hour not in skip_hours and t.tm_wday not in skip_days:
            return candidate
        candidate = candidate - (candidate % 3600) + 3600
    return when  # every hour of the week is skipped: the hint is nonsense, ignore it


def next_fetch(
    policy: SchedulePolicy,
    *,
    now: float,
    interval: float,
    error_streak: int = 0,
    retry_after: float | None = None,
    max_age: float | None = None,
    ttl_minutes: int | None = None,
    skip_hours: Collection[int] = (),
    skip_days: Collection[int] = (),
    rng: Random = random.random,
) -> float:
    """The POSIX time of the next fetch."""
    if error_streak > 0:
        delay = error_delay(policy, error_streak, rng)
    else:
        delay = interval
        if ttl_minutes:
            delay = max(delay, ttl_minutes * 60.0)
        if max_age:
            delay = max(delay, max_age)
        delay = clamp(delay, policy.min_interval, policy.max_interval)
        delay *= 1 + policy.jitter * rng()  # only later, never earlier than the publisher asked
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_retry_after))
    return skip_window(now + delay, skip_hours, skip_days)


@dataclass(slots=True)
class HostBudget:
    """Minimum spacing between requests to one host, however many of its feeds are due.

    ``reserve`` hands out the next free slot for a host; callers wait until it. Only in-memory
    bookkeeping: entries older than the spacing are dropped so the map stays small.
    """

    spacing: float
    _next_free: dict[str, float] = field(default_factory=dict)

    def reserve(self, host: str, at: float) -> float:
        slot = max(at, self._next_free.get(host, at))
        self._next_free[host] = slot + self.spacing
        if len(self._next_free) > 4096:
            self._next_free = {h: t for h, t in self._next_free.items() if t > at}
        return slot

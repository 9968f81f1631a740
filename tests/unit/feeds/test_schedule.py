from __future__ import annotations

import calendar

from feeds.schedule import (
    HostBudget,
    SchedulePolicy,
    adapt_interval,
    error_delay,
    next_fetch,
    skip_window,
)

P = SchedulePolicy(base_interval=1800, min_interval=300, max_interval=86400, error_base=60,
                   error_max=3600, jitter=0.0)
NOW = float(calendar.timegm((2024, 3, 4, 10, 30, 0)))  # a Monday, 10:30 GMT


def test_interval_adapts_within_bounds() -> None:
    # Changes every 20 minutes: the interval moves toward 10 minutes.
    assert adapt_interval(P, 1800, changed=True, now=NOW, last_change=NOW - 1200) == 1200
    assert adapt_interval(P, 300, changed=True, now=NOW, last_change=NOW - 10) == 300
    assert adapt_interval(P, 1800, changed=False, now=NOW, last_change=None) == 2250
    assert adapt_interval(P, 80000, changed=False, now=NOW, last_change=None) == 86400


def test_error_backoff_is_exponential_capped_and_jittered() -> None:
    assert [error_delay(P, n) for n in (1, 2, 3, 10)] == [60, 120, 240, 3600]
    jittery = SchedulePolicy(error_base=100, jitter=0.5)
    assert error_delay(jittery, 1, rng=lambda: 0.0) == 50
    assert error_delay(jittery, 1, rng=lambda: 0.999999) < 150.001


def test_publisher_hints_are_floors() -> None:
    assert next_fetch(P, now=NOW, interval=600, rng=lambda: 0) == NOW + 600
    assert next_fetch(P, now=NOW, interval=600, ttl_minutes=60, rng=lambda: 0) == NOW + 3600
    assert next_fetch(P, now=NOW, interval=600, max_age=7200, rng=lambda: 0) == NOW + 7200
    assert next_fetch(P, now=NOW, interval=600, max_age=10**9, rng=lambda: 0) == NOW + 86400
    assert next_fetch(P, now=NOW, interval=600, retry_after=5000, rng=lambda: 0) == NOW + 5000
    assert next_fetch(P, now=NOW, interval=600, error_streak=2, retry_after=10) == NOW + 120


def test_skip_hours_and_days() -> None:
    # 10:40 falls in skipped hours 10 and 11: next allowed is 12:00.
    assert skip_window(NOW + 600, {10, 11}, ()) == calendar.timegm((2024, 3, 4, 12, 0, 0))
    # Monday (0) skipped: Tuesday 00:00.
    assert skip_window(NOW, (), {0}) == calendar.timegm((2024, 3, 5, 0, 0, 0))
    assert skip_window(NOW, set(range(24)), ()) == NOW  # nonsense hint ignored
    assert next_fetch(P, now=NOW, interval=600, skip_hours={10}, rng=lambda: 0) == (
        calendar.timegm((2024, 3, 4, 11, 0, 0))
    )


def test_host_budget_spaces_requests_per_host() -> None:
    budget = HostBudget(spacing=2.0)
    assert [budget.reserve("a", 100.0) for _ in range(3)] == [100.0, 102.0, 104.0]
    assert budget.reserve("b", 100.0) == 100.0
    assert budget.reserve("a", 200.0) == 200.0

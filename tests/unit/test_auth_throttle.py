from __future__ import annotations

import pytest

from pubsubd.auth_throttle import AuthThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **kw: float) -> AuthThrottle:
    params: dict[str, float] = dict(max_failures=3, window=60.0, base_delay=1.0, max_delay=8.0)
    params.update(kw)
    return AuthThrottle(clock=clock, **params)  # type: ignore[arg-type]


def test_no_delay_until_threshold_then_doubling_up_to_cap() -> None:
    clock = Clock()
    throttle = make(clock)
    delays = []
    for _ in range(8):
        delays.append(throttle.delay_for("1.2.3.4", "juliet"))
        throttle.failure("1.2.3.4", "juliet")
    assert delays == [0.0, 0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_failures_expire_after_window() -> None:
    clock = Clock()
    throttle = make(clock)
    for _ in range(4):
        throttle.failure("ip", "u")
    assert throttle.delay_for("ip", "u") == 2.0
    clock.now += 61
    assert throttle.delay_for("ip", "u") == 0.0
    assert len(throttle) == 0


def test_sliding_window_forgets_only_old_failures() -> None:
    clock = Clock()
    throttle = make(clock)
    throttle.failure("ip", "u")
    throttle.failure("ip", "u")
    clock.now += 40
    throttle.failure("ip", "u")
    throttle.failure("ip", "u")
    assert throttle.delay_for("ip", "u") == 2.0  # four in the window
    clock.now += 30
    assert throttle.delay_for("ip", "u") == 0.0  # the first two are out: two left


def test_ip_spraying_many_accounts_is_slowed() -> None:
    clock = Clock()
    throttle = make(clock)
    for n in range(5):
        throttle.failure("6.6.6.6", f"user{n}")
    assert throttle.delay_for("6.6.6.6", "fresh-target") == 4.0
    assert throttle.delay_for("1.1.1.1", "fresh-target") == 0.0


def test_distributed_guessing_of_one_account_is_slowed() -> None:
    clock = Clock()
    throttle = make(clock)
    for n in range(4):
        throttle.failure(f"10.0.0.{n}", "juliet")
    assert throttle.delay_for("10.9.9.9", "juliet") == 2.0
    assert throttle.delay_for("10.9.9.9", "romeo") == 0.0


def test_success_clears_the_account_but_not_the_ip() -> None:
    clock = Clock()
    throttle = make(clock)
    for _ in range(4):
        throttle.failure("ip", "juliet")
    throttle.success("ip", "juliet")
    assert throttle.delay_for("other-ip", "juliet") == 0.0
    assert throttle.delay_for("ip", "romeo") == 2.0


def test_memory_is_bounded() -> None:
    clock = Clock()
    throttle = AuthThrottle(3, 60.0, 1.0, 8.0, clock, max_entries=50)
    for n in range(1000):
        throttle.failure(f"ip{n}", f"user{n}")
    assert len(throttle) <= 50
    # The newest entries survive eviction.
    for _ in range(3):
        throttle.failure("ip999", "user999")
    assert throttle.delay_for("ip999", "user999") == 2.0


def test_per_key_history_is_bounded() -> None:
    clock = Clock()
    throttle = make(clock)
    for _ in range(10_000):
        throttle.failure("ip", "u")
    assert throttle.delay_for("ip", "u") == 8.0
    assert max(len(d) for d in throttle._failures.values()) <= 3 + 3 + 1


def test_expired_keys_are_dropped_while_idle_keys_accumulate() -> None:
    clock = Clock()
    throttle = make(clock)
    for n in range(10):
        throttle.failure(f"ip{n}", "u")
    clock.now += 120
    for n in range(10):
        throttle.failure("busy", f"v{n}")
    # Each new failure sweeps some expired keys from the cold end.
    assert not any(key == ("ip", "ip0") for key in throttle._failures)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        AuthThrottle(3, 0.0, 1.0, 8.0, Clock())
    with pytest.raises(ValueError):
        AuthThrottle(3, 60.0, 2.0, 1.0, Clock())


def test_observers_see_each_failure_but_not_successes() -> None:
    throttle = make(Clock())
    seen: list[str] = []
    throttle.on_failure.append(lambda: seen.append("failure"))
    throttle.failure("1.2.3.4", "juliet")
    throttle.success("1.2.3.4", "juliet")
    throttle.failure("5.6.7.8", "romeo")
    assert seen == ["failure", "failure"]


def test_parallel_attempts_from_one_ip_share_the_delay() -> None:
    # Forty connections asking at the same instant: one guess per delay, not forty.
    clock = Clock()
    throttle = make(clock, max_delay=8.0)
    for _ in range(6):
        throttle.failure("1.2.3.4", "juliet")
    waits = sorted(throttle.reserve("1.2.3.4", f"user{i}") for i in range(40))
    assert waits[0] == 8.0 and waits[-1] == 8.0 * 40
    assert all(b - a == 8.0 for a, b in zip(waits, waits[1:], strict=False))


def test_parallel_attempts_at_one_account_share_the_delay() -> None:
    clock = Clock()
    throttle = make(clock)
    for i in range(6):
        throttle.failure(f"10.0.0.{i}", "juliet")
    waits = [throttle.reserve(f"10.1.0.{i}", "juliet") for i in range(5)]
    assert waits == [8.0, 16.0, 24.0, 32.0, 40.0]
    assert throttle.reserve("10.2.0.1", "romeo") == 0.0  # others are not queued


def test_rate_limiter_counts_per_key_within_its_window() -> None:
    from pubsubd.rate_limit import RateLimiter

    clock = Clock()
    limiter = RateLimiter(3, 60.0, clock=clock)
    assert [limiter.allow("1.2.3.4") for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow("5.6.7.8")
    clock.now += 61
    assert limiter.allow("1.2.3.4")

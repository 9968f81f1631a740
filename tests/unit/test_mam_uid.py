"""Archive ids (XEP-0313 §3: unique and unpredictable) start with the time, so the ids of one
archive sort in the order they were given and its (owner, uid) index grows at its end."""

from __future__ import annotations

import re
import time

from pubsubd.storage.archive_ids import new_uid

_URL_SAFE = re.compile(r"[A-Za-z0-9_-]{20}")


def test_ids_are_url_safe_and_unique() -> None:
    ids = [new_uid() for _ in range(5000)]  # more than one batch of random bytes
    assert all(_URL_SAFE.fullmatch(uid) for uid in ids)
    assert len(set(ids)) == len(ids)


def test_ids_drawn_later_sort_after_earlier_ones() -> None:
    earlier = [new_uid() for _ in range(100)]
    start = time.monotonic_ns()
    while time.monotonic_ns() - start < 2000:  # a few microseconds: the clock moves on
        pass
    later = [new_uid() for _ in range(100)]
    assert max(earlier) < min(later)


def test_ids_of_the_same_moment_differ_in_their_random_part() -> None:
    a, b = new_uid(), new_uid()
    # 7 bytes of time are the first 9 characters and a bit more; the rest is random.
    assert a[10:] != b[10:]

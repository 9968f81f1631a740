"""next_id: archive ids with the sequence number they carry, put together from text made in
bulk; they must read back as ids encoded one by one do (XEP-0313 §3: unique, unpredictable)."""

from __future__ import annotations

import base64
import re
import time

import pytest

from pubsubd.storage import archive_ids
from pubsubd.storage.archive_ids import _FROM_SORTABLE, _TO_SORTABLE, next_id, seq_of

_URL_SAFE = re.compile(r"[A-Za-z0-9_-]{20}")
MANY = 3000  # more than one batch of random text


def _encoded(seq: int, random: int) -> str:
    """An id encoded on its own from its two numbers, the way the format defines it."""
    raw = seq.to_bytes(7, "big") + random.to_bytes(8, "big")
    return base64.b64encode(raw).translate(_TO_SORTABLE).decode("ascii")


def _random_part(uid: str) -> int:
    raw = base64.b64decode(uid.encode("ascii").translate(_FROM_SORTABLE))
    return int.from_bytes(raw[7:], "big")


def test_ids_are_20_url_safe_characters_and_unique() -> None:
    ids = [next_id()[1] for _ in range(MANY)]
    assert all(_URL_SAFE.fullmatch(uid) for uid in ids)
    assert len(set(ids)) == MANY


def test_the_sequence_number_returned_is_the_one_the_id_carries() -> None:
    for seq, uid in (next_id() for _ in range(MANY)):
        assert seq_of(uid) == seq
        assert uid == _encoded(seq, _random_part(uid))


def test_sequence_numbers_and_ids_strictly_grow_together() -> None:
    drawn = [next_id() for _ in range(MANY)]
    for (seq_a, uid_a), (seq_b, uid_b) in zip(drawn, drawn[1:], strict=False):
        assert seq_a < seq_b
        assert uid_a < uid_b


def test_the_sequence_number_is_the_microsecond_of_the_clock() -> None:
    before = time.time_ns() // 1000
    seq, _ = next_id()
    # Moved on past the clock only by as many ids as were drawn within one microsecond.
    assert before - 1 <= seq <= time.time_ns() // 1000 + MANY * 4


def test_every_one_of_the_64_random_bits_varies() -> None:
    randoms = [_random_part(next_id()[1]) for _ in range(MANY)]
    assert len(set(randoms)) == MANY
    ones = 0
    zeros = 0
    for r in randoms:
        ones |= r
        zeros |= ~r
    assert ones == zeros & (2**64 - 1) == 2**64 - 1


def test_ids_of_one_microsecond_differ_in_their_random_part() -> None:
    drawn = [next_id() for _ in range(200)]  # faster than the clock: neighbours share it
    randoms = {_random_part(uid) for _, uid in drawn}
    assert len(randoms) == len(drawn)


def test_seq_of_reads_ids_encoded_one_by_one_alike() -> None:
    assert seq_of(_encoded(1_796_000_000_123_456, 2**64 - 1)) == 1_796_000_000_123_456
    assert seq_of("not an id") is None


def test_ids_read_back_across_the_moments_their_cached_front_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The front characters are made again when the clock passes 256 µs and 2**20 µs marks."""
    now = [(2**20) * 1_712_345 - 300]  # microseconds, just before both marks

    def clock() -> int:
        now[0] += 7
        return now[0] * 1000

    monkeypatch.setattr(archive_ids.time, "time_ns", clock)
    ids = archive_ids._ids()
    drawn = [next(ids) for _ in range(200)]
    first = drawn[0][0]
    assert [seq for seq, _ in drawn] == list(range(first, first + 7 * 200, 7))  # the clock's
    assert first < (2**20) * 1_712_345 < drawn[-1][0]
    for seq, uid in drawn:
        assert seq_of(uid) == seq
        assert uid == _encoded(seq, _random_part(uid))

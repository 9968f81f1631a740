"""An archive query's 'end' takes in the whole unit its last digit names (XEP-0313 §4.1.2 read
with XEP-0082 §3.2): to the second, a message received during that second is "equal"; written
to the microsecond, 'end' is exact. 'start' is exact whatever its accuracy."""

from __future__ import annotations

import pytest

from pubsubd.errors import StanzaError
from pubsubd.modules.xep0313_mam import parse_end, parse_stamp

SECOND = 1_000_000


@pytest.mark.parametrize(("text", "takes_in"), [
    ("2026-12-05T01:18:13Z", SECOND - 1),
    ("2026-12-05T03:18:13+02:00", SECOND - 1),
    ("2026-12-05T01:18:13.5Z", 100_000 - 1),
    ("2026-12-05T01:18:13,5Z", 100_000 - 1),
    ("2026-12-05T01:18:13.345Z", 1_000 - 1),
    ("2026-12-05T01:18:13.345678Z", 0),
    ("2026-12-05T01:18:13.3456789Z", 0),  # beyond microseconds: the archive's accuracy
])
def test_end_takes_in_the_unit_of_its_last_digit(text: str, takes_in: int) -> None:
    assert parse_end(text) - parse_stamp(text, "end") == takes_in


def test_a_message_received_within_the_second_of_end_is_taken_in() -> None:
    received = parse_stamp("2026-12-05T01:18:13.345678Z", "received")
    assert parse_stamp("2026-12-05T01:18:13Z", "start") <= received \
        <= parse_end("2026-12-05T01:18:13Z")
    assert received > parse_end("2026-12-05T01:18:12Z")
    assert received > parse_end("2026-12-05T01:18:13.345677Z")


@pytest.mark.parametrize("text", ["yesterday", "2026-12-05T01:18:13"])
def test_end_must_be_a_datetime_with_a_zone(text: str) -> None:
    with pytest.raises(StanzaError):
        parse_end(text)

"""The in-process archive harness (bench/archive_cost.py) routes its chat messages through the
real router and archives every one of them when the archive is on, none when it is off: the
instructions it counts are those of the message path."""

from __future__ import annotations

from pathlib import Path

from bench.archive_cost import PAIRS, measure


async def test_every_routed_message_is_archived_once_with_the_archive_on(tmp_path: Path) -> None:
    per_message, archived = await measure(True, 4 * PAIRS, 2, tmp_path / "on")
    assert archived == 2 * 4 * PAIRS  # each message once in its sender's archive
    assert per_message > 0


async def test_nothing_is_archived_with_the_archive_off(tmp_path: Path) -> None:
    _, archived = await measure(False, 4 * PAIRS, 1, tmp_path / "off")
    assert archived == 0

"""`pubsubd feeds list` fits a 100-column terminal and shows one URL column."""

from __future__ import annotations

from datetime import UTC, datetime

from pubsubd.cli_feeds_table import feeds_table

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _feed(url: str, **extra: object) -> dict[str, object]:
    record: dict[str, object] = {
        "id": url, "url": url, "title": "A feed with a rather long title indeed", "group": "",
        "state": "ok", "status": 200, "last_fetch": "2026-12-04T11:58:00Z",
        "next_fetch": "2026-12-04T12:28:00Z", "period": 1800, "error_streak": 0,
        "last_error": None, "entries": 12, "subscribers": 3, "items": 12,
    }
    record.update(extra)
    return record


def test_every_line_fits_100_columns_with_one_url_column() -> None:
    long_url = "https://example.org/" + "very-long-path/" * 12 + "feed.xml"
    table = feeds_table([_feed(long_url), _feed("http://127.0.0.1:8470/news.xml")], now=NOW)
    lines = table.splitlines()
    assert all(len(line) <= 100 for line in lines), [len(line) for line in lines]
    header = lines[0].split()
    assert header == ["TITLE", "URL", "STATE", "STATUS", "NEXT", "SUBS", "ITEMS"]
    assert "http://127.0.0.1:8470/news.xml" in lines[2]  # a short URL is shown whole
    assert lines[1].count("https://example.org/") == 1 and "…" in lines[1]


def test_next_check_is_relative_and_missing_values_read_as_dashes() -> None:
    table = feeds_table([_feed("http://a.example/f", next_fetch="2026-12-04T12:28:00Z"),
                         _feed("http://b.example/f", next_fetch=None, status=None,
                               state="failing")], now=NOW)
    first, second = table.splitlines()[1:]
    assert "in 28m" in first
    assert "failing" in second and " - " in second


def test_no_feeds() -> None:
    assert feeds_table([]) == "(no feeds)"

"""``pubsubd feeds list`` as a table that fits a terminal (100 columns by default).

The control socket returns every field of every feed; a person scanning the list wants which
feed, whether it works, and when it is next checked. ``--wide`` prints every field instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

WIDTH = 100
_FIXED = (("state", 8), ("status", 6), ("next", 9), ("subs", 4), ("items", 5))
_SEPARATOR = 2


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _next(value: Any, now: datetime) -> str:
    """``in 28m`` / ``due`` / ``-`` from the ISO time the control socket gives."""
    if not value or value == "-":
        return "-"
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)[:9]
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = int((when - now).total_seconds())
    if seconds <= 0:
        return "due"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"in {seconds // size}{unit}"
    return f"in {seconds}s"


def feeds_table(feeds: Sequence[dict[str, Any]], *, width: int = WIDTH,
                now: datetime | None = None) -> str:
    """One line per feed: title, URL (shortened to fit), state, HTTP status, next check,
    subscribers, stored items."""
    if not feeds:
        return "(no feeds)"
    now = now or datetime.now(UTC)
    fixed = sum(w for _, w in _FIXED) + _SEPARATOR * (len(_FIXED) + 1)
    title_width = min(24, max(5, max(len(str(f.get("title") or "")) for f in feeds)))
    url_width = max(20, width - fixed - title_width)
    header = ["TITLE".ljust(title_width), "URL".ljust(url_width),
              *(name.upper().ljust(w) for name, w in _FIXED)]
    lines = [(" " * _SEPARATOR).join(header).rstrip()]
    for feed in feeds:
        cells = [
            _shorten(str(feed.get("title") or "-"), title_width).ljust(title_width),
            _shorten(str(feed.get("url") or feed.get("id") or ""), url_width).ljust(url_width),
            _shorten(str(feed.get("state") or "-"), 8).ljust(8),
            str(feed.get("status") if feed.get("status") is not None else "-").ljust(6),
            _next(feed.get("next_fetch"), now).ljust(9),
            str(feed.get("subscribers", "-")).rjust(4),
            str(feed.get("items", "-")).rjust(5),
        ]
        lines.append((" " * _SEPARATOR).join(cells).rstrip())
    return "\n".join(lines)

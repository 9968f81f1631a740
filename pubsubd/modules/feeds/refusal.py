"""Addresses users give, and why the service refuses to follow one (in words for the user)."""

from __future__ import annotations

from urllib.parse import urlsplit

from feeds.fetch import ErrorKind


class FeedRefused(Exception):
    """A feed the service will not follow, with the reason in words for the user."""

    def __init__(self, message: str, condition: str = "not-acceptable") -> None:
        super().__init__(message)
        self.message = message
        self.condition = condition


def normalize_url(text: str) -> str:
    """The URL a user meant: a bare host name gets https://; other schemes are refused."""
    url = text.strip().strip("<>")
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FeedRefused(f"{text.strip()} is not a web address (http:// or https://).")
    return url


def is_feed_address(node: str) -> bool:
    return node.startswith(("http://", "https://")) and bool(urlsplit(node).hostname)


def refusal_of_fetch(
    url: str, error: ErrorKind | None, detail: str, status: int | None, *,
    final_url: str | None = None,
) -> FeedRefused | None:
    """Why a first fetch means the feed cannot be followed, or None to go ahead.

    Overload answers (429, 503, 5xx) are accepted: the site is there, the poller backs off and
    retries. A site that cannot be reached at all -- no such name, connection refused, TLS
    failure, timeout -- is refused alike, so a typo never becomes a dead subscription.
    """
    # The address refused is the one the fetch ended at (a redirect's target), not the URL.
    host = urlsplit(final_url or url).hostname or url
    match error:
        case None:
            if status is not None and status >= 400 and status not in (429, 503) and status < 500:
                return FeedRefused(f"{url} answered HTTP {status}; no feed there.",
                                   "item-not-found")
            return None
        case ErrorKind.BLOCKED_ADDRESS:
            return FeedRefused(
                f"{host} is a private or local address, which this server does not fetch.",
                "not-allowed",
            )
        case (ErrorKind.INVALID_URL | ErrorKind.DNS | ErrorKind.BAD_REDIRECT | ErrorKind.CONNECT
              | ErrorKind.TLS | ErrorKind.TIMEOUT):
            return FeedRefused(f"Cannot fetch {url}: {detail or error}.", "item-not-found")
        case ErrorKind.HTTP_STATUS if status is not None and status < 500 and status != 429:
            return FeedRefused(f"{url} answered HTTP {status}; no feed there.", "item-not-found")
        case _:
            return None


__all__ = ["FeedRefused", "is_feed_address", "normalize_url", "refusal_of_fetch"]

"""Value types shared by every stage of feed ingestion.

They are frozen so that a stage can hand one to the next (or to another task) without anyone
mutating it behind its back; a new state is made with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FeedState:
    """Everything remembered about one polled feed (persisted by a :class:`FeedStore`).

    ``feed_id`` is the stable key chosen by whoever added the feed (for pubsubd: the node name);
    ``url`` is where the feed is fetched now, which a permanent redirect may change, while
    ``original_url`` keeps the address it was first added with. Times are POSIX seconds.
    """

    feed_id: str
    url: str
    original_url: str = ""
    title: str = ""
    site_link: str = ""
    group: str = ""
    etag: str | None = None
    last_modified: str | None = None
    last_fetch: float | None = None
    next_fetch: float | None = None
    last_change: float | None = None
    interval: float = 1800.0
    error_streak: int = 0
    last_status: int | None = None
    last_error: str = ""
    parse_warning: str = ""
    paused: bool = False
    gone: bool = False
    moved_to: str | None = None
    failing_reported: bool = False
    entries_seen: int = 0
    fetch_count: int = 0

    @property
    def active(self) -> bool:
        """Whether the poller should fetch this feed at all."""
        return not (self.paused or self.gone)

    @property
    def initialized(self) -> bool:
        """Whether a first successful poll has already filled the history."""
        return self.entries_seen > 0 or self.last_change is not None


@dataclass(frozen=True, slots=True)
class Link:
    href: str
    rel: str = "alternate"
    type: str = ""
    title: str = ""
    length: int | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One feed entry, normalized whatever the source format was.

    ``atom_xml`` is a serialized Atom 1.0 ``<entry xmlns="http://www.w3.org/2005/Atom">``, ready
    to be the payload of a pubsub item; ``body_text`` is a plain-text rendering for chat clients
    that show no payloads. ``content_hash`` covers what a reader sees (not dates), so it changes
    only when the entry really changed.
    """

    item_id: str
    title: str
    links: tuple[Link, ...]
    published: str
    updated: str
    author: str
    categories: tuple[str, ...]
    summary_text: str
    content_html: str
    enclosures: tuple[Link, ...]
    atom_xml: str
    body_text: str
    content_hash: str
    source_id: str = ""

    @property
    def link(self) -> str:
        """The main (alternate) link, or an empty string."""
        for link in self.links:
            if link.rel == "alternate":
                return link.href
        return self.links[0].href if self.links else ""


class FeedEventKind(enum.StrEnum):
    MOVED = "moved"
    GONE = "gone"
    FAILING = "failing"
    RECOVERED = "recovered"


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """A change in a feed's health that a human should hear about once, in words."""

    kind: FeedEventKind
    message: str
    status: int | None = None
    new_url: str | None = None
    error: str = ""


@dataclass(slots=True)
class PollerStats:
    """Counters for monitoring; mutable because the poller updates them in place."""

    polls: int = 0
    fetches: int = 0
    not_modified: int = 0
    entries_published: int = 0
    entries_notified: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    queue_depth: int = 0
    last_lag: float = 0.0
    max_lag: float = 0.0
    leases_held: int = 0  # feeds this instance holds a lease on (polling or about to)
    lease_takeovers: int = 0  # leases taken from an instance that never released them
    leases_lost: int = 0  # polls abandoned because another instance took their lease over

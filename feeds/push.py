"""What the poller knows of pushed feeds: the :class:`PushReceiver` it consults, and leases.

A feed whose hub pushes new entries (W3C WebSub) needs polling only as a safety net; one
whose hub is silent, refused or failed is polled as usual. The poller asks the receiver for the
polling period and tells it which hubs a feed advertises; the receiver hands pushed documents
back to :meth:`feeds.poller.Poller.ingest`. Leases are persisted through a :class:`LeaseStore`
so that a restart neither forgets the secret of a subscription nor subscribes twice.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from feeds.model import FeedState

_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[^;,]+)*)')
_REL = re.compile(r';\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))', re.IGNORECASE)


class LeaseState(enum.StrEnum):
    PENDING = "pending"  # subscription requested, the hub has not verified it yet
    ACTIVE = "active"  # verified; the hub pushes until ``expires``
    DENIED = "denied"  # the hub refused (W3C WebSub §5.2) or failed: polling as usual


@dataclass(frozen=True, slots=True)
class PushLease:
    """Our subscription to one feed at one hub. ``token`` is the unguessable last segment of
    the callback URL; ``secret`` keys the hub's HMAC signatures (W3C WebSub §8)."""

    feed_id: str
    hub: str
    topic: str
    token: str
    secret: str
    state: LeaseState = LeaseState.PENDING
    requested: float = 0.0
    expires: float | None = None
    last_push: float | None = None


class LeaseStore(Protocol):
    """Persistence of :class:`PushLease` values, one per feed."""

    async def all_leases(self) -> list[PushLease]: ...

    async def put_lease(self, lease: PushLease) -> None: ...

    async def delete_lease(self, feed_id: str) -> None: ...


class PushReceiver(Protocol):
    """The poller's view of a push subscriber."""

    def poll_interval(self, feed_id: str, now: float) -> float | None:
        """A longer polling period while the feed's hub pushes; None to poll as usual."""
        ...

    async def discovered(self, feed: FeedState, hubs: Sequence[str], topic: str) -> None:
        """The hubs a successful poll found (maybe none) and the feed's canonical URL."""
        ...

    async def forget(self, feed_id: str) -> None:
        """The feed was removed: unsubscribe from its hub."""
        ...


def parse_link_header(value: str) -> tuple[tuple[str, ...], str]:
    """(hub URLs, self URL) of an RFC 8288 Link header (W3C WebSub §4, discovery)."""
    hubs: list[str] = []
    self_url = ""
    for match in _LINK.finditer(value):
        target = match.group(1).strip()
        for rel_match in _REL.finditer(match.group(2)):
            rels = (rel_match.group(1) or rel_match.group(2) or "").lower().split()
            if "hub" in rels and target not in hubs:
                hubs.append(target)
            if "self" in rels and not self_url:
                self_url = target
    return tuple(h for h in hubs if h.startswith(("http://", "https://"))), self_url

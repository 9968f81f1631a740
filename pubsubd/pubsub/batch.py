"""A batch publish: the entries of one feed poll, published to one node together.

Storing them is one transaction, and notifying them one fan-out pass per distinct audience
(items whose text passes the same subscribers' keyword filters share one delivery plan), so a
poll that finds twenty entries costs one write and, usually, one read of the subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .delivery import Candidate, passes_keywords
from .errors import PubSubError
from .notifications import Notification


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One item to publish; ``text`` is its readable text (keyword filters, message body)."""

    item_id: str
    payload: str
    text: str | None = None


@dataclass(frozen=True, slots=True)
class PipelinedPublish:
    """One publish of a pipelined burst to a node (:meth:`PubSubService.publish_each`):
    whoever asked, the item (``item_id`` None: the service names it) and its readable text."""

    requester: str
    item_id: str | None
    payload: str
    text: str | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    node: str
    published: tuple[str, ...]
    """Ids stored (new, or changed), in entry order."""
    unchanged: tuple[str, ...]
    """Ids already stored with the same payload: nothing was done (idempotent by item id)."""
    refused: tuple[tuple[str, PubSubError], ...]
    """Entries refused on their own (e.g. payload-too-big), with why; the others went ahead."""
    notifications: tuple[Notification, ...]
    """One ITEMS notification per published item, in entry order, then any RETRACT of the
    items trimmed by max_items."""


def audience_key(candidates: list[Candidate], text: str | None) -> tuple[bool, ...]:
    """Which of the subscribers with keyword filters the text passes: items with the same key
    have the same delivery plan (XEP-0060 §6.3 subscription options; pubsubd's word filters)."""
    if text is None:
        return ()
    return tuple(
        passes_keywords(c.subscription.options.include_words,
                        c.subscription.options.exclude_words, text)
        for c in candidates
        if c.subscription.options.include_words or c.subscription.options.exclude_words
    )


__all__ = ["BatchEntry", "BatchOutcome", "PipelinedPublish", "audience_key"]

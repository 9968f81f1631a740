"""The feed operations of the local control socket (``pubsubd feeds ...``): the manager's
actions with JSON arguments and answers; a refusal becomes the operator's error."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from feeds.model import FeedState
from feeds.opml import OpmlFeed
from feeds.poller import PollOutcome
from pubsubd.core.control_ops import ControlOps
from pubsubd.modules.control_socket import ControlError
from pubsubd.modules.feeds.manager import FeedManager, FeedStatus
from pubsubd.modules.feeds.refusal import FeedRefused
from pubsubd.modules.feeds.status import feed_condition, iso


def outcome_json(outcome: PollOutcome) -> dict[str, Any]:
    return {"ok": not outcome.error, "status": outcome.status, "new": outcome.new,
            "updated": outcome.updated, "notified": outcome.notified, "error": outcome.error,
            "events": [e.message for e in outcome.events]}


def status_json(status: FeedStatus) -> dict[str, Any]:
    return {**state_json(status.state), "subscribers": status.subscribers,
            "items": status.items}


def state_json(state: FeedState) -> dict[str, Any]:
    return {"id": state.feed_id, "url": state.url, "title": state.title, "group": state.group,
            "state": feed_condition(state), "status": state.last_status,
            "last_fetch": iso(state.last_fetch), "next_fetch": iso(state.next_fetch),
            "period": int(state.interval), "error_streak": state.error_streak,
            "last_error": state.last_error, "entries": state.entries_seen}


_T = TypeVar("_T")


async def _controlled(action: Awaitable[_T]) -> _T:
    """Run a manager action for the control socket: a refusal becomes the operator's error."""
    try:
        return await action
    except FeedRefused as refused:
        raise ControlError(refused.message) from None



class FeedControl:
    """The ``feeds.*`` operations, on one manager."""

    def __init__(self, manager: FeedManager) -> None:
        self.manager = manager

    def register(self, ops: ControlOps) -> None:
        ops.update({
            "feeds.list": self.list_feeds, "feeds.add": self.add, "feeds.remove": self.remove,
            "feeds.pause": self.pause, "feeds.resume": self.resume,
            "feeds.refresh": self.refresh, "feeds.import": self.import_opml,
            "feeds.export": self.export_opml,
        })

    @staticmethod
    def _id(args: Mapping[str, Any]) -> str:
        value = str(args.get("id") or args.get("url") or "")
        if not value:
            raise ControlError("a feed id (its URL) is required")
        return value

    async def list_feeds(self, args: dict[str, Any]) -> Any:
        """Every polled feed with its state, subscribers and items."""
        return [status_json(s) for s in await self.manager.statuses()]

    async def add(self, args: dict[str, Any]) -> Any:
        """Poll a feed (url, title, group) whether or not anyone follows it."""
        entry = OpmlFeed(str(args.get("url", "")), str(args.get("title") or ""), "",
                         str(args.get("group") or ""))
        return state_json(await _controlled(self.manager.add_pinned(entry)))

    async def remove(self, args: dict[str, Any]) -> Any:
        """Stop polling a feed and forget its state (its node and items stay)."""
        return {"removed": await self.manager.remove(self._id(args))}

    async def pause(self, args: dict[str, Any]) -> Any:
        """Stop polling a feed until resumed."""
        return state_json(await _controlled(self.manager.pause(self._id(args))))

    async def resume(self, args: dict[str, Any]) -> Any:
        """Poll a paused (or gone) feed again, now."""
        return state_json(await _controlled(self.manager.resume(self._id(args))))

    async def refresh(self, args: dict[str, Any]) -> Any:
        """Poll a feed now and report what happened."""
        return outcome_json(await _controlled(self.manager.refresh(self._id(args))))

    async def import_opml(self, args: dict[str, Any]) -> Any:
        """Poll every feed of an OPML document (args: opml)."""
        report = await _controlled(self.manager.import_opml(None, str(args.get("opml", ""))))
        return {"added": list(report.added),
                "failed": [{"url": u, "reason": r} for u, r in report.failed]}

    async def export_opml(self, args: dict[str, Any]) -> Any:
        """Every polled feed as an OPML document."""
        return {"opml": await self.manager.export_opml(None)}


__all__ = ["FeedControl", "outcome_json", "state_json", "status_json"]

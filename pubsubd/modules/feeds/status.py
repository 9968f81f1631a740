"""A feed's health, as the ``<status xmlns='urn:pubsubd:feed-status:0'/>`` element that rides
along with event messages and as extra pubsub#meta-data fields of its node's disco#info.

Fields: ``pubsubd#feed_url``, ``pubsubd#last_fetch``, ``pubsubd#http_status``,
``pubsubd#last_error``, ``pubsubd#next_fetch``, ``pubsubd#period``, ``pubsubd#error_streak``...;
the element carries ``<http code='410'>last error</http>``, ``<last_fetch/>``, ``<next_fetch/>``
(XEP-0082), ``<period/>`` (seconds), ``<error_streak/>``, ``<entries/>``, ``<state/>`` and
``<title/>``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from feeds.model import FeedState
from pubsubd import ns
from pubsubd.xml import builders

STATUS = ns.clark(ns.FEED_STATUS, "status")


def iso(timestamp: float | None) -> str:
    """XEP-0082 DateTime of a POSIX time, or "" for None."""
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")



def status_element(state: FeedState) -> etree._Element:
    """``<status xmlns='urn:pubsubd:feed-status:0'/>``: the feed's health at a glance.

    The fields are those of the superfeedr status element (HTTP code and message, last and
    next fetch, polling period, error streak), in pubsubd's own namespace.
    """
    el = builders.element(ns.FEED_STATUS, "status", feed=state.url)
    http = etree.SubElement(el, ns.clark(ns.FEED_STATUS, "http"))
    if state.last_status is not None:
        http.set("code", str(state.last_status))
    http.text = state.last_error or None
    for name, value in (
        ("title", state.title),
        ("last_fetch", iso(state.last_fetch)),
        ("next_fetch", iso(state.next_fetch)),
        ("period", str(int(state.interval))),
        ("error_streak", str(state.error_streak)),
        ("entries", str(state.entries_seen)),
        ("state", feed_condition(state)),
    ):
        if value:
            etree.SubElement(el, ns.clark(ns.FEED_STATUS, name)).text = value
    return el


def feed_condition(state: FeedState) -> str:
    if state.gone:
        return "gone"
    if state.paused:
        return "paused"
    if state.error_streak:
        return "failing"
    return "ok" if state.last_fetch is not None else "new"


def feed_metadata(state: FeedState) -> dict[str, list[str]]:
    """Extra pubsub#meta-data fields of a feed node (XEP-0060 §5.4 allows more fields)."""
    fields = {
        "pubsubd#feed_url": state.url,
        "pubsubd#feed_original_url": state.original_url,
        "pubsubd#feed_title": state.title,
        "pubsubd#site_link": state.site_link,
        "pubsubd#feed_state": feed_condition(state),
        "pubsubd#last_fetch": iso(state.last_fetch),
        "pubsubd#next_fetch": iso(state.next_fetch),
        "pubsubd#http_status": "" if state.last_status is None else str(state.last_status),
        "pubsubd#last_error": state.last_error,
        "pubsubd#parse_warning": state.parse_warning,
        "pubsubd#period": str(int(state.interval)),
        "pubsubd#error_streak": str(state.error_streak),
        "pubsubd#entries_seen": str(state.entries_seen),
        "pubsubd#fetch_count": str(state.fetch_count),
    }
    return {k: [v] if v else [] for k, v in fields.items()}


__all__ = ["STATUS", "feed_condition", "feed_metadata", "iso", "status_element"]

"""A feed's icon or logo as its contact's avatar (XEP-0054 PHOTO, XEP-0153 hash in presence).

The image named by the feed document (Atom ``<icon>``/``<logo>``, RSS ``<image><url>``) is
fetched through the feeds' own guarded fetcher — private addresses refused unless allowed —
and kept only when it is a small image; any failure just means no avatar.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urljoin

import trio
from lxml import etree

from feeds.fetch import FetchResult
from feeds.model import FeedState

log = logging.getLogger(__name__)

MAX_BYTES = 128 * 1024  # an avatar, not a poster
TIMEOUT = 15.0
RETRY_AFTER = 3600.0  # seconds before a feed without a usable image is looked at again
_ATOM = "{http://www.w3.org/2005/Atom}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          recover=True)
Fetch = Callable[[str], Awaitable[FetchResult]]


@dataclass(frozen=True, slots=True)
class Photo:
    mime: str
    data: bytes

    @property
    def sha1(self) -> str:
        """XEP-0153 §4.1: the hex SHA-1 of the image data."""
        return hashlib.sha1(self.data, usedforsecurity=False).hexdigest()


def image_url(document: bytes, base: str) -> str:
    """The feed's icon (preferred, it is square) or logo, as an absolute URL; "" if none."""
    try:
        root = etree.fromstring(document, _PARSER)
    except etree.XMLSyntaxError:
        return ""
    if root is None:
        return ""
    for found in (root.findtext(f"{_ATOM}icon"), root.findtext(f"{_ATOM}logo"),
                  root.findtext("channel/image/url")):
        if found and found.strip():
            return urljoin(base, found.strip())
    return ""


def photo_of(result: FetchResult) -> Photo | None:
    mime = result.content_type.split(";")[0].strip().lower()
    if not result.ok or not mime.startswith("image/") or not result.body:
        return None
    if len(result.body) > MAX_BYTES:
        return None
    return Photo(mime, result.body)


class FeedAvatars:
    """Avatars of feeds, fetched once per feed and kept in memory."""

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch
        self._known: dict[str, Photo] = {}
        self._missing: dict[str, float] = {}  # feed id → when no image was found

    def cached(self, feed_id: str) -> Photo | None:
        return self._known.get(feed_id)

    async def photo(self, state: FeedState) -> Photo | None:
        if state.feed_id in self._known:
            return self._known[state.feed_id]
        if trio.current_time() - self._missing.get(state.feed_id, -RETRY_AFTER) < RETRY_AFTER:
            return None
        photo = None
        with trio.move_on_after(TIMEOUT):
            try:
                photo = await self._load(state)
            except Exception:  # noqa: BLE001 - no avatar is fine
                log.info("no avatar for feed %s", state.feed_id, exc_info=True)
        if photo is None:
            self._missing[state.feed_id] = trio.current_time()
        else:
            self._known[state.feed_id] = photo
        return photo

    async def _load(self, state: FeedState) -> Photo | None:
        document = await self.fetch(state.url)
        if not document.ok:
            return None
        url = image_url(document.body, document.final_url or state.url)
        if not url.startswith(("http://", "https://")):
            return None
        return photo_of(await self.fetch(url))

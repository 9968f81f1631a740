"""A W3C WebSub subscriber: feeds whose hub pushes need no frequent polling.

When a poll finds that a feed advertises a hub (``<link rel="hub">`` or a ``Link`` header), the
subscriber asks the hub for a lease with a callback URL under our public address, one
unguessable token per feed, and a secret of its own. The hub verifies our intent by a GET on
the callback (§5.3), then POSTs each new version of the feed there (§7), signed with the
secret (``X-Hub-Signature``, §8); a valid push goes to the poller's ``ingest`` at once. Leases
are renewed before they expire. A hub that refuses, never verifies, or lets a lease lapse
just means the feed is polled as usual again: :meth:`poll_interval` stretches polling only while
a lease is active.

HTTP stays outside: :meth:`callback` maps a request's parts to ``(status, body)``, so any
server can route ``<callback base><token>`` to it. Requests to hubs go through the client
given, which for pubsubd is the guarded transport of feed fetches.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import httpx
import trio

from feeds.model import FeedState
from feeds.push import LeaseState, LeaseStore, PushLease

log = logging.getLogger(__name__)

# W3C WebSub §8: the signature methods a hub may use.
SIGNATURE_METHODS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256,
                     "sha384": hashlib.sha384, "sha512": hashlib.sha512}
Ingest = Callable[[str, bytes, str], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class SubscriberConfig:
    callback_base: str  # e.g. https://example.org/websub/cb/ — the token is appended
    lease_seconds: int = 86400
    renew_before: float = 3600.0
    verify_timeout: float = 300.0
    poll_interval_with_push: float = 21600.0
    maintenance_tick: float = 60.0


def signature_valid(secret: str, body: bytes, header: str) -> bool:
    """Whether ``X-Hub-Signature: method=hex`` is the HMAC of ``body`` under ``secret``."""
    method, _, signature = header.strip().partition("=")
    digest = SIGNATURE_METHODS.get(method.strip().lower())
    if digest is None or not signature:
        return False
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    return hmac.compare_digest(expected, signature.strip().lower())


class WebSubSubscriber:
    """Implements :class:`feeds.push.PushReceiver`; run :meth:`run` in a nursery."""

    def __init__(self, store: LeaseStore, client: httpx.AsyncClient, config: SubscriberConfig,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.client = client
        self.config = config
        self._clock = clock
        self._leases: dict[str, PushLease] = {}
        self._by_token: dict[str, str] = {}
        self._dropping: dict[str, PushLease] = {}  # token → lease being unsubscribed
        self._ingest: Ingest | None = None
        self._send, self._receive = trio.open_memory_channel[tuple[str, bytes, str]](1000)
        self.pushes = 0
        self.rejected = 0
        self.ready = trio.Event()

    def attach(self, ingest: Ingest) -> None:
        """Where verified pushes go: ``ingest(feed_id, body, content_type)``."""
        self._ingest = ingest

    # -- the poller's side ----------------------------------------------------------------

    def poll_interval(self, feed_id: str, now: float) -> float | None:
        lease = self._leases.get(feed_id)
        if lease is None or lease.state is not LeaseState.ACTIVE:
            return None
        if lease.expires is not None and lease.expires <= now:
            return None
        return self.config.poll_interval_with_push

    async def discovered(self, feed: FeedState, hubs: Sequence[str], topic: str) -> None:
        await self.ready.wait()  # the stored leases first, or a restart would subscribe anew
        current = self._leases.get(feed.feed_id)
        if not hubs:
            if current is not None:
                await self._unsubscribe(current)
            return
        if current is not None and current.hub in hubs and current.topic == topic:
            return  # subscribed or on its way; the maintenance loop renews or retries it
        if current is not None:
            await self._unsubscribe(current)
        await self._subscribe(feed.feed_id, hubs[0], topic)

    async def forget(self, feed_id: str) -> None:
        await self.ready.wait()
        current = self._leases.get(feed_id)
        if current is not None:
            await self._unsubscribe(current)

    # -- requests to the hub --------------------------------------------------------------

    async def _save(self, lease: PushLease) -> None:
        await self.store.put_lease(lease)
        self._leases[lease.feed_id] = lease
        self._by_token[lease.token] = lease.feed_id

    async def _subscribe(self, feed_id: str, hub: str, topic: str,
                         renewing: PushLease | None = None) -> None:
        now = self._clock()
        if renewing is not None:
            # A renewal keeps token and secret, and the lease stays active meanwhile.
            lease = replace(renewing, requested=now)
        else:
            lease = PushLease(feed_id, hub, topic, secrets.token_urlsafe(24),
                              secrets.token_hex(32), LeaseState.PENDING, now)
        await self._save(lease)
        status = await self._hub_request(lease, "subscribe")
        if status is None or not 200 <= status < 300:
            log.info("feed %s: hub %s refused the subscription (%s)", feed_id, hub, status)
            await self._save(replace(lease, state=LeaseState.DENIED))

    async def _unsubscribe(self, lease: PushLease) -> None:
        self._leases.pop(lease.feed_id, None)
        self._by_token.pop(lease.token, None)
        await self.store.delete_lease(lease.feed_id)
        if lease.state is LeaseState.DENIED:
            return
        self._dropping[lease.token] = lease
        await self._hub_request(lease, "unsubscribe")

    async def _hub_request(self, lease: PushLease, mode: str) -> int | None:
        """W3C WebSub §5.1: a form POST to the hub; its status, or None if it failed."""
        form = {
            "hub.mode": mode,
            "hub.topic": lease.topic,
            "hub.callback": self.config.callback_base + lease.token,
        }
        if mode == "subscribe":
            form["hub.lease_seconds"] = str(self.config.lease_seconds)
            form["hub.secret"] = lease.secret
        try:
            response = await self.client.post(lease.hub, data=form)
            await response.aclose()
        except Exception as exc:  # a broken hub must never break polling
            log.info("WebSub %s at %s failed: %s", mode, lease.hub, exc)
            return None
        return response.status_code

    # -- the callback ---------------------------------------------------------------------

    async def callback(self, method: str, token: str, query: Mapping[str, str],
                       headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        """Answer one request on our callback URL (header names lower-cased)."""
        if not self.ready.is_set():
            return 503, b""
        if method == "GET":
            return await self._verify(token, query)
        if method != "POST":
            return 405, b""
        feed_id = self._by_token.get(token)
        lease = self._leases.get(feed_id) if feed_id else None
        if lease is None:
            return 410, b""  # §7: 410 Gone tells the hub to drop the subscription
        if not signature_valid(lease.secret, body, headers.get("x-hub-signature", "")):
            # §8: ignored as invalid, yet acknowledged so a forger learns nothing.
            self.rejected += 1
            log.warning("feed %s: push with a missing or wrong signature ignored", feed_id)
            return 202, b""
        self.pushes += 1
        self._leases[lease.feed_id] = replace(lease, last_push=self._clock())
        try:
            self._send.send_nowait((lease.feed_id, body, headers.get("content-type", "")))
        except trio.WouldBlock:
            return 429, b""
        return 202, b""

    async def _verify(self, token: str, query: Mapping[str, str]) -> tuple[int, bytes]:
        """§5.3: confirm the intent we have, deny what we did not ask for."""
        mode = query.get("hub.mode", "")
        topic = query.get("hub.topic", "")
        challenge = query.get("hub.challenge", "")
        if mode == "unsubscribe":
            dropping = self._dropping.get(token)
            if dropping is None or dropping.topic != topic:
                return 404, b""
            del self._dropping[token]
            return 200, challenge.encode()
        feed_id = self._by_token.get(token)
        lease = self._leases.get(feed_id) if feed_id else None
        if lease is None or lease.topic != topic:
            return 404, b""
        if mode == "denied":  # §5.2
            await self._save(replace(lease, state=LeaseState.DENIED))
            return 200, b""
        if mode != "subscribe" or not challenge:
            return 404, b""
        seconds = query.get("hub.lease_seconds", "")
        lease_seconds = int(seconds) if seconds.isdigit() else self.config.lease_seconds
        await self._save(replace(lease, state=LeaseState.ACTIVE,
                                 expires=self._clock() + lease_seconds))
        log.info("feed %s: %s pushes it for %d s", feed_id, lease.hub, lease_seconds)
        return 200, challenge.encode()

    # -- background -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for lease in await self.store.all_leases():
            self._leases[lease.feed_id] = lease
            self._by_token[lease.token] = lease.feed_id
        self.ready.set()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._deliver)
            task_status.started()
            while True:
                await self.maintain()
                await trio.sleep(self.config.maintenance_tick)

    async def _deliver(self) -> None:
        async for feed_id, body, content_type in self._receive:
            if self._ingest is None:
                continue
            try:
                await self._ingest(feed_id, body, content_type)
            except Exception:
                log.exception("feed %s: a pushed document could not be published", feed_id)

    async def maintain(self) -> None:
        """Renew leases about to expire; give up on hubs that never verified; retry refusals."""
        now = self._clock()
        cfg = self.config
        for lease in list(self._leases.values()):
            if lease.state is LeaseState.ACTIVE:
                if lease.expires is not None and lease.expires - cfg.renew_before <= now \
                        and now - lease.requested > cfg.renew_before / 2:
                    await self._subscribe(lease.feed_id, lease.hub, lease.topic, renewing=lease)
            elif lease.state is LeaseState.PENDING:
                if now - lease.requested > cfg.verify_timeout:
                    await self._save(replace(lease, state=LeaseState.DENIED))
            elif now - lease.requested > cfg.lease_seconds:
                await self._subscribe(lease.feed_id, lease.hub, lease.topic)

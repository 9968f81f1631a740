"""Publishes a client pipelines to the service, stored by group commit.

A publisher that sends many publish IQs at once (XEP-0060 §7.1) would otherwise pay one storage
round trip per item while its connection's reader waits, and its subscribers' writers would wake
once per item. Here such a publish is queued instead: one task takes every publish queued
meanwhile to the same node, stores them in one transaction (``PubSubService.publish_each``),
and only then answers each and sends its notifications, in arrival order. The result still
means what it says: the item is durable before it is acknowledged.

A client's requests keep their order (RFC 6120 §10.1): any other stanza from a sender to the
service waits until that sender's queued publishes are answered.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from pubsubd import ns
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.pubsub import PubSubError, PubSubService
from pubsubd.pubsub.batch import PipelinedPublish

from .errors import to_stanza_error
from .handlers import Answer, published_answer
from .notify import readable_text
from .requests import PubSubRequest, Verb, parse

log = logging.getLogger(__name__)

_PUBSUB = ns.clark(ns.PUBSUB, "pubsub")
_PUBLISH = ns.clark(ns.PUBSUB, "publish")
QUEUE_LIMIT = 2000  # publishes queued at most; beyond, a publish waits its turn in the reader
BURST_LIMIT = 500  # publishes stored in one transaction at most

AfterPublish = Callable[[Answer], Awaitable[None]]


@dataclass(slots=True)
class _Queued:
    stanza: Stanza
    node: str
    publish: PipelinedPublish


class PublishPipeline:
    """The queue of pipelined publishes and the task that stores and answers them."""

    def __init__(self, service: PubSubService, router: Router, after: AfterPublish) -> None:
        self.service = service
        self.router = router
        self.after = after  # notifications and published handlers of an answered publish
        self.running = False
        self._queue: deque[_Queued] = deque()
        self._wake = trio.Event()
        self._pending: dict[JID, int] = {}  # queued or being stored, by sender
        self._settled: dict[JID, trio.Event] = {}  # set when a sender has none pending

    def take(self, st: Stanza) -> bool:
        """Queue ``st`` if it is a plain publish (one item, no publish-options); False leaves
        it to the caller."""
        if not self.running or len(self._queue) >= QUEUE_LIMIT:
            return False
        el = st.element
        if len(el) != 1 or el[0].tag != _PUBSUB or st.type != "set":
            return False
        payload = el[0]
        if len(payload) != 1 or payload[0].tag != _PUBLISH:
            return False
        try:
            request = parse(el)
        except (StanzaError, PubSubError):
            return False  # the ordinary path answers it with its error
        if not _plain_publish(request):
            return False
        item = request.items[0]
        node = request.node or ""
        publish = PipelinedPublish(str(st.from_), item.item_id, item.payload,
                                   readable_text(item.payload))
        self._queue.append(_Queued(st, node, publish))
        self._pending[st.from_] = self._pending.get(st.from_, 0) + 1
        self._wake.set()
        return True

    async def settled(self, sender: JID) -> None:
        """Return once ``sender`` has no queued publish left (at once when it has none)."""
        if sender not in self._pending:
            return
        event = self._settled.get(sender)
        if event is None:
            event = self._settled[sender] = trio.Event()
        await event.wait()

    async def run(self) -> None:
        self.running = True
        try:
            while True:
                if not self._queue:
                    self._wake = trio.Event()
                    await self._wake.wait()
                await self._store(self._burst())
        finally:
            self.running = False

    def _burst(self) -> list[_Queued]:
        """The oldest queued publish and those right behind it to the same node."""
        first = self._queue.popleft()
        burst = [first]
        while self._queue and len(burst) < BURST_LIMIT and self._queue[0].node == first.node:
            burst.append(self._queue.popleft())
        return burst

    async def _store(self, burst: list[_Queued]) -> None:
        try:
            outcomes = await self.service.publish_each(burst[0].node,
                                                       [q.publish for q in burst])
        except Exception:
            log.exception("could not store %d pipelined publishes", len(burst))
            for queued in burst:
                await self._answer_error(queued, StanzaError(Condition.INTERNAL_SERVER_ERROR))
            return
        for queued, outcome in zip(burst, outcomes, strict=True):
            try:
                if isinstance(outcome, PubSubError):
                    await self.router.bounce(queued.stanza, to_stanza_error(outcome))
                else:
                    answer = published_answer(outcome, queued.publish.text)
                    await self.router.reply(queued.stanza, answer.payload)
                    await self.after(answer)
            except Exception:
                log.exception("could not answer a pipelined publish")
            finally:
                self._done(queued.stanza.from_)

    async def _answer_error(self, queued: _Queued, error: StanzaError) -> None:
        try:
            await self.router.bounce(queued.stanza, error)
        finally:
            self._done(queued.stanza.from_)

    def _done(self, sender: JID) -> None:
        left = self._pending.get(sender, 0) - 1
        if left > 0:
            self._pending[sender] = left
            return
        self._pending.pop(sender, None)
        event = self._settled.pop(sender, None)
        if event is not None:
            event.set()


def _plain_publish(request: PubSubRequest) -> bool:
    return (request.verb is Verb.PUBLISH and request.publish_options is None
            and len(request.items) == 1)

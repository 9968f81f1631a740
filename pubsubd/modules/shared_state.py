"""Other instances' changes to shared state, heard for the caches outside the stores.

Several instances may serve one PostgreSQL database (docs/scaling.md, "Shared state and
caches"). The stores keep their own caches current (:mod:`pubsubd.storage.postgres.invalidation`);
this module runs the listening for the server's lifetime and passes node changes on to the
fan-out of the pubsub service concerned, whose delivery candidates of the node must be built
again from the subscriptions as they are now.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pubsubd.core.module import Module
from pubsubd.pubsub.service import PubSubService
from pubsubd.storage.interfaces import Invalidation

ServiceLookup = Callable[[str], PubSubService | None]
"""The pubsub service (``pubsub.<domain>`` or an account's PEP) of a service JID, if loaded."""


class SharedStateModule(Module):
    name = "shared_state"

    def __init__(self, *, invalidation: Invalidation, services: ServiceLookup) -> None:
        super().__init__()
        self.invalidation = invalidation
        self.services = services

    def setup(self) -> None:
        self.invalidation.subscribe("pubsub", self._node_changed)

    async def run(self) -> None:
        await self.invalidation.run()

    async def _node_changed(self, key: str | None) -> None:
        if key is None:
            return  # the stores dropped every cached node; the fan-out notices new objects
        service_jid, node_id = json.loads(key)
        service = self.services(service_jid)
        if service is not None:
            service.fanout.invalidate(node_id)

"""XEP-0163 Personal Eventing Protocol: a pubsub service on every account's bare JID.

Each account gets a :class:`PubSubService` keyed by its bare JID (``ServiceConfig.for_pep``:
presence access model, auto-create on publish, one item per node), over the same store and the
same request table, handlers, error table and notification sender as ``pubsub.<domain>``.
Contacts receive events when their entity capabilities carry ``<node>+notify`` (§4.2), and the
last items when they come online (§4.3.4) — what avatars (XEP-0084), nicknames (XEP-0172) and
OMEMO device lists need.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import AlreadyAnswered, Router, Stanza
from pubsubd.core.session import SessionRegistry
from pubsubd.jid import JID
from pubsubd.modules.xep0030_disco import DiscoModule
from pubsubd.modules.xep0060_pubsub.disco import PEP_FEATURES
from pubsubd.modules.xep0060_pubsub.errors import reply_with_payload, to_stanza_error
from pubsubd.modules.xep0060_pubsub.handlers import execute, rejected_entries_payload
from pubsubd.modules.xep0060_pubsub.notify import NotificationSender
from pubsubd.modules.xep0060_pubsub.presence import ServerPresence
from pubsubd.modules.xep0060_pubsub.requests import PAYLOAD_TAGS, parse
from pubsubd.presence_view import PresenceView
from pubsubd.pubsub import PubSubError, PubSubService, RejectedEntries, ServiceConfig
from pubsubd.pubsub.store import PubSubStore

_CAPS_WAIT = 3.0  # how long to wait for a new client's caps to be resolved (XEP-0115 §6.3)
_CAPS_POLL = 0.1


class PepModule(Module):
    name = "pep"

    def __init__(self, *, store: PubSubStore, router: Router, sessions: SessionRegistry,
                 hooks: HookBus, presence: PresenceView | None, disco: DiscoModule,
                 max_payload_bytes: int, domains: Iterable[str],
                 blocked: Callable[[JID, Callable[[], JID]], bool] | None = None) -> None:
        super().__init__()
        self.store = store  # the one pubsub.<domain> uses too
        self.router = router
        self.view = presence
        self.disco = disco
        self.presence = ServerPresence(router, sessions, presence)
        # XEP-0191: a contact one blocks is not heard from (xep0191_blocking.blocked_by).
        self.sender = NotificationSender(router, sessions, hooks, blocked)
        self.config = ServiceConfig.for_pep(
            max_payload_size=max_payload_bytes,
            local_domains=frozenset(domains),
        )

    def setup(self) -> None:
        self._services: dict[str, PubSubService] = {}
        self._available: set[str] = set()
        self._nursery: trio.Nursery | None = None
        router = self.router
        for scope in ("self", "bare"):
            for type_ in ("get", "set"):
                for tag in PAYLOAD_TAGS:
                    router.add_iq_handler(scope, type_, tag, self._iq)
        disco = self.disco
        # XEP-0163 §6.1: the account is a pubsub/pep entity with the pubsub features.
        disco.account_identities.append(("pubsub", "pep"))
        disco.account_features.update({ns.PUBSUB, f"{ns.PUBSUB}#publish", *PEP_FEATURES})
        disco.account_item_providers.append(self._disco_items)
        view = self.view
        if view is not None:
            view.on_available(self._user_available)
            view.on_unavailable(self._user_unavailable)

    def loaded(self, owner_bare: str) -> PubSubService | None:
        """The account's PEP service if one was created, without creating it."""
        return self._services.get(owner_bare)

    def service_for(self, owner_bare: str) -> PubSubService:
        """The PEP service of one account (created on first use; cheap)."""
        service = self._services.get(owner_bare)
        if service is None:
            service = PubSubService(
                self.store,
                self.presence,
                self.presence,
                service=owner_bare,
                config=self.config,
                clock=time.time,
                interest=self.presence,
                subscribers=self.presence,
            )
            self._services[owner_bare] = service
        return service

    async def _iq(self, st: Stanza) -> etree._Element | None:
        owner = str(st.to.bare) if st.to is not None else str(st.from_.bare)
        service = self.service_for(owner)
        request = parse(st.element)
        try:
            answer = await execute(service, str(st.from_), request)
        except RejectedEntries as error:
            await reply_with_payload(self.router, st, error, rejected_entries_payload(error))
            await self.sender.send(error.notifications)
            raise AlreadyAnswered from None
        except PubSubError as error:
            raise to_stanza_error(error) from None
        # Answer first, then notify (the publisher's own resources are notified too, §4.3.2).
        await self.router.reply(st, answer.payload)
        await self.sender.send(answer.notifications, answer.text)
        raise AlreadyAnswered

    async def _disco_items(self, owner: JID, requester: JID) -> list[etree._Element]:
        """XEP-0163 §6.2 / XEP-0060 §5.2: the account's PEP nodes the requester may see."""
        service = self.service_for(str(owner.bare))
        items = []
        for node in await service.list_nodes():
            try:
                await service.items(str(requester), node.node_id, max_items=0)
            except PubSubError:
                continue
            item = etree.Element(ns.clark(ns.DISCO_ITEMS, "item"), jid=str(owner.bare),
                                 node=node.node_id)
            if node.config.title:
                item.set("name", node.config.title)  # XEP-0060 §5.2: the node's title
            items.append(item)
        return items

    # --- contacts coming online ----------------------------------------------------------------

    async def _user_available(self, full: JID, show: str) -> None:
        key = str(full)
        if key in self._available:
            return  # only initial presence brings the last items (§4.3.4)
        self._available.add(key)
        view = self.view
        if (view is not None and view.caps(full) is not None and view.features(full) is None
                and self._nursery is not None):
            # The caps module is still asking the client what its ``ver`` means.
            self._nursery.start_soon(self._after_caps, full, show)
            return
        await self._send_last_items(full, show)

    async def _after_caps(self, full: JID, show: str) -> None:
        view = self.view
        assert view is not None  # only scheduled when presence is known
        with trio.move_on_after(_CAPS_WAIT):
            # The presence view has no event for a verified caps answer; the wait is bounded.
            while view.features(full) is None and view.caps(full) is not None:  # noqa: ASYNC110
                await trio.sleep(_CAPS_POLL)
        await self._send_last_items(full, show)

    async def _send_last_items(self, full: JID, show: str) -> None:
        user = str(full.bare)
        owners = dict.fromkeys([user, *self.presence.subscribed_contacts(user)])
        for owner in owners:
            if not await self.store.list_nodes(owner):
                continue
            try:
                notifications = await self.service_for(owner).became_available(
                    str(full), show, initial=True
                )
                await self.sender.send(notifications)
            except Exception:
                self.log.exception("last PEP items of %s for %s", owner, full)

    async def _user_unavailable(self, full: JID) -> None:
        self._available.discard(str(full))
        owner = str(full.bare)
        if self.presence.available_resources(owner) or not await self.store.list_nodes(owner):
            return
        try:
            # The account's last resource left: purge its pubsub#purge_offline nodes.
            outcome = await self.service_for(owner).became_unavailable(
                str(full), last_resource=True
            )
            await self.sender.send(outcome.notifications)
        except Exception:
            self.log.exception("PEP purge_offline of %s", owner)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await trio.sleep_forever()

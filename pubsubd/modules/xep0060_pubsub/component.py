"""The XEP-0060 service on ``pubsub.<domain>``: an in-process component of the router.

It turns pubsub IQs into calls of the core :class:`PubSubService` (through the verb table of
:mod:`.requests` and the functions of :mod:`.handlers`), sends the resulting notifications,
answers disco, keeps a presence of its own so users can put it in their roster, and feeds
users' presence changes to the core (presence-based delivery, catch-up, last items).

The feed engine and other modules extend it through the hooks documented on
:class:`PubSubComponent`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.config import Config
from pubsubd.core.disco_registry import DiscoRegistry
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import AlreadyAnswered, Router, Stanza
from pubsubd.core.session import SessionRegistry
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.modules.xep0050_commands import CommandRegistry
from pubsubd.presence_view import PresenceView
from pubsubd.pubsub import (
    Notification,
    PubSubError,
    PubSubService,
    RejectedEntries,
    ServiceConfig,
)
from pubsubd.pubsub.model import NodeConfig
from pubsubd.storage.interfaces import PubSubStore
from pubsubd.xml import builders

from . import disco
from .errors import reply_with_payload, to_stanza_error
from .handlers import Answer, execute, rejected_entries_payload, resolve_approval
from .notify import NotificationSender
from .pending import GET_PENDING, get_pending_command
from .presence import ServerPresence
from .publish_pipeline import PublishPipeline
from .requests import PAYLOAD_TAGS, PubSubRequest, Verb, form_values, parse

MissingNodeHandler = Callable[[str, str], Awaitable[bool]]
SubscriptionHandler = Callable[[str, str], Awaitable[None]]
UnsubscribedHandler = Callable[[str, str, int], Awaitable[None]]
MessageHandler = Callable[[Stanza], Awaitable[bool]]
IqHandler = Callable[[Stanza], Awaitable[etree._Element | None]]
ContactHandler = Callable[[Stanza], Awaitable[bool]]

_DISCO_INFO = ns.clark(ns.DISCO_INFO, "query")
_DISCO_ITEMS = ns.clark(ns.DISCO_ITEMS, "query")
_COMMAND = ns.clark(ns.COMMANDS, "command")
_X = ns.clark(ns.DATA_FORMS, "x")
_DIGEST_PERIOD = 1.0


def pubsub_service_config(server_config: Config) -> ServiceConfig:
    """The component's :class:`ServiceConfig` from the ``pubsub`` section of the config."""
    cfg = server_config.pubsub
    limit = max(1000, cfg.max_items)
    return ServiceConfig(
        max_payload_size=cfg.max_payload_bytes,
        max_items_limit=limit,
        default_node_config=NodeConfig(max_items=cfg.max_items,
                                       max_payload_size=cfg.max_payload_bytes),
        node_creation=cfg.creation_policy,
        local_domains=frozenset(server_config.domains),
        admins=frozenset(server_config.admins),
        catch_up_cap=cfg.catch_up_max_items,
        max_nodes_per_owner=server_config.limits.max_nodes_per_user,
    )


class PubSubComponent(Module):
    """``pubsub.<domain>``. Extension points (used by the feed engine):

    * ``service`` — the core service; ``publish_as_service`` / ``send_notifications``;
    * ``missing_node_handlers`` — ``async (requester, node) -> bool`` run when a subscribe or
      items request names an unknown node; True means the handler created it;
    * ``subscribed_handlers`` / ``unsubscribed_handlers`` — told of (un)subscriptions;
    * ``message_handlers`` — chat/normal messages to the service JID (chat commands);
    * ``iq_handlers`` — ``{(type, clark tag): async (st) -> payload | None}`` for other IQs;
    * ``node_metadata_providers`` — extra ``pubsub#meta-data`` fields of a node;
    * ``commands`` — the XEP-0050 command registry of the service JID;
    * ``contact_handlers`` — ``async (st) -> bool`` for every stanza addressed to a JID with a
      localpart on the service domain (the feed engine's contacts, ``<name>@pubsub.<domain>``);
      True means handled;
    * ``sender.renderers`` — a chance to deliver one recipient's notification otherwise;
    * ``published_handlers`` — ``async (node) -> None`` after an item was published to a node
      (by IQ or by the service itself), e.g. to push the node's feed to WebSub subscribers.
    """

    name = "pubsub"

    def __init__(self, *, config: Config, store: PubSubStore, router: Router,
                 sessions: SessionRegistry, hooks: HookBus, presence: PresenceView | None,
                 disco_registry: DiscoRegistry,
                 blocked: Callable[[JID, Callable[[], JID]], bool] | None = None) -> None:
        super().__init__()
        self.blocked = blocked  # XEP-0191 for notifications (xep0191_blocking.blocked_by)
        self.config = config
        self.store = store
        self.router = router
        self.sessions = sessions
        self.hooks = hooks
        self.view = presence
        self.disco_registry = disco_registry  # the server's own disco#items lists the service
        self.domain = f"{config.pubsub.subdomain}.{config.primary_domain}"

    @property
    def enabled(self) -> bool:
        """Is ``pubsub.<domain>`` served (config ``pubsub.enabled``)?"""
        return self.config.pubsub.enabled

    def setup(self) -> None:
        config = self.config
        self.presence = ServerPresence(self.router, self.sessions, self.view)
        self.service = PubSubService(
            self.store,
            self.presence,
            self.presence,
            service=self.domain,
            config=pubsub_service_config(config),
            clock=time.time,
        )
        self.sender = NotificationSender(self.router, self.sessions, self.hooks, self.blocked)
        self.pipeline = PublishPipeline(self.service, self.router, self._after)
        self.missing_node_handlers: list[MissingNodeHandler] = []
        self.subscribed_handlers: list[SubscriptionHandler] = []
        self.unsubscribed_handlers: list[UnsubscribedHandler] = []
        self.message_handlers: list[MessageHandler] = []
        self.iq_handlers: dict[tuple[str, str], IqHandler] = {}
        self.published_handlers: list[Callable[[str], Awaitable[None]]] = []
        self.node_metadata_providers: list[disco.MetadataProvider] = []
        self.contact_handlers: list[ContactHandler] = []
        self.commands = CommandRegistry()  # XEP-0050 on the service JID
        self.commands.add(get_pending_command(self.service, self.sender.send))
        self._available: set[str] = set()
        if not config.pubsub.enabled:
            return
        self.router.add_component(self)
        self.disco_registry.items.append((self.domain, None, "Publish-Subscribe"))
        view = self.view
        if view is not None:
            view.on_available(self._user_available)
            view.on_unavailable(self._user_unavailable)

    # --- extension points ------------------------------------------------------------------

    async def publish_as_service(
        self, node: str, payload_xml: str, item_id: str, text: str | None = None,
        extra: str | None = None,
    ) -> None:
        """Publish as the service itself and notify; republishing identical bytes under the
        same id changes nothing and notifies nobody (feeds are polled again and again).

        ``extra`` is serialized XML added to each notification message beside the event
        (the feed engine's status element when a feed's health changed)."""
        existing = await self.store.get_items(self.domain, node, [item_id])
        if existing and existing[0].payload == payload_xml:
            return
        outcome = await self.service.publish(self.domain, node, payload_xml, item_id, text=text)
        await self.sender.send(outcome.notifications, text, extra)
        await self._published(node)

    async def _published(self, node: str) -> None:
        for handler in self.published_handlers:
            await self._guard(handler(node))

    async def send_notifications(self, notifications: Iterable[Notification]) -> None:
        await self.sender.send(notifications)

    # --- the component ---------------------------------------------------------------------

    async def receive(self, st: Stanza) -> None:
        if st.kind == "iq" and st.to is not None and st.to.local is None:
            if self.pipeline.take(st):
                return  # stored with the publishes queued beside it, then answered
        await self.pipeline.settled(st.from_)  # the sender's earlier publishes come first
        if st.to is not None and st.to.local is not None:
            await self._to_contact(st)
        elif st.kind == "iq":
            await self._iq(st)
        elif st.kind == "message":
            await self._message(st)
        elif st.kind == "presence":
            await self._presence(st)

    async def _to_contact(self, st: Stanza) -> None:
        """A stanza for ``name@<service domain>``: an extension's contact, or nobody."""
        for handler in self.contact_handlers:
            if await handler(st):
                return
        if st.kind == "iq" or (st.kind == "message" and st.type != "error"):
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)  # RFC 6121 §8.5.1: no such user

    async def _iq(self, st: Stanza) -> None:
        type_ = st.type
        if type_ not in ("get", "set"):
            return  # RFC 6120 §8.2.3: results and errors are never answered
        router = self.router
        if st.to is not None and st.to.local is not None:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)  # no users on the service domain
        payload = st.element[0] if len(st.element) else None
        if payload is None:
            raise StanzaError(Condition.BAD_REQUEST)
        try:
            if payload.tag in PAYLOAD_TAGS:
                answer = await self._pubsub(st)
                await router.reply(st, answer.payload)
                await self._after(answer)
                return
            result = await self._other_iq(st, type_, payload)
        except AlreadyAnswered:
            return
        await router.reply(st, result)

    async def _other_iq(self, st: Stanza, type_: str,
                        payload: etree._Element) -> etree._Element | None:
        node = payload.get("node")
        if type_ == "get" and payload.tag == _DISCO_INFO:
            return await self._disco_info(st, node)
        if type_ == "get" and payload.tag == _DISCO_ITEMS:
            if node == ns.COMMANDS and self.commands is not None:
                return self.commands.items_element(self.domain, st.from_)
            return await disco.items(self.service, self.domain, node, payload, str(st.from_),
                                     page_limit=self.config.limits.disco_items_page)
        if type_ == "set" and payload.tag == _COMMAND and self.commands is not None:
            return await self.commands.handle(st)  # type: ignore[no-any-return]
        handler = self.iq_handlers.get((type_, payload.tag))
        if handler is not None:
            return await handler(st)
        raise StanzaError(Condition.SERVICE_UNAVAILABLE)  # RFC 6120 §8.4

    async def _disco_info(self, st: Stanza, node: str | None) -> etree._Element:
        if not node:
            # XEP-0060 §8.7: get-pending exists only where ad-hoc commands do.
            extra = [ns.COMMANDS, GET_PENDING] if self.commands is not None else []
            return disco.service_info("Publish-Subscribe", extra)
        if self.commands is not None and (node == ns.COMMANDS or node in self.commands):
            return self.commands.info_element(node, st.from_)
        return await disco.node_info(self.service, node, self.node_metadata_providers)

    async def _pubsub(self, st: Stanza) -> Answer:
        request = parse(st.element)
        requester = str(st.from_)
        try:
            answer = await self._execute(requester, request)
        except RejectedEntries as error:
            # §8.8.2.4 / §8.9.2.4: the error lists the refused entries; the rest took effect.
            payload = rejected_entries_payload(error)
            await reply_with_payload(self.router, st, error, payload)
            await self.sender.send(error.notifications)
            raise AlreadyAnswered from None
        except PubSubError as error:
            raise to_stanza_error(error) from None
        return answer

    async def _execute(self, requester: str, request: PubSubRequest) -> Answer:
        try:
            return await execute(self.service, requester, request)
        except PubSubError as error:
            if not (
                error.condition == "item-not-found"
                and request.verb in (Verb.SUBSCRIBE, Verb.ITEMS)
                and request.node
                and await self._create_missing(requester, request.node)
            ):
                raise
        return await execute(self.service, requester, request)

    async def _create_missing(self, requester: str, node: str) -> bool:
        if not self.missing_node_handlers:
            return False
        if await self.store.get_node(self.domain, node) is not None:
            return False  # the error was about something else
        for handler in self.missing_node_handlers:
            if await handler(requester, node):
                return True
        return False

    async def _after(self, answer: Answer) -> None:
        await self.sender.send(answer.notifications, answer.text)
        if answer.published is not None:
            await self._published(answer.published)
        if answer.subscribed is not None:
            for handler in self.subscribed_handlers:
                await self._guard(handler(*answer.subscribed))
        if answer.unsubscribed is not None:
            node, jid = answer.unsubscribed
            remaining = len(await self.store.list_subscriptions(self.domain, node))
            for unsubscribed in self.unsubscribed_handlers:
                await self._guard(unsubscribed(node, jid, remaining))

    async def _guard(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception:
            self.log.exception("a pubsub extension handler failed")

    # --- messages ----------------------------------------------------------------------------

    async def _message(self, st: Stanza) -> None:
        if st.type == "error":
            return
        form = st.element.find(_X)
        if form is not None and await self._approval(st, form):
            return
        if st.type in ("chat", "normal"):
            for handler in self.message_handlers:
                if await handler(st):
                    return
        # Nothing handled it: a message to the service is ignored (no error for messages
        # a service does not understand, unlike IQs, RFC 6120 §8.4).

    async def _approval(self, st: Stanza, form_el: etree._Element) -> bool:
        """XEP-0060 §8.6.2: the owner's answer to a subscription approval form."""
        wrapper = etree.Element("wrapper")
        wrapper.append(_copy(form_el))
        values, cancelled = form_values(wrapper)
        if cancelled or values is None:
            return False
        if values.get("FORM_TYPE") != [ns.PUBSUB_SUBSCRIBE_AUTHORIZATION]:
            return False
        try:
            notifications = await resolve_approval(self.service, str(st.from_), values)
        except PubSubError as error:
            await self.router.bounce(st, to_stanza_error(error))
            return True
        await self.sender.send(notifications)
        return True

    # --- the service's own presence (users may add it to their roster) ----------------------

    async def _presence(self, st: Stanza) -> None:
        router = self.router
        to = self.domain
        who = str(st.from_.bare)
        if st.type == "subscribe":
            # RFC 6121 §3.1.3: approve at once, then tell the user we are available.
            await router.send(builders.stanza("presence", to=who, from_=to, type_="subscribed"))
            await router.send(builders.stanza("presence", to=who, from_=to))
        elif st.type == "probe":
            await router.send(builders.stanza("presence", to=str(st.from_), from_=to))  # §4.3.2
        elif st.type == "unsubscribe":
            # RFC 6121 §3.3.3: confirm, and the user no longer sees the service as available.
            await router.send(builders.stanza("presence", to=who, from_=to, type_="unsubscribed"))
            await router.send(builders.stanza("presence", to=who, from_=to, type_="unavailable"))

    # --- users' presence → delivery ---------------------------------------------------------

    async def _user_available(self, full: JID, show: str) -> None:
        key = str(full)
        initial = key not in self._available
        self._available.add(key)
        notifications = await self.service.became_available(key, show, initial=initial)
        await self.sender.send(notifications)

    async def _user_unavailable(self, full: JID) -> None:
        key = str(full)
        self._available.discard(key)
        last = not self.presence.available_resources(str(full.bare))
        outcome = await self.service.became_unavailable(key, last_resource=last)
        await self.sender.send(outcome.notifications)  # pubsub#purge_offline purges

    async def run(self) -> None:
        """Store pipelined publishes, and send digest batches (pubsub#digest) once their
        frequency has elapsed."""
        async with trio.open_nursery() as nursery:
            if self.config.pubsub.enabled:
                nursery.start_soon(self.pipeline.run)
            nursery.start_soon(self._digests)

    async def _digests(self) -> None:
        while True:
            await trio.sleep(_DIGEST_PERIOD)
            try:
                due = await self.service.due_digests(time.time())
                await self.sender.send(due)
            except Exception:
                self.log.exception("digest delivery failed")


def _copy(el: etree._Element) -> etree._Element:
    from copy import deepcopy

    return deepcopy(el)

"""The publish-subscribe service: one method per XEP-0060 / XEP-0248 / XEP-0163 use case.

Each method either returns its result, with the notifications to send, or raises
:class:`PubSubError`. Methods are ``async`` only because the store is; there is no other I/O
and no clock read (time comes from the injected ``clock``).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .access import AccessContext, Action, ContactsView, may, require
from .batch import BatchEntry, BatchOutcome, PipelinedPublish, audience_key
from .delivery import PresenceView
from .errors import FormError, PubSubError, node_not_found, unsupported
from .fanout import FanOut, NotifyInterest, PresenceSubscribers
from .model import (
    AccessModel,
    Affiliation,
    Form,
    MessageType,
    Node,
    NodeConfig,
    NodeType,
    SendLastPublished,
    Subscription,
    SubscriptionOptions,
    SubscriptionState,
    bare,
    publish_preconditions,
    requested_children,
)
from .notifications import Notification, NotificationKind, Recipient
from .outcomes import (
    CreateOutcome,
    ItemsGroup,
    ItemsResult,
    NodeConfigView,
    Outcome,
    PublishOutcome,
    RejectedEntries,
    SubscribeOutcome,
    SubscriptionChange,
)
from .store import NewItem, PubSubStore, PutResult

CreationPolicy = Literal["anyone", "local", "admins", "nobody"]


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    max_payload_size: int = 65536
    """Hard limit in bytes; a node's pubsub#max_payload_size can only lower it."""
    max_items_limit: int = 1000
    """What pubsub#max_items "max" means, and the largest value accepted."""
    default_node_config: NodeConfig = NodeConfig()
    default_collection_config: NodeConfig = NodeConfig(
        node_type=NodeType.COLLECTION, max_items=0, send_last_published_item=SendLastPublished.NEVER
    )
    node_creation: CreationPolicy = "local"
    local_domains: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    """Bare JIDs acting with owner rights on every node (and as trusted proxies, §6.1.3.1)."""
    instant_nodes: bool = True
    auto_create: bool = True
    multiple_subscriptions: bool = True
    max_subscriptions_per_node: int | None = 16
    catch_up_cap: int = 100
    max_nodes_per_owner: int | None = None
    """A quota: nodes one (non-admin) user may own on the service."""
    collections: bool = True
    items_via_collection: bool = True
    pep: bool = False
    """A PEP service (XEP-0163): the service JID is the account, the only node creator."""

    @classmethod
    def for_pep(cls, **overrides: object) -> ServiceConfig:
        # XEP-0163 §4.1: presence access model by default; auto-create on publish.
        defaults: dict[str, object] = {
            "pep": True,
            "auto_create": True,
            "collections": False,
            "default_node_config": NodeConfig(
                access_model=AccessModel.PRESENCE,
                max_items=1,
                send_last_published_item=SendLastPublished.ON_SUB_AND_PRESENCE,
            ),
        }
        defaults.update(overrides)
        return cls(**defaults)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------


def _new_id() -> str:
    return uuid.uuid4().hex


class PubSubService:
    """A pubsub service (the component, or one account's PEP) over a store."""

    def __init__(
        self,
        store: PubSubStore,
        contacts: ContactsView,
        presence: PresenceView,
        *,
        service: str,
        config: ServiceConfig | None = None,
        clock: Callable[[], float] = time.time,
        interest: NotifyInterest | None = None,
        subscribers: PresenceSubscribers | None = None,
    ) -> None:
        self.store = store
        self.contacts = contacts
        self.presence = presence
        self.service = service
        self.config = config or ServiceConfig()
        self.clock = clock
        self.interest = interest
        self.fanout = FanOut(
            store,
            service,
            presence,
            clock=clock,
            catch_up_cap=self.config.catch_up_cap,
            context=self._context,
            pep=self.config.pep,
            interest=interest,
            subscribers=subscribers,
        )
        self.catch_up = self.fanout.catch_up
        self.digests = self.fanout.digests

    # -- helpers ----------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _superuser(self, jid: str) -> bool:
        who = bare(jid)
        return who == self.service or who in self.config.admins

    async def _node(self, node_id: str | None) -> Node:
        if not node_id:
            # XEP-0060 §7.2.3.3 / §8.2.3.3: NodeID required.
            raise PubSubError("bad-request", "nodeid-required")
        node = await self.store.get_node(self.service, node_id)
        if node is None:
            raise node_not_found(node_id)
        return node

    async def _owners(self, node: Node) -> frozenset[str]:
        if self.config.pep:
            return frozenset({self.service})
        affiliations = await self.store.list_affiliations(self.service, node.node_id)
        return frozenset(j for j, a in affiliations.items() if a is Affiliation.OWNER)

    async def _context(self, node: Node, jid: str) -> AccessContext:
        affiliation = await self.store.get_affiliation(self.service, node.node_id, jid)
        if self.config.pep and bare(jid) == self.service:
            affiliation = Affiliation.OWNER
        needs_owners = node.config.access_model in (AccessModel.PRESENCE, AccessModel.ROSTER)
        subscribed = False
        if node.config.access_model is AccessModel.AUTHORIZE or (
            node.config.publish_model.value == "subscribers"
        ):
            subscribed = any(
                s.active and s.node == node.node_id
                for s in await self.store.subscriptions_of(self.service, jid)
            )
        return AccessContext(
            affiliation=affiliation,
            owners=await self._owners(node) if needs_owners else frozenset(),
            contacts=self.contacts,
            subscribed=subscribed,
            superuser=self._superuser(jid),
        )

    async def _require(self, node: Node, jid: str, action: Action) -> AccessContext:
        context = await self._context(node, jid)
        require(node, jid, action, context)
        return context

    def _effective_max_items(self, config: NodeConfig) -> int:
        if not config.persist_items:
            return 1  # keep the last item for send_last_published_item
        if config.max_items is None:
            return self.config.max_items_limit
        return min(config.max_items, self.config.max_items_limit)

    def _check_limits(self, config: NodeConfig) -> None:
        if config.max_items is not None and config.max_items > self.config.max_items_limit:
            raise FormError("not-acceptable", ["pubsub#max_items"])
        if config.node_type is NodeType.COLLECTION and not self.config.collections:
            raise unsupported("collections")
        if config.collection and not self.config.collections:
            raise unsupported("collections")

    async def _check_node_quota(self, requester: str) -> None:
        limit = self.config.max_nodes_per_owner
        if limit is None or self.config.pep or self._superuser(requester):
            return
        owned = await self.store.affiliations_of(self.service, bare(requester))
        if sum(1 for a in owned.values() if a is Affiliation.OWNER) >= limit:
            # RFC 6120 §8.3.3.12: a local policy, told with its reason.
            raise PubSubError("policy-violation", text=f"you own {limit} nodes, the limit here")

    def _may_create(self, requester: str) -> None:
        who = bare(requester)
        if self.config.pep:
            if who != self.service:
                raise PubSubError("forbidden", text="only the account owner creates PEP nodes")
            return
        policy = self.config.node_creation
        if policy == "nobody":
            raise unsupported("create-nodes")  # XEP-0060 §8.1.1
        if self._superuser(requester) or policy == "anyone":
            return
        if policy == "local" and who.split("@")[-1] in self.config.local_domains:
            return
        raise PubSubError("forbidden", text="node creation not allowed")  # §8.1.1

    # -- discovery -------------------------------------------------------------------------

    async def get_node(self, node_id: str) -> Node:
        """The node with its configuration (disco#info pubsub#meta-data), or item-not-found."""
        return await self._node(node_id)

    async def list_nodes(self, parent: str | None = None) -> list[Node]:
        """Top-level nodes (no parent), or the children of the collection ``parent``."""
        nodes = await self.store.list_nodes(self.service)
        if parent is None:
            return [n for n in nodes if not n.parents]
        await self._node(parent)
        return [n for n in nodes if parent in n.parents]

    async def children(self, node_id: str) -> tuple[str, ...]:
        return tuple(n.node_id for n in await self.list_nodes(node_id))

    async def node_metadata(self, node_id: str) -> dict[str, list[str]]:
        """The pubsub#meta-data form fields of a node (XEP-0060 §5.4)."""
        node = await self._node(node_id)
        owners = await self._owners(node)
        meta = {k: v for k, v in node.config.to_form().items() if k in _META_FIELDS}
        meta["FORM_TYPE"] = ["http://jabber.org/protocol/pubsub#meta-data"]
        meta["pubsub#owner"] = sorted(owners)
        meta["pubsub#creator"] = [node.creator] if node.creator else []
        meta["pubsub#creation_date"] = (
            [node.created.isoformat().replace("+00:00", "Z")] if node.created else []
        )
        meta["pubsub#num_subscribers"] = [
            str(sum(s.active for s in await self.store.list_subscriptions(self.service, node_id)))
        ]
        return meta

    # -- owner: create, configure, delete, purge -------------------------------------------

    def default_config(self, node_type: NodeType = NodeType.LEAF) -> NodeConfig:
        """XEP-0060 §8.3 default node configuration."""
        if node_type is NodeType.COLLECTION:
            return self.config.default_collection_config
        return self.config.default_node_config

    async def create_node(
        self,
        requester: str,
        node_id: str | None,
        form: Form | None = None,
        *,
        config: NodeConfig | None = None,
    ) -> CreateOutcome:
        """XEP-0060 §8.1 create a node, instant when ``node_id`` is None."""
        self._may_create(requester)
        await self._check_node_quota(requester)
        if not node_id:
            if not self.config.instant_nodes:
                raise PubSubError("not-acceptable", "nodeid-required")  # §8.1.1
            node_id = _new_id()
        if config is None:
            kind = NodeType.LEAF
            if form and "pubsub#node_type" in form:
                requested = {"pubsub#node_type": form["pubsub#node_type"]}
                kind = NodeConfig.from_form(requested).node_type
            config = NodeConfig.from_form(form or {}, base=self.default_config(kind))
        self._check_limits(config)
        for parent in config.collection:
            await self._check_parent(requester, parent, node_id, adding=1)
        node = Node(self.service, node_id, config, bare(requester), self._now())
        if not await self.store.create_node(node, None if self.config.pep else requester):
            raise PubSubError("conflict", text=f"node {node_id!r} exists")  # §8.1.1
        notifications: list[Notification] = []
        children = requested_children(form) if form else None
        if children:
            notifications += await self._set_children(requester, node, children)
        for parent in config.collection:
            notifications += await self.fanout.node_event(parent, NotificationKind.CREATE, node_id)
            notifications += await self.fanout.node_event(
                parent, NotificationKind.ASSOCIATE, node_id
            )
        return CreateOutcome(node_id, tuple(notifications))

    async def get_config(self, requester: str, node_id: str) -> NodeConfigView:
        """XEP-0060 §8.2 the configuration form of a node."""
        node = await self._node(node_id)
        await self._require(node, requester, Action.CONFIGURE)
        return NodeConfigView(node_id, node.config, await self.children(node_id))

    async def configure(self, requester: str, node_id: str, form: Form) -> Outcome:
        """XEP-0060 §8.2.4 submit a configuration form (and XEP-0248 §7.2 parents/children)."""
        node = await self._node(node_id)
        await self._require(node, requester, Action.CONFIGURE)
        new = NodeConfig.from_form(form, base=node.config)
        self._check_limits(new)
        if node.is_collection and new.node_type is NodeType.LEAF:
            raise PubSubError("not-allowed", "invalid-options")  # XEP-0248 §7.2.3.4
        if not node.is_collection and new.node_type is NodeType.COLLECTION:
            if await self.store.count_items(self.service, node_id):
                raise PubSubError("not-allowed", "invalid-options")  # XEP-0248 §7.2.4
        added = [p for p in new.collection if p not in node.config.collection]
        removed = [p for p in node.config.collection if p not in new.collection]
        for parent in added:
            await self._check_parent(requester, parent, node_id, adding=1)
        updated = dataclasses.replace(node, config=new)
        await self.store.update_node(updated)
        notifications: list[Notification] = []
        children = requested_children(form)
        if children is not None:
            notifications += await self._set_children(requester, updated, children)
        for parent in added:
            notifications += await self.fanout.node_event(
                parent, NotificationKind.ASSOCIATE, node_id
            )
        for parent in removed:
            notifications += await self.fanout.node_event(
                parent, NotificationKind.DISSOCIATE, node_id
            )
        if new.notify_config and new.deliver_notifications:
            # XEP-0060 §8.2.5.3: notify subscribers; the form only with deliver_payloads.
            notifications += await self.fanout.fan_out(
                updated,
                NotificationKind.CONFIGURATION,
                config=new if new.deliver_payloads else None,
            )
        return Outcome(tuple(notifications))

    async def delete_node(
        self, requester: str, node_id: str, redirect: str | None = None
    ) -> Outcome:
        """XEP-0060 §8.4 delete a node, telling subscribers (with an optional redirect)."""
        node = await self._node(node_id)
        await self._require(node, requester, Action.DELETE)
        notifications: list[Notification] = []
        if node.config.notify_delete:
            notifications += await self.fanout.fan_out(
                node, NotificationKind.DELETE, redirect=redirect
            )
        for child in await self.list_nodes(node_id):
            remaining = tuple(p for p in child.parents if p != node_id)
            await self.store.update_node(
                dataclasses.replace(
                    child, config=dataclasses.replace(child.config, collection=remaining)
                )
            )
        for parent in node.parents:
            notifications += await self.fanout.node_event(
                parent, NotificationKind.DISSOCIATE, node_id
            )
        await self.store.delete_node(self.service, node_id)
        await self.catch_up.forget_items(node_id)
        await self.digests.forget_items(node_id)
        return Outcome(tuple(notifications))

    async def purge(self, requester: str, node_id: str) -> Outcome:
        """XEP-0060 §8.5 remove every item of a node."""
        node = await self._node(node_id)
        if node.is_collection:
            raise unsupported("purge-nodes")  # §8.5.3.1
        await self._require(node, requester, Action.PURGE)
        if not node.config.persist_items:
            raise unsupported("persistent-items")  # §8.5.3.3
        await self.store.purge_items(self.service, node_id)
        await self.catch_up.forget_items(node_id)
        await self.digests.forget_items(node_id)
        notifications = []
        if node.config.deliver_notifications:
            notifications = await self.fanout.fan_out(node, NotificationKind.PURGE)
        return Outcome(tuple(notifications))

    # -- collections (XEP-0248) ------------------------------------------------------------

    async def _check_parent(
        self, requester: str, parent_id: str, child_id: str, adding: int
    ) -> None:
        parent = await self._node(parent_id)
        if not parent.is_collection:
            raise PubSubError("not-allowed", "invalid-options")  # XEP-0248 §7.2.3.1
        context = await self._context(parent, requester)
        if not (context.superuser or context.affiliation is Affiliation.OWNER):
            raise PubSubError("forbidden")  # XEP-0248 §7.2.3.2, §7.5.3.1
        if parent_id == child_id or child_id in await self._ancestors(parent):
            raise PubSubError("not-allowed", "invalid-options")  # XEP-0248 §7.2.3.5
        limit = parent.config.children_max
        if limit is not None and len(await self.children(parent_id)) + adding > limit:
            raise PubSubError("not-allowed", "max-nodes-exceeded")  # XEP-0248 §7.2.3.3

    async def _ancestors(self, node: Node) -> set[str]:
        seen: set[str] = set()
        frontier = list(node.parents)
        while frontier:
            node_id = frontier.pop()
            if node_id in seen:
                continue
            seen.add(node_id)
            parent = await self.store.get_node(self.service, node_id)
            if parent is not None:
                frontier.extend(parent.parents)
        return seen

    async def _set_children(
        self, requester: str, node: Node, children: Sequence[str]
    ) -> list[Notification]:
        if not node.is_collection:
            raise PubSubError("not-allowed", "invalid-options")  # XEP-0248 §7.2.3.1
        limit = node.config.children_max
        if limit is not None and len(set(children)) > limit:
            raise PubSubError("not-allowed", "max-nodes-exceeded")
        current = set(await self.children(node.node_id))
        notifications: list[Notification] = []
        for child_id in children:
            if child_id not in current:
                notifications += await self.associate(
                    requester, node.node_id, child_id, _check_max=False
                )
        for child_id in current - set(children):
            notifications += await self.dissociate(requester, node.node_id, child_id)
        return notifications

    async def associate(
        self, requester: str, collection: str, child: str, *, _check_max: bool = True
    ) -> list[Notification]:
        """XEP-0248 §7.5 add ``child`` to the collection."""
        child_node = await self._node(child)
        child_context = await self._context(child_node, requester)
        if not (child_context.superuser or child_context.affiliation is Affiliation.OWNER):
            raise PubSubError("forbidden")
        if collection in child_node.parents:
            return []
        await self._check_parent(requester, collection, child, adding=1 if _check_max else 0)
        parents = (*child_node.parents, collection)
        await self.store.update_node(
            dataclasses.replace(
                child_node, config=dataclasses.replace(child_node.config, collection=parents)
            )
        )
        return await self.fanout.node_event(collection, NotificationKind.ASSOCIATE, child)

    async def dissociate(self, requester: str, collection: str, child: str) -> list[Notification]:
        """XEP-0248 §7.6 remove ``child`` from the collection."""
        parent = await self._node(collection)
        await self._require(parent, requester, Action.CONFIGURE)
        child_node = await self._node(child)
        if collection not in child_node.parents:
            raise PubSubError("item-not-found", text=f"{child!r} is not in {collection!r}")
        parents = tuple(p for p in child_node.parents if p != collection)
        await self.store.update_node(
            dataclasses.replace(
                child_node, config=dataclasses.replace(child_node.config, collection=parents)
            )
        )
        return await self.fanout.node_event(collection, NotificationKind.DISSOCIATE, child)

    # -- subscriber use cases ----------------------------------------------------------------

    def default_subscription_options(self) -> SubscriptionOptions:
        """XEP-0060 §6.4 default subscription options."""
        return SubscriptionOptions()

    async def subscribe(
        self, requester: str, node_id: str, jid: str, options: Form | None = None
    ) -> SubscribeOutcome:
        """XEP-0060 §6.1 subscribe (with options, §6.3.7), possibly pending approval."""
        node = await self._node(node_id)
        if bare(jid) != bare(requester) and not self._superuser(requester):
            raise PubSubError("bad-request", "invalid-jid")  # §6.1.3.1
        if not node.config.subscribe:
            raise unsupported("subscribe")  # §6.1.3.10
        context = await self._require(node, jid, Action.SUBSCRIBE)
        chosen = SubscriptionOptions.from_form(options) if options else SubscriptionOptions()
        # Only this JID's subscriptions: a subscribe must not cost O(subscribers).
        existing = await self.store.node_subscriptions_of(self.service, node_id, jid)
        if any(s.state is SubscriptionState.PENDING for s in existing):
            raise PubSubError("not-authorized", "pending-subscription")  # §6.1.3.7
        for sub in existing:
            if sub.options == chosen or not self.config.multiple_subscriptions:
                return SubscribeOutcome(sub)  # already subscribed: report it again
            if node.is_collection and (sub.options.subscription_type == chosen.subscription_type):
                raise PubSubError("conflict")  # XEP-0248 §6.1.3
        limit = self.config.max_subscriptions_per_node
        if limit is not None and len(existing) >= limit:
            raise PubSubError("policy-violation", "too-many-subscriptions")  # §6.1.3.9
        pending = node.config.access_model is AccessModel.AUTHORIZE and not (
            context.superuser
            or context.affiliation in (Affiliation.OWNER, Affiliation.PUBLISHER, Affiliation.MEMBER)
        )
        state = SubscriptionState.PENDING if pending else SubscriptionState.SUBSCRIBED
        sub = Subscription(node_id, jid, _new_id(), state, chosen)
        await self.store.put_subscription(self.service, sub)
        notifications: list[Notification] = []
        if pending:
            # XEP-0060 §6.1.4 / §8.6: the owners get an authorization form.
            notifications.append(
                await self._to_owners(
                    node, NotificationKind.APPROVAL_REQUEST, sub, MessageType.NORMAL
                )
            )
        else:
            if node.config.notify_sub:
                notifications.append(
                    await self._to_owners(node, NotificationKind.SUBSCRIPTION, sub)
                )
            notifications += await self._last_item_on_subscribe(node, sub)
        return SubscribeOutcome(sub, tuple(n for n in notifications if n.recipients))

    async def _last_item_on_subscribe(self, node: Node, sub: Subscription) -> list[Notification]:
        # XEP-0060 §6.1.7: the last published item, when configured, to the new subscriber.
        if node.config.send_last_published_item is SendLastPublished.NEVER or node.is_collection:
            return []
        last = await self.store.get_items(self.service, node.node_id, limit=1)
        if not last or not sub.options.deliver:
            return []
        recipient = Recipient(
            sub.jid,
            sub.options.message_type or node.config.notification_type,
            (sub.subid,),
            include_body=sub.options.include_body,
        )
        return [self.fanout.items_notification(node, last, (recipient,))]

    async def _to_owners(
        self,
        node: Node,
        kind: NotificationKind,
        sub: Subscription,
        message_type: MessageType = MessageType.HEADLINE,
    ) -> Notification:
        recipients = tuple(Recipient(o, message_type) for o in sorted(await self._owners(node)))
        return Notification(kind, self.service, node.node_id, recipients, subscription=sub)

    async def _find_subscription(self, node_id: str, jid: str, subid: str | None) -> Subscription:
        mine = await self.store.node_subscriptions_of(self.service, node_id, jid)
        if subid:
            for sub in mine:
                if sub.subid == subid:
                    return sub
            if not mine:
                raise PubSubError("unexpected-request", "not-subscribed")  # §6.2.3.2
            raise PubSubError("not-acceptable", "invalid-subid")  # §6.2.3.5, §6.3.4.5
        if not mine:
            raise PubSubError("unexpected-request", "not-subscribed")  # §6.2.3.2, §6.3.4.2
        if len(mine) > 1:
            raise PubSubError("bad-request", "subid-required")  # §6.2.3.1, §6.3.4.4
        return mine[0]

    async def _check_acting_for(self, node: Node, requester: str, jid: str) -> None:
        # §6.2.3.3 / §6.3.4.1: only the subscriber itself, an owner or an admin.
        if not jid:
            raise PubSubError("bad-request", "jid-required")  # §6.3.4.3
        if bare(jid) == bare(requester) or self._superuser(requester):
            return
        context = await self._context(node, requester)
        if context.affiliation is not Affiliation.OWNER:
            raise PubSubError("forbidden")

    async def unsubscribe(
        self, requester: str, node_id: str, jid: str, subid: str | None = None
    ) -> Outcome:
        """XEP-0060 §6.2 cancel a subscription."""
        node = await self._node(node_id)
        await self._check_acting_for(node, requester, jid)
        sub = await self._find_subscription(node_id, jid, subid)
        await self.store.delete_subscription(self.service, node_id, sub.subid)
        remaining = await self.store.subscriptions_of(self.service, jid)
        if not [s for s in remaining if s.node == node_id]:
            await self.catch_up.forget_subscriber(bare(jid), node_id)
        notifications = []
        if node.config.notify_sub:
            gone = dataclasses.replace(sub, state=SubscriptionState.NONE)
            notifications.append(await self._to_owners(node, NotificationKind.SUBSCRIPTION, gone))
        return Outcome(tuple(notifications))

    async def get_options(
        self, requester: str, node_id: str, jid: str, subid: str | None = None
    ) -> Subscription:
        """XEP-0060 §6.3 a subscription with its options."""
        node = await self._node(node_id)
        await self._check_acting_for(node, requester, jid)
        return await self._find_subscription(node_id, jid, subid)

    async def set_options(
        self, requester: str, node_id: str, jid: str, form: Form, subid: str | None = None
    ) -> Subscription:
        """XEP-0060 §6.3.5 submit subscription options; errors are <bad-request/>."""
        node = await self._node(node_id)
        await self._check_acting_for(node, requester, jid)
        sub = await self._find_subscription(node_id, jid, subid)
        options = SubscriptionOptions.from_form(form, base=sub.options)
        state = (
            SubscriptionState.SUBSCRIBED
            if sub.state is SubscriptionState.UNCONFIGURED
            else sub.state
        )
        updated = dataclasses.replace(sub, options=options, state=state)
        await self.store.put_subscription(self.service, updated)
        return updated

    async def items(
        self,
        requester: str,
        node_id: str,
        *,
        max_items: int | None = None,
        item_ids: Sequence[str] | None = None,
        subid: str | None = None,
        after: str | None = None,
        before: str | None = None,
        page_size: int | None = None,
    ) -> ItemsResult:
        """XEP-0060 §6.5 retrieve items: all, the newest ``max_items``, by id, or a page.

        Pages (XEP-0059) walk the items newest first: ``after`` continues past an item id,
        ``before`` returns the page preceding one.
        """
        node = await self._node(node_id)
        await self._require(node, requester, Action.RETRIEVE_ITEMS)
        if subid is not None:
            mine = [
                s
                for s in await self.store.subscriptions_of(self.service, requester)
                if s.node == node_id
            ]
            if subid not in {s.subid for s in mine}:
                raise PubSubError("not-acceptable", "invalid-subid")  # §6.5.9.2
        if node.is_collection:
            if not self.config.items_via_collection:
                raise PubSubError("feature-not-implemented")  # XEP-0248 §6.2.3
            groups = []
            for child in await self.list_nodes(node_id):
                if not child.is_collection:
                    found = await self.store.get_items(
                        self.service, child.node_id, item_ids, max_items
                    )
                    if found:
                        groups.append(ItemsGroup(child.node_id, tuple(found)))
            return ItemsResult(tuple(groups), sum(len(g.items) for g in groups))
        paged = after is not None or before is not None or page_size is not None
        if not paged:
            found = await self.store.get_items(self.service, node_id, item_ids, max_items)
            return ItemsResult((ItemsGroup(node_id, tuple(found)),), len(found))
        every = await self.store.get_items(self.service, node_id, item_ids)
        ids = [i.item_id for i in every]
        start, end = 0, len(every)
        if after is not None:
            if after not in ids:
                raise PubSubError("item-not-found", text="unknown RSM after")  # XEP-0059 §2.5
            start = ids.index(after) + 1
        if before is not None and before != "":
            if before not in ids:
                raise PubSubError("item-not-found", text="unknown RSM before")
            end = ids.index(before)
        window = every[start:end]
        size = len(window) if page_size is None else page_size
        # An empty <before/> asks for the last page (XEP-0059 §2.5).
        page = window[max(0, len(window) - size) :] if before is not None else window[:size]
        first = page[0].item_id if page else None
        last = page[-1].item_id if page else None
        return ItemsResult((ItemsGroup(node_id, tuple(page)),), len(every), first, last)

    async def subscriptions(self, requester: str, node_id: str | None = None) -> list[Subscription]:
        """XEP-0060 §5.6 the requester's own subscriptions (optionally to one node)."""
        if node_id is not None:
            await self._node(node_id)
        found = await self.store.subscriptions_of(self.service, requester)
        now = self._now()
        live = []
        for sub in found:
            if sub.lapsed(now):  # XEP-0060 §12.19: a lease that ran out ends the subscription
                await self.store.delete_subscription(self.service, sub.node, sub.subid)
            elif node_id is None or sub.node == node_id:
                live.append(sub)
        return live

    async def affiliations(
        self, requester: str, node_id: str | None = None
    ) -> dict[str, Affiliation]:
        """XEP-0060 §5.7 the requester's own affiliations."""
        if node_id is not None:
            await self._node(node_id)
        found = await self.store.affiliations_of(self.service, requester)
        if self.config.pep and bare(requester) == self.service:
            nodes = await self.store.list_nodes(self.service)
            found = {n.node_id: Affiliation.OWNER for n in nodes}
        return {n: a for n, a in found.items() if node_id is None or n == node_id}

    # -- publisher use cases ----------------------------------------------------------------

    async def publish(
        self,
        requester: str,
        node_id: str | None,
        payload: str,
        item_id: str | None = None,
        *,
        options: Form | None = None,
        text: str | None = None,
    ) -> PublishOutcome:
        """XEP-0060 §7.1 publish one item; ``text`` is its readable text for keyword filters.

        The item is stored (and max_items enforced) before this returns.
        """
        if not node_id:
            raise PubSubError("bad-request", "nodeid-required")
        preconditions = publish_preconditions(options) if options else {}
        node = await self.store.get_node(self.service, node_id)
        created = False
        if node is None:
            if not self.config.auto_create:
                raise node_not_found(node_id)  # §7.1.3.3
            # §7.1.4 / §7.1.5 rule 3: default configuration plus the preconditions. The
            # payload is checked against that configuration first, so a refused publish
            # leaves no empty node behind (§7.1.3.7 payload-required, §7.1.3.5 too big).
            self._may_create(requester)
            would_be = NodeConfig.from_form(preconditions, base=self.default_config())
            self._check_payload(Node(self.service, node_id, would_be), payload)
            await self.create_node(requester, node_id, preconditions)
            node = await self._node(node_id)
            created = True
        elif preconditions:
            self._check_preconditions(node, preconditions)
        if node.is_collection:
            raise unsupported("publish")  # §7.1.3.2
        await self._require(node, requester, Action.PUBLISH)
        self._check_payload(node, payload)
        item_id = item_id or _new_id()
        if node.config.publish_node_full.value == "reject" and node.config.max_items is not None:
            count = await self.store.count_items(self.service, node_id)
            if count >= node.config.max_items and not await self.store.get_items(
                self.service, node_id, [item_id]
            ):
                raise PubSubError("conflict", "node-full")  # §7.1.3.4
        new = NewItem(item_id, payload, requester, self._now())
        result = await self.store.put_items(
            self.service, node_id, [new], self._effective_max_items(node.config)
        )
        notifications = await self._published(node, result, text)
        return PublishOutcome(node_id, item_id, tuple(notifications), created)

    async def _published(self, node: Node, result: PutResult, text: str | None,
                         *, items: bool = True) -> list[Notification]:
        """The notifications of one stored publish: retractions of what it trimmed, then the
        item itself unless ``items`` is false (XEP-0060 §7.1.2, §7.2.2.1)."""
        notifications: list[Notification] = []
        if result.evicted:
            await self.catch_up.forget_items(node.node_id, result.evicted)
            if node.config.notify_retract and node.config.persist_items:
                notifications += await self.fanout.fan_out(
                    node, NotificationKind.RETRACT, item_ids=result.evicted
                )
        if items and node.config.deliver_notifications:
            notifications += await self.fanout.fan_out(
                node, NotificationKind.ITEMS, items=result.items, text=text
            )
        return notifications

    async def publish_each(
        self, node_id: str, entries: Sequence[PipelinedPublish]
    ) -> list[PublishOutcome | PubSubError]:
        """Publishes pipelined to one node, each with the outcome :meth:`publish` would have
        given it one after the other, but stored in one transaction (group commit): one
        storage round trip for the burst instead of one per item.

        Cases that :meth:`publish` handles with more reads or writes of their own (a node to
        create, a full node that rejects, a collection) are published one by one.
        """
        node = await self.store.get_node(self.service, node_id) if node_id else None
        if node is None or node.is_collection or (
            node.config.publish_node_full.value == "reject" and node.config.max_items is not None
        ):
            return [await self._publish_alone(node_id, entry) for entry in entries]
        outcomes: list[PublishOutcome | PubSubError | None] = []
        accepted: list[tuple[int, NewItem]] = []
        contexts: dict[str, AccessContext] = {}  # one access check per publisher and burst
        now = self._now()
        for position, entry in enumerate(entries):
            try:
                context = contexts.get(entry.requester)
                if context is None:
                    context = contexts[entry.requester] = await self._context(
                        node, entry.requester)
                require(node, entry.requester, Action.PUBLISH, context)
                self._check_payload(node, entry.payload)
            except PubSubError as error:
                outcomes.append(error)
                continue
            outcomes.append(None)
            new = NewItem(entry.item_id or _new_id(), entry.payload, entry.requester, now)
            accepted.append((position, new))
        try:
            results = await self.store.put_items_each(
                self.service, node_id, [new for _, new in accepted],
                self._effective_max_items(node.config))
        except KeyError:  # the node was deleted meanwhile
            return [o if o is not None else node_not_found(node_id) for o in outcomes]
        deliver = node.config.deliver_notifications
        if deliver:
            candidates, plans = await self.fanout.item_plans(
                node, [entries[position].text for position, _ in accepted])
        for index, ((position, new), result) in enumerate(zip(accepted, results, strict=True)):
            # As _published, with the plan taken for the whole burst.
            notifications = await self._published(node, result, None, items=not deliver)
            if deliver:
                notifications += await self.fanout.planned(
                    node, NotificationKind.ITEMS, candidates, plans[index], items=result.items)
            outcomes[position] = PublishOutcome(node_id, new.item_id, tuple(notifications))
        return [o for o in outcomes if o is not None]

    async def _publish_alone(self, node_id: str,
                             entry: PipelinedPublish) -> PublishOutcome | PubSubError:
        try:
            return await self.publish(entry.requester, node_id, entry.payload, entry.item_id,
                                      text=entry.text)
        except PubSubError as error:
            return error

    async def publish_many(
        self, requester: str, node_id: str, entries: Sequence[BatchEntry]
    ) -> BatchOutcome:
        """Publish a batch (a feed poll's new entries) to an existing leaf node: one storage
        transaction, one fan-out pass per distinct audience (:mod:`.batch`).

        Entries already stored with the same payload are left alone (idempotent by item id);
        an entry whose payload is refused (XEP-0060 §7.1.3.5, §7.1.3.7) is skipped and
        reported, the others go ahead; max_items trims as a publish does (§7.1.2).
        """
        node = await self._node(node_id)
        if node.is_collection:
            raise unsupported("publish")  # §7.1.3.2
        await self._require(node, requester, Action.PUBLISH)
        accepted: list[BatchEntry] = []
        refused: list[tuple[str, PubSubError]] = []
        for entry in entries:
            try:
                self._check_payload(node, entry.payload)
            except PubSubError as error:
                refused.append((entry.item_id, error))
                continue
            accepted.append(entry)
        if node.config.publish_node_full.value == "reject" and node.config.max_items is not None:
            stored = {i.item_id for i in await self.store.get_items(
                self.service, node_id, [e.item_id for e in accepted])}
            adding = {e.item_id for e in accepted} - stored
            count = await self.store.count_items(self.service, node_id)
            if adding and count + len(adding) > node.config.max_items:
                raise PubSubError("conflict", "node-full")  # §7.1.3.4
        now = self._now()
        result = await self.store.put_changed_items(
            self.service, node_id, [NewItem(e.item_id, e.payload, requester, now)
                                    for e in accepted],
            self._effective_max_items(node.config),
        )
        text_of = {(e.item_id, e.payload): e.text for e in accepted}
        notifications: list[Notification] = []
        if node.config.deliver_notifications and result.written:
            written = result.written
            texts = [text_of.get((item.item_id, item.payload)) for item in written]
            candidates = await self.fanout.candidates(node)
            groups: dict[tuple[bool, ...], list[int]] = {}  # audience → positions in written
            for position, text in enumerate(texts):
                groups.setdefault(audience_key(candidates, text), []).append(position)
            planned: list[list[Notification]] = [[] for _ in written]
            for positions in groups.values():
                for notification in await self.fanout.fan_out(
                    node, NotificationKind.ITEMS, items=[written[p] for p in positions],
                    text=texts[positions[0]],
                ):
                    for p in positions:
                        planned[p].append(dataclasses.replace(notification, items=(written[p],)))
            for per_item in planned:  # in entry order, one notification per item
                notifications += per_item
        if result.evicted:
            await self.catch_up.forget_items(node_id, result.evicted)
            if node.config.notify_retract and node.config.persist_items:
                notifications += await self.fanout.fan_out(
                    node, NotificationKind.RETRACT, item_ids=result.evicted
                )
        return BatchOutcome(node_id, tuple(i.item_id for i in result.written), result.unchanged,
                            tuple(refused), tuple(notifications))

    def _check_preconditions(self, node: Node, preconditions: Mapping[str, list[str]]) -> None:
        # XEP-0060 §7.1.5 rule 1: an unmet precondition → conflict + precondition-not-met.
        try:
            wanted = NodeConfig.from_form(preconditions, base=node.config)
        except FormError as error:
            raise PubSubError("conflict", "precondition-not-met", error.text) from error
        if wanted != node.config:
            raise PubSubError("conflict", "precondition-not-met")

    def _check_payload(self, node: Node, payload: str) -> None:
        limit = min(node.config.max_payload_size, self.config.max_payload_size)
        if len(payload.encode()) > limit:
            raise PubSubError("not-acceptable", "payload-too-big")  # §7.1.3.5
        if not payload and node.config.deliver_payloads:
            raise PubSubError("bad-request", "payload-required")  # §7.1.3.7

    async def retract(
        self, requester: str, node_id: str, item_id: str, notify: bool = False
    ) -> Outcome:
        """XEP-0060 §7.2 delete an item, notifying if asked or configured."""
        node = await self._node(node_id)
        if not item_id:
            raise PubSubError("bad-request", "item-required")  # §7.2.3.4
        if not node.config.persist_items:
            raise unsupported("persistent-items")  # §7.2.3.5
        found = await self.store.get_items(self.service, node_id, [item_id])
        context = await self._context(node, requester)
        if not context.superuser and context.affiliation is Affiliation.OUTCAST:
            raise PubSubError("forbidden")
        if not found:
            raise PubSubError("item-not-found")  # §7.2.3.2
        own = bare(found[0].publisher) == bare(requester)
        if not (
            may(node, requester, Action.RETRACT_ANY, context)
            or (own and may(node, requester, Action.RETRACT_OWN, context))
        ):
            raise PubSubError("forbidden")  # §7.2.3.1
        await self.store.delete_items(self.service, node_id, [item_id])
        await self.catch_up.forget_items(node_id, [item_id])
        await self.digests.forget_items(node_id, [item_id])
        notifications = []
        if notify or node.config.notify_retract:
            notifications = await self.fanout.fan_out(
                node, NotificationKind.RETRACT, item_ids=(item_id,)
            )
        return Outcome(tuple(notifications))

    # -- owner: subscriptions, affiliations, pending ---------------------------------------

    async def node_subscriptions(self, requester: str, node_id: str) -> list[Subscription]:
        """XEP-0060 §8.8.1 every subscription to a node."""
        node = await self._node(node_id)
        await self._require(node, requester, Action.MANAGE_SUBSCRIPTIONS)
        return await self.store.list_subscriptions(self.service, node_id)

    async def modify_subscriptions(
        self, requester: str, node_id: str, changes: Sequence[SubscriptionChange]
    ) -> Outcome:
        """XEP-0060 §8.8.2 set subscription states; subscribers are told (§8.8.4).

        Valid entries are applied even when others are refused; the refused ones are raised
        in :class:`RejectedEntries` with their unaltered state (§8.8.2.4).
        """
        node = await self._node(node_id)
        await self._require(node, requester, Action.MANAGE_SUBSCRIPTIONS)
        current = await self.store.list_subscriptions(self.service, node_id)
        affiliations = await self.store.list_affiliations(self.service, node_id)
        notifications: list[Notification] = []
        rejected: list[Subscription] = []
        for change in changes:
            matching = [
                s
                for s in current
                if s.jid == change.jid and (change.subid is None or s.subid == change.subid)
            ]
            if change.subid is not None and not matching:
                rejected.append(
                    Subscription(node_id, change.jid, change.subid, SubscriptionState.NONE)
                )
                continue
            if (
                change.state is not SubscriptionState.NONE
                and affiliations.get(bare(change.jid)) is Affiliation.OUTCAST
            ):
                # §4.1: an outcast may not be subscribed; the owner must change that first.
                rejected += matching or [
                    Subscription(node_id, change.jid, "", SubscriptionState.NONE)
                ]
                continue
            if change.state is SubscriptionState.NONE:
                for sub in matching:
                    await self.store.delete_subscription(self.service, node_id, sub.subid)
                updated = [dataclasses.replace(s, state=SubscriptionState.NONE) for s in matching]
                others = [s for s in current if s.jid == change.jid and s not in matching]
                if matching and not others:
                    await self.catch_up.forget_subscriber(bare(change.jid), node_id)
            elif matching:
                updated = [dataclasses.replace(s, state=change.state) for s in matching]
                for sub in updated:
                    await self.store.put_subscription(self.service, sub)
            else:
                sub = Subscription(node_id, change.jid, change.subid or _new_id(), change.state)
                await self.store.put_subscription(self.service, sub)
                updated = [sub]
            for sub in updated:
                notifications.append(self._subscription_notice(node, sub))
        if rejected:
            raise RejectedEntries(
                node_id, subscriptions=tuple(rejected), notifications=tuple(notifications)
            )
        return Outcome(tuple(notifications))

    def _subscription_notice(self, node: Node, sub: Subscription) -> Notification:
        recipient = Recipient(sub.jid, MessageType.NORMAL)
        return Notification(
            NotificationKind.SUBSCRIPTION,
            self.service,
            node.node_id,
            (recipient,),
            subscription=sub,
        )

    async def node_affiliations(self, requester: str, node_id: str) -> dict[str, Affiliation]:
        """XEP-0060 §8.9.1 every affiliation of a node."""
        node = await self._node(node_id)
        await self._require(node, requester, Action.MANAGE_AFFILIATIONS)
        return await self.store.list_affiliations(self.service, node_id)

    async def modify_affiliations(
        self, requester: str, node_id: str, changes: Mapping[str, Affiliation]
    ) -> Outcome:
        """XEP-0060 §8.9.2 set affiliations; an outcast loses its subscriptions.

        Entries that would leave the node without an owner (or, for PEP, change the account's
        own affiliation) are refused with their unaltered affiliation in
        :class:`RejectedEntries`; the others are applied (§8.9.2.4).
        """
        node = await self._node(node_id)
        await self._require(node, requester, Action.MANAGE_AFFILIATIONS)
        current = await self.store.list_affiliations(self.service, node_id)
        wanted = {bare(j): a for j, a in changes.items()}
        refused: dict[str, Affiliation] = {}
        if self.config.pep:
            if self.service in wanted:
                refused[self.service] = Affiliation.OWNER
        else:
            after = {**current, **wanted}
            if not any(a is Affiliation.OWNER for a in after.values()):
                refused = {
                    j: Affiliation.OWNER
                    for j, a in wanted.items()
                    if current.get(j) is Affiliation.OWNER
                }
        notifications: list[Notification] = []
        for jid, affiliation in wanted.items():
            if jid in refused:
                continue
            await self.store.set_affiliation(self.service, node_id, jid, affiliation)
            if affiliation is Affiliation.OUTCAST:
                for sub in await self.store.subscriptions_of(self.service, jid):
                    if sub.node == node_id:
                        await self.store.delete_subscription(self.service, node_id, sub.subid)
                        gone = dataclasses.replace(sub, state=SubscriptionState.NONE)
                        notifications.append(self._subscription_notice(node, gone))
                await self.catch_up.forget_subscriber(jid, node_id)
            elif affiliation in (Affiliation.OWNER, Affiliation.PUBLISHER):
                # §8.7 note: a pending request of a new owner or publisher is approved.
                for sub in await self.store.subscriptions_of(self.service, jid):
                    if sub.node == node_id and sub.state is SubscriptionState.PENDING:
                        approved = dataclasses.replace(sub, state=SubscriptionState.SUBSCRIBED)
                        await self.store.put_subscription(self.service, approved)
                        notifications.append(self._subscription_notice(node, approved))
        if refused:
            raise RejectedEntries(
                node_id,
                affiliations=tuple(sorted(refused.items())),
                notifications=tuple(notifications),
            )
        return Outcome(tuple(notifications))

    async def pending_nodes(self, requester: str) -> list[str]:
        """XEP-0060 §8.7 nodes owned by the requester with pending subscriptions."""
        owned = await self.affiliations(requester)
        nodes = []
        for node_id, affiliation in owned.items():
            if affiliation is Affiliation.OWNER and await self._pending(node_id):
                nodes.append(node_id)
        return nodes

    async def _pending(self, node_id: str) -> list[Subscription]:
        return [
            s
            for s in await self.store.list_subscriptions(self.service, node_id)
            if s.state is SubscriptionState.PENDING
        ]

    async def pending_subscriptions(self, requester: str, node_id: str) -> list[Subscription]:
        """XEP-0060 §8.7.4 the pending subscriptions of a node, one approval form each."""
        node = await self._node(node_id)
        await self._require(node, requester, Action.GET_PENDING)
        return await self._pending(node_id)

    async def resolve_pending(
        self, requester: str, node_id: str, jid: str, allow: bool, subid: str | None = None
    ) -> Outcome:
        """XEP-0060 §8.6 approve or deny a pending subscription; the subscriber is told."""
        node = await self._node(node_id)
        await self._require(node, requester, Action.GET_PENDING)
        pending = [
            s
            for s in await self._pending(node_id)
            if s.jid == jid and (subid is None or s.subid == subid)
        ]
        if not pending:
            raise PubSubError("unexpected-request", "not-subscribed")
        notifications: list[Notification] = []
        for sub in pending:
            if allow:
                sub = dataclasses.replace(sub, state=SubscriptionState.SUBSCRIBED)
                await self.store.put_subscription(self.service, sub)
            else:
                await self.store.delete_subscription(self.service, node_id, sub.subid)
                sub = dataclasses.replace(sub, state=SubscriptionState.NONE)
            notifications.append(self._subscription_notice(node, sub))
            if allow:
                notifications += await self._last_item_on_subscribe(node, sub)
        return Outcome(tuple(notifications))

    # -- presence, digests ------------------------------------------------------------------

    async def became_available(
        self, full_jid: str, show: str = "online", *, initial: bool = True
    ) -> list[Notification]:
        """A resource came online (``initial``) or changed its show value.

        Returns the catch-up of items held while it was away (oldest first, with the count of
        items dropped by the cap) and, on initial presence, the last published item of nodes
        configured on_sub_and_presence (XEP-0060 §6.1.7), or for PEP the last items of
        nodes the resource is interested in (XEP-0163 §4.3.4).
        """
        notifications: list[Notification] = []
        caught_up: set[str] = set()
        for release in await self.catch_up.became_available(full_jid, show):
            node = await self.store.get_node(self.service, release.node)
            if node is None or not release.items:
                continue
            caught_up.add(release.node)
            notification = self.fanout.items_notification(
                node, list(release.items), (release.recipient,)
            )
            notifications.append(dataclasses.replace(notification, skipped=release.skipped))
        if not initial:
            return notifications
        seen = set(caught_up)
        now = self._now()
        for sub in await self.store.subscriptions_of(self.service, full_jid):
            if sub.node in seen or not sub.active or not sub.options.deliver or sub.lapsed(now):
                continue
            if sub.jid != bare(sub.jid) and sub.jid != full_jid:
                continue
            shows = sub.options.show_values
            if shows is not None and show not in shows:
                continue
            node = await self.store.get_node(self.service, sub.node)
            if node is None or node.config.send_last_published_item is not (
                SendLastPublished.ON_SUB_AND_PRESENCE
            ):
                continue
            seen.add(sub.node)
            last = await self.store.get_items(self.service, sub.node, limit=1)
            if last:
                recipient = Recipient(
                    full_jid,
                    sub.options.message_type or node.config.notification_type,
                    (sub.subid,),
                    include_body=sub.options.include_body,
                )
                notifications.append(self.fanout.items_notification(node, last, (recipient,)))
        if self.config.pep and self.interest is not None:
            notifications += await self._pep_last_items(full_jid, seen)
        return notifications

    async def _pep_last_items(self, full_jid: str, seen: set[str]) -> list[Notification]:
        # XEP-0163 §4.3.4: a contact coming online gets the last item of every node it
        # is interested in (+notify) and allowed to see.
        interest = self.interest
        assert interest is not None
        notifications = []
        for node in await self.store.list_nodes(self.service):
            if node.node_id in seen or not interest.interested(full_jid, node.node_id):
                continue
            if not may(node, full_jid, Action.RETRIEVE_ITEMS, await self._context(node, full_jid)):
                continue
            last = await self.store.get_items(self.service, node.node_id, limit=1)
            if last:
                notifications.append(
                    self.fanout.items_notification(node, last, (Recipient(full_jid),))
                )
        return notifications

    async def became_unavailable(self, full_jid: str, *, last_resource: bool) -> Outcome:
        """End temporary subscriptions (pubsub#expire = presence, XEP-0060 §12.5) and, when
        the account's last resource left, purge the nodes configured pubsub#purge_offline
        whose publishers are now all offline."""
        for sub in await self.store.subscriptions_of(self.service, full_jid):
            if sub.options.expire != "presence":
                continue
            if sub.jid == full_jid or (sub.jid == bare(full_jid) and last_resource):
                await self.store.delete_subscription(self.service, sub.node, sub.subid)
                await self.catch_up.forget_subscriber(bare(full_jid), sub.node)
        if not last_resource:
            return Outcome()
        return Outcome(tuple(await self._purge_offline(bare(full_jid))))

    async def _purge_offline(self, who: str) -> list[Notification]:
        # XEP-0060 §16.4.4 pubsub#purge_offline: "purge all items when the relevant publisher
        # goes offline" — here, when no owner or publisher of the node is online any more.
        publishing = (Affiliation.OWNER, Affiliation.PUBLISHER, Affiliation.PUBLISH_ONLY)
        if self.config.pep:
            nodes = [n.node_id for n in await self.store.list_nodes(self.service)]
            nodes = nodes if who == self.service else []
        else:
            mine = await self.store.affiliations_of(self.service, who)
            nodes = [n for n, a in mine.items() if a in publishing]
        notifications: list[Notification] = []
        for node_id in nodes:
            node = await self.store.get_node(self.service, node_id)
            if node is None or not node.config.purge_offline or node.is_collection:
                continue
            if self.config.pep:
                publishers = [self.service]
            else:
                affiliations = await self.store.list_affiliations(self.service, node_id)
                publishers = [j for j, a in affiliations.items() if a in publishing]
            if any(self.presence.available_resources(j) for j in publishers):
                continue
            if not await self.store.purge_items(self.service, node_id):
                continue
            await self.catch_up.forget_items(node_id)
            await self.digests.forget_items(node_id)
            if node.config.deliver_notifications:
                notifications += await self.fanout.fan_out(node, NotificationKind.PURGE)
        return notifications

    async def due_digests(self, now: float) -> list[Notification]:
        """Digest batches whose pubsub#digest_frequency has elapsed, one notification each."""
        notifications = []
        for batch in await self.digests.due_digests(now):
            node = await self.store.get_node(self.service, batch.node)
            if node is not None and batch.items:
                notifications.append(
                    self.fanout.items_notification(node, list(batch.items), (batch.recipient,))
                )
        return notifications


_META_FIELDS = frozenset(
    {
        "pubsub#title",
        "pubsub#description",
        "pubsub#type",
        "pubsub#language",
        "pubsub#contact",
        "pubsub#access_model",
        "pubsub#publish_model",
        "pubsub#max_items",
        "pubsub#node_type",
        "pubsub#notification_type",
        "pubsub#roster_groups_allowed",
    }
)

__all__ = [
    "CreateOutcome",
    "ItemsGroup",
    "ItemsResult",
    "NodeConfigView",
    "NotifyInterest",
    "Outcome",
    "PresenceSubscribers",
    "PubSubService",
    "PublishOutcome",
    "ServiceConfig",
    "SubscribeOutcome",
    "SubscriptionChange",
]

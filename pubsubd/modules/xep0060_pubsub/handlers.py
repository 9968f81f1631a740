"""One function per verb: call the core service, render its answer as the IQ result payload.

The same handlers serve the pubsub component and every account's PEP service; they raise the
core's :class:`PubSubError` untranslated so the caller can react (e.g. create a missing feed
node) before :mod:`.errors` turns it into a stanza error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from lxml import etree

from pubsubd import ns
from pubsubd.pubsub import (
    Affiliation,
    Item,
    Notification,
    PublishOutcome,
    PubSubError,
    PubSubService,
    RejectedEntries,
    Subscription,
    SubscriptionChange,
    SubscriptionState,
    bare,
)
from pubsubd.pubsub.model import NodeType
from pubsubd.xml import builders
from pubsubd.xml.rsm import answer as rsm_answer

from .dataforms import form_element
from .notify import readable_text
from .requests import PubSubRequest, Verb

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


@dataclass(slots=True)
class Answer:
    """The IQ result payload, the notifications to send, and what subscription changed."""

    payload: etree._Element | None = None
    notifications: Sequence[Notification] = ()
    text: str | None = None
    """The readable text of a published item (for ``<body/>``)."""
    subscribed: tuple[str, str] | None = None
    unsubscribed: tuple[str, str] | None = None
    published: str | None = None
    """The node an item was just published to."""


Handler = Callable[[PubSubService, str, PubSubRequest], Awaitable[Answer]]


def _pubsub(owner: bool = False) -> etree._Element:
    return builders.element(ns.PUBSUB_OWNER if owner else ns.PUBSUB, "pubsub")


def _sub(parent: etree._Element, local: str, **attrs: str | None) -> etree._Element:
    namespace = etree.QName(parent).namespace
    el = etree.SubElement(parent, ns.clark(namespace or ns.PUBSUB, local))
    for key, value in attrs.items():
        if value is not None:
            el.set(key, value)
    return el


def _node(request: PubSubRequest) -> str:
    if not request.node:
        raise PubSubError("bad-request", "nodeid-required")  # e.g. §6.1.3.? / §8.2.3.3
    return request.node


def _require_jid(request: PubSubRequest) -> str:
    if not request.jid:
        raise PubSubError("bad-request", "jid-required")
    return request.jid


def _subscription_element(parent: etree._Element, sub: Subscription, *, node: bool) -> None:
    _sub(parent, "subscription", node=sub.node if node else None, jid=sub.jid,
         subscription=sub.state.value, subid=sub.subid or None)


def item_element(parent: etree._Element, item: Item, *, with_payload: bool = True) -> None:
    el = _sub(parent, "item", id=item.item_id, publisher=bare(item.publisher) or None)
    if with_payload and item.payload:
        try:
            el.append(etree.fromstring(item.payload.encode(), _PARSER))
        except etree.XMLSyntaxError:
            pass  # stored payloads were serialized by us; never expected


# --- subscriber -----------------------------------------------------------------------------


async def subscribe(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    node, jid = _node(request), _require_jid(request)
    outcome = await service.subscribe(requester, node, jid, request.form)
    payload = _pubsub()
    _subscription_element(payload, outcome.subscription, node=True)  # §6.1.2
    return Answer(payload, outcome.notifications, subscribed=(node, jid))


async def unsubscribe(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    node, jid = _node(request), _require_jid(request)
    current = await service.get_options(requester, node, jid, request.subid)  # same checks
    outcome = await service.unsubscribe(requester, node, jid, request.subid)
    # §6.2.2: the result carries the subscription, now "none", with its subid; common clients
    # wait for this element to confirm the unsubscription.
    payload = _pubsub()
    _sub(payload, "subscription", node=node, jid=jid, subscription="none",
         subid=current.subid or None)
    return Answer(payload, outcome.notifications, unsubscribed=(node, jid))


async def options_get(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    node, jid = _node(request), _require_jid(request)
    sub = await service.get_options(requester, node, jid, request.subid)
    payload = _pubsub()
    options = _sub(payload, "options", node=node, jid=jid, subid=sub.subid)
    options.append(form_element(sub.options.to_form()))  # §6.3.2
    return Answer(payload)


async def options_set(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    node, jid = _node(request), _require_jid(request)
    if request.form is None:
        raise PubSubError("bad-request", "invalid-options")  # §6.3.6.2
    await service.set_options(requester, node, jid, request.form, request.subid)
    return Answer()


async def default_options(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    if request.node:
        await service.get_node(request.node)
    payload = _pubsub()
    default = _sub(payload, "default", node=request.node)
    default.append(form_element(service.default_subscription_options().to_form()))  # §6.4
    return Answer(payload)


async def items(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    node = _node(request)
    rsm = request.rsm
    result = await service.items(
        requester,
        node,
        max_items=request.max_items,
        item_ids=request.item_ids or None,
        subid=request.subid,
        after=rsm.after if rsm else None,
        before=rsm.before if rsm else None,
        page_size=rsm.max if rsm else None,
    )
    payload = _pubsub()
    groups = result.groups or ()
    if not groups:
        _sub(payload, "items", node=node)
    for group in groups:
        items_el = _sub(payload, "items", node=group.node)
        for item in group.items:
            item_element(items_el, item)
    if rsm is not None:  # XEP-0059 §2.2
        payload.append(rsm_answer(result.count, result.first, result.last))
    return Answer(payload)


async def own_subscriptions(
    service: PubSubService, requester: str, request: PubSubRequest
) -> Answer:
    found = await service.subscriptions(requester, request.node)
    payload = _pubsub()
    container = _sub(payload, "subscriptions", node=request.node)
    for sub in found:
        _subscription_element(container, sub, node=True)  # §5.6
    return Answer(payload)


async def own_affiliations(
    service: PubSubService, requester: str, request: PubSubRequest
) -> Answer:
    found = await service.affiliations(requester, request.node)
    payload = _pubsub()
    container = _sub(payload, "affiliations", node=request.node)
    for node, affiliation in sorted(found.items()):
        _sub(container, "affiliation", node=node, affiliation=affiliation.value)  # §5.7
    return Answer(payload)


# --- publisher ------------------------------------------------------------------------------


async def publish(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    item = request.items[0]
    text = readable_text(item.payload)
    outcome = await service.publish(
        requester, request.node, item.payload, item.item_id,
        options=request.publish_options, text=text,
    )
    return published_answer(outcome, text)


def published_answer(outcome: PublishOutcome, text: str | None) -> Answer:
    """The result of a publish (§7.1.2: the item id, so a client learns one we chose)."""
    payload = _pubsub()
    publish_el = _sub(payload, "publish", node=outcome.node)
    _sub(publish_el, "item", id=outcome.item_id)
    return Answer(payload, outcome.notifications, text=text, published=outcome.node)


async def retract(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    node = _node(request)
    if len(request.item_ids) != 1 or not request.item_ids[0]:
        raise PubSubError("bad-request", "item-required")  # §7.2.3.4
    outcome = await service.retract(requester, node, request.item_ids[0], request.notify)
    return Answer(None, outcome.notifications)


# --- owner ----------------------------------------------------------------------------------


async def create(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    outcome = await service.create_node(requester, request.node, request.form)
    payload = _pubsub()
    _sub(payload, "create", node=outcome.node)  # §8.1.2 (always, also for named nodes)
    return Answer(payload, outcome.notifications)


async def configure_get(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    view = await service.get_config(requester, _node(request))
    payload = _pubsub(owner=True)
    configure = _sub(payload, "configure", node=view.node)
    configure.append(form_element(view.to_form(), limits=service.config))  # §8.2.2
    return Answer(payload)


async def configure_set(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    node = _node(request)
    if request.form_cancelled:
        return Answer()  # §8.2.6: the owner cancelled; nothing changes
    if request.form is None:
        raise PubSubError("bad-request", text="a configuration form is required")
    outcome = await service.configure(requester, node, request.form)
    return Answer(None, outcome.notifications)


async def default_config(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    try:
        kind = NodeType(request.node_type or "leaf")
    except ValueError:
        raise PubSubError("not-acceptable", text="unknown node type") from None
    payload = _pubsub(owner=True)
    default = _sub(payload, "default")
    default.append(form_element(service.default_config(kind).to_form(),
                                limits=service.config))  # §8.3.2
    return Answer(payload)


async def delete(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    outcome = await service.delete_node(requester, _node(request), request.redirect)
    return Answer(None, outcome.notifications)


async def purge(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    outcome = await service.purge(requester, _node(request))
    return Answer(None, outcome.notifications)


async def node_subscriptions_get(
    service: PubSubService, requester: str, request: PubSubRequest
) -> Answer:
    node = _node(request)
    found = await service.node_subscriptions(requester, node)
    payload = _pubsub(owner=True)
    container = _sub(payload, "subscriptions", node=node)
    for sub in found:
        _subscription_element(container, sub, node=False)  # §8.8.1.2
    return Answer(payload)


async def node_subscriptions_set(
    service: PubSubService, requester: str, request: PubSubRequest
) -> Answer:
    node = _node(request)
    changes, unknown = [], []
    for jid, state, subid in request.subscriptions:
        try:
            changes.append(SubscriptionChange(jid, SubscriptionState(state), subid))
        except ValueError:
            unknown.append((jid, subid))
    rejected: tuple[Subscription, ...] = ()
    try:
        outcome = await service.modify_subscriptions(requester, node, changes)
        notifications = outcome.notifications
    except RejectedEntries as error:
        rejected, notifications = error.subscriptions, error.notifications
    if unknown:
        # §8.8.2.4: an entry with an unknown state is refused with its unaltered state.
        current = await service.node_subscriptions(requester, node)
        for jid, subid in unknown:
            same = [s for s in current if s.jid == jid and subid in (None, s.subid)]
            rejected += tuple(same or [Subscription(node, jid, subid or "",
                                                    SubscriptionState.NONE)])
    if rejected:
        raise RejectedEntries(node, subscriptions=rejected, notifications=notifications)
    return Answer(None, notifications)


async def node_affiliations_get(
    service: PubSubService, requester: str, request: PubSubRequest
) -> Answer:
    node = _node(request)
    found = await service.node_affiliations(requester, node)
    payload = _pubsub(owner=True)
    container = _sub(payload, "affiliations", node=node)
    for jid, affiliation in sorted(found.items()):
        _sub(container, "affiliation", jid=jid, affiliation=affiliation.value)  # §8.9.1.2
    return Answer(payload)


async def node_affiliations_set(
    service: PubSubService, requester: str, request: PubSubRequest
) -> Answer:
    node = _node(request)
    changes: dict[str, Affiliation] = {}
    unknown: list[str] = []
    for jid, affiliation in request.affiliations:
        try:
            changes[jid] = Affiliation(affiliation)
        except ValueError:
            unknown.append(bare(jid))
    rejected: tuple[tuple[str, Affiliation], ...] = ()
    try:
        outcome = await service.modify_affiliations(requester, node, changes)
        notifications = outcome.notifications
    except RejectedEntries as error:
        rejected, notifications = error.affiliations, error.notifications
    if unknown:
        # §8.9.2.4: an entry with an unknown affiliation is refused, reported unaltered.
        current = await service.node_affiliations(requester, node)
        rejected += tuple((jid, current.get(jid, Affiliation.NONE)) for jid in unknown)
    if rejected:
        raise RejectedEntries(node, affiliations=rejected, notifications=notifications)
    return Answer(None, notifications)


def rejected_entries_payload(error: RejectedEntries) -> etree._Element:
    """The refused entries, with their unaltered state, for the error reply (§8.8.2.4,
    §8.9.2.4)."""
    payload = _pubsub(owner=True)
    if error.subscriptions:
        container = _sub(payload, "subscriptions", node=error.node)
        for sub in error.subscriptions:
            _subscription_element(container, sub, node=False)
    if error.affiliations:
        container = _sub(payload, "affiliations", node=error.node)
        for jid, affiliation in error.affiliations:
            _sub(container, "affiliation", jid=jid, affiliation=affiliation.value)
    return payload


HANDLERS: dict[Verb, Handler] = {
    Verb.CREATE: create,
    Verb.SUBSCRIBE: subscribe,
    Verb.UNSUBSCRIBE: unsubscribe,
    Verb.OPTIONS_GET: options_get,
    Verb.OPTIONS_SET: options_set,
    Verb.DEFAULT_OPTIONS: default_options,
    Verb.ITEMS: items,
    Verb.SUBSCRIPTIONS: own_subscriptions,
    Verb.AFFILIATIONS: own_affiliations,
    Verb.PUBLISH: publish,
    Verb.RETRACT: retract,
    Verb.CONFIGURE_GET: configure_get,
    Verb.CONFIGURE_SET: configure_set,
    Verb.DEFAULT_CONFIG: default_config,
    Verb.DELETE: delete,
    Verb.PURGE: purge,
    Verb.NODE_SUBSCRIPTIONS_GET: node_subscriptions_get,
    Verb.NODE_SUBSCRIPTIONS_SET: node_subscriptions_set,
    Verb.NODE_AFFILIATIONS_GET: node_affiliations_get,
    Verb.NODE_AFFILIATIONS_SET: node_affiliations_set,
}


async def execute(service: PubSubService, requester: str, request: PubSubRequest) -> Answer:
    """Run one request; raises :class:`PubSubError` as the core does."""
    return await HANDLERS[request.verb](service, requester, request)


async def resolve_approval(
    service: PubSubService, requester: str, form: dict[str, list[str]]
) -> Sequence[Notification]:
    """XEP-0060 §8.6.2: an owner's submitted subscribe_authorization form (in a message)."""
    def first(var: str) -> str:
        values = form.get(var) or [""]
        return values[0]

    node, jid = first("pubsub#node"), first("pubsub#subscriber_jid")
    if not node or not jid:
        raise PubSubError("bad-request", text="node and subscriber_jid are required")
    allow = first("pubsub#allow").strip().lower() in ("1", "true")
    outcome = await service.resolve_pending(
        requester, node, jid, allow, first("pubsub#subid") or None
    )
    return outcome.notifications

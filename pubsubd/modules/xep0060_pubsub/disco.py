"""Service discovery of a pubsub service (XEP-0060 §5.1–§5.5, XEP-0248 §4).

The feature list names exactly what the core and this layer implement; a feature is added
here only together with the code and the test that make it true.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence

from lxml import etree

from pubsubd import ns
from pubsubd.errors import Condition, StanzaError
from pubsubd.pubsub import PubSubError, PubSubService
from pubsubd.xml import builders
from pubsubd.xml.rsm import ResultSet
from pubsubd.xml.rsm import answer as rsm_answer

from .dataforms import meta_data_form
from .errors import to_stanza_error
from .requests import result_set

MetadataProvider = Callable[[str], Awaitable[dict[str, list[str]]]]

# XEP-0060 §10 features this service honours.
SERVICE_FEATURES: tuple[str, ...] = tuple(
    f"{ns.PUBSUB}#{name}"
    for name in (
        "access-authorize",
        "access-open",
        "access-presence",
        "access-roster",
        "access-whitelist",
        "auto-create",
        "collections",
        "config-node",
        "create-and-configure",
        "create-nodes",
        "delete-items",
        "delete-nodes",
        "instant-nodes",
        "item-ids",
        "last-published",
        "manage-subscriptions",
        "member-affiliation",
        "meta-data",
        "modify-affiliations",
        "multi-collection",
        "multi-subscribe",
        "outcast-affiliation",
        "persistent-items",
        "presence-notifications",
        "publish",
        "publish-options",
        "publish-only-affiliation",
        "publisher-affiliation",
        "purge-nodes",
        "retract-items",
        "retrieve-affiliations",
        "retrieve-default",
        "retrieve-default-sub",
        "retrieve-items",
        "retrieve-subscriptions",
        "subscribe",
        "subscription-options",
        "subscription-notifications",
    )
)

# XEP-0163 §7: what a PEP service adds to (and drops from) the list above.
PEP_FEATURES: tuple[str, ...] = tuple(
    f for f in SERVICE_FEATURES if not f.endswith(("#collections", "#multi-collection"))
) + (f"{ns.PUBSUB}#filtered-notifications", f"{ns.PUBSUB}#auto-subscribe")


def _info() -> etree._Element:
    return builders.element(ns.DISCO_INFO, "query")


def _identity(query: etree._Element, category: str, type_: str, name: str | None = None) -> None:
    el = etree.SubElement(query, ns.clark(ns.DISCO_INFO, "identity"), category=category,
                          type=type_)
    if name:
        el.set("name", name)


def _features(query: etree._Element, features: Sequence[str]) -> None:
    for feature in features:
        etree.SubElement(query, ns.clark(ns.DISCO_INFO, "feature"), var=feature)


def service_info(name: str, extra_features: Sequence[str] = ()) -> etree._Element:
    """XEP-0060 §5.1: the service's identity and features."""
    query = _info()
    _identity(query, "pubsub", "service", name)
    _features(query, sorted({ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PUBSUB, *SERVICE_FEATURES,
                             *extra_features}))
    return query


async def node_info(
    service: PubSubService, node_id: str, providers: Sequence[MetadataProvider] = ()
) -> etree._Element:
    """XEP-0060 §5.3 / §5.4: the node's type and its pubsub#meta-data form."""
    try:
        node = await service.get_node(node_id)
        meta = await service.node_metadata(node_id)
    except PubSubError as error:
        raise to_stanza_error(error) from None
    for provider in providers:
        meta.update(await provider(node_id))
    query = builders.element(ns.DISCO_INFO, "query", node=node_id)
    _identity(query, "pubsub", node.kind.value)
    _features(query, [ns.PUBSUB])
    meta.pop("FORM_TYPE", None)
    query.append(meta_data_form(meta))
    return query


def _page(elements: list[etree._Element], rsm: ResultSet | None,
          key: Callable[[etree._Element], str], limit: int | None = None,
          ) -> tuple[list[etree._Element], etree._Element | None]:
    """XEP-0059 paging of a disco#items list (§2.1 forward, §2.3 backward).

    With ``limit``, no answer holds more than that many items, asked for or not: a long list
    is sent as its first page with a ``<set/>`` telling the client there is more (XEP-0059
    §2.6 lets a responder limit results unrequested).
    """
    if rsm is None:
        if limit is None or len(elements) <= limit:
            return elements, None
        rsm = ResultSet(max=limit)
    elif limit is not None and (rsm.max is None or rsm.max > limit):
        rsm = dataclasses.replace(rsm, max=limit)
    keys = [key(e) for e in elements]
    start, end = 0, len(elements)
    if rsm.after:
        if rsm.after not in keys:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "unknown RSM after")  # XEP-0059 §2.5
        start = keys.index(rsm.after) + 1
    if rsm.before:
        if rsm.before not in keys:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "unknown RSM before")
        end = keys.index(rsm.before)
    if rsm.index is not None and not rsm.after and rsm.before is None:
        start = rsm.index
    window = elements[start:end]
    size = len(window) if rsm.max is None else rsm.max
    if rsm.before is not None:
        page = window[max(0, len(window) - size):]
        first_index = start + max(0, len(window) - size)
    else:
        page = window[:size]
        first_index = start
    if not page:
        return page, rsm_answer(len(elements))
    return page, rsm_answer(len(elements), key(page[0]), key(page[-1]), first_index)


async def items(
    service: PubSubService, jid: str, node_id: str | None, request: etree._Element,
    requester: str, *, page_limit: int | None = None,
) -> etree._Element:
    """XEP-0060 §5.2 nodes (top level or a collection's children), §5.5 a leaf's items."""
    query = builders.element(ns.DISCO_ITEMS, "query")
    if node_id:
        query.set("node", node_id)
    entries: list[etree._Element] = []
    try:
        if node_id is None:
            nodes = await service.list_nodes()
        else:
            node = await service.get_node(node_id)
            nodes = await service.list_nodes(node_id) if node.is_collection else []
        for child in nodes:
            entries.append(_item(jid, child.node_id, child.config.title or None))
        if node_id is not None and not node.is_collection:
            result = await service.items(requester, node_id)
            for item in result.items:
                entries.append(_item(jid, None, item.item_id))  # §5.5: name = item id
    except PubSubError as error:
        raise to_stanza_error(error) from None
    page, answer = _page(entries, result_set(request),
                         key=lambda e: e.get("node") or e.get("name") or "", limit=page_limit)
    for entry in page:
        query.append(entry)
    if answer is not None:
        query.append(answer)
    return query


def _item(jid: str, node: str | None, name: str | None) -> etree._Element:
    el = etree.Element(ns.clark(ns.DISCO_ITEMS, "item"), jid=jid)
    if node is not None:
        el.set("node", node)
    if name:
        el.set("name", name)
    return el

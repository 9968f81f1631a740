"""XEP-0030 Service Discovery for the server itself.

The feature list is the union of what the loaded modules declare, so it names exactly what is
implemented. Queries to a user's bare JID get the account identity (XEP-0030 §3.1, and PEP's
XEP-0163 §6.1 identity when that module is loaded adds it through ``account_identities``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from lxml import etree

from pubsubd import ns
from pubsubd.core.disco_registry import DiscoRegistry
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.xml import builders

NodeHandler = Callable[[Stanza], Awaitable[etree._Element]]
ItemsProvider = Callable[[JID, JID], Awaitable[list[etree._Element]]]

INFO = ns.clark(ns.DISCO_INFO, "query")
ITEMS = ns.clark(ns.DISCO_ITEMS, "query")


class DiscoModule(Module):
    name = "disco"
    features = (ns.DISCO_INFO, ns.DISCO_ITEMS)

    def __init__(self, *, router: Router, registry: DiscoRegistry) -> None:
        super().__init__()
        self.router = router
        self.registry = registry
        # What other modules add to the answers about accounts and the host's nodes.
        self.account_features: set[str] = set()
        self.account_identities: list[tuple[str, str]] = [("account", "registered")]
        # async (account, requester) -> disco#items <item/> elements (e.g. PEP nodes)
        self.account_item_providers: list[ItemsProvider] = []
        # node name → handler for disco#info/items on a node of the host (e.g. commands)
        self.host_info_nodes: dict[str, NodeHandler] = {}
        self.host_items_nodes: dict[str, NodeHandler] = {}

    def setup(self) -> None:
        router = self.router
        router.add_iq_handler("host", "get", INFO, self.host_info)
        router.add_iq_handler("host", "get", ITEMS, self.host_items)
        router.add_iq_handler("self", "get", INFO, self.account_info)
        router.add_iq_handler("bare", "get", INFO, self.account_info)
        router.add_iq_handler("self", "get", ITEMS, self.account_items)
        router.add_iq_handler("bare", "get", ITEMS, self.account_items)

    async def host_info(self, st: Stanza) -> etree._Element:
        query = st.element[0]
        node = query.get("node")
        if node:
            handler = self.host_info_nodes.get(node)
            if handler is None:
                raise StanzaError(Condition.ITEM_NOT_FOUND)
            return await handler(st)
        disco = self.registry
        result = builders.element(ns.DISCO_INFO, "query")
        for ident in disco.identities:
            etree.SubElement(result, ns.clark(ns.DISCO_INFO, "identity"),
                             category=ident.category, type=ident.type, name=ident.name)
        for feature in sorted(disco.features):
            etree.SubElement(result, ns.clark(ns.DISCO_INFO, "feature"), var=feature)
        for form in disco.extensions:
            result.append(_copy(form))
        return result

    async def host_items(self, st: Stanza) -> etree._Element:
        query = st.element[0]
        node = query.get("node")
        if node:
            handler = self.host_items_nodes.get(node)
            if handler is None:
                raise StanzaError(Condition.ITEM_NOT_FOUND)
            return await handler(st)
        result = builders.element(ns.DISCO_ITEMS, "query")
        for jid, item_node, name in self.registry.items:
            item = etree.SubElement(result, ns.clark(ns.DISCO_ITEMS, "item"), jid=jid)
            if item_node:
                item.set("node", item_node)
            if name:
                item.set("name", name)
        return result

    async def account_info(self, st: Stanza) -> etree._Element:
        if st.element[0].get("node"):
            raise StanzaError(Condition.ITEM_NOT_FOUND)
        result = builders.element(ns.DISCO_INFO, "query")
        for category, type_ in self.account_identities:
            etree.SubElement(result, ns.clark(ns.DISCO_INFO, "identity"),
                             category=category, type=type_)
        for feature in sorted(self.account_features | {ns.DISCO_INFO, ns.DISCO_ITEMS}):
            etree.SubElement(result, ns.clark(ns.DISCO_INFO, "feature"), var=feature)
        return result

    async def account_items(self, st: Stanza) -> etree._Element:
        result = builders.element(ns.DISCO_ITEMS, "query")
        target = st.to.bare if st.to is not None else st.from_.bare
        for provider in self.account_item_providers:
            for item in await provider(target, st.from_):
                result.append(item)
        return result


def _copy(el: etree._Element) -> etree._Element:
    from copy import deepcopy

    return deepcopy(el)

"""XEP-0049 Private XML Storage: any XML fragment a user's clients keep on the server
(client preferences, legacy XEP-0048 bookmarks), readable only by that user.

A fragment is identified by the namespace and the name of its root element; storing one
replaces the previous fragment with the same key.
"""

from __future__ import annotations

from lxml import etree

from pubsubd import ns
from pubsubd.core.hooks import HookBus
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.modules.xep0030_disco import DiscoModule
from pubsubd.storage.interfaces import PrivateStore
from pubsubd.xml import builders

QUERY = ns.clark(ns.PRIVATE, "query")
# Namespaces a fragment may not use: stanza content and this protocol itself (XEP-0049 §2.3
# lets a server refuse reserved namespaces with not-acceptable).
RESERVED = frozenset({ns.CLIENT, ns.SERVER, ns.PRIVATE})
# Distinct fragments one account may keep; each is bounded by the stanza size limit already.
MAX_ENTRIES = 256

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


class PrivateStorageModule(Module):
    name = "private"

    def __init__(self, *, store: PrivateStore, router: Router, hooks: HookBus,
                 disco: DiscoModule, max_bytes: int | None = None) -> None:
        super().__init__()
        self.store = store
        self.max_bytes = max_bytes  # limits.private_xml_bytes: the quota of each account
        self.router = router
        self.hooks = hooks
        self.disco = disco

    def setup(self) -> None:
        router = self.router
        router.add_iq_handler("self", "get", QUERY, self.get)
        router.add_iq_handler("self", "set", QUERY, self.set)
        # XEP-0049 §2.3: another user's storage is off limits ("Forbidden" preferred).
        router.add_iq_handler("bare", "get", QUERY, self.forbidden)
        router.add_iq_handler("bare", "set", QUERY, self.forbidden)
        self.disco.account_features.add(ns.PRIVATE)
        self.hooks.on("account/deleted", self._account_deleted)

    async def forbidden(self, st: Stanza) -> None:
        raise StanzaError(Condition.FORBIDDEN, "private storage belongs to its owner only")

    async def get(self, st: Stanza) -> etree._Element:
        query = st.element[0]
        if len(query) == 0:
            # XEP-0049 §2.3: a get without a child is "Bad Format" (bad-request in RFC 6120).
            raise StanzaError(Condition.BAD_REQUEST, "name the fragment to retrieve")
        if len(query) > 1:
            # XEP-0049 §2.3: one namespace per get.
            raise StanzaError(Condition.BAD_REQUEST, "retrieve one fragment at a time")
        namespace, name = _key(query[0])
        data = await self.store.get(st.from_, namespace, name)
        result = builders.element(ns.PRIVATE, "query")
        if data is None:
            # Nothing stored: answer with the empty element asked for, as deployed servers do.
            etree.SubElement(result, ns.clark(namespace, name), nsmap={None: namespace})
        else:
            result.append(etree.fromstring(data, _PARSER))
        return result

    async def set(self, st: Stanza) -> None:
        query = st.element[0]
        if len(query) == 0:
            # XEP-0049 §2.3: at least one child with a proper namespace, else not-acceptable.
            raise StanzaError(Condition.NOT_ACCEPTABLE, "nothing to store")
        fragments = []
        for child in query:
            namespace, name = _key(child)
            fragments.append((namespace, name, etree.tostring(child, with_tail=False)))
        if not await self.store.put(st.from_, fragments, MAX_ENTRIES, max_bytes=self.max_bytes):
            raise StanzaError(Condition.RESOURCE_CONSTRAINT,
                              f"at most {MAX_ENTRIES} fragments and {self.max_bytes} bytes "
                              f"per account")
        return None

    async def _account_deleted(self, jid: JID) -> bool:
        await self.store.forget(jid)
        return False


def _key(child: etree._Element) -> tuple[str, str]:
    """(namespace, element name) of a fragment's root, refusing what may not be stored."""
    if not isinstance(child.tag, str):
        raise StanzaError(Condition.NOT_ACCEPTABLE, "fragments must be elements")
    qname = etree.QName(child)
    if not qname.namespace:
        raise StanzaError(Condition.NOT_ACCEPTABLE, "a fragment needs its own namespace")
    if qname.namespace in RESERVED:
        raise StanzaError(Condition.NOT_ACCEPTABLE, f"namespace {qname.namespace} is reserved")
    return qname.namespace, qname.localname

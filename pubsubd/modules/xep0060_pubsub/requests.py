"""Parsing pubsub IQs into one request object, through a verb table.

Every XEP-0060 request is an ``<iq/>`` with a ``<pubsub/>`` (or ``<pubsub xmlns='…#owner'/>``)
child whose first recognised element names the verb; the elements after it (``<configure/>``
after ``<create/>``, ``<options/>`` after ``<subscribe/>``, ``<publish-options/>``, RSM ``<set/>``)
only modify it. :data:`VERBS` maps ``(iq type, namespace, element)`` to a :class:`Verb` and the
function that reads that element, so adding a use case is one row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from lxml import etree

from pubsubd import ns
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID, InvalidJID
from pubsubd.xml import rsm
from pubsubd.xml.forms import Form, FormError
from pubsubd.xml.rsm import ResultSet

FormValues = dict[str, list[str]]


class Verb(StrEnum):
    CREATE = "create"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    OPTIONS_GET = "options-get"
    OPTIONS_SET = "options-set"
    DEFAULT_OPTIONS = "default-options"
    ITEMS = "items"
    SUBSCRIPTIONS = "subscriptions"
    AFFILIATIONS = "affiliations"
    PUBLISH = "publish"
    RETRACT = "retract"
    CONFIGURE_GET = "configure-get"
    CONFIGURE_SET = "configure-set"
    DEFAULT_CONFIG = "default-config"
    DELETE = "delete"
    PURGE = "purge"
    NODE_SUBSCRIPTIONS_GET = "node-subscriptions-get"
    NODE_SUBSCRIPTIONS_SET = "node-subscriptions-set"
    NODE_AFFILIATIONS_GET = "node-affiliations-get"
    NODE_AFFILIATIONS_SET = "node-affiliations-set"


@dataclass(frozen=True, slots=True)
class PublishedItem:
    item_id: str | None
    payload: str
    """The serialized payload element, "" for a notification-only item."""
    payload_element: etree._Element | None = None


@dataclass(frozen=True, slots=True)
class PubSubRequest:
    """One pubsub request, whatever its verb; fields a verb does not use stay empty."""

    verb: Verb
    node: str | None = None
    jid: str | None = None
    subid: str | None = None
    items: tuple[PublishedItem, ...] = ()
    item_ids: tuple[str, ...] = ()
    form: FormValues | None = None
    """node_config (create, configure) or subscribe_options (subscribe, options) values."""
    form_cancelled: bool = False
    publish_options: FormValues | None = None
    max_items: int | None = None
    notify: bool = False
    redirect: str | None = None
    rsm: ResultSet | None = None
    affiliations: tuple[tuple[str, str], ...] = ()
    subscriptions: tuple[tuple[str, str, str | None], ...] = ()
    """NODE_SUBSCRIPTIONS_SET: (jid, state, subid)."""
    node_type: str | None = None
    """DEFAULT_CONFIG: the XEP-0248 §7.1 ``pubsub#node_type`` asked for."""


def bad_request(text: str, pubsub_condition: str | None = None) -> StanzaError:
    app = None
    if pubsub_condition:
        app = etree.Element(ns.clark(ns.PUBSUB_ERRORS, pubsub_condition),
                            nsmap={None: ns.PUBSUB_ERRORS})
    return StanzaError(Condition.BAD_REQUEST, text, app=app)


def _jid(value: str | None, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise bad_request("a jid attribute is required", "jid-required")  # §6.3.4.3
        return None
    try:
        return str(JID.parse(value))
    except InvalidJID as exc:
        raise StanzaError(Condition.JID_MALFORMED, str(exc)) from None  # RFC 6120 §8.3.3.8


def form_values(parent: etree._Element | None) -> tuple[FormValues | None, bool]:
    """The ``{var: values}`` of the data form inside ``parent``; (None, True) if cancelled."""
    if parent is None:
        return None, False
    x = parent.find(ns.clark(ns.DATA_FORMS, "x"))
    if x is None:
        return None, False
    try:
        form = Form.from_element(x)
    except FormError as exc:
        raise bad_request(str(exc)) from None
    if form.type == "cancel":
        return None, True
    return {f.var: list(f.values) for f in form.fields if f.var}, False


def _int(value: str | None, what: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"{what} is not a number") from None
    if number < 0:
        raise bad_request(f"{what} is negative")
    return number


def result_set(pubsub: etree._Element) -> ResultSet | None:
    set_el = rsm.find(pubsub)
    return None if set_el is None else rsm.parse(set_el)


def _sibling(el: etree._Element, namespace: str, local: str) -> etree._Element | None:
    parent = el.getparent()
    return None if parent is None else parent.find(ns.clark(namespace, local))


# --- one reader per verb element ------------------------------------------------------------


def _base(verb: Verb, el: etree._Element) -> PubSubRequest:
    return PubSubRequest(verb, node=el.get("node") or None)


def _create(verb: Verb, el: etree._Element) -> PubSubRequest:
    # XEP-0060 §8.1.3: an optional <configure/> sibling carries the node_config form.
    form, cancelled = form_values(_sibling(el, ns.PUBSUB, "configure"))
    return PubSubRequest(verb, node=el.get("node") or None, form=form, form_cancelled=cancelled)


def _subscribe(verb: Verb, el: etree._Element) -> PubSubRequest:
    # §6.3.7: subscribe and configure in one request with an <options/> sibling.
    form, _ = form_values(_sibling(el, ns.PUBSUB, "options"))
    return PubSubRequest(verb, node=el.get("node") or None,
                         jid=_jid(el.get("jid"), required=True), form=form)


def _subscriber(verb: Verb, el: etree._Element) -> PubSubRequest:
    form, _ = form_values(el)
    return PubSubRequest(verb, node=el.get("node") or None, jid=_jid(el.get("jid"), required=True),
                         subid=el.get("subid") or None, form=form)


def _items(verb: Verb, el: etree._Element) -> PubSubRequest:
    ids = tuple(i.get("id") or "" for i in el.iterfind(ns.clark(ns.PUBSUB, "item")))
    if any(not i for i in ids):
        raise bad_request("an <item/> without an id")
    parent = el.getparent()
    return PubSubRequest(
        verb,
        node=el.get("node") or None,
        subid=el.get("subid") or None,
        item_ids=ids,
        max_items=_int(el.get("max_items"), "max_items"),
        rsm=result_set(parent) if parent is not None else None,
    )


def _publish(verb: Verb, el: etree._Element) -> PubSubRequest:
    items = []
    for item in el.iterfind(ns.clark(ns.PUBSUB, "item")):
        children = [c for c in item if isinstance(c.tag, str)]
        if len(children) > 1:
            raise bad_request("an item carries one payload", "invalid-payload")  # §7.1.3.6
        payload = children[0] if children else None
        serialized = _serialize(payload) if payload is not None else ""
        items.append(PublishedItem(item.get("id") or None, serialized, payload))
    if len(items) > 1:
        raise bad_request("one item per publish request", "invalid-payload")
    if not items:
        items.append(PublishedItem(None, ""))  # §7.1.3.7 decides if that is allowed
    options, _ = form_values(_sibling(el, ns.PUBSUB, "publish-options"))
    return PubSubRequest(verb, node=el.get("node") or None, items=tuple(items),
                         publish_options=options)


def _retract(verb: Verb, el: etree._Element) -> PubSubRequest:
    ids = tuple(i.get("id") or "" for i in el.iterfind(ns.clark(ns.PUBSUB, "item")))
    return PubSubRequest(verb, node=el.get("node") or None, item_ids=ids,
                         notify=el.get("notify") in ("1", "true"))


def _subscriptions(verb: Verb, el: etree._Element) -> PubSubRequest:
    return PubSubRequest(verb, node=el.get("node") or None)


def _configure(verb: Verb, el: etree._Element) -> PubSubRequest:
    form, cancelled = form_values(el)
    return PubSubRequest(verb, node=el.get("node") or None, form=form, form_cancelled=cancelled)


def _default_config(verb: Verb, el: etree._Element) -> PubSubRequest:
    form, _ = form_values(el)
    node_type = (form or {}).get("pubsub#node_type", [None])[0]
    return PubSubRequest(verb, node=el.get("node") or None, node_type=node_type)


def _delete(verb: Verb, el: etree._Element) -> PubSubRequest:
    redirect = el.find(ns.clark(ns.PUBSUB_OWNER, "redirect"))
    uri = redirect.get("uri") if redirect is not None else None
    return PubSubRequest(verb, node=el.get("node") or None, redirect=uri or None)


def _owner_subscriptions(verb: Verb, el: etree._Element) -> PubSubRequest:
    changes = tuple(
        (_jid(s.get("jid"), required=True) or "", s.get("subscription") or "", s.get("subid"))
        for s in el.iterfind(ns.clark(ns.PUBSUB_OWNER, "subscription"))
    )
    return PubSubRequest(verb, node=el.get("node") or None, subscriptions=changes)


def _owner_affiliations(verb: Verb, el: etree._Element) -> PubSubRequest:
    changes = tuple(
        (_jid(a.get("jid"), required=True) or "", a.get("affiliation") or "")
        for a in el.iterfind(ns.clark(ns.PUBSUB_OWNER, "affiliation"))
    )
    return PubSubRequest(verb, node=el.get("node") or None, affiliations=changes)


Reader = Callable[[Verb, etree._Element], PubSubRequest]
P, OWNER = ns.PUBSUB, ns.PUBSUB_OWNER

VERBS: dict[tuple[str, str, str], tuple[Verb, Reader]] = {
    ("set", P, "create"): (Verb.CREATE, _create),  # §8.1
    ("set", P, "subscribe"): (Verb.SUBSCRIBE, _subscribe),  # §6.1
    ("set", P, "unsubscribe"): (Verb.UNSUBSCRIBE, _subscriber),  # §6.2
    ("get", P, "options"): (Verb.OPTIONS_GET, _subscriber),  # §6.3
    ("set", P, "options"): (Verb.OPTIONS_SET, _subscriber),  # §6.3.5
    ("get", P, "default"): (Verb.DEFAULT_OPTIONS, _base),  # §6.4
    ("get", P, "items"): (Verb.ITEMS, _items),  # §6.5
    ("get", P, "subscriptions"): (Verb.SUBSCRIPTIONS, _subscriptions),  # §5.6
    ("get", P, "affiliations"): (Verb.AFFILIATIONS, _subscriptions),  # §5.7
    ("set", P, "publish"): (Verb.PUBLISH, _publish),  # §7.1
    ("set", P, "retract"): (Verb.RETRACT, _retract),  # §7.2
    ("get", OWNER, "configure"): (Verb.CONFIGURE_GET, _configure),  # §8.2
    ("set", OWNER, "configure"): (Verb.CONFIGURE_SET, _configure),  # §8.2.4
    ("get", OWNER, "default"): (Verb.DEFAULT_CONFIG, _default_config),  # §8.3
    ("set", OWNER, "delete"): (Verb.DELETE, _delete),  # §8.4
    ("set", OWNER, "purge"): (Verb.PURGE, _base),  # §8.5
    ("get", OWNER, "subscriptions"): (Verb.NODE_SUBSCRIPTIONS_GET, _owner_subscriptions),  # §8.8.1
    ("set", OWNER, "subscriptions"): (Verb.NODE_SUBSCRIPTIONS_SET, _owner_subscriptions),  # §8.8.2
    ("get", OWNER, "affiliations"): (Verb.NODE_AFFILIATIONS_GET, _owner_affiliations),  # §8.9.1
    ("set", OWNER, "affiliations"): (Verb.NODE_AFFILIATIONS_SET, _owner_affiliations),  # §8.9.2
}

PAYLOAD_TAGS = (ns.clark(P, "pubsub"), ns.clark(OWNER, "pubsub"))


def parse(iq: etree._Element) -> PubSubRequest:
    """The request carried by a pubsub IQ get/set, or a ``<bad-request/>`` StanzaError."""
    type_ = iq.get("type") or ""
    pubsub = iq[0]
    namespace = etree.QName(pubsub).namespace or ""
    for child in pubsub:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        entry = VERBS.get((type_, qname.namespace or "", qname.localname))
        if entry is not None and qname.namespace == namespace:
            verb, reader = entry
            return reader(verb, child)
    raise bad_request("no pubsub request recognised")


def _serialize(payload: etree._Element) -> str:
    """The payload as a standalone document fragment, without the stream's namespaces."""
    copy = etree.fromstring(etree.tostring(payload))
    etree.cleanup_namespaces(copy)
    return etree.tostring(copy, encoding="unicode")


__all__ = [
    "PAYLOAD_TAGS",
    "PubSubRequest",
    "PublishedItem",
    "ResultSet",
    "VERBS",
    "Verb",
    "bad_request",
    "form_values",
    "parse",
]

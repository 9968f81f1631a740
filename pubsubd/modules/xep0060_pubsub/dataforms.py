"""The core's ``{var: [values]}`` forms rendered as XEP-0004 forms with proper field types.

Clients build their configuration dialogs from the field types and options, so each field
registered in XEP-0060 §16.4 is rendered with the type the registry gives it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from lxml import etree

from pubsubd import ns
from pubsubd.pubsub.model import (
    SHOW_VALUES,
    AccessModel,
    ItemReply,
    MessageType,
    NodeFullPolicy,
    NodeType,
    PublishModel,
    SendLastPublished,
)
from pubsubd.xml.forms import Field, FieldType, Form, FormType, Option

if TYPE_CHECKING:
    from pubsubd.pubsub import ServiceConfig

XDATA_VALIDATE = "http://jabber.org/protocol/xdata-validate"  # XEP-0122

_BOOLEAN = (
    "pubsub#subscribe pubsub#persist_items pubsub#deliver_payloads pubsub#deliver_notifications "
    "pubsub#notify_config pubsub#notify_delete pubsub#notify_retract pubsub#notify_sub "
    "pubsub#presence_based_delivery pubsub#purge_offline pubsub#deliver pubsub#digest "
    "pubsub#include_body pubsubd#catch_up"
).split()

_OPTIONS: dict[str, Sequence[str]] = {
    "pubsub#node_type": [t.value for t in NodeType],
    "pubsub#access_model": [m.value for m in AccessModel],
    "pubsub#publish_model": [m.value for m in PublishModel],
    "pubsub#send_last_published_item": [s.value for s in SendLastPublished],
    "pubsub#notification_type": [MessageType.HEADLINE.value, MessageType.NORMAL.value],
    "pubsub#itemreply": [r.value for r in ItemReply],
    "pubsub#publish_node_full": [p.value for p in NodeFullPolicy],
    "pubsub#subscription_type": ["items", "nodes"],
    "pubsub#subscription_depth": ["1", "all"],  # XEP-0060 §16.4.2
    "pubsubd#message_type": ["", *(m.value for m in MessageType)],
}

_TYPES: dict[str, FieldType] = {
    **{var: "boolean" for var in _BOOLEAN},
    **{var: "list-single" for var in _OPTIONS},
    "pubsub#contact": "jid-multi",
    "pubsub#owner": "jid-multi",
    "pubsub#publisher": "jid-multi",
    "pubsub#creator": "jid-single",
    "pubsub#roster_groups_allowed": "list-multi",
    "pubsub#show-values": "list-multi",
    "pubsub#collection": "text-multi",
    "pubsub#children": "text-multi",
    "pubsub#description": "text-single",
    # XEP-0060 §5.4 note and §16.4.3: pubsub#language SHOULD be list-single; clients with
    # typed form models (aioxmpp's NodeConfigForm) refuse the form if it is text-single.
    "pubsub#language": "list-single",
    "pubsubd#include_words": "text-multi",
    "pubsubd#exclude_words": "text-multi",
    "FORM_TYPE": "hidden",
}

_LANGUAGES = ("en", "de", "es", "fr", "it", "ja", "nl", "pl", "pt", "ru", "sv", "zh")

_LABELS = {
    "pubsubd#include_words": "Only items containing one of these words",
    "pubsubd#exclude_words": "No items containing any of these words",
    "pubsubd#message_type": "Message type of notifications (empty: the node's)",
    "pubsubd#catch_up": "Deliver the items published while I was away when I come back",
}


def to_form(values: Mapping[str, Sequence[str]], type_: FormType) -> Form:
    fields = []
    for var, field_values in values.items():
        kind = _TYPES.get(var, "text-single") if type_ == "form" else (
            "hidden" if var == "FORM_TYPE" else None
        )
        options = []
        if type_ == "form" and var in _OPTIONS:
            options = [Option(v) for v in _OPTIONS[var]]
        elif type_ == "form" and var == "pubsub#show-values":
            options = [Option(v) for v in sorted(SHOW_VALUES)]
        elif type_ == "form" and var == "pubsub#language":
            # Offered choices only; any RFC 5646 tag is still accepted on submit.
            current = [v for v in field_values if v and v not in _LANGUAGES]
            options = [Option(v) for v in (*_LANGUAGES, *current)]
        fields.append(Field(var, kind, label=_LABELS.get(var), values=list(field_values),
                            options=options))
    return Form(type_, fields=fields)


# XEP-0122 §3.1 datatypes of the numeric fields. pubsub#max_items also takes "max" (XEP-0060
# §16.4.4), so it has the datatype XEP-0060 §12.23 defines for it rather than xs:integer.
_INTEGERS: dict[str, str] = {
    "pubsub#max_items": "pubsub:integer-or-max",
    "pubsub#max_payload_size": "xs:integer",
    "pubsub#children_max": "xs:integer",
    "pubsub#digest_frequency": "xs:integer",
}


def form_element(values: Mapping[str, Sequence[str]], type_: FormType = "form", *,
                 limits: ServiceConfig | None = None) -> etree._Element:
    """The form as XML; a ``form`` to fill in says each field's datatype and range (XEP-0122),
    the upper bounds taken from the service's ``limits`` when given."""
    element = to_form(values, type_).to_element()
    if type_ == "form":
        _add_validation(element, limits)
    return element


_VALUE, _OPTION = ns.clark(ns.DATA_FORMS, "value"), ns.clark(ns.DATA_FORMS, "option")


def _add_validation(form: etree._Element, limits: ServiceConfig | None) -> None:
    highest = {}
    if limits is not None:
        highest = {"pubsub#max_items": limits.max_items_limit,
                   "pubsub#max_payload_size": limits.max_payload_size}
    for field in form.iterfind(ns.clark(ns.DATA_FORMS, "field")):
        var = field.get("var", "")
        if field.get("type") == "boolean":
            datatype, low = "xs:boolean", None
        elif var in _INTEGERS:
            datatype, low = _INTEGERS[var], 0
        else:
            continue
        validate = etree.Element(ns.clark(XDATA_VALIDATE, "validate"), datatype=datatype,
                                 nsmap={None: XDATA_VALIDATE})
        if low is None:
            etree.SubElement(validate, ns.clark(XDATA_VALIDATE, "basic"))  # §3.2.1
        else:
            bounds = etree.SubElement(validate, ns.clark(XDATA_VALIDATE, "range"),
                                      min=str(low))  # §3.2.3
            if var in highest:
                bounds.set("max", str(highest[var]))
        # XEP-0122 §3.1 shows it after desc/required and before the values.
        first = next((i for i, child in enumerate(field)
                      if child.tag in (_VALUE, _OPTION)), len(field))
        field.insert(first, validate)


def meta_data_form(values: Mapping[str, Sequence[str]]) -> etree._Element:
    """XEP-0060 §5.4 the pubsub#meta-data form (a ``result``, XEP-0128 extension)."""
    merged = {"FORM_TYPE": [ns.PUBSUB_META_DATA], **values}
    return to_form(merged, "result").to_element()

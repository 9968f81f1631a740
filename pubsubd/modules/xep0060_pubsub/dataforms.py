"""The core's ``{var: [values]}`` forms rendered as XEP-0004 forms with proper field types.

Clients build their configuration dialogs from the field types and options, so each field
registered in XEP-0060 §16.4 is rendered with the type the registry gives it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def form_element(values: Mapping[str, Sequence[str]], type_: FormType = "form") -> etree._Element:
    return to_form(values, type_).to_element()


def meta_data_form(values: Mapping[str, Sequence[str]]) -> etree._Element:
    """XEP-0060 §5.4 the pubsub#meta-data form (a ``result``, XEP-0128 extension)."""
    merged = {"FORM_TYPE": [ns.PUBSUB_META_DATA], **values}
    return to_form(merged, "result").to_element()

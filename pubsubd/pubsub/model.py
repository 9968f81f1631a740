"""Plain values of the publish-subscribe core: nodes, configurations, items, subscriptions.

JIDs are plain, already-prepared strings; the core only ever needs their bare part. Data forms
are exchanged as ``{field var: [values]}`` so the XML layer maps XEP-0004 forms one to one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .errors import FormError

Form = Mapping[str, Sequence[str]]

NODE_CONFIG_FORM_TYPE = "http://jabber.org/protocol/pubsub#node_config"
SUBSCRIBE_OPTIONS_FORM_TYPE = "http://jabber.org/protocol/pubsub#subscribe_options"
PUBLISH_OPTIONS_FORM_TYPE = "http://jabber.org/protocol/pubsub#publish-options"


def bare(jid: str) -> str:
    """The bare JID (``local@domain`` or ``domain``) of a full or bare JID string."""
    return jid.split("/", 1)[0]


def is_full(jid: str) -> bool:
    return "/" in jid


class Affiliation(StrEnum):
    """XEP-0060 §4.1 affiliations, always held by a bare JID."""

    OWNER = "owner"
    PUBLISHER = "publisher"
    PUBLISH_ONLY = "publish-only"
    MEMBER = "member"
    NONE = "none"
    OUTCAST = "outcast"


class SubscriptionState(StrEnum):
    """XEP-0060 §4.2 subscription states."""

    NONE = "none"
    PENDING = "pending"
    UNCONFIGURED = "unconfigured"
    SUBSCRIBED = "subscribed"


class NodeType(StrEnum):
    LEAF = "leaf"
    COLLECTION = "collection"


class AccessModel(StrEnum):
    OPEN = "open"
    PRESENCE = "presence"
    ROSTER = "roster"
    AUTHORIZE = "authorize"
    WHITELIST = "whitelist"


class PublishModel(StrEnum):
    PUBLISHERS = "publishers"
    SUBSCRIBERS = "subscribers"
    OPEN = "open"


class SendLastPublished(StrEnum):
    NEVER = "never"
    ON_SUB = "on_sub"
    ON_SUB_AND_PRESENCE = "on_sub_and_presence"


class MessageType(StrEnum):
    HEADLINE = "headline"
    NORMAL = "normal"
    CHAT = "chat"


class ItemReply(StrEnum):
    OWNER = "owner"
    PUBLISHER = "publisher"


class NodeFullPolicy(StrEnum):
    RETRACT_OLDEST = "retract-oldest"
    DISCARD_OLDEST = "discard-oldest"
    REJECT = "reject"


SHOW_VALUES = frozenset({"online", "chat", "away", "xa", "dnd"})

# ---------------------------------------------------------------------------------------------
# Form field codecs: each parses a value list or raises ValueError, and renders one back.

_TRUE = {"1", "true"}
_FALSE = {"0", "false"}


def _one(values: Sequence[str]) -> str:
    if len(values) != 1:
        raise ValueError("exactly one value expected")
    return values[0].strip()


def _bool(values: Sequence[str]) -> bool:
    value = _one(values).lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(value)


def _text(values: Sequence[str]) -> str:
    return values[0] if values else ""


def _int(values: Sequence[str]) -> int:
    number = int(_one(values))
    if number < 0:
        raise ValueError("negative")
    return number


def _max_items(values: Sequence[str]) -> int | None:
    # XEP-0060 §16.4.4: the value "max" asks for the service's own limit.
    value = _one(values)
    return None if value == "max" else _int([value])


def _optional_int(values: Sequence[str]) -> int | None:
    return _int(values) if values and values[0].strip() else None


def _enum(kind: type[StrEnum]) -> Callable[[Sequence[str]], Any]:
    return lambda values: kind(_one(values))


def _strings(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v.strip() for v in values if v.strip())


def _render(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["1" if value else "0"]
    if value is None:
        return []
    if isinstance(value, (tuple, frozenset, list)):
        return sorted(str(v) for v in value) if isinstance(value, frozenset) else list(value)
    return [str(value)]


@dataclass(frozen=True, slots=True)
class _Field:
    attr: str
    parse: Callable[[Sequence[str]], Any]
    render: Callable[[Any], list[str]] = _render


def _apply_form(
    target: Any, form: Form, fields: Mapping[str, _Field], form_type: str, condition: str
) -> Any:
    """Return ``target`` updated with the fields of ``form``; every bad field is named."""
    changes: dict[str, Any] = {}
    bad: list[str] = []
    for var, values in form.items():
        if var == "FORM_TYPE":
            if list(values) not in ([], [form_type]):
                bad.append(var)
            continue
        spec = fields.get(var)
        if spec is None:
            bad.append(var)
            continue
        try:
            changes[spec.attr] = spec.parse(values)
        except (ValueError, IndexError):
            bad.append(var)
    if bad:
        raise FormError(condition, bad)
    return dataclasses.replace(target, **changes)


def _render_form(source: Any, fields: Mapping[str, _Field], form_type: str) -> dict[str, list[str]]:
    form: dict[str, list[str]] = {"FORM_TYPE": [form_type]}
    for var, spec in fields.items():
        form[var] = spec.render(getattr(source, spec.attr))
    return form


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The pubsub#node_config fields this service honours (XEP-0060 §16.4.4, XEP-0248).

    Defaults suit a feed service: persistent items with payloads, headline notifications, and
    the last item sent to new subscribers and to subscribers coming online.
    """

    node_type: NodeType = NodeType.LEAF
    title: str = ""
    description: str = ""
    payload_type: str = ""
    language: str = ""
    contact: tuple[str, ...] = ()
    access_model: AccessModel = AccessModel.OPEN
    publish_model: PublishModel = PublishModel.PUBLISHERS
    roster_groups_allowed: frozenset[str] = frozenset()
    subscribe: bool = True
    max_items: int | None = 50
    persist_items: bool = True
    publish_node_full: NodeFullPolicy = NodeFullPolicy.RETRACT_OLDEST
    max_payload_size: int = 65536
    deliver_payloads: bool = True
    deliver_notifications: bool = True
    notify_config: bool = False
    notify_delete: bool = True
    notify_retract: bool = True
    notify_sub: bool = False
    presence_based_delivery: bool = False
    send_last_published_item: SendLastPublished = SendLastPublished.ON_SUB_AND_PRESENCE
    notification_type: MessageType = MessageType.HEADLINE
    purge_offline: bool = False
    itemreply: ItemReply = ItemReply.PUBLISHER
    collection: tuple[str, ...] = ()
    children_max: int | None = None

    @classmethod
    def from_form(cls, form: Form, base: NodeConfig | None = None) -> NodeConfig:
        """Apply a submitted node_config form to ``base`` (defaults when None).

        Unknown or malformed fields raise :class:`FormError` with <not-acceptable/>
        (XEP-0060 §8.2.5.2). ``pubsub#children`` is read separately by
        :func:`requested_children` because children are other nodes' state.
        """
        fields = {k: v for k, v in form.items() if k not in _SEPARATE_FIELDS}
        if _strings(form.get("pubsub#item_expire", ())):
            # Item expiry is not implemented: a value is refused by name rather than ignored
            # (XEP-0060 §8.2.5.2); an empty one (a form sent back unchanged) is harmless.
            raise FormError("not-acceptable", ["pubsub#item_expire"])
        config = _apply_form(
            base or cls(), fields, _NODE_CONFIG_FIELDS, NODE_CONFIG_FORM_TYPE, "not-acceptable"
        )
        if config.notification_type is MessageType.CHAT:
            raise FormError("not-acceptable", ["pubsub#notification_type"])
        return config

    def to_form(self, children: Sequence[str] = ()) -> dict[str, list[str]]:
        form = _render_form(self, _NODE_CONFIG_FIELDS, NODE_CONFIG_FORM_TYPE)
        if self.max_items is None:
            form["pubsub#max_items"] = ["max"]
        form["pubsub#children"] = list(children)
        return form

    @property
    def parents(self) -> tuple[str, ...]:
        return self.collection


def requested_children(form: Form) -> tuple[str, ...] | None:
    """The ``pubsub#children`` of a node_config form, None when the form leaves them alone."""
    return _strings(form["pubsub#children"]) if "pubsub#children" in form else None


def publish_preconditions(form: Form) -> dict[str, list[str]]:
    """The precondition fields of a publish-options form; unknown fields are refused.

    XEP-0060 §7.1.5: the service MUST reject the publication on unknown fields.
    """
    fields = {k: list(v) for k, v in form.items() if k != "FORM_TYPE"}
    unknown = [k for k in fields if k not in _NODE_CONFIG_FIELDS]
    if unknown:
        raise FormError("conflict", unknown, "precondition-not-met")
    return fields


# Read apart from the dataclass fields: children are other nodes' state; item_expire is refused.
_SEPARATE_FIELDS = frozenset({"pubsub#children", "pubsub#item_expire"})

_NODE_CONFIG_FIELDS: dict[str, _Field] = {
    "pubsub#node_type": _Field("node_type", _enum(NodeType)),
    "pubsub#title": _Field("title", _text),
    "pubsub#description": _Field("description", _text),
    "pubsub#type": _Field("payload_type", _text),
    "pubsub#language": _Field("language", _text),
    "pubsub#contact": _Field("contact", _strings),
    "pubsub#access_model": _Field("access_model", _enum(AccessModel)),
    "pubsub#publish_model": _Field("publish_model", _enum(PublishModel)),
    "pubsub#roster_groups_allowed": _Field(
        "roster_groups_allowed", lambda v: frozenset(_strings(v))
    ),
    "pubsub#subscribe": _Field("subscribe", _bool),
    "pubsub#max_items": _Field("max_items", _max_items),
    "pubsub#persist_items": _Field("persist_items", _bool),
    "pubsub#publish_node_full": _Field("publish_node_full", _enum(NodeFullPolicy)),
    "pubsub#max_payload_size": _Field("max_payload_size", _int),
    "pubsub#deliver_payloads": _Field("deliver_payloads", _bool),
    "pubsub#deliver_notifications": _Field("deliver_notifications", _bool),
    "pubsub#notify_config": _Field("notify_config", _bool),
    "pubsub#notify_delete": _Field("notify_delete", _bool),
    "pubsub#notify_retract": _Field("notify_retract", _bool),
    "pubsub#notify_sub": _Field("notify_sub", _bool),
    "pubsub#presence_based_delivery": _Field("presence_based_delivery", _bool),
    "pubsub#send_last_published_item": _Field("send_last_published_item", _enum(SendLastPublished)),
    "pubsub#notification_type": _Field("notification_type", _enum(MessageType)),
    "pubsub#purge_offline": _Field("purge_offline", _bool),
    "pubsub#itemreply": _Field("itemreply", _enum(ItemReply)),
    "pubsub#collection": _Field("collection", _strings),
    "pubsub#children_max": _Field("children_max", _optional_int),
}


@dataclass(frozen=True, slots=True)
class Node:
    """A node of one service. ``service`` is the pubsub component JID or, for PEP, the owner's
    bare JID; nodes of both kinds share storage keyed by ``(service, node_id)``."""

    service: str
    node_id: str
    config: NodeConfig = field(default_factory=NodeConfig)
    creator: str = ""
    created: datetime | None = None

    @property
    def kind(self) -> NodeType:
        return self.config.node_type

    @property
    def parents(self) -> tuple[str, ...]:
        return self.config.collection

    @property
    def is_collection(self) -> bool:
        return self.config.node_type is NodeType.COLLECTION


@dataclass(frozen=True, slots=True)
class Item:
    """A published item. ``payload`` is the serialized payload element (or "" for
    notification-only items); ``seq`` orders items of a node, newest highest."""

    item_id: str
    payload: str
    publisher: str
    published: datetime
    seq: int = 0


@dataclass(frozen=True, slots=True)
class SubscriptionOptions:
    """pubsub#subscribe_options (XEP-0060 §16.4.2) plus pubsubd's own filters.

    ``show_values`` None means every show value; ``subscription_depth`` None means "all";
    ``digest_frequency`` is in milliseconds as the spec says; ``expire`` is an XEP-0082
    DateTime or "presence". ``message_type`` None follows the node's notification_type.
    """

    deliver: bool = True
    digest: bool = False
    digest_frequency: int = 86_400_000
    include_body: bool = False
    show_values: frozenset[str] | None = None
    subscription_type: str = "items"
    subscription_depth: int | None = 1
    expire: str | None = None
    include_words: tuple[str, ...] = ()
    exclude_words: tuple[str, ...] = ()
    message_type: MessageType | None = None
    catch_up: bool = False

    @property
    def expires_at(self) -> datetime | None:
        """The end of a leased subscription (XEP-0060 §12.19, an XEP-0082 DateTime; one
        without a zone is read as UTC); None for "presence" or no lease."""
        if not self.expire or self.expire == "presence":
            return None
        when = datetime.fromisoformat(self.expire.replace("Z", "+00:00"))
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)

    @classmethod
    def from_form(cls, form: Form, base: SubscriptionOptions | None = None) -> SubscriptionOptions:
        """Apply a subscribe_options form; bad fields raise <bad-request/> (§6.3.6.2)."""
        return _apply_form(  # type: ignore[no-any-return]
            base or cls(),
            form,
            _SUBSCRIBE_OPTION_FIELDS,
            SUBSCRIBE_OPTIONS_FORM_TYPE,
            "bad-request",
        )

    def to_form(self) -> dict[str, list[str]]:
        form = _render_form(self, _SUBSCRIBE_OPTION_FIELDS, SUBSCRIBE_OPTIONS_FORM_TYPE)
        form["pubsub#show-values"] = sorted(self.show_values or SHOW_VALUES)
        form["pubsub#subscription_depth"] = [
            "all" if self.subscription_depth is None else str(self.subscription_depth)
        ]
        form["pubsubd#message_type"] = [self.message_type] if self.message_type else []
        return form


def _show_values(values: Sequence[str]) -> frozenset[str] | None:
    shows = frozenset(_strings(values))
    if not shows <= SHOW_VALUES:
        raise ValueError("unknown show value")
    return None if shows == SHOW_VALUES else shows


def _subscription_type(values: Sequence[str]) -> str:
    value = _one(values)
    if value not in ("items", "nodes"):
        raise ValueError(value)
    return value


def _depth(values: Sequence[str]) -> int | None:
    value = _one(values)
    if value == "all":
        return None
    depth = int(value)
    if depth < 1:
        raise ValueError(value)
    return depth


def _expire(values: Sequence[str]) -> str | None:
    value = _text(values).strip()
    if value and value != "presence":
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value or None


def _message_type(values: Sequence[str]) -> MessageType | None:
    value = _text(values).strip()
    return MessageType(value) if value else None


def _words(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(w.lower() for v in values for w in v.split() if w)


_SUBSCRIBE_OPTION_FIELDS: dict[str, _Field] = {
    "pubsub#deliver": _Field("deliver", _bool),
    "pubsub#digest": _Field("digest", _bool),
    "pubsub#digest_frequency": _Field("digest_frequency", _int),
    "pubsub#include_body": _Field("include_body", _bool),
    "pubsub#show-values": _Field("show_values", _show_values),
    "pubsub#subscription_type": _Field("subscription_type", _subscription_type),
    "pubsub#subscription_depth": _Field("subscription_depth", _depth),
    "pubsub#expire": _Field("expire", _expire),
    # pubsubd extensions, announced in the options form with their own prefix.
    "pubsubd#include_words": _Field("include_words", _words),
    "pubsubd#exclude_words": _Field("exclude_words", _words),
    "pubsubd#message_type": _Field("message_type", _message_type),
    "pubsubd#catch_up": _Field("catch_up", _bool),
}


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscription of ``jid`` (full or bare) to a node, identified by ``subid``."""

    node: str
    jid: str
    subid: str
    state: SubscriptionState = SubscriptionState.SUBSCRIBED
    options: SubscriptionOptions = field(default_factory=SubscriptionOptions)

    @property
    def bare_jid(self) -> str:
        return bare(self.jid)

    def lapsed(self, now: datetime) -> bool:
        """Whether its lease (pubsub#expire DateTime) has run out at ``now``."""
        end = self.options.expires_at
        return end is not None and end <= now

    @property
    def active(self) -> bool:
        """Whether notifications flow (XEP-0060 §4.2: subscribed, or unconfigured)."""
        return self.state in (SubscriptionState.SUBSCRIBED, SubscriptionState.UNCONFIGURED)

"""What the service asks the XMPP layer to send: event notifications, already addressed.

A notification is built once and carries every recipient, so the glue serializes the payload
once and only changes the addressing per recipient.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .model import Item, MessageType, NodeConfig, Subscription


class NotificationKind(StrEnum):
    ITEMS = "items"  # XEP-0060 §7.1.2
    RETRACT = "retract"  # §7.2.2.1
    DELETE = "delete"  # §8.4.2
    PURGE = "purge"  # §8.5.2
    CONFIGURATION = "configuration"  # §8.2.5.3
    SUBSCRIPTION = "subscription"  # §8.8.4, §6.1.4 result to the subscriber
    APPROVAL_REQUEST = "approval-request"  # §8.6 form to the owners
    ASSOCIATE = "associate"  # XEP-0248 §5.3.2
    DISSOCIATE = "dissociate"
    CREATE = "create"  # XEP-0248 §5.3.1.2, to "nodes" subscribers of a collection


@dataclass(frozen=True, slots=True)
class Recipient:
    """One ``<message/>`` to send.

    ``subids`` and ``collection`` become SHIM headers (XEP-0060 §7.1.2.4 and §12.16,
    XEP-0248 §5.3.1); ``include_body`` asks for a plain-text ``<body/>`` (pubsub#include_body).
    """

    address: str
    message_type: MessageType = MessageType.HEADLINE
    subids: tuple[str, ...] = ()
    collection: str | None = None
    include_body: bool = False


@dataclass(frozen=True, slots=True)
class Notification:
    kind: NotificationKind
    service: str
    node: str
    recipients: tuple[Recipient, ...]
    items: tuple[Item, ...] = ()
    """Published items (ITEMS, oldest first) — payloads only sent if ``with_payload``."""
    item_ids: tuple[str, ...] = ()
    """Retracted item ids (RETRACT)."""
    with_payload: bool = True
    redirect: str | None = None
    config: NodeConfig | None = None
    """The new configuration when the node delivers payloads (CONFIGURATION)."""
    subscription: Subscription | None = None
    """SUBSCRIPTION / APPROVAL_REQUEST: the subscription concerned."""
    child: str | None = None
    """ASSOCIATE / DISSOCIATE / CREATE: the node associated with the collection ``node``."""
    skipped: int = 0
    """Catch-up: how many held items were dropped because the cap was reached."""

"""The publish-subscribe core (XEP-0060, XEP-0248, XEP-0163): plain Python, no XML, no I/O.

The XMPP glue turns each pubsub request into one :class:`PubSubService` call and each returned
:class:`Notification` into ``<message/>`` stanzas; :class:`PubSubError` maps to stanza errors.
"""

from __future__ import annotations

from .access import ContactsView
from .delivery import PresenceView
from .errors import FormError, PubSubError
from .fanout import NotifyInterest, PresenceSubscribers
from .model import (
    Affiliation,
    Item,
    Node,
    NodeConfig,
    Subscription,
    SubscriptionOptions,
    SubscriptionState,
    bare,
)
from .notifications import Notification, NotificationKind, Recipient
from .outcomes import (
    CreateOutcome,
    ItemsResult,
    Outcome,
    PublishOutcome,
    RejectedEntries,
    SubscribeOutcome,
    SubscriptionChange,
)
from .service import PubSubService, ServiceConfig
from .store import MemoryPubSubStore, PubSubStore

__all__ = [
    "Affiliation",
    "ContactsView",
    "CreateOutcome",
    "FormError",
    "Item",
    "ItemsResult",
    "MemoryPubSubStore",
    "Node",
    "NodeConfig",
    "Notification",
    "NotificationKind",
    "NotifyInterest",
    "Outcome",
    "PresenceSubscribers",
    "PresenceView",
    "PubSubError",
    "PubSubService",
    "PubSubStore",
    "PublishOutcome",
    "Recipient",
    "RejectedEntries",
    "ServiceConfig",
    "SubscribeOutcome",
    "Subscription",
    "SubscriptionChange",
    "SubscriptionOptions",
    "SubscriptionState",
    "bare",
]

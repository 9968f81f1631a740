"""What the service's use cases return, besides the notifications they produce."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PubSubError
from .model import Affiliation, Item, NodeConfig, Subscription, SubscriptionState
from .notifications import Notification


@dataclass(frozen=True, slots=True)
class Outcome:
    notifications: tuple[Notification, ...] = ()


@dataclass(frozen=True, slots=True)
class CreateOutcome:
    node: str
    notifications: tuple[Notification, ...] = ()


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    node: str
    item_id: str
    notifications: tuple[Notification, ...] = ()
    created: bool = False


@dataclass(frozen=True, slots=True)
class SubscribeOutcome:
    subscription: Subscription
    notifications: tuple[Notification, ...] = ()


@dataclass(frozen=True, slots=True)
class ItemsGroup:
    node: str
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class ItemsResult:
    """Items newest first; for a collection one group per child leaf (XEP-0248 §6.2.2).

    ``count``/``first``/``last`` answer XEP-0059 result set management for paged requests.
    """

    groups: tuple[ItemsGroup, ...]
    count: int
    first: str | None = None
    last: str | None = None

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(item for group in self.groups for item in group.items)


@dataclass(frozen=True, slots=True)
class NodeConfigView:
    node: str
    config: NodeConfig
    children: tuple[str, ...] = ()

    def to_form(self) -> dict[str, list[str]]:
        return self.config.to_form(self.children)


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """One entry of an owner's subscriptions modification (§8.8.2)."""

    jid: str
    state: SubscriptionState
    subid: str | None = None


class RejectedEntries(PubSubError):
    """Some entries of an owner's multiple modification were refused (XEP-0060 §8.8.2.4,
    §8.9.2.4): the others were applied, and their ``notifications`` must still be sent.

    ``subscriptions`` / ``affiliations`` are the refused entries with their current,
    unaltered state, as the error reply has to list them.
    """

    def __init__(
        self,
        node: str,
        *,
        subscriptions: tuple[Subscription, ...] = (),
        affiliations: tuple[tuple[str, Affiliation], ...] = (),
        notifications: tuple[Notification, ...] = (),
    ) -> None:
        refused = [s.jid for s in subscriptions] + [jid for jid, _ in affiliations]
        super().__init__("not-acceptable", text="refused: " + ", ".join(refused))
        self.node = node
        self.subscriptions = subscriptions
        self.affiliations = affiliations
        self.notifications = notifications
